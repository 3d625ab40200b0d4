// The server half of socksv5 0.0.6 (MIT, Brian White), vendored and patched for gkd: see README.md.
var server = require('./lib/server');

exports.Server = server.Server;
exports.createServer = server.createServer;
exports.auth = {
  None: require('./lib/auth/None'),
  UserPassword: require('./lib/auth/UserPassword')
};
