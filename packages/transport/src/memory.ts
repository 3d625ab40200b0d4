import { Duplex } from 'node:stream';

/**
 * Two connected in-memory Duplex streams, the in-memory tunnel kind: what one writes the other reads.
 * Writes are delivered on a later tick, like a socket. `destroy()` on one side closes both.
 */
export function duplexPair(): [Duplex, Duplex] {
  let a!: Duplex;
  let b!: Duplex;
  const make = (peer: () => Duplex) =>
    new Duplex({
      highWaterMark: 256 * 1024,
      read() {},
      write(chunk: Buffer, _enc, cb) {
        const p = peer();
        if (p.destroyed) return cb(new Error('peer closed'));
        setImmediate(() => {
          if (!p.destroyed) p.push(chunk);
          cb();
        });
      },
      final(cb) {
        const p = peer();
        setImmediate(() => {
          if (!p.destroyed) p.push(null);
          cb();
        });
      },
      destroy(err, cb) {
        const p = peer();
        if (!p.destroyed) setImmediate(() => p.destroy());
        cb(err);
      },
    });
  a = make(() => b);
  b = make(() => a);
  return [a, b];
}
