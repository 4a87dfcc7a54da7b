import { describe, expect, it } from 'vitest';
import { main } from './cli.js';

function capture(): { io: { out: { write(s: string): void }; err: { write(s: string): void } }; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    io: { out: { write: (s) => void (out += s) }, err: { write: (s) => void (err += s) } },
    out: () => out,
    err: () => err,
  };
}

describe('mirrorpool command line', () => {
  it('prints help and exits 0', async () => {
    const c = capture();
    expect(await main(['--help'], c.io)).toBe(0);
    expect(c.out()).toContain('Usage: mirrorpool');
  });

  it('rejects an unknown command with a coded usage error and exit status 2', async () => {
    const c = capture();
    expect(await main(['frobnicate'], c.io)).toBe(2);
    expect(c.err()).toMatch(/^mirrorpool: EINVAL: /);
  });

  it('rejects an unknown option with exit status 2', async () => {
    const c = capture();
    expect(await main(['up', '--bogus'], c.io)).toBe(2);
    expect(c.err()).toMatch(/^mirrorpool: EINVAL: /);
  });

  it('reports an operation that cannot run as a coded error with exit status 1', async () => {
    const c = capture();
    expect(await main(['--home', '/nonexistent/mirrorpool-home', 'node', 'status'], c.io)).toBe(1);
    expect(c.err()).toMatch(/^mirrorpool: ENOENT: /);
  });
});
