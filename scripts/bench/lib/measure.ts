/**
 * The measurements: a curl download (direct, through a SOCKS5 proxy, or from a local tunnel port),
 * stopped at `size` bytes or after `cap` seconds, and `iperf3 -P N -R` over the same cap. Throughput
 * is counted from the first byte of the body to the last one received, so connection setup (measured
 * separately, as time to first byte) does not dilute it; slow start is included for every tool alike.
 */
import { run } from './proc.js';

export interface Download {
  /** Body bytes received. */
  bytes: number;
  /** Seconds from the first body byte to the end. */
  seconds: number;
  /** Throughput, in Mbit/s (10^6 bits per second). */
  mbps: number;
  /** Time to the first byte of the response, from the start of curl (includes connect and proxy handshakes), in ms. */
  ttfbMs: number;
  /** True if the cap stopped it before `size` bytes. */
  capped: boolean;
  /** curl's exit code (0, or 28 when capped). */
  exit: number | null;
  error?: string;
}

/** GET `url` from namespace `ns` with curl; `socks` is a SOCKS5 proxy host:port (hostname mode). */
export async function curlDownload(ns: string, url: string, opts: { socks?: string; capSeconds: number; size: number }): Promise<Download> {
  const args = ['-s', '-o', '/dev/null', '--max-time', String(opts.capSeconds), '-w', '%{size_download} %{time_starttransfer} %{time_total} %{http_code}'];
  if (opts.socks) args.push('--socks5-hostname', opts.socks);
  args.push(url);
  const r = await run(ns, 'curl', args, (opts.capSeconds + 30) * 1000);
  const [size = 'NaN', tStart = 'NaN', tTotal = 'NaN', code = '000'] = r.stdout.trim().split(/\s+/);
  const bytes = Number(size);
  const seconds = Number(tTotal) - Number(tStart);
  const ok = (r.code === 0 || r.code === 28) && code === '200' && bytes > 0;
  const d: Download = {
    bytes,
    seconds,
    mbps: ok && seconds > 0 ? (bytes * 8) / seconds / 1e6 : NaN,
    ttfbMs: Number(tStart) * 1000,
    capped: bytes < opts.size,
    exit: r.code,
  };
  if (!ok) d.error = `curl exit ${r.code}, http ${code}: ${r.stderr.trim().slice(0, 300)}`;
  return d;
}

export interface IperfResult {
  mbps: number;
  bytes: number;
  seconds: number;
  capped: boolean;
  retransmits: number;
  error?: string;
}

interface IperfJson {
  error?: string;
  intervals?: { sum: { start: number; end: number; bytes: number } }[];
  end?: { sum_received?: { bytes: number; seconds: number }; sum_sent?: { retransmits?: number } };
}

/**
 * `iperf3 -c server -R -P n -t cap`, and the throughput up to the moment `size` bytes had arrived
 * (interpolated in its 0.5 s intervals), so it is measured like a download of the same file.
 */
export async function iperf(ns: string, server: string, port: number, n: number, opts: { capSeconds: number; size: number }): Promise<IperfResult> {
  const args = ['-c', server, '-p', String(port), '-R', '-P', String(n), '-t', String(opts.capSeconds), '-i', '0.5', '-J', '--connect-timeout', '5000'];
  const r = await run(ns, 'iperf3', args, (opts.capSeconds + 30) * 1000);
  let j: IperfJson;
  try {
    j = JSON.parse(r.stdout) as IperfJson;
  } catch {
    return { mbps: NaN, bytes: 0, seconds: 0, capped: true, retransmits: 0, error: `iperf3 exit ${r.code}: ${r.stderr.slice(0, 300)}` };
  }
  if (j.error) return { mbps: NaN, bytes: 0, seconds: 0, capped: true, retransmits: 0, error: j.error };
  const retransmits = j.end?.sum_sent?.retransmits ?? 0;
  let cum = 0;
  for (const iv of j.intervals ?? []) {
    const { start, end, bytes } = iv.sum;
    if (cum + bytes >= opts.size && bytes > 0) {
      const t = start + ((opts.size - cum) / bytes) * (end - start);
      return { mbps: (opts.size * 8) / t / 1e6, bytes: opts.size, seconds: t, capped: false, retransmits };
    }
    cum += bytes;
  }
  const s = j.end?.sum_received;
  if (!s || s.seconds <= 0) return { mbps: NaN, bytes: 0, seconds: 0, capped: true, retransmits, error: 'no iperf3 summary' };
  return { mbps: (s.bytes * 8) / s.seconds / 1e6, bytes: s.bytes, seconds: s.seconds, capped: true, retransmits };
}
