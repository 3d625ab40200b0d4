import { AbortError } from '@gkd/protocol';

/**
 * Settle as `wait` does, or reject with AbortError as soon as `signal` aborts. For waits that hold
 * nothing to clean up (a tunnel, a new session): `wait` runs on, its outcome ignored.
 */
export function abortable<T>(wait: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return wait;
  wait.catch(() => undefined); // after an abort nobody listens to it
  if (signal.aborted) return Promise.reject(new AbortError(signal.reason));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new AbortError(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    wait.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
