/**
 * Poll `cond` every `everyMs` (milliseconds) until it holds; resolves with the time it took in
 * milliseconds, or rejects after `timeoutMs` naming `what`. The one way tests wait for a condition:
 * polling, never a sleep that hopes the condition is met by then.
 */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 10): Promise<number> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return Date.now() - t0;
}
