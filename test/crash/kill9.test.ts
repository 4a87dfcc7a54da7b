// kill -9 loop on real files: a child process writes and syncs on a two-vdev pool and is killed
// with SIGKILL at a random moment, KILL9_CYCLES times (50 in CI). After every kill the pool must
// import, hold at least everything the child reported durable, equal exactly the workload state
// of the operation it recorded, and pass checkInvariants().
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileDisk, Prng, SystemClock, SystemRandom } from '../../src/lib/index.js';
import * as dmu from '../../src/engine/dmu.js';
import { ObjectType } from '../../src/engine/dnode.js';
import { Pool } from '../../src/engine/pool.js';
import type { ObjectId } from '../../src/engine/types.js';
import { OBJECTS, PROGRESS_OBJECT, stateAfter } from './workload.js';

const CYCLES = Number(process.env['KILL9_CYCLES'] ?? 50);
const env = { clock: new SystemClock(), random: new SystemRandom(), tuning: { txgTimeoutMs: 0 } };
const dirs: string[] = [];

afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function leaves(dir: string, createBytes?: number): Promise<{ disk: FileDisk; path: string }[]> {
  return Promise.all(
    ['vdev0', 'vdev1'].map(async (name) => {
      const path = join(dir, name);
      return { disk: await FileDisk.open(path, createBytes === undefined ? {} : { createBytes }), path };
    }),
  );
}

/** Runs the child until `ms` after it is ready, then SIGKILLs it; returns the last durable k. */
function runAndKill(dir: string, start: number, ms: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['node_modules/vite-node/vite-node.mjs', 'test/crash/kill9-child.ts', dir, String(start)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (timer === undefined && out.includes('ready\n')) timer = setTimeout(() => child.kill('SIGKILL'), ms);
    });
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') return reject(new Error(`child exited with ${code}: ${err}`));
      const synced = [...out.matchAll(/^synced (\d+)$/gm)].map((m) => Number(m[1]));
      resolve(synced.length === 0 ? start - 1 : Math.max(...synced));
    });
  });
}

describe('kill -9 on real files', () => {
  it(`re-imports with every durable write after ${CYCLES} kills`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mirrorpool-kill9-'));
    dirs.push(dir);
    const pool = await Pool.create('kill9', (await leaves(dir, 64 * 1024 * 1024)).map((l) => [l]), env);
    const tx = await pool.assign();
    for (let i = 0; i <= OBJECTS; i++) {
      const obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: 131072, checksumKind: 1 });
      expect(obj).toBe(PROGRESS_OBJECT + i);
    }
    tx.commit();
    await pool.export();
    const r = new Prng(Number(process.env['KILL9_SEED'] ?? 9));
    let next = 0;
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const durable = await runAndKill(dir, next, 20 + r.int(400));
      const p = await Pool.import(await leaves(dir), env);
      const progressBytes = await dmu.read(p.root, PROGRESS_OBJECT as ObjectId, 0, 8);
      const k = progressBytes.length === 8 ? new DataView(progressBytes.buffer, progressBytes.byteOffset).getFloat64(0, true) : -1;
      expect(k, `cycle ${cycle}: recorded progress ${k} is behind the durable ${durable}`).toBeGreaterThanOrEqual(durable);
      for (const [obj, bytes] of stateAfter(k)) {
        const got = await dmu.read(p.root, obj as ObjectId, 0, bytes.length + 1);
        expect(Buffer.from(got).equals(Buffer.from(bytes)), `cycle ${cycle}: object ${obj} after op ${k}`).toBe(true);
      }
      await p.checkInvariants();
      await p.export();
      next = k + 1;
      if (process.env["KILL9_VERBOSE"]) console.log(`cycle ${cycle}: durable ${durable}, recorded ${k}`);
    }
  }, 600_000);
});
