// Bad input to the node commands: each is refused with a coded error and the right exit status
// (2 for bad usage, 1 for an operation that cannot run), and nothing is created or changed.
import { readdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { runCli, tempRoot } from './cli-test-support.js';

const { caseDir } = tempRoot('mp-cli-node-');

describe('node commands with bad input', () => {
  it('refuses bad usage with exit 2 and creates nothing', async () => {
    const home = caseDir();
    const usage: string[][] = [
      ['node', 'init', '--listen', 'nowhere'],
      ['node', 'init', '--advertise', 'http://a:1'],
      ['node', 'init', '--tls-cert', 'c.pem'],
      ['node', 'start', '--log-level', 'loud'],
      ['token', 'create', '--scope', 'root'],
      ['token', 'create', '--scope', 'ro', '--ttl', '5y'],
      ['token', 'create', '--scope', 'ro', '--ttl', '400d'],
      ['send', 't/d@s', '--to', 'ws://b:7101'],
      ['send', 't/d@s', '--to', 'ws://b:7101:t/d', '--estimate'],
      ['send', 't/d@s', '--retries', '-1'],
      ['up', '--nodes', '0'],
      ['up', '--base-port', '80'],
    ];
    for (const args of usage) {
      const r = await runCli(home, args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err, args.join(' ')).toMatch(/^mirrorpool: EINVAL: /);
    }
    await expect(readdir(home)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('fails operations that cannot run with a coded error and exit 1', async () => {
    const home = caseDir();
    const missing = await runCli(home, ['node', 'start']);
    expect([missing.code, missing.err]).toEqual([1, expect.stringMatching(/^mirrorpool: ENOENT: .*node init/)]);
    expect((await runCli(home, ['node', 'init', '--listen', '127.0.0.1:0'])).code).toBe(0);
    const listed = (await readdir(home)).sort();
    const badKey = await runCli(home, ['node', 'peer', 'add', '--', 'not-a-key']);
    expect([badKey.code, badKey.err]).toEqual([1, expect.stringMatching(/^mirrorpool: EINVAL: /)]);
    const again = await runCli(home, ['node', 'init']);
    expect([again.code, again.err]).toEqual([1, expect.stringMatching(/^mirrorpool: EEXIST: /)]);
    const noToken = await runCli(home, ['--node', 'ws://127.0.0.1:9', '--token', '', 'node', 'status']);
    expect(noToken.code).toBe(1);
    expect((await readdir(home)).sort()).toEqual(listed);
  });
});
