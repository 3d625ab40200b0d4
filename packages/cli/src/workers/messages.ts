import type { MetricObjectWithValues, MetricValue } from 'prom-client';

/** Master → worker, over the IPC channel of `child_process.fork`. */
export type ToWorker =
  /**
   * A tunnel whose preface the master read (its socket handle travels with the message); `head`: base64
   * of the bytes the master read past the preface; `remoteAddress`: the peer's (the PROXY header's, or the socket's).
   */
  | { type: 'tunnel'; token: string; head: string; remoteAddress: string | undefined }
  /** Render your metrics and answer with `id`. */
  | { type: 'metrics'; id: number };

/** Worker → master. */
export type FromWorker =
  /** The server is up: send tunnels. */
  | { type: 'ready' }
  /** Sessions the worker holds now (sent on every change). */
  | { type: 'load'; sessions: number }
  /** A session ended: the master forgets its token. */
  | { type: 'session-end'; token: string }
  /** The answer to a metrics request. */
  | { type: 'metrics'; id: number; metrics: MetricObjectWithValues<MetricValue<string>>[] };

/** The environment variable that makes `gkd server` a worker: its id (1…N). Not GKD_…: yargs would read that as a flag. */
export const WORKER_ENV = 'GKDWORKER_ID';
