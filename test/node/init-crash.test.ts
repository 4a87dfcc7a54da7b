// `node init` killed at every point where it makes something durable: strace kills the real CLI
// process (SIGKILL) on its n-th fsync, for n = 1, 2, ... until an init runs to the end, and then
// the same on its n-th rename (strace counts each system call on its own).
// After each kill the home is either a whole node (node.json loads with its key and secret, and
// a second init is refused) or no node at all, and then `node init` starts over, succeeds and
// leaves no temporary file behind. Needs strace (`.ci/run` installs it).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadNodeHome } from '../../src/node/node-config.js';
import { tempRoot } from '../../src/node/cli-test-support.js';
import { checkBuild } from './node-support.js';

const { root } = tempRoot('mp-init-crash-');
/** init makes six fsyncs and three renames; far more means the kill never lands. */
const KILL_POINTS_MAX = 20;

function init(home: string, killAt?: { call: 'fsync' | 'rename'; n: number }): { code: number | null; signal: NodeJS.Signals | null; err: string } {
  const cli = [process.execPath, 'bin/mirrorpool.js', '--home', home, 'node', 'init', '--listen', '127.0.0.1:7299'];
  const argv =
    killAt === undefined
      ? cli
      : ['strace', '-f', '-qq', '-o', '/dev/null', '-e', `trace=${killAt.call}`, '-e', `inject=${killAt.call}:signal=KILL:when=${killAt.n}`, ...cli];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: { ...process.env, MIRRORPOOL_NODE: '', MIRRORPOOL_TOKEN: '' } });
  if (r.error !== undefined) throw r.error;
  return { code: r.status, signal: r.signal, err: r.stderr };
}

async function expectWholeOrNone(home: string): Promise<void> {
  if (existsSync(join(home, 'node.json'))) {
    await loadNodeHome(home);
    const again = init(home);
    expect(again.code).not.toBe(0);
    expect(again.err).toContain('EEXIST');
    return;
  }
  const again = init(home);
  expect(again.code, again.err).toBe(0);
  await loadNodeHome(home);
  expect(readdirSync(home).filter((f) => f.endsWith('.tmp'))).toEqual([]);
}

describe('node init under kill -9', () => {
  it('leaves a whole node or none at every fsync and rename, and a second init recovers', async () => {
    checkBuild();
    const killed = { fsync: 0, rename: 0 };
    for (const call of ['fsync', 'rename'] as const) {
      for (let n = 1; n <= KILL_POINTS_MAX; n++) {
        const home = join(root(), `home-${call}-${n}`);
        const crashed = init(home, { call, n });
        if (crashed.code === 0) break;
        // strace dies of the signal that killed the CLI.
        expect(crashed.signal, crashed.err).toBe('SIGKILL');
        killed[call]++;
        await expectWholeOrNone(home);
      }
    }
    // Three files, each with a file fsync, a rename and a folder fsync.
    expect(killed).toEqual({ fsync: 6, rename: 3 });
  });
});
