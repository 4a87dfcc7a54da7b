// The data commands end to end, in-process through main(): a real pool on a vdev file and a real
// pool cache in a fresh temp folder (removed afterwards), locks in a private lock folder. Bytes
// that the CLI reads from stdin or writes to stdout go through the process's streams, which these
// tests stand in for; everything read back is compared byte for byte.
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Pool, keyed } from '../engine/index.js';
import { FileDisk, Prng } from '../lib/index.js';
import { type BytesRun as Run, runMain, tempRoot } from './cli-test-support.js';
import { cliPoolEnv } from './pool-open.js';

const SEED = 20240612;
const VDEV_SIZE = '64M';

const temp = tempRoot('mirrorpool-cli-data-');

type Cli = (...args: string[]) => Promise<Run>;

/** A fresh home with pool `tank` and dataset `tank/ds`, and runners bound to that home. */
async function workspace(): Promise<{ dir: string; vdev: string; cli: Cli; ok: Cli; piped: (stdin: readonly Uint8Array[], ...args: string[]) => Promise<Run> }> {
  const base = temp.caseDir();
  const dir = join(base, 'files');
  await mkdir(dir, { recursive: true });
  const home = join(base, 'home');
  const vdev = join(base, 'a.img');
  const cli: Cli = (...args) => runMain(['--home', home, ...args], []);
  const ok: Cli = async (...args) => {
    const r = await cli(...args);
    expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0);
    return r;
  };
  await ok('pool', 'create', '--size', VDEV_SIZE, 'tank', vdev);
  await ok('dataset', 'create', 'tank/ds');
  return { dir, vdev, cli, ok, piped: (stdin, ...args) => runMain(['--home', home, ...args], stdin) };
}

function expectError(r: Run, status: number, code: string): void {
  expect(r.code, r.err).toBe(status);
  expect(r.err).toMatch(new RegExp(`^mirrorpool: ${code}: `));
}

function randomBytes(length: number, seed: number): Buffer {
  const data = new Uint8Array(length);
  new Prng(seed).fill(data);
  return Buffer.from(data);
}

interface KeyRow {
  key: string;
  sizeBytes: number;
  modifyTxg: number;
  object: number;
}

async function keys(cli: Cli, ...args: string[]): Promise<KeyRow[]> {
  const r = await cli('ls', '--json', ...args);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out) as KeyRow[];
}

describe('mirrorpool data commands', () => {
  it('stores a file of a few MiB and gets it back byte for byte, to a file and to stdout', async () => {
    const { dir, ok } = await workspace();
    const data = randomBytes(3 * 1024 * 1024 + 12_345, SEED);
    await writeFile(join(dir, 'in.bin'), data);
    expect(await ok('put', 'tank/ds', 'big/file.bin', join(dir, 'in.bin'))).toMatchObject({ out: '', err: '' });

    expect(await ok('get', 'tank/ds', 'big/file.bin', '-o', join(dir, 'out.bin'))).toMatchObject({ out: '', err: '' });
    expect((await readFile(join(dir, 'out.bin'))).equals(data), `seed ${SEED}`).toBe(true);
    expect((await readdir(dir)).sort()).toEqual(['in.bin', 'out.bin']);
    expect((await ok('get', 'tank/ds', 'big/file.bin')).bytes.equals(data), `seed ${SEED}`).toBe(true);

    const [row] = await keys(ok, 'tank/ds');
    expect(row).toMatchObject({ key: 'big/file.bin', sizeBytes: data.length });
    expect(row?.modifyTxg).toBeGreaterThan(0);
    expect(row?.object).toBeGreaterThan(1);
    expect((await ok('ls', 'tank/ds')).out).toMatch(/^KEY +SIZE +MTXG\nbig\/file\.bin +3\.01M +\d+\n$/);
  });

  it('makes put, write, truncate and rm with --sync go through the intent log', async () => {
    const { dir, ok } = await workspace();
    const data = randomBytes(300_000, SEED + 9);
    await writeFile(join(dir, 'in.bin'), data);
    await ok('put', '--sync', 'tank/ds', 'k', join(dir, 'in.bin'));
    await writeFile(join(dir, 'patch.bin'), data.subarray(0, 100));
    await ok('write', '--sync', '--offset', '1000', 'tank/ds', 'k', join(dir, 'patch.bin'));
    await ok('truncate', '--sync', '--size', '200000', 'tank/ds', 'k');
    const want = Buffer.from(data.subarray(0, 200_000));
    data.subarray(0, 100).copy(want, 1000);
    expect((await ok('get', 'tank/ds', 'k')).bytes.equals(want)).toBe(true);
    await ok('rm', '--sync', 'tank/ds', 'k');
    expect(await keys(ok, 'tank/ds')).toEqual([]);
    // The dataset now has an intent log object in the MOS.
    expect((await ok('pool', 'debug', 'tank', '--max-objects', '200')).out).toMatch(/intentLog/);
  });

  it('stores stdin when the file is - or left out', async () => {
    const { ok, piped } = await workspace();
    const data = randomBytes(2 * 1024 * 1024 + 777, SEED + 1);
    const pieces = [data.subarray(0, 1), data.subarray(1, 65_537), data.subarray(65_537, 1_500_000), data.subarray(1_500_000)];
    const dash = await piped(pieces, 'put', 'tank/ds', 'from-dash', '-');
    expect(dash.code, dash.err).toBe(0);
    const implicit = await piped([Buffer.from('short')], 'put', 'tank/ds', 'implicit');
    expect(implicit.code, implicit.err).toBe(0);
    expect((await ok('get', 'tank/ds', 'from-dash')).bytes.equals(data), `seed ${SEED + 1}`).toBe(true);
    expect((await ok('get', 'tank/ds', 'implicit')).bytes.toString()).toBe('short');
    const empty = await piped([], 'put', 'tank/ds', 'empty');
    expect(empty.code, empty.err).toBe(0);
    const dashed = await piped([Buffer.from('-')], 'put', 'tank/ds', '--', '-dashed');
    expect(dashed.code, dashed.err).toBe(0);
    expect((await ok('get', 'tank/ds', '--', '-dashed')).bytes.toString()).toBe('-');
    expect((await keys(ok, 'tank/ds')).map((k) => [k.key, k.sizeBytes])).toEqual([
      ['-dashed', 1],
      ['empty', 0],
      ['from-dash', data.length],
      ['implicit', 5],
    ]);
  });

  it('writes in place, reads ranges, truncates and removes keys', async () => {
    const { dir, cli, ok, piped } = await workspace();
    await writeFile(join(dir, 'hello'), 'hello world');
    await ok('put', 'tank/ds', 'k', join(dir, 'hello'));
    await writeFile(join(dir, 'patch'), 'WORLD!!');
    expect(await ok('write', 'tank/ds', 'k', '--offset', '6', join(dir, 'patch'))).toMatchObject({ out: '', err: '' });
    expect((await ok('get', 'tank/ds', 'k')).bytes.toString()).toBe('hello WORLD!!');
    expect((await piped([Buffer.from('+')], 'write', 'tank/ds', 'k', '--offset', '16', '-')).code).toBe(0);
    expect((await ok('get', 'tank/ds', 'k')).bytes).toEqual(Buffer.from('hello WORLD!!\0\0\0+'));

    expect((await ok('read', 'tank/ds', 'k', '--offset', '6', '--length', '5')).bytes.toString()).toBe('WORLD');
    expect((await ok('read', 'tank/ds', 'k', '--offset', '15', '--length', '1K')).bytes).toEqual(Buffer.from('\0+'));
    expect((await ok('read', 'tank/ds', 'k', '--offset', '100', '--length', '10')).bytes.length).toBe(0);
    expect((await ok('read', 'tank/ds', 'k', '--offset', '0', '--length', '0')).bytes.length).toBe(0);

    expect(await ok('truncate', 'tank/ds', 'k', '--size', '5')).toMatchObject({ out: '', err: '' });
    expect((await ok('get', 'tank/ds', 'k')).bytes.toString()).toBe('hello');
    await ok('truncate', 'tank/ds', 'k', '--size', '8');
    expect((await ok('get', 'tank/ds', 'k')).bytes).toEqual(Buffer.from('hello\0\0\0'));

    expect(await ok('rm', 'tank/ds', 'k')).toMatchObject({ out: '', err: '' });
    expect((await ok('ls', 'tank/ds')).out).toBe('no keys\n');
    expect(await keys(ok, 'tank/ds')).toEqual([]);
    expectError(await cli('rm', 'tank/ds', 'k'), 1, 'ENOENT');
    expectError(await cli('write', 'tank/ds', 'k', '--offset', '0', join(dir, 'patch')), 1, 'ENOENT');
    expectError(await cli('truncate', 'tank/ds', 'k', '--size', '0'), 1, 'ENOENT');
  });

  it('reads a key from a snapshot after the head changed', async () => {
    const { dir, cli, ok } = await workspace();
    const v1 = randomBytes(300_000, SEED + 2);
    const v2 = randomBytes(1000, SEED + 3);
    await writeFile(join(dir, 'v1'), v1);
    await writeFile(join(dir, 'v2'), v2);
    await ok('put', 'tank/ds', 'doc', join(dir, 'v1'));
    await ok('put', 'tank/ds', 'gone', join(dir, 'v2'));
    await ok('snapshot', 'tank/ds@before');
    await ok('put', 'tank/ds', 'doc', join(dir, 'v2'));
    await ok('rm', 'tank/ds', 'gone');
    await ok('put', 'tank/ds', 'new', join(dir, 'v2'));

    expect((await ok('get', 'tank/ds@before', 'doc')).bytes.equals(v1)).toBe(true);
    expect((await ok('get', 'tank/ds', 'doc')).bytes.equals(v2)).toBe(true);
    expect((await ok('read', 'tank/ds@before', 'doc', '--offset', '1000', '--length', '10')).bytes).toEqual(v1.subarray(1000, 1010));
    expect((await keys(ok, 'tank/ds@before')).map((k) => [k.key, k.sizeBytes])).toEqual([
      ['doc', v1.length],
      ['gone', v2.length],
    ]);
    expect((await keys(ok, 'tank/ds')).map((k) => [k.key, k.sizeBytes])).toEqual([
      ['doc', v2.length],
      ['new', v2.length],
    ]);
    expectError(await cli('put', 'tank/ds@before', 'x', join(dir, 'v2')), 1, 'EROFS');
    expectError(await cli('rm', 'tank/ds@before', 'doc'), 1, 'EROFS');
    expectError(await cli('get', 'tank/ds@before', 'new'), 1, 'ENOENT');
  });

  it('lists keys by prefix and pages through a large key directory in byte order', async () => {
    const { vdev, cli, ok } = await workspace();
    const count = 1100;
    const pool = await Pool.import([{ disk: await FileDisk.open(vdev), path: vdev }], cliPoolEnv());
    await pool.dsl.withView('tank/ds', 'write', async (view) => {
      for (let i = 0; i < count; i++) await keyed.putKey(view, () => pool.assign(), `k/${String(i).padStart(5, '0')}`, new Uint8Array(i % 7));
      await keyed.putKey(view, () => pool.assign(), 'line\nbreak', new Uint8Array(1));
    });
    await pool.export();

    const all = await keys(ok, 'tank/ds');
    expect(all).toHaveLength(count + 1);
    expect(all.map((k) => k.key)).toEqual([...all.map((k) => k.key)].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    expect(all.at(-1)?.key).toBe('line\nbreak');
    expect(new Set(all.map((k) => k.key)).size).toBe(count + 1);
    expect((await keys(ok, 'tank/ds', 'k/0100')).map((k) => k.key)).toEqual(Array.from({ length: 10 }, (_, i) => `k/0100${i}`));
    expect(await keys(ok, 'tank/ds', 'zzz')).toEqual([]);
    const table = (await ok('ls', 'tank/ds')).out.split('\n');
    expect(table).toHaveLength(count + 3);
    expect(table.at(-2)).toMatch(/^line\\x0abreak +1B +\d+$/);
    expect(new Set(table.slice(0, 1025).map((l) => l.length)).size, 'the header and first page line up').toBe(1);
    expectError(await cli('ls', 'tank/ds', 'x'.repeat(1025)), 1, 'EINVAL');
  });

  it('fails with the engine code for bad keys, missing keys and read-only datasets, and leaves no output file', async () => {
    const { dir, cli, ok } = await workspace();
    await writeFile(join(dir, 'in'), 'data');
    await ok('put', 'tank/ds', 'k'.repeat(1024), join(dir, 'in'));
    expectError(await cli('put', 'tank/ds', 'k'.repeat(1025), join(dir, 'in')), 1, 'EINVAL');
    expectError(await cli('put', 'tank/ds', 'é'.repeat(513), join(dir, 'in')), 1, 'EINVAL');
    expectError(await cli('get', 'tank/ds', 'k'.repeat(1025)), 1, 'EINVAL');
    expectError(await cli('put', 'tank/ds', '', join(dir, 'in')), 1, 'EINVAL');
    expectError(await cli('get', 'tank/ds', 'missing', '-o', join(dir, 'out')), 1, 'ENOENT');
    expectError(await cli('read', 'tank/ds', 'missing', '--offset', '0', '--length', '1'), 1, 'ENOENT');
    expectError(await cli('put', 'tank/ds', 'x', join(dir, 'no-such-file')), 1, 'ENOENT');
    expectError(await cli('put', 'tank/ds', 'x', dir), 1, 'EINVAL');
    expectError(await cli('put', 'tank/nope', 'x', join(dir, 'in')), 1, 'ENOENT');
    expectError(await cli('put', 'nopool/ds', 'x', join(dir, 'in')), 1, 'ENOENT');
    expectError(await cli('ls', 'tank/ds@nope'), 1, 'ENOENT');
    expectError(await cli('put', 'tank/d s', 'x', join(dir, 'in')), 1, 'EINVAL');
    expectError(await cli('get', 'tank/ds', 'missing', '-o', join(dir, 'no-folder', 'out')), 1, 'ENOENT');
    expectError(await cli('get', 'tank/ds', 'k'.repeat(1024), '-o', join(dir, 'no-folder', 'out')), 1, 'ENOENT');

    await ok('dataset', 'set', 'readonly=on', 'tank/ds');
    expectError(await cli('put', 'tank/ds', 'x', join(dir, 'in')), 1, 'EROFS');
    expectError(await cli('truncate', 'tank/ds', 'k'.repeat(1024), '--size', '0'), 1, 'EROFS');
    expect((await ok('get', 'tank/ds', 'k'.repeat(1024))).bytes.toString()).toBe('data');
    expect((await keys(ok, 'tank/ds')).map((k) => k.key)).toEqual(['k'.repeat(1024)]);
    expect((await readdir(dir)).sort()).toEqual(['in']);
  });

  it('rejects offsets, lengths and sizes that do not parse as bad usage', async () => {
    const { dir, cli, ok } = await workspace();
    await writeFile(join(dir, 'in'), 'data');
    await ok('put', 'tank/ds', 'k', join(dir, 'in'));
    for (const bad of ['-1', '1.5', 'x', '12Q', '', '0x10', `${2 ** 50 + 1}`]) {
      expectError(await cli('write', 'tank/ds', 'k', `--offset=${bad}`, join(dir, 'in')), 2, 'EINVAL');
      expectError(await cli('read', 'tank/ds', 'k', '--offset', '0', `--length=${bad}`), 2, 'EINVAL');
      expectError(await cli('truncate', 'tank/ds', 'k', `--size=${bad}`), 2, 'EINVAL');
    }
    expectError(await cli('write', 'tank/ds', 'k', join(dir, 'in')), 2, 'EINVAL');
    expectError(await cli('read', 'tank/ds', 'k', '--offset', '0'), 2, 'EINVAL');
    expectError(await cli('truncate', 'tank/ds', 'k'), 2, 'EINVAL');
    expectError(await cli('get', 'tank/ds'), 2, 'EINVAL');
    expectError(await cli('put', 'tank/ds', 'k', 'a', 'b'), 2, 'EINVAL');
    expect((await ok('read', 'tank/ds', 'k', '--offset', '1', '--length', '0.5K')).bytes.toString()).toBe('ata');
    expect((await ok('get', 'tank/ds', 'k')).bytes.toString()).toBe('data');
  });
});
