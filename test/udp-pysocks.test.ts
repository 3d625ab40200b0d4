/**
 * SOCKS5 UDP ASSOCIATE end to end with a real third-party client: PySocks (`socks.socksocket(AF_INET,
 * SOCK_DGRAM)`) → gkd SOCKS5 port → gkd client (4 tunnels) → gkd server → a DNS server and a UDP echo
 * server, both on loopback in this process. PySocks is the Debian package python3-socks (.ci/run
 * installs it); without python3 or the module the tests skip with a printed reason.
 */
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '@gkd/test-support';

/** A python3 that can `import socks`: the one on PATH, or Debian's (a pyenv shim may hide it). */
function findPySocks(): string | null {
  for (const python of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(python, ['-c', 'import socks'], { stdio: 'ignore' });
    if (r.status === 0) return python;
  }
  return null;
}

const python = findPySocks();
if (!python) console.log('skipping the PySocks UDP tests: no python3 with the socks module (apt-get install python3-socks)');

/** Run a Python script with arguments; resolves with its stdout parsed as JSON. */
function runPython(script: string, args: (string | number)[], timeoutMs = 120_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = spawn(python!, ['-c', script, ...args.map(String)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`python exited ${code}: ${err}`));
      try {
        resolve(JSON.parse(out) as Record<string, unknown>);
      } catch {
        reject(new Error(`python printed no JSON: ${out} ${err}`));
      }
    });
  });
}

/** A UDP socket on 127.0.0.1, port 0, answering each datagram with `answer(msg)` (none when it returns null). */
async function udpServer(answer: (msg: Buffer) => Buffer | null): Promise<{ socket: dgram.Socket; port: number; received: number }> {
  const socket = dgram.createSocket('udp4');
  const server = { socket, port: 0, received: 0 };
  socket.on('message', (msg, rinfo) => {
    server.received++;
    const reply = answer(msg);
    if (reply) socket.send(reply, rinfo.port, rinfo.address);
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  server.port = socket.address().port;
  return server;
}

/**
 * A tiny DNS responder (RFC 1035): for a single A question `host<N>.test` it answers 192.0.2.N
 * (TTL 60), for anything else NXDOMAIN. Enough to tell each answer belongs to its query.
 */
function dnsAnswer(query: Buffer): Buffer | null {
  if (query.length < 12 || query.readUInt16BE(4) !== 1) return null;
  const labels: string[] = [];
  let o = 12;
  while (o < query.length && query[o] !== 0) {
    const n = query[o]!;
    labels.push(query.subarray(o + 1, o + 1 + n).toString('latin1'));
    o += 1 + n;
  }
  const question = query.subarray(12, o + 5); // name, its 0 terminator, QTYPE, QCLASS
  const m = /^host(\d{1,3})$/.exec(labels[0] ?? '');
  const found = m && labels.length === 2 && labels[1] === 'test' && Number(m[1]) < 256;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0); // same id
  header.writeUInt16BE(found ? 0x8180 : 0x8183, 2); // response, RD, RA; rcode 0 or 3 (NXDOMAIN)
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(found ? 1 : 0, 6);
  if (!found) return Buffer.concat([header, question]);
  const answer = Buffer.from([0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, 192, 0, 2, Number(m[1])]);
  return Buffer.concat([header, question, answer]);
}

const DNS_SCRIPT = String.raw`
import json, random, socket, struct, sys
import socks
proxy_port, dns_port, denied_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def query(name, qid):
    q = struct.pack('>HHHHHH', qid, 0x0100, 1, 0, 0, 0)
    for label in name.split('.'):
        q += bytes([len(label)]) + label.encode()
    return q + b'\x00' + struct.pack('>HH', 1, 1)

def ask(s, name, server):
    qid = random.randrange(65536)
    s.sendto(query(name, qid), server)
    data, _ = s.recvfrom(4096)
    rid, flags, _, ancount = struct.unpack('>HHHH', data[:8])
    return {'name': name, 'id_ok': rid == qid, 'rcode': flags & 0xf, 'a': '.'.join(map(str, data[-4:])) if ancount else None}

s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
s.set_proxy(socks.SOCKS5, '127.0.0.1', proxy_port)
s.bind(('127.0.0.1', 0))
s.settimeout(5)
answers = [ask(s, 'host%d.test' % n, ('127.0.0.1', dns_port)) for n in (1, 7, 42, 200)]
answers.append(ask(s, 'missing.test', ('127.0.0.1', dns_port)))
# A name for the DNS server itself goes to gkd unresolved (ATYP 3); the gkd server resolves it.
s.set_proxy(socks.SOCKS5, '127.0.0.1', proxy_port, rdns=True)
answers.append(ask(s, 'host9.test', ('dns.test', dns_port)))
# A destination the server's policy denies: the query is never delivered, so no answer comes.
s.settimeout(1)
try:
    ask(s, 'host3.test', ('127.0.0.1', denied_port))
    denied = 'answered'
except socket.timeout:
    denied = 'timeout'
print(json.dumps({'answers': answers, 'denied': denied}))
`;

const ECHO_SCRIPT = `
import json, os, socket, sys, time
import socks
proxy_port, echo_port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
s.set_proxy(socks.SOCKS5, '127.0.0.1', proxy_port)
s.bind(('127.0.0.1', 0))
s.settimeout(0.5)
WINDOW = 32
sent, seen = {}, set()
intact = corrupt = dup = timeouts = 0
nxt = outstanding = 0
started = time.time()
while nxt < n or outstanding > 0:
    while nxt < n and outstanding < WINDOW:
        payload = nxt.to_bytes(4, 'big') + os.urandom(16 + (nxt * 37) % 1200)
        sent[nxt] = payload
        s.sendto(payload, ('127.0.0.1', echo_port))
        nxt += 1
        outstanding += 1
    try:
        data, _ = s.recvfrom(65535)
    except socket.timeout:
        timeouts += 1
        outstanding = 0  # what is still out is lost
        continue
    seq = int.from_bytes(data[:4], 'big')
    if seq in seen:
        dup += 1
        continue
    seen.add(seq)
    if sent.get(seq) == data:
        intact += 1
    else:
        corrupt += 1
    outstanding = max(0, outstanding - 1)
print(json.dumps({'sent': n, 'intact': intact, 'corrupt': corrupt, 'dup': dup, 'timeouts': timeouts, 'seconds': round(time.time() - started, 2)}))
`;

describe.skipIf(!python)('SOCKS5 UDP ASSOCIATE with PySocks: client → gkd client (4 tunnels) → gkd server → loopback UDP servers', () => {
  let stack: Stack;
  let dns: Awaited<ReturnType<typeof udpServer>>;
  let denied: Awaited<ReturnType<typeof udpServer>>;
  let echo: Awaited<ReturnType<typeof udpServer>>;
  beforeAll(async () => {
    dns = await udpServer(dnsAnswer);
    denied = await udpServer(dnsAnswer); // a DNS server the policy does not allow (loopback is denied by default)
    echo = await udpServer((msg) => msg);
    const resolver = async (name: string) =>
      name === 'dns.test' ? [{ address: '127.0.0.1', family: 4 }] : Promise.reject(Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' }));
    stack = await startStack({ tunnels: 4, allow: [`127.0.0.1:${dns.port}`, `127.0.0.1:${echo.port}`], server: { resolver } });
  });
  afterAll(async () => {
    await stack?.close();
    for (const s of [dns, denied, echo]) s?.socket.close();
  });

  it('DNS queries get their answers (by address and by a name the server resolves); a denied destination gets nothing', async () => {
    const r = await runPython(DNS_SCRIPT, [stack.socksPort, dns.port, denied.port]);
    expect(r.answers).toEqual([
      { name: 'host1.test', id_ok: true, rcode: 0, a: '192.0.2.1' },
      { name: 'host7.test', id_ok: true, rcode: 0, a: '192.0.2.7' },
      { name: 'host42.test', id_ok: true, rcode: 0, a: '192.0.2.42' },
      { name: 'host200.test', id_ok: true, rcode: 0, a: '192.0.2.200' },
      { name: 'missing.test', id_ok: true, rcode: 3, a: null },
      { name: 'host9.test', id_ok: true, rcode: 0, a: '192.0.2.9' },
    ]);
    expect(r.denied).toBe('timeout');
    expect(denied.received).toBe(0);
    expect(stack.server.counters.datagramsDenied).toBeGreaterThanOrEqual(1);
  });

  it('10 000 datagrams round-trip to a UDP echo server: at least 99 % come back, every one intact', async () => {
    const r = (await runPython(ECHO_SCRIPT, [stack.socksPort, echo.port, 10_000])) as {
      sent: number;
      intact: number;
      corrupt: number;
      dup: number;
      timeouts: number;
      seconds: number;
    };
    console.log(`PySocks echo: ${JSON.stringify(r)}`);
    expect(r.corrupt).toBe(0);
    expect(r.intact).toBeGreaterThanOrEqual(9_900);
    expect(stack.socks.stats().datagramsRejected).toBe(0);
  });
});
