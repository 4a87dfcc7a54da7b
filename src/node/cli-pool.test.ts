// The `pool` commands end to end, in-process through main(): real vdev files and a real pool
// cache in a fresh temp folder (removed afterwards), locks in a private lock folder. Failures
// are checked by exit status and error code, and by the cache file being byte-for-byte unchanged.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, realpath, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ObjectType, Pool, dmu, objectId } from '../engine/index.js';
import { FileDisk, Prng } from '../lib/index.js';
import { type Run, runCli, tempRoot } from './cli-test-support.js';
import { cliPoolEnv } from './pool-open.js';
import { VdevLock, lockDir } from './vdev-lock.js';

const SEED = 20240611;
const VDEV_SIZE = '16M';

const temp = tempRoot('mirrorpool-cli-pool-');


/** A fresh home and vdev folder per test, and a runner bound to that home. */
async function workspace(): Promise<{ home: string; dir: string; vdev: (n: string) => string; cli: (...args: string[]) => Promise<Run> }> {
  const base = temp.caseDir();
  const dir = join(base, 'vdevs');
  await mkdir(dir, { recursive: true });
  const home = join(base, 'home');
  const cli = (...args: string[]): Promise<Run> => runCli(home, args);
  return { home, dir, vdev: (n) => join(dir, n), cli };
}

function expectError(r: Run, status: number, code: string): void {
  expect(r.code, r.err).toBe(status);
  expect(r.err).toMatch(new RegExp(`^mirrorpool: ${code}: `));
}

async function cacheBytes(home: string): Promise<string | null> {
  return readFile(join(home, 'pools.json'), 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
}

async function fileHash(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

async function openWithEngine(paths: readonly string[]): Promise<Pool> {
  const leaves = await Promise.all(paths.map(async (path) => ({ disk: await FileDisk.open(path), path })));
  return Pool.import(leaves, cliPoolEnv());
}

describe('mirrorpool pool commands', () => {
  it('creates plain, striped and mirrored pools, lists them, reports status and syncs', async () => {
    const w = await workspace();
    expect((await w.cli('pool', 'create', '--size', VDEV_SIZE, 'plain', w.vdev('p.img'))).code).toBe(0);
    expect((await w.cli('pool', 'create', '--size', VDEV_SIZE, 'stripe', w.vdev('s1.img'), w.vdev('s2.img'))).code).toBe(0);
    const created = await w.cli('pool', 'create', '--mirror', '--size', VDEV_SIZE, 'mirror', w.vdev('m1.img'), w.vdev('m2.img'));
    expect(created).toEqual({ code: 0, out: '', err: '' });
    expect((await stat(w.vdev('m1.img'))).size).toBe(16 * 1024 * 1024);

    const list = await w.cli('pool', 'list', '--json');
    expect(list.code, list.err).toBe(0);
    const rows = JSON.parse(list.out) as { name: string; health: string; sizeBytes: number; allocatedBytes: number; freeBytes: number; txg: number; error: unknown }[];
    expect(rows.map((r) => r.name)).toEqual(['mirror', 'plain', 'stripe']);
    for (const r of rows) {
      expect(r.health).toBe('ONLINE');
      expect(r.error).toBeNull();
      expect(r.allocatedBytes + r.freeBytes).toBe(r.sizeBytes);
      expect(r.txg).toBeGreaterThan(0);
    }
    expect((await w.cli('pool', 'list')).out).toMatch(/^NAME +SIZE +ALLOC +FREE +HEALTH +TXG\nmirror +\S+M /);

    const status = await w.cli('pool', 'status', 'mirror', '--json');
    expect(status.code, status.err).toBe(0);
    const [mirror] = JSON.parse(status.out) as { state: string; vdevs: { kind: string; name: string; children: { state: string; errors: object }[] }[] }[];
    expect(mirror?.state).toBe('ONLINE');
    expect(mirror?.vdevs).toHaveLength(1);
    expect(mirror?.vdevs[0]?.kind).toBe('mirror');
    expect(mirror?.vdevs[0]?.name).toBe('mirror-0');
    expect(mirror?.vdevs[0]?.children.map((c) => c.errors)).toEqual([
      { read: 0, write: 0, checksum: 0 },
      { read: 0, write: 0, checksum: 0 },
    ]);
    const stripe = JSON.parse((await w.cli('pool', 'status', 'stripe', '--json')).out) as { vdevs: { kind: string }[] }[];
    expect(stripe[0]?.vdevs.map((v) => v.kind)).toEqual(['disk', 'disk']);
    const all = await w.cli('pool', 'status');
    expect(all.code).toBe(0);
    expect(all.out).toContain('mirror-0');
    expect(all.out).toContain(w.vdev('s2.img'));

    const sync = await w.cli('pool', 'sync', 'plain');
    expect(sync.code, sync.err).toBe(0);
    expect(sync.out).toMatch(/^[1-9][0-9]*\n$/);
  });

  it('keeps data written through the engine across CLI export, scan, import and debug', async () => {
    const w = await workspace();
    const paths = [w.vdev('a.img'), w.vdev('b.img')];
    expect((await w.cli('pool', 'create', '--size', VDEV_SIZE, 'tank', ...paths)).code).toBe(0);
    const data = new Uint8Array(200_000);
    new Prng(SEED).fill(data);
    let pool = await openWithEngine(paths);
    const tx = await pool.assign();
    const obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: 131072, checksumKind: 1 });
    await dmu.write(pool.root, tx, obj, 0, data);
    tx.commit();
    await pool.export();

    expect(await w.cli('pool', 'export', 'tank')).toEqual({ code: 0, out: '', err: '' });
    expect(JSON.parse((await w.cli('pool', 'list', '--json')).out)).toEqual([]);
    const scan = await w.cli('pool', 'import', '--dir', w.dir, '--json');
    expect(scan.code, scan.err).toBe(0);
    expect(JSON.parse(scan.out)).toMatchObject([{ name: 'tank', state: 'ONLINE', vdevs: paths, missing: [] }]);
    expect((await w.cli('pool', 'import', '--dir', w.dir)).out).toMatch(/^NAME +GUID +STATE +TXG +VDEVS\ntank /);
    expect(await w.cli('pool', 'import', '--dir', w.dir, 'tank')).toEqual({ code: 0, out: '', err: '' });
    expect((await w.cli('pool', 'import', '--dir', w.dir)).out).toBe('no pools available to import\n');

    const debug = await w.cli('pool', 'debug', 'tank', '--max-objects', '8', '--check');
    expect(debug.code, debug.err).toBe(0);
    expect(debug.out).toMatch(/label 3: pool tank guid \d+/);
    expect(debug.out).toMatch(/active uberblock: txg \d+/);
    expect(debug.out).toContain('object set MOS');
    expect(debug.out).toContain('object set tank (root dataset)');
    expect(debug.out).toMatch(new RegExp(`\\n +${obj} +plain +\\d+ +128K +195K `));
    expect(debug.out).toMatch(/L0 data 128K <\d+:[0-9a-f]+:[0-9a-f]+> birth \d+/);
    expect(debug.out).toMatch(/check: \d+ blocks verified/);
    const short = await w.cli('pool', 'debug', 'tank', '--max-objects', '1', '--max-blocks', '1');
    expect(short.out).toContain('... more objects');
    expect(short.out).toMatch(/\.\.\. \d+ more block\(s\)/);

    expect((await w.cli('pool', 'export', 'tank')).code).toBe(0);
    pool = await openWithEngine(paths);
    expect(Buffer.from(await dmu.read(pool.root, objectId(obj), 0, data.length)).equals(Buffer.from(data)), `seed ${SEED}`).toBe(true);
    await pool.export();
  });

  it('rejects bad usage with exit status 2 and changes nothing', async () => {
    const w = await workspace();
    expect((await w.cli('pool', 'create', '--size', VDEV_SIZE, 'tank', w.vdev('a.img'))).code).toBe(0);
    const before = await cacheBytes(w.home);
    expectError(await w.cli('pool', 'create', '--size', '12X', 'x', w.vdev('x.img')), 2, 'EINVAL');
    expectError(await w.cli('pool', 'create', '--size', '0', 'x', w.vdev('x.img')), 2, 'EINVAL');
    expectError(await w.cli('pool', 'create', 'x'), 2, 'EINVAL');
    expectError(await w.cli('pool', 'create', '--mirror', 'x', w.vdev('x.img')), 2, 'EINVAL');
    expectError(await w.cli('pool', 'create', 'x', w.vdev('x.img'), w.vdev('x.img')), 2, 'EINVAL');
    expectError(await w.cli('pool', 'debug', 'tank', '--max-objects', '0'), 2, 'EINVAL');
    expectError(await w.cli('pool', 'list', '--bogus'), 2, 'EINVAL');
    expect((await w.cli('pool')).code).toBe(2);
    expect(await readdir(w.dir)).toEqual(['a.img']);
    expect(await cacheBytes(w.home)).toBe(before);
    const help = await w.cli('pool', 'create', '--help');
    expect(help.code).toBe(0);
    expect(help.out).toContain('Usage: mirrorpool pool create');
  });

  it('fails operations with exit status 1 and a code, leaving the cache and vdev files as they were', async () => {
    const w = await workspace();
    expect((await w.cli('pool', 'create', '--size', VDEV_SIZE, 'tank', w.vdev('a.img'))).code).toBe(0);
    expect((await w.cli('pool', 'create', '--size', VDEV_SIZE, 'gone', w.vdev('g.img'))).code).toBe(0);
    expect((await w.cli('pool', 'export', 'gone')).code).toBe(0);
    const cache = await cacheBytes(w.home);
    const label = await fileHash(w.vdev('g.img'));
    await writeFile(w.vdev('tiny.img'), new Uint8Array(1024 * 1024));

    for (const verb of ['status', 'sync', 'export', 'debug']) expectError(await w.cli('pool', verb, 'nope'), 1, 'ENOENT');
    expectError(await w.cli('pool', 'create', 'tank', w.vdev('new.img')), 1, 'EEXIST');
    expectError(await w.cli('pool', 'create', 'other', w.vdev('a.img')), 1, 'EBUSY');
    expectError(await w.cli('pool', 'create', 'other', w.vdev('g.img')), 1, 'EEXIST');
    expectError(await w.cli('pool', 'create', '--size', '1M', 'other', w.vdev('small.img')), 1, 'EINVAL');
    expectError(await w.cli('pool', 'create', 'other', w.vdev('tiny.img')), 1, 'EINVAL');
    expectError(await w.cli('pool', 'create', 'bad/name', w.vdev('n.img')), 1, 'EINVAL');
    expectError(await w.cli('pool', 'import', '--dir', w.dir, 'tank'), 1, 'EEXIST');
    expectError(await w.cli('pool', 'import', '--dir', w.dir, 'nope'), 1, 'ENOENT');
    expectError(await w.cli('pool', 'import', '--dir', join(w.dir, 'missing'), 'gone'), 1, 'ENOENT');

    expect((await readdir(w.dir)).sort()).toEqual(['a.img', 'g.img', 'tiny.img']);
    expect(await fileHash(w.vdev('g.img'))).toBe(label);
    expect(await cacheBytes(w.home)).toBe(cache);
    expect((await w.cli('pool', 'create', '-f', 'other', w.vdev('g.img'))).code).toBe(0);
  });

  it('lists nothing for files that are not vdevs and refuses to import one named explicitly', async () => {
    const w = await workspace();
    const junk = new Uint8Array(4 * 1024 * 1024);
    new Prng(SEED).fill(junk);
    await writeFile(w.vdev('junk.img'), junk);
    await writeFile(w.vdev('empty.img'), '');
    const scan = await w.cli('pool', 'import', '--dir', w.dir, '--json');
    expect(scan.code, scan.err).toBe(0);
    expect(JSON.parse(scan.out)).toEqual([]);
    expectError(await w.cli('pool', 'import', '--dir', w.vdev('junk.img'), 'tank'), 1, 'EPROTO');
    expect(await cacheBytes(w.home)).toBeNull();
  });

  it('reports a damaged pool cache as EPROTO naming the file, and does not touch it', async () => {
    const w = await workspace();
    await mkdir(w.home, { recursive: true });
    const cacheFile = join(w.home, 'pools.json');
    await writeFile(cacheFile, '{"version":1,"pools":[{"name":');
    for (const args of [['list'], ['status'], ['create', '--size', VDEV_SIZE, 'x', w.vdev('x.img')], ['import', '--dir', w.dir]]) {
      const r = await w.cli('pool', ...args);
      expectError(r, 1, 'EPROTO');
      expect(r.err).toContain(cacheFile);
    }
    expect(await cacheBytes(w.home)).toBe('{"version":1,"pools":[{"name":');
    expect(await readdir(w.dir)).toEqual([]);
  });

  it('answers EBUSY while another holder has the vdev lock, and takes over a stale lock', async () => {
    const w = await workspace();
    expect((await w.cli('pool', 'create', '--size', VDEV_SIZE, 'tank', w.vdev('a.img'), w.vdev('b.img'))).code).toBe(0);
    const lock = await VdevLock.acquire([w.vdev('b.img')]);
    try {
      expectError(await w.cli('pool', 'status', 'tank'), 1, 'EBUSY');
      expectError(await w.cli('pool', 'export', 'tank'), 1, 'EBUSY');
      const list = await w.cli('pool', 'list', '--json');
      expectError(list, 1, 'EBUSY');
      expect(JSON.parse(list.out)).toMatchObject([{ name: 'tank', health: 'UNAVAIL', sizeBytes: null, error: { code: 'EBUSY' } }]);
    } finally {
      await lock.release();
    }
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    const real = await realpath(w.vdev('a.img'));
    const lockFile = join(lockDir(), `${createHash('sha256').update(real).digest('hex').slice(0, 32)}.lock`);
    await writeFile(lockFile, `${dead}\n${real}\n`);
    const status = await w.cli('pool', 'status', 'tank');
    expect(status.code, `${status.err} (dead pid ${dead})`).toBe(0);
    await expect(stat(lockFile)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('reads the cache despite a temp file left by a crash during a cache write', async () => {
    const w = await workspace();
    expect((await w.cli('pool', 'create', '--size', VDEV_SIZE, 'tank', w.vdev('a.img'))).code).toBe(0);
    await writeFile(join(w.home, '.pools.json.99999.tmp'), '{"version":1,"po');
    const list = await w.cli('pool', 'list', '--json');
    expect(list.code, list.err).toBe(0);
    expect((JSON.parse(list.out) as { name: string }[]).map((r) => r.name)).toEqual(['tank']);
    expect((await w.cli('pool', 'create', '--size', VDEV_SIZE, 'more', w.vdev('b.img'))).code).toBe(0);
    expect((JSON.parse((await w.cli('pool', 'list', '--json')).out) as { name: string }[]).map((r) => r.name)).toEqual(['more', 'tank']);
  });
});
