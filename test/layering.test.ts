// The arrows between the tree's parts run one way (issue 17): packages' sources never import the test
// support; tests and scripts share it through @gkd/test-support rather than reaching into a package's
// test/ folder or into scripts/. Read from the import lines of every TypeScript file.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (e.name === 'node_modules' || e.name === 'dist' || e.name.startsWith('.')) return [];
    const p = join(dir, e.name);
    return e.isDirectory() ? tsFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Every module specifier a file imports (static and dynamic), with the file's path from the root. */
function imports(file: string): { from: string; spec: string; target: string | null }[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g)].map((m) => m[1] ?? m[2]!);
  return specs.map((spec) => ({
    from: relative(ROOT, file),
    spec,
    target: spec.startsWith('.') ? relative(ROOT, resolve(dirname(file), spec)) : null,
  }));
}

const all = ['packages', 'test', 'scripts'].flatMap((d) => tsFiles(join(ROOT, d))).flatMap(imports);

describe('layering', () => {
  it('finds the imports it checks (the scan is not empty)', () => {
    expect(all.filter((i) => i.spec === '@gkd/test-support').length).toBeGreaterThan(10);
  });

  it("no package's src imports @gkd/test-support, or a test/ or scripts/ file", () => {
    const bad = all.filter((i) => /^packages\/[^/]+\/src\//.test(i.from) && (i.spec === '@gkd/test-support' || /(^|\/)(test|scripts)\//.test(i.target ?? '')));
    expect(bad.filter((i) => !i.from.startsWith('packages/test-support/'))).toEqual([]);
  });

  it("nothing imports another package's test/ folder, and nothing outside scripts/ imports scripts/", () => {
    const bad = all.filter((i) => {
      if (!i.target) return false;
      const own = /^packages\/[^/]+\//.exec(i.from)?.[0];
      const intoTests = /^packages\/[^/]+\/test\//.test(i.target) && !(own && i.target.startsWith(own));
      const intoScripts = i.target.startsWith('scripts/') && !i.from.startsWith('scripts/');
      const intoRootTests = i.target.startsWith('test/') && !i.from.startsWith('test/');
      return intoTests || intoScripts || intoRootTests;
    });
    expect(bad).toEqual([]);
  });
});
