import { describe, expect, it } from 'vitest';
import { versionText } from '../src/version.js';

describe('gkd --version text', () => {
  it('names the version and the commit, and says when the build had uncommitted changes', () => {
    expect(versionText('0.1.0', { commit: '0123456789ab', dirty: false })).toBe('gkd 0.1.0 (commit 0123456789ab)');
    expect(versionText('0.1.0', { commit: '0123456789ab', dirty: true })).toBe('gkd 0.1.0 (commit 0123456789ab, with uncommitted changes)');
  });

  it('says "commit unknown" for a build made outside a git checkout, or with no build record', () => {
    expect(versionText('0.1.0', { commit: 'unknown', dirty: false })).toBe('gkd 0.1.0 (commit unknown)');
    expect(versionText('0.1.0', undefined)).toBe('gkd 0.1.0 (commit unknown)');
  });
});
