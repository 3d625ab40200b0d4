import { createHash, timingSafeEqual } from 'node:crypto';

/** Compare two credentials in time independent of where they differ (and of their lengths). */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}
