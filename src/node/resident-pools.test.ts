// Resident pools end to end, in-process: a registry installed for a home as the daemon does, and
// CLI commands run through main() against that home with their bytes carried by io.stdin and
// io.stdout. Real vdev files and a real pool cache in a fresh temp folder (removed afterwards),
// locks in a private lock folder. Every registry is closed (and so uninstalled) after its test.
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Pool } from '../engine/index.js';
import { AssertionFailure, Prng, mpError } from '../lib/index.js';
import { main } from './cli.js';
import type { CliIo } from './cli-common.js';
import { tempRoot } from './cli-test-support.js';
import { cliPoolEnv } from './pool-open.js';
import { ResidentPools } from './resident-pools.js';
import { VdevLock } from './vdev-lock.js';

const SEED = 20240701;
const VDEV_SIZE = '64M';

const temp = tempRoot('mirrorpool-resident-');

interface Run {
  code: number;
  out: string;
  err: string;
  /** What the command wrote to io.stdout. */
  bytes: Buffer;
}

interface Workspace {
  home: string;
  dir: string;
  vdev: (name: string) => string;
  /** Runs a command with `stdin` as io.stdin and io.stdout captured. */
  run: (stdin: readonly Uint8Array[], ...args: string[]) => Promise<Run>;
  /** Same, and the command must succeed. */
  ok: (stdin: readonly Uint8Array[], ...args: string[]) => Promise<Run>;
}

async function* pieces(chunks: readonly Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) yield chunk;
}

async function workspace(): Promise<Workspace> {
  const base = temp.caseDir();
  const dir = join(base, 'vdevs');
  await mkdir(dir, { recursive: true });
  const home = join(base, 'home');
  const run = async (stdin: readonly Uint8Array[], ...args: string[]): Promise<Run> => {
    const r = { code: 0, out: '', err: '', bytes: Buffer.alloc(0) };
    const taken: Buffer[] = [];
    const io: CliIo = {
      out: { write: (s) => void (r.out += s) },
      err: { write: (s) => void (r.err += s) },
      stdin: pieces(stdin),
      stdout: { write: (chunk) => Promise.resolve(void taken.push(Buffer.from(chunk))) },
    };
    r.code = await main(['--home', home, ...args], io);
    r.bytes = Buffer.concat(taken);
    return r;
  };
  const ok = async (stdin: readonly Uint8Array[], ...args: string[]): Promise<Run> => {
    const r = await run(stdin, ...args);
    expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0);
    return r;
  };
  return { home, dir, vdev: (name) => join(dir, name), run, ok };
}

function randomBytes(length: number, seed: number): Buffer {
  const data = new Uint8Array(length);
  new Prng(seed).fill(data);
  return Buffer.from(data);
}

/** The one open pool of the registry, by name. */
function resident(registry: ResidentPools, name: string): Pool {
  const found = registry.list().find((p) => p.name === name);
  expect(found, `pool ${name} is resident`).toBeDefined();
  return found!.pool;
}

async function expectLockBusy(paths: readonly string[]): Promise<void> {
  await expect(VdevLock.acquire(paths)).rejects.toMatchObject({ code: 'EBUSY' });
}

async function expectLockFree(paths: readonly string[]): Promise<void> {
  await (await VdevLock.acquire(paths)).release();
}

let registry: ResidentPools | undefined;

afterEach(async () => {
  const installed = registry;
  registry = undefined;
  await installed?.close();
});

describe('resident pools', () => {
  it('keeps a pool imported across commands, and still exports and imports it', async () => {
    const w = await workspace();
    registry = ResidentPools.install(w.home, cliPoolEnv());
    expect(() => ResidentPools.install(w.home, cliPoolEnv())).toThrow(AssertionFailure);
    expect(ResidentPools.current(join(w.home, '.'))).toBe(registry);
    await w.ok([], 'pool', 'create', '--size', VDEV_SIZE, 'tank', w.vdev('a.img'));
    const first = resident(registry, 'tank');

    const data = randomBytes(1_500_000, SEED);
    await w.ok([], 'dataset', 'create', 'tank/ds');
    await w.ok([data.subarray(0, 1000), data.subarray(1000)], 'put', 'tank/ds', 'k');
    expect((await w.ok([], 'get', 'tank/ds', 'k')).bytes.equals(data), `seed ${SEED}`).toBe(true);
    await w.ok([], 'snapshot', 'tank/ds@1');
    const stream = (await w.ok([], 'send', 'tank/ds@1')).bytes;
    expect(stream.length).toBeGreaterThan(data.length);
    await w.ok([stream], 'recv', 'tank/copy');
    expect((await w.ok([], 'get', 'tank/copy@1', 'k')).bytes.equals(data)).toBe(true);
    const [status] = JSON.parse((await w.ok([], 'pool', 'status', '--json')).out) as { name: string }[];
    expect(status?.name).toBe('tank');
    expect((await w.ok([], 'pool', 'list')).out).toMatch(/^tank /m);
    expect((await w.ok([], 'dataset', 'list')).out).toMatch(/^tank\/copy /m);
    // A failed command leaves the pool open.
    expect((await w.run([], 'get', 'tank/ds', 'nosuch')).err).toMatch(/^mirrorpool: ENOENT: /);
    expect(resident(registry, 'tank')).toBe(first);
    await expectLockBusy([w.vdev('a.img')]);

    await w.ok([], 'pool', 'export', 'tank');
    expect(registry.list()).toEqual([]);
    await expectLockFree([w.vdev('a.img')]);
    await w.ok([], 'pool', 'import', '--dir', w.dir, 'tank');
    const second = resident(registry, 'tank');
    expect(second).not.toBe(first);
    expect((await w.ok([], 'get', 'tank/ds', 'k')).bytes.equals(data)).toBe(true);
    expect(resident(registry, 'tank')).toBe(second);

    await registry.close();
    registry = undefined;
    expect(ResidentPools.current(w.home)).toBeUndefined();
    await expectLockFree([w.vdev('a.img')]);
  });

  it('makes what a command wrote durable before the command returns', async () => {
    const w = await workspace();
    registry = ResidentPools.install(w.home, cliPoolEnv());
    await w.ok([], 'pool', 'create', '--size', VDEV_SIZE, 'tank', w.vdev('a.img'));
    await w.ok([], 'dataset', 'create', 'tank/ds');
    const data = randomBytes(700_000, SEED + 1);
    await w.ok([data], 'put', 'tank/ds', 'k');

    // A crash right after the command: nothing more reaches the disks.
    await resident(registry, 'tank').abandon();
    // The abandoned pool cannot export; its vdevs are closed and unlocked all the same.
    await expect(registry.evict('tank')).rejects.toMatchObject({ code: 'EINVAL' });
    expect(registry.list()).toEqual([]);
    await registry.close();
    registry = undefined;

    // Without a registry the command imports the pool from the files itself.
    expect((await w.ok([], 'get', 'tank/ds', 'k')).bytes.equals(data), `seed ${SEED + 1}`).toBe(true);
  });

  it('runs concurrent puts to one dataset (and to another beside it) on one open pool, and every one lands', async () => {
    const w = await workspace();
    registry = ResidentPools.install(w.home, cliPoolEnv());
    await w.ok([], 'pool', 'create', '--size', VDEV_SIZE, 'tank', w.vdev('a.img'));
    await w.ok([], 'dataset', 'create', 'tank/ds');
    await w.ok([], 'dataset', 'create', 'tank/other');
    const pool = resident(registry, 'tank');
    const values = Array.from({ length: 8 }, (_, i) => randomBytes(200_000 + i * 10_000, SEED + 10 + i));
    const put = (ds: string, i: number): Promise<Run> => w.run([values[i]!.subarray(0, 5000), values[i]!.subarray(5000)], 'put', ds, `k${i}`);
    const runs = await Promise.all([...values.map((_, i) => put('tank/ds', i)), ...[0, 1, 2].map((i) => put('tank/other', i))]);
    for (const r of runs) expect(r.code, r.err).toBe(0);
    const rows = JSON.parse((await w.ok([], 'ls', '--json', 'tank/ds')).out) as { key: string; sizeBytes: number }[];
    expect(rows.map((r) => [r.key, r.sizeBytes])).toEqual(values.map((v, i) => [`k${i}`, v.length]));
    const got = await Promise.all(values.map((_, i) => w.ok([], 'get', 'tank/ds', `k${i}`)));
    got.forEach((r, i) => expect(r.bytes.equals(values[i]!), `seed ${SEED + 10 + i}`).toBe(true));
    expect((await w.ok([], 'get', 'tank/other', 'k2')).bytes.equals(values[2]!)).toBe(true);
    expect(resident(registry, 'tank')).toBe(pool);
  });

  it('evicts only once the commands running on the pool are done, and holds back new ones meanwhile', async () => {
    const w = await workspace();
    registry = ResidentPools.install(w.home, cliPoolEnv());
    await w.ok([], 'pool', 'create', '--size', VDEV_SIZE, 'tank', w.vdev('a.img'));
    const first = resident(registry, 'tank');
    const events: string[] = [];
    let release = (): void => undefined;
    const blocked = new Promise<void>((resolve) => (release = resolve));
    let entered = (): void => undefined;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const user = registry.use('tank', async () => {
      entered();
      await blocked;
      events.push('user done');
    });
    await inside;
    const evicted = registry.evict('tank').then(() => events.push('evicted'));
    const later = registry.use('tank', async (pool) => {
      events.push('later user');
      return pool;
    });
    // Real I/O round trips give the eviction every chance to run ahead if it did not wait.
    for (let i = 0; i < 20; i++) await stat(w.vdev('a.img'));
    expect(events).toEqual([]);
    expect(resident(registry, 'tank')).toBe(first);
    release();
    await user;
    await evicted;
    const reopened = await later;
    expect(events).toEqual(['user done', 'evicted', 'later user']);
    expect(reopened).not.toBe(first);
    expect(resident(registry, 'tank')).toBe(reopened);
  });

  it('evicts a pool around attach, detach, add, reguid and debug, and has it open again afterwards', async () => {
    const w = await workspace();
    registry = ResidentPools.install(w.home, cliPoolEnv());
    await w.ok([], 'pool', 'create', '--size', VDEV_SIZE, 'tank', w.vdev('a.img'));
    await w.ok([], 'dataset', 'create', 'tank/ds');
    const data = randomBytes(300_000, SEED + 2);
    await w.ok([data], 'put', 'tank/ds', 'k');
    let before = resident(registry, 'tank');
    const reopened = (): Pool => {
      const now = resident(registry!, 'tank');
      expect(now).not.toBe(before);
      before = now;
      return now;
    };
    await w.ok([], 'pool', 'attach', 'tank', w.vdev('a.img'), w.vdev('b.img'));
    reopened();
    await expectLockBusy([w.vdev('b.img')]);
    await w.ok([], 'pool', 'detach', 'tank', w.vdev('b.img'));
    reopened();
    await expectLockFree([w.vdev('b.img')]);
    await w.ok([], 'pool', 'add', '--size', VDEV_SIZE, 'tank', w.vdev('c.img'));
    reopened();
    const guid = (await w.ok([], 'pool', 'reguid', 'tank')).out.trim();
    expect(reopened().guid.toString()).toBe(guid);
    expect((await w.ok([], 'pool', 'debug', '--check', 'tank')).out).toMatch(/^check: /m);
    reopened();
    await w.ok([], 'pool', 'checkpoint', 'tank');
    expect(resident(registry, 'tank')).toBe(before);
    expect((await w.ok([], 'get', 'tank/ds', 'k')).bytes.equals(data)).toBe(true);
    await expectLockBusy([w.vdev('a.img'), w.vdev('c.img')]);
  });

  it('opens every cached pool at once and reports the ones it cannot', async () => {
    const w = await workspace();
    registry = ResidentPools.install(w.home, cliPoolEnv());
    await w.ok([], 'pool', 'create', '--size', VDEV_SIZE, 'one', w.vdev('one.img'));
    await w.ok([], 'pool', 'create', '--size', VDEV_SIZE, 'two', w.vdev('two.img'));
    await w.ok([], 'pool', 'create', '--size', VDEV_SIZE, 'three', w.vdev('three.img'));
    expect(registry.list().map((p) => p.name)).toEqual(['one', 'three', 'two']);
    await registry.close();
    await rm(w.vdev('two.img'));

    registry = ResidentPools.install(w.home, cliPoolEnv());
    const { opened, failures } = await registry.openAll();
    expect(opened).toEqual(['one', 'three']);
    expect(failures.map((f) => [f.pool, f.error.code])).toEqual([['two', 'ENOENT']]);
    expect(registry.list().map((p) => p.name)).toEqual(['one', 'three']);
    await expectLockBusy([w.vdev('one.img')]);
  });
});

describe('binary stdin and stdout through CliIo', () => {
  it('puts from an io.stdin iterable and gets, reads and sends into an io.stdout sink, one command per import', async () => {
    const w = await workspace();
    await w.ok([], 'pool', 'create', '--size', VDEV_SIZE, 'tank', w.vdev('a.img'));
    await w.ok([], 'dataset', 'create', 'tank/ds');
    const data = randomBytes(2 * 1024 * 1024 + 99, SEED + 3);
    const chunks = [data.subarray(0, 1), data.subarray(1, 70_000), data.subarray(70_000)];
    expect(await w.ok(chunks, 'put', 'tank/ds', 'k', '-')).toMatchObject({ out: '', err: '' });
    expect((await w.ok([], 'get', 'tank/ds', 'k')).bytes.equals(data), `seed ${SEED + 3}`).toBe(true);
    expect((await w.ok([], 'read', 'tank/ds', 'k', '--offset', '10', '--length', '20')).bytes.equals(data.subarray(10, 30))).toBe(true);
    await w.ok([Buffer.from('XY')], 'write', 'tank/ds', 'k', '--offset', '0');
    await w.ok([], 'snapshot', 'tank/ds@s');
    const stream = (await w.ok([], 'send', 'tank/ds@s')).bytes;
    await w.ok([stream], 'recv', 'tank/back');
    const back = (await w.ok([], 'get', 'tank/back', 'k')).bytes;
    expect(back.subarray(0, 2).toString()).toBe('XY');
    expect(back.subarray(2).equals(data.subarray(2))).toBe(true);
  });

  it('ends a command with the error of an io.stdout sink that fails', async () => {
    const w = await workspace();
    await w.ok([], 'pool', 'create', '--size', VDEV_SIZE, 'tank', w.vdev('a.img'));
    await w.ok([], 'dataset', 'create', 'tank/ds');
    await w.ok([Buffer.from('hello')], 'put', 'tank/ds', 'k');
    let err = '';
    const io: CliIo = {
      out: { write: () => undefined },
      err: { write: (s) => void (err += s) },
      stdout: { write: () => Promise.reject(mpError('ECANCELED', 'the reader went away')) },
    };
    expect(await main(['--home', w.home, 'get', 'tank/ds', 'k'], io)).toBe(1);
    expect(err).toMatch(/^mirrorpool: ECANCELED: the reader went away/);
  });
});
