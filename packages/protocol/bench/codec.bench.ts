/**
 * Codec micro-benchmark: encode and decode throughput of @gkd/protocol, no I/O.
 *
 *   pnpm --filter @gkd/protocol bench          (BENCH_MS=2000 for longer runs)
 *
 * Throughput counts whole frames on the wire (12-byte header + body), in GB/s (10^9 bytes/s).
 * Each case runs for BENCH_MS after a warm-up; the best of 3 rounds is reported. It prints a
 * Markdown table ready for the README.
 */
import os from 'node:os';
import { Decoder, FrameType, ReorderBuffer, encode, encodeDataHeader, type Frame } from '../src/index.js';

const BENCH_MS = Number(process.env.BENCH_MS ?? 700);
const KiB = 1024;

interface Case {
  name: string;
  /** Frames and wire bytes handled by one call of `run`. */
  frames: number;
  bytes: number;
  run: () => number;
}

let sink = 0; // keeps results alive so nothing is optimised away

function measure(c: Case): { framesPerSec: number; gbPerSec: number } {
  const until = (ms: number) => {
    let ops = 0;
    const t0 = process.hrtime.bigint();
    const deadline = t0 + BigInt(Math.round(ms * 1e6));
    let now = t0;
    do {
      for (let i = 0; i < 16; i++) sink += c.run();
      ops += 16;
      now = process.hrtime.bigint();
    } while (now < deadline);
    return ops / (Number(now - t0) / 1e9);
  };
  until(Math.min(300, BENCH_MS)); // warm-up: let the JIT settle
  let best = 0;
  for (let round = 0; round < 3; round++) best = Math.max(best, until(BENCH_MS / 3));
  return { framesPerSec: best * c.frames, gbPerSec: (best * c.bytes) / 1e9 };
}

/** Concatenate `frames` and cut the result into `size`-byte chunks, as a socket would deliver them. */
function chunked(frames: Buffer[], size: number): Buffer[] {
  const all = Buffer.concat(frames);
  const out: Buffer[] = [];
  for (let o = 0; o < all.length; o += size) out.push(all.subarray(o, Math.min(o + size, all.length)));
  return out;
}

const payload16k = Buffer.alloc(16 * KiB, 0x5a);
const data16k: Frame = { type: FrameType.DATA, stream: 1, offset: 123_456_789, payload: payload16k };
const data16kWire = encode(data16k);
const ack: Frame = { type: FrameType.ACK, stream: 1, ack: 123_456_789, window: 256 * KiB };
const ackWire = encode(ack);

// 4 MiB of 16 KiB DATA frames in 64 KiB reads: 16 404-byte frames straddle chunk edges, so some are copied.
const dataStream = Array.from({ length: 256 }, (_, i) => encode({ type: FrameType.DATA, stream: 1, offset: i * 16 * KiB, payload: payload16k }));
const dataChunks = chunked(dataStream, 64 * KiB);
const dataStreamBytes = dataStream.reduce((n, b) => n + b.length, 0);
// 1 MiB of ACKs in 64 KiB reads.
const ackStream = Array.from({ length: Math.floor((1024 * KiB) / ackWire.length) }, () => ackWire);
const ackChunks = chunked(ackStream, 64 * KiB);
const ackStreamBytes = ackStream.length * ackWire.length;

// Reorder buffer: 64 segments of 16 KiB delivered in a shuffled order (as from several tunnels).
const order = [...Array(64).keys()].sort((a, b) => ((a * 37) % 64) - ((b * 37) % 64));
let reorderBase = 0;
const reorder = new ReorderBuffer({ window: 64 * 16 * KiB });

const cases: Case[] = [
  { name: 'encode DATA 16 KiB (encode(), copies payload)', frames: 1, bytes: data16kWire.length, run: () => encode(data16k).length },
  {
    name: 'encode DATA 16 KiB (encodeDataHeader, zero-copy)',
    frames: 1,
    bytes: data16kWire.length,
    run: () => encodeDataHeader(1, 123_456_789, payload16k.length).length,
  },
  {
    name: 'decode DATA 16 KiB, one frame per push',
    frames: 1,
    bytes: data16kWire.length,
    run: (() => {
      const d = new Decoder();
      return () => d.push(data16kWire).length;
    })(),
  },
  {
    name: 'decode DATA 16 KiB from 64 KiB chunks',
    frames: dataStream.length,
    bytes: dataStreamBytes,
    run: (() => {
      const d = new Decoder();
      return () => {
        let n = 0;
        for (const c of dataChunks) n += d.push(c).length;
        return n;
      };
    })(),
  },
  { name: 'encode ACK', frames: 1, bytes: ackWire.length, run: () => encode(ack).length },
  {
    name: 'decode ACK, one frame per push',
    frames: 1,
    bytes: ackWire.length,
    run: (() => {
      const d = new Decoder();
      return () => d.push(ackWire).length;
    })(),
  },
  {
    name: 'decode ACK from 64 KiB chunks',
    frames: ackStream.length,
    bytes: ackStreamBytes,
    run: (() => {
      const d = new Decoder();
      return () => {
        let n = 0;
        for (const c of ackChunks) n += d.push(c).length;
        return n;
      };
    })(),
  },
  {
    name: 'ReorderBuffer: 64 × 16 KiB, shuffled',
    frames: 64,
    bytes: 64 * data16kWire.length,
    run: () => {
      let n = 0;
      reorder.extendLimit(reorderBase + 64 * 16 * KiB);
      for (const i of order) n += reorder.insert(reorderBase + i * 16 * KiB, payload16k).released.length;
      reorderBase += 64 * 16 * KiB;
      return n;
    },
  },
];

const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
const load = () => os.loadavg()[0]!.toFixed(2);
console.log(
  `@gkd/protocol codec bench — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${os.cpus().length} cores (${cpu}), ` +
    `${BENCH_MS} ms per case, load average ${load()} at start`,
);
console.log('');
console.log('| case | frames/s | GB/s |');
console.log('| --- | ---: | ---: |');
for (const c of cases) {
  const r = measure(c);
  const fps = r.framesPerSec >= 1e6 ? `${(r.framesPerSec / 1e6).toFixed(2)} M` : `${(r.framesPerSec / 1e3).toFixed(0)} k`;
  console.log(`| ${c.name} | ${fps} | ${r.gbPerSec.toFixed(2)} |`);
}
console.log('');
console.log(`load average ${load()} at end (a busy machine lowers every number)`);
if (sink === -1) console.log(sink);
