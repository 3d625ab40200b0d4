var net = require('net'),
    inherits = require('util').inherits,
    EventEmitter = require('events').EventEmitter;

var Parser = require('./server.parser');

var ATYP = require('./constants').ATYP,
    REP = require('./constants').REP;

// gkd patch: every reply is a full RFC 1928 reply (VER REP RSV ATYP BND.ADDR BND.PORT),
// here with BND = 0.0.0.0:0. The original sent only VER REP on failure, which clients
// report as "proxy closed the connection" instead of the reason.
function replyBuffer(rep) {
  return Buffer.from([0x05, rep, 0x00, ATYP.IPv4, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
}

var BUF_AUTH_NO_ACCEPT = Buffer.from([0x05, 0xFF]),
    BUF_REP_INTR_SUCCESS = replyBuffer(REP.SUCCESS),
    BUF_REP_DISALLOW = replyBuffer(REP.DISALLOW),
    BUF_REP_CMDUNSUPP = replyBuffer(REP.CMDUNSUPP);

function Server(options, listener) {
  if (!(this instanceof Server))
    return new Server(options, listener);

  var self = this;

  if (typeof options === 'function') {
    self.on('connection', options);
    options = undefined;
  } else if (typeof listener === 'function')
    self.on('connection', listener);

  EventEmitter.call(this);

  this._srv = new net.Server(function(socket) {
    if (self._connections >= self.maxConnections) {
      socket.destroy();
      return;
    }
    ++self._connections;
    socket.once('close', function(had_err) {
      --self._connections;
    });
    self._onConnection(socket);
  }).on('error', function(err) {
    self.emit('error', err);
  }).on('listening', function() {
    self.emit('listening');
  }).on('close', function() {
    self.emit('close');
  });
  this._auths = [];
  if (options && Array.isArray(options.auths)) {
    for (var i = 0, len = options.auths.length; i < len; ++i)
      this.useAuth(options.auths[i]);
  }
  this._debug = (options && typeof options.debug === 'function'
                 ? options.debug
                 : undefined);

  this._connections = 0;
  this.maxConnections = Infinity;
}
inherits(Server, EventEmitter);

Server.prototype._onConnection = function(socket) {
  var self = this,
      parser = new Parser(socket);
  parser.on('error', function(err) {
    // gkd patch: answer with the reply code the parser attached (0x07, 0x08), and report
    // the error to the application ('clientError', err, socket) instead of dropping it.
    if (socket.writable)
      socket.end(err.rep ? replyBuffer(err.rep) : undefined);
    self.emit('clientError', err, socket);
  }).on('methods', function(methods) {
    var auths = self._auths;
    for (var a = 0, alen = auths.length; a < alen; ++a) {
      for (var m = 0, mlen = methods.length; m < mlen; ++m) {
        if (methods[m] === auths[a].METHOD) {
          auths[a].server(socket, function(result) {
            if (result === true) {
              parser.authed = true;
              parser.start();
            } else {
              // gkd vendor: util.isError is deprecated (and gone in Node 23).
              if (result instanceof Error)
                self._debug && self._debug('Error: ' + result.message);
              socket.end();
            }
          });
          socket.write(Buffer.from([0x05, auths[a].METHOD]));
          socket.resume();
          return;
        }
      }
    }
    socket.end(BUF_AUTH_NO_ACCEPT);
    self.emit('clientError',
              new Error('No acceptable authentication method offered'), socket);
  }).on('request', function(reqInfo) {
    // gkd patch: UDP ASSOCIATE is passed to the application too (gkd relays it); only BIND is refused here.
    if (reqInfo.cmd !== 'connect' && reqInfo.cmd !== 'udp') {
      socket.end(BUF_REP_CMDUNSUPP);
      self.emit('clientError',
                new Error('Unsupported request command: ' + reqInfo.cmd), socket);
      return;
    }

    reqInfo.srcAddr = socket.remoteAddress;
    reqInfo.srcPort = socket.remotePort;

    var handled = false;

    // gkd vendor: accept() always intercepts (the application connects the socket itself);
    // the package's own dialling path (dns.lookup + net.connect) is not part of this copy.
    // gkd patch: accept(true, reply) sends `reply` (a full success reply naming BND.ADDR and BND.PORT,
    // as UDP ASSOCIATE needs) instead of the 0.0.0.0:0 one.
    function accept(intercept, reply) {
      if (handled)
        return;
      handled = true;
      if (socket.writable) {
        socket.write(Buffer.isBuffer(reply) ? reply : BUF_REP_INTR_SUCCESS);
        socket.removeListener('error', onErrorNoop);
        process.nextTick(function() {
          socket.resume();
        });
        return socket;
      }
    }
    // gkd patch: deny(rep) sends a full reply with REP = rep (0x01-0x08; default 0x02).
    function deny(rep) {
      if (handled)
        return;
      handled = true;
      if (socket.writable) {
        socket.end(typeof rep === 'number' && rep >= 0x01 && rep <= 0x08
                   ? replyBuffer(rep)
                   : BUF_REP_DISALLOW);
      }
    }

    // gkd patch: the client socket is passed as a fourth argument so the application can
    // tie the request to its connection (abort on disconnect) without matching addresses.
    // gkd vendor: without a 'connection' listener there is no one to connect the request
    // (this copy has no dialling path of its own), so it is refused.
    if (self.listenerCount('connection') > 0) {
      self.emit('connection', reqInfo, accept, deny, socket);
      return;
    }

    deny();
  });

  socket.on('error', onErrorNoop);
};

Server.prototype.useAuth = function(auth) {
  if (typeof auth !== 'object'
      || typeof auth.server !== 'function'
      || auth.server.length !== 2)
    throw new Error('Invalid authentication handler');
  else if (this._auths.length >= 255)
    throw new Error('Too many authentication handlers (limited to 255).');

  this._auths.push(auth);

  return this;
};

Server.prototype.listen = function() {
  this._srv.listen.apply(this._srv, arguments);
  return this;
};

Server.prototype.address = function() {
  return this._srv.address();
};

Server.prototype.getConnections = function(cb) {
  this._srv.getConnections(cb);
};

Server.prototype.close = function(cb) {
  this._srv.close(cb);
  return this;
};

Server.prototype.ref = function() {
  this._srv.ref();
};

Server.prototype.unref = function() {
  this._srv.unref();
};


exports.Server = Server;
exports.createServer = function(opts, listener) {
  return new Server(opts, listener);
};


function onErrorNoop(err) {}
