// `pool add`, `pool attach`, `pool detach` and `pool reguid` end to end, in-process through
// main(): real vdev files and a real pool cache in a fresh temp folder (removed afterwards). After
// each change the cache must name exactly the pool's vdevs (the next command imports from it), the
// data must read back — after an attach, with the original file's data area overwritten with
// noise — and refused
// changes must leave the cache byte-for-byte as it was.
import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Pool } from '../engine/index.js';
import { FileDisk, Prng } from '../lib/index.js';
import { type Run, runCli, tempRoot } from './cli-test-support.js';
import { cliPoolEnv } from './pool-open.js';

const SEED = 20240612;
const VDEV_SIZE = '16M';
const LABELS_BYTES = 2 * 256 * 1024;

const temp = tempRoot('mirrorpool-cli-pool-vdev-');

interface Workspace {
  home: string;
  dir: string;
  vdev: (n: string) => string;
  cli: (...args: string[]) => Promise<Run>;
}

async function workspace(): Promise<Workspace> {
  const base = temp.caseDir();
  const dir = join(base, 'vdevs');
  await mkdir(dir, { recursive: true });
  const home = join(base, 'home');
  return { home, dir, vdev: (n) => join(dir, n), cli: (...args) => runCli(home, args) };
}

function expectError(r: Run, status: number, code: string): void {
  expect(r.code, r.err).toBe(status);
  expect(r.err).toMatch(new RegExp(`^mirrorpool: ${code}: `));
}

async function ok(w: Workspace, ...args: string[]): Promise<Run> {
  const r = await w.cli(...args);
  expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0);
  return r;
}

interface CacheEntry {
  name: string;
  guid: string;
  vdevs: string[];
}

async function cached(w: Workspace, name: string): Promise<CacheEntry | undefined> {
  const file = JSON.parse(await readFile(join(w.home, 'pools.json'), 'utf8')) as { pools: CacheEntry[] };
  return file.pools.find((p) => p.name === name);
}

/** Creates pool `tank` on `vdevs` and stores a few keys; returns their contents. */
async function poolWithData(w: Workspace, vdevs: readonly string[], mirror = false): Promise<Map<string, Buffer>> {
  await ok(w, 'pool', 'create', ...(mirror ? ['--mirror'] : []), '--size', VDEV_SIZE, 'tank', ...vdevs.map((v) => w.vdev(v)));
  return putData(w, 'a', 3);
}

async function putData(w: Workspace, prefix: string, count: number, data = new Map<string, Buffer>()): Promise<Map<string, Buffer>> {
  const r = new Prng(SEED + data.size);
  for (let i = 0; i < count; i++) {
    const bytes = Buffer.alloc(50_000 + r.int(400_000));
    for (let j = 0; j < bytes.length; j++) bytes[j] = r.int(256);
    const file = join(w.dir, `${prefix}${i}.in`);
    await writeFile(file, bytes);
    await ok(w, 'put', 'tank', `${prefix}${i}`, file);
    data.set(`${prefix}${i}`, bytes);
  }
  await ok(w, 'pool', 'sync', 'tank');
  return data;
}

async function expectData(w: Workspace, data: Map<string, Buffer>): Promise<void> {
  for (const [key, bytes] of data) {
    const out = join(w.dir, `${key}.out`);
    await ok(w, 'get', 'tank', key, '-o', out);
    expect((await readFile(out)).equals(bytes), `key ${key} (seed ${SEED})`).toBe(true);
  }
}

/** Overwrites the allocatable area of a vdev file with noise (its labels stay): every checksum there fails. */
async function scribbleDataArea(path: string): Promise<void> {
  const size = (await stat(path)).size;
  const fh = await open(path, 'r+');
  try {
    const r = new Prng(SEED ^ 0x5bd1e995);
    const noise = Buffer.alloc(1024 * 1024);
    for (let at = LABELS_BYTES; at < size - LABELS_BYTES; at += noise.length) {
      const words = new Uint32Array(noise.buffer, noise.byteOffset, noise.length / 4);
      for (let i = 0; i < words.length; i++) words[i] = r.u32();
      await fh.write(noise, 0, Math.min(noise.length, size - LABELS_BYTES - at), at);
    }
  } finally {
    await fh.close();
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

describe('mirrorpool pool add / attach / detach / reguid', () => {
  it('add: new vdevs (a plain one, then a mirror) are in the cache and the pool, and data spreads over them', async () => {
    const w = await workspace();
    const data = await poolWithData(w, ['v1.img']);
    expect(await ok(w, 'pool', 'add', '--size', VDEV_SIZE, 'tank', w.vdev('v2.img'))).toMatchObject({ out: '', err: '' });
    await ok(w, 'pool', 'add', '--mirror', '--size', VDEV_SIZE, 'tank', w.vdev('v3.img'), w.vdev('v4.img'));
    expect((await stat(w.vdev('v3.img'))).size).toBe(16 * 1024 * 1024);
    expect((await cached(w, 'tank'))?.vdevs).toEqual(['v1.img', 'v2.img', 'v3.img', 'v4.img'].map((v) => w.vdev(v)));
    const status = JSON.parse((await ok(w, 'pool', 'status', '--json', 'tank')).out) as { vdevs: { kind: string }[] }[];
    expect(status[0]?.vdevs.map((v) => v.kind)).toEqual(['disk', 'disk', 'mirror']);
    await putData(w, 'b', 6, data);
    await expectData(w, data);

    // The pool moves with its new vdevs: export, then import by scanning the folder.
    await ok(w, 'pool', 'export', 'tank');
    await ok(w, 'pool', 'import', '--dir', w.dir, 'tank');
    expect(new Set((await cached(w, 'tank'))?.vdevs)).toEqual(new Set(['v1.img', 'v2.img', 'v3.img', 'v4.img'].map((v) => w.vdev(v))));
    await expectData(w, data);
    await ok(w, 'pool', 'debug', '--check', 'tank');
  }, 60_000);

  it('attach: the new file holds a full copy; with the original overwritten every key still reads back', async () => {
    const w = await workspace();
    const data = await poolWithData(w, ['v1.img']);
    await ok(w, 'pool', 'attach', 'tank', w.vdev('v1.img'), w.vdev('v2.img'));
    expect((await stat(w.vdev('v2.img'))).size).toBe(16 * 1024 * 1024); // the size of v1.img
    expect((await cached(w, 'tank'))?.vdevs).toEqual([w.vdev('v1.img'), w.vdev('v2.img')]);
    const status = JSON.parse((await ok(w, 'pool', 'status', '--json', 'tank')).out) as { vdevs: { kind: string }[] }[];
    expect(status[0]?.vdevs.map((v) => v.kind)).toEqual(['mirror']);

    await scribbleDataArea(w.vdev('v1.img'));
    await expectData(w, data);
    await ok(w, 'pool', 'debug', '--check', 'tank');
  }, 60_000);

  it('detach: the pool keeps one copy, the cache forgets the file, and the file no longer shows as a vdev', async () => {
    const w = await workspace();
    const data = await poolWithData(w, ['v1.img', 'v2.img'], true);
    await ok(w, 'pool', 'detach', 'tank', w.vdev('v1.img'));
    expect((await cached(w, 'tank'))?.vdevs).toEqual([w.vdev('v2.img')]);
    await expectData(w, data);
    const status = JSON.parse((await ok(w, 'pool', 'status', '--json', 'tank')).out) as { vdevs: { kind: string }[] }[];
    expect(status[0]?.vdevs.map((v) => v.kind)).toEqual(['disk']);
    await ok(w, 'pool', 'export', 'tank');
    const scan = JSON.parse((await ok(w, 'pool', 'import', '--json', '--dir', w.dir)).out) as { name: string; vdevs: string[] }[];
    expect(scan.map((p) => [p.name, p.vdevs])).toEqual([['tank', [w.vdev('v2.img')]]]);
  }, 60_000);

  it('reguid: prints the new guid, which the cache and the pool then carry', async () => {
    const w = await workspace();
    const data = await poolWithData(w, ['v1.img', 'v2.img']);
    const before = (await cached(w, 'tank'))?.guid;
    const guid = (await ok(w, 'pool', 'reguid', 'tank')).out.trim();
    expect(guid).toMatch(/^[1-9][0-9]*$/);
    expect(guid).not.toBe(before);
    expect((await cached(w, 'tank'))?.guid).toBe(guid);
    const list = JSON.parse((await ok(w, 'pool', 'list', '--json')).out) as { guid: string }[];
    expect(list.map((p) => p.guid)).toEqual([guid]);
    await expectData(w, data);
  }, 60_000);

  it('bad usage exits 2 and changes nothing', async () => {
    const w = await workspace();
    await poolWithData(w, ['v1.img']);
    const cache = await readFile(join(w.home, 'pools.json'), 'utf8');
    for (const args of [
      ['pool', 'add', 'tank'],
      ['pool', 'add', '--mirror', 'tank', w.vdev('v2.img')],
      ['pool', 'add', 'tank', w.vdev('v2.img'), w.vdev('v2.img')],
      ['pool', 'add', '--size', '12X', 'tank', w.vdev('v2.img')],
      ['pool', 'attach', 'tank', w.vdev('v1.img')],
      ['pool', 'attach', 'tank', w.vdev('v1.img'), w.vdev('v1.img')],
      ['pool', 'detach', 'tank'],
      ['pool', 'reguid'],
    ]) {
      expectError(await w.cli(...args), 2, 'EINVAL');
    }
    expect(await readFile(join(w.home, 'pools.json'), 'utf8')).toBe(cache);
    expect(await exists(w.vdev('v2.img'))).toBe(false);
  }, 60_000);

  it('refused changes print their code, leave the cache as it was and remove files they created', async () => {
    const w = await workspace();
    await poolWithData(w, ['v1.img']);
    await ok(w, 'pool', 'create', '--size', VDEV_SIZE, 'other', w.vdev('o1.img'));
    const cache = await readFile(join(w.home, 'pools.json'), 'utf8');
    expectError(await w.cli('pool', 'detach', 'tank', w.vdev('v1.img')), 1, 'EINVAL'); // the only disk
    expectError(await w.cli('pool', 'detach', 'tank', w.vdev('nope.img')), 1, 'ENOENT');
    expectError(await w.cli('pool', 'attach', 'tank', w.vdev('nope.img'), w.vdev('v2.img')), 1, 'ENOENT');
    expectError(await w.cli('pool', 'attach', '--size', '8M', 'tank', w.vdev('v1.img'), w.vdev('small.img')), 1, 'EINVAL');
    expect(await exists(w.vdev('small.img'))).toBe(false);
    expectError(await w.cli('pool', 'add', '--size', '1M', 'tank', w.vdev('tiny.img')), 1, 'EINVAL');
    expect(await exists(w.vdev('tiny.img'))).toBe(false);
    expectError(await w.cli('pool', 'add', 'tank', w.vdev('o1.img')), 1, 'EBUSY'); // a vdev of 'other'
    expectError(await w.cli('pool', 'add', 'nosuch', w.vdev('v9.img')), 1, 'ENOENT');
    expectError(await w.cli('pool', 'reguid', 'nosuch'), 1, 'ENOENT');
    expect(await readFile(join(w.home, 'pools.json'), 'utf8')).toBe(cache);
  }, 60_000);

  it('attach, detach and reguid are EBUSY while the pool has a checkpoint; add is not', async () => {
    const w = await workspace();
    await poolWithData(w, ['v1.img', 'v2.img'], true);
    await ok(w, 'pool', 'export', 'tank');
    const leaves = await Promise.all(['v1.img', 'v2.img'].map(async (v) => ({ disk: await FileDisk.open(w.vdev(v)), path: w.vdev(v) })));
    const pool = await Pool.import(leaves, cliPoolEnv());
    await pool.checkpoint();
    await pool.export();
    await ok(w, 'pool', 'import', '--dir', w.dir, 'tank');
    const cache = await readFile(join(w.home, 'pools.json'), 'utf8');
    for (const args of [
      ['pool', 'attach', 'tank', w.vdev('v1.img'), w.vdev('v3.img')],
      ['pool', 'detach', 'tank', w.vdev('v1.img')],
      ['pool', 'reguid', 'tank'],
    ]) {
      const r = await w.cli(...args);
      expectError(r, 1, 'EBUSY');
      expect(r.err).toContain('checkpoint');
    }
    expect(await readFile(join(w.home, 'pools.json'), 'utf8')).toBe(cache);
    expect(await exists(w.vdev('v3.img'))).toBe(false);
    await ok(w, 'pool', 'add', '--size', VDEV_SIZE, 'tank', w.vdev('v4.img'));
    expect((await cached(w, 'tank'))?.vdevs).toHaveLength(3);
  }, 60_000);
});
