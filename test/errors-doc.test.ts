// ERRORS.md is the one table of gkd's errors (issue 17): every code the code base has is a class with
// that code and a `name`, listed there with its class; and no source builds a bare GkdError, so
// `instanceof` and `name` always say which failure it was.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protocol from '@gkd/protocol';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const doc = readFileSync(join(ROOT, 'ERRORS.md'), 'utf8');
/** code → class, from the rows of the "Error codes" table. */
const rows = new Map([...doc.matchAll(/^\| `(GKD_ERR_\w+)` \| `(\w+)`/gm)].map((m) => [m[1]!, m[2]!]));

/** The exported subclasses of GkdError, each built with placeholder arguments to read its code. */
function errorClasses(): Map<string, { name: string; instance: protocol.GkdError }> {
  const out = new Map<string, { name: string; instance: protocol.GkdError }>();
  for (const [name, value] of Object.entries(protocol)) {
    if (typeof value !== 'function' || value === protocol.GkdError || !(value.prototype instanceof protocol.GkdError)) continue;
    const instance = new (value as new (...a: unknown[]) => protocol.GkdError)(protocol.Reason.GENERAL_FAILURE, 'x');
    out.set(name, { name, instance });
  }
  return out;
}

describe('ERRORS.md and the error classes', () => {
  const classes = errorClasses();

  it('every ErrorCode has exactly one class, whose name is its class name, and ERRORS.md lists it with that class', () => {
    expect(classes.size).toBeGreaterThanOrEqual(16);
    for (const code of Object.values(protocol.ErrorCode)) {
      const owners = [...classes.values()].filter((c) => c.instance.code === code);
      expect(
        owners.map((c) => c.name),
        code,
      ).toHaveLength(1);
      const { name, instance } = owners[0]!;
      expect(instance.name).toBe(name);
      expect(instance).toBeInstanceOf(protocol.GkdError);
      expect(rows.get(code), `${code} in ERRORS.md`).toBe(name);
    }
    expect(rows.size).toBe(Object.keys(protocol.ErrorCode).length);
  });

  it('no package source constructs a bare GkdError', () => {
    const bare: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.ts') && /new GkdError\(/.test(readFileSync(p, 'utf8'))) bare.push(p.slice(ROOT.length));
      }
    };
    for (const pkg of readdirSync(join(ROOT, 'packages'))) walk(join(ROOT, 'packages', pkg, 'src'));
    expect(bare).toEqual([]);
  });
});
