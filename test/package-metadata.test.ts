// What a registry and a user expect of every published package (issue 21), read from the manifests
// and READMEs the tarballs are packed from.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PACKAGES = ['protocol', 'transport', 'server', 'socks-client', 'cli'];
const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { repository: { url: string }; engines: { node: string } };

describe.each(PACKAGES)('@gkd/%s', (name) => {
  const dir = join(ROOT, 'packages', name);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, unknown>;

  it('has a license with its text, the repository (with its folder), engines, keywords and a description', () => {
    expect(pkg.name).toBe(`@gkd/${name}`);
    expect(pkg.license).toBe('MIT');
    expect(readFileSync(join(dir, 'LICENSE'), 'utf8')).toMatch(/^MIT License/);
    expect(pkg.repository).toEqual({ type: 'git', url: root.repository.url, directory: `packages/${name}` });
    expect(pkg.engines).toEqual({ node: root.engines.node });
    expect((pkg.keywords as string[]).length).toBeGreaterThanOrEqual(3);
    expect(pkg.keywords).toContain('gkd');
    expect(typeof pkg.description).toBe('string');
    expect(pkg.publishConfig).toEqual({ access: 'public' }); // a scoped package is private on npm otherwise
  });

  it('has a README whose first lines say what it is and how to install it', () => {
    const head = readFileSync(join(dir, 'README.md'), 'utf8').split('\n').slice(0, 12).join('\n');
    expect(head).toMatch(new RegExp(`^# @gkd/${name}\\b`));
    expect(head).toMatch(name === 'cli' ? /npm i -g @gkd\/cli/ : new RegExp(`npm i @gkd/${name}\\b`));
  });

  it('ships no workspace-only dependency specifier that npm could not resolve from the tarball alone', () => {
    // pnpm pack rewrites workspace:* to the version; a patch or link would not survive it.
    for (const deps of [pkg.dependencies, pkg.peerDependencies, pkg.optionalDependencies] as (Record<string, string> | undefined)[]) {
      for (const [dep, spec] of Object.entries(deps ?? {})) {
        expect(spec, dep).not.toMatch(/^(link|file|patch|portal):/);
        if (spec.startsWith('workspace:')) expect(dep.startsWith('@gkd/'), dep).toBe(true);
      }
    }
    expect(existsSync(join(ROOT, 'patches'))).toBe(false);
    expect((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { pnpm?: Record<string, unknown> }).pnpm?.patchedDependencies).toBeUndefined();
  });
});
