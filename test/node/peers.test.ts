// A running daemon learns new peers without a restart: `node peer add` on its home sends it
// SIGHUP and the next connection from that node is accepted. A node.json that no longer loads
// changes nothing: the daemon logs it and keeps the peers it had.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { tempRoot } from '../../src/node/cli-test-support.js';
import { MirrorpoolClient } from '../../src/node/client.js';
import { type NodeHome, loadNodeHome } from '../../src/node/node-config.js';
import { cli, startDaemon } from './node-support.js';

const { root } = tempRoot('mp-peers-');
/** The reload is asynchronous: poll, a bounded number of times. */
const POLLS_MAX = 100;
const POLL_MS = 100;

async function connectAs(url: string, node: NodeHome): Promise<MirrorpoolClient> {
  return MirrorpoolClient.connect(url, { kind: 'node', keys: node.keys, clusterSecret: node.clusterSecret });
}

async function eventually(check: () => Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < POLLS_MAX; i++) {
    if (await check()) return true;
    await sleep(POLL_MS);
  }
  return false;
}

describe('peers of a running daemon', () => {
  it('accepts a node added with `node peer add` without a restart, and keeps its peers when node.json breaks', async () => {
    const homeA = join(root(), 'a');
    const homeB = join(root(), 'b');
    expect((await cli(['--home', homeA, 'node', 'init', '--listen', '127.0.0.1:0'])).code).toBe(0);
    expect((await cli(['--home', homeB, 'node', 'init', '--cluster-secret-file', join(homeA, 'cluster.secret')])).code).toBe(0);
    const b = await loadNodeHome(homeB);
    const daemon = await startDaemon(homeA);
    try {
      await expect(connectAs(daemon.url, b)).rejects.toMatchObject({ code: 'EAUTH' });

      const add = await cli(['--home', homeA, 'node', 'peer', 'add', '--', b.config.publicKey]);
      expect(add.code, add.err).toBe(0);
      expect(add.out).toContain('reloads its peers');
      const accepted = await eventually(async () => {
        try {
          await (await connectAs(daemon.url, b)).close();
          return true;
        } catch (e) {
          if ((e as { code?: string }).code === 'EAUTH') return false;
          throw e;
        }
      });
      expect(accepted, daemon.log.join('\n')).toBe(true);
      expect(daemon.log.some((l) => l.includes('peers reloaded'))).toBe(true);

      await writeFile(join(homeA, 'node.json'), '{ not json');
      daemon.child.kill('SIGHUP');
      expect(await eventually(async () => daemon.log.some((l) => l.includes('peers not reloaded')))).toBe(true);
      await (await connectAs(daemon.url, b)).close();
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });
});
