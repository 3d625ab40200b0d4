import type { Duplex } from 'node:stream';
import { OpenFailedError, Reason, type Address } from '@gkd/protocol';

/**
 * Opens a proxied connection. Resolves with a Duplex once the far side is connected (OPEN_OK).
 * Rejects with OpenFailedError (`err.reason` is the wire reason 0x01–0x06) when the server refused,
 * or with another GkdError (NoTunnelError, SessionLostError, …) or any Error otherwise.
 * `signal` aborts when the proxy stops waiting (client gone, timeout, server closing); an opener
 * should then give up and reject (a Duplex it still resolves with is destroyed).
 */
export type Opener = (destination: Address, signal?: AbortSignal) => Promise<Duplex>;

/** The opener did not answer within the bounded wait: a failed open with reason GENERAL_FAILURE. */
export class OpenTimeoutError extends OpenFailedError {
  constructor(readonly timeout: number) {
    super(Reason.GENERAL_FAILURE, `no answer from the opener within ${timeout} ms`);
  }
}

/**
 * Call `opener` and settle within `timeout` ms. Resolves with its Duplex; rejects with its error, with
 * OpenTimeoutError when it does not answer in time, or with `signal.reason` when `signal` aborts first.
 * When we stop waiting (timeout or abort) the opener's own signal is aborted with that reason, and a
 * Duplex that arrives afterwards is destroyed, so nothing leaks.
 */
export function openWithin(opener: Opener, destination: Address, timeout: number, signal?: AbortSignal): Promise<Duplex> {
  return new Promise<Duplex>((resolve, reject) => {
    const controller = new AbortController();
    let settled = false;
    const giveUp = (reason: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      controller.abort(reason);
      reject(reason);
    };
    const onAbort = (): void => giveUp(signal?.reason);
    const timer = setTimeout(() => giveUp(new OpenTimeoutError(timeout)), timeout);
    if (signal?.aborted) return giveUp(signal.reason);
    signal?.addEventListener('abort', onAbort, { once: true });

    let answer: Promise<Duplex>;
    try {
      answer = Promise.resolve(opener(destination, controller.signal));
    } catch (err) {
      answer = Promise.reject(err);
    }
    answer.then(
      (duplex) => {
        if (settled) {
          duplex.on('error', () => {}); // destroying may still surface an error; nobody else listens
          duplex.destroy();
          return;
        }
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(duplex);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
