// `mirrorpool up` as `npm start` runs it: the built CLI as a process, three nodes as its child
// processes, each with a pool and a dataset; the printed URLs and admin token work; SIGINT stops
// everything cleanly; a second `up` on the same folder finds the data the first one wrote.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { tempRoot } from '../../src/node/cli-test-support.js';
import { checkBuild, cli } from './node-support.js';

const { root } = tempRoot('mp-up-');

interface Up {
  child: ChildProcess;
  urls: string[];
  token: string;
  lines: string[];
  exited: Promise<number | null>;
}

function startUp(dir: string, basePort: number): Promise<Up> {
  checkBuild();
  const child = spawn(process.execPath, ['bin/mirrorpool.js', 'up', '--dir', dir, '--base-port', String(basePort)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MIRRORPOOL_NODE: '', MIRRORPOOL_TOKEN: '' },
  });
  const lines: string[] = [];
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout ?? process.stdin }).on('line', (line) => {
      lines.push(line);
      if (line !== 'ready') return;
      const urls = lines.flatMap((l) => /^node\d\s+(\S+)/.exec(l)?.[1] ?? []);
      const token = lines.flatMap((l) => /^admin token: (\S+)$/.exec(l)?.[1] ?? [])[0] ?? '';
      resolve({ child, urls, token, lines, exited });
    });
    void exited.then((code) => reject(new Error(`up exited with ${code}: ${lines.join('\n')}\n${stderr}`)));
  });
}

describe('mirrorpool up', () => {
  it('starts three nodes, serves them, stops on SIGINT and keeps their data', async () => {
    const dir = join(root(), 'data');
    const basePort = randomInt(20_000, 60_000);
    const first = await startUp(dir, basePort);
    expect(first.urls).toEqual([1, 2, 3].map((i) => `ws://127.0.0.1:${basePort + i - 1}`));
    expect(first.token).toMatch(/^mpt1\./);
    for (const [i, url] of first.urls.entries()) {
      const put = await cli(['--node', url, '--token', first.token, 'put', 'tank/data', 'hello', '-'], [Buffer.from(`node ${i + 1}`)]);
      expect(put.code, put.err).toBe(0);
    }
    first.child.kill('SIGINT');
    expect(await first.exited).toBe(0);
    expect(first.lines.at(-1)).toBe('stopped');

    const second = await startUp(dir, basePort);
    try {
      for (const [i, url] of second.urls.entries()) {
        const got = await cli(['--node', url, '--token', second.token, 'get', 'tank/data', 'hello']);
        expect(got.bytes.toString()).toBe(`node ${i + 1}`);
      }
      const status = await cli(['--node', second.urls[0]!, '--token', second.token, 'node', 'status', '--json']);
      expect(JSON.parse(status.out)).toMatchObject({ peers: [{}, {}] });
    } finally {
      second.child.kill('SIGTERM');
      expect(await second.exited).toBe(0);
    }
  });
});
