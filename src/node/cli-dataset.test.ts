// The dataset and snapshot commands end to end, in-process through main(): a real pool on vdev
// files and a real pool cache in a fresh temp folder (removed afterwards), locks in a private lock
// folder. Failures are checked by exit status and error code, and by the listing being unchanged.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Cli, cliWorkspace, expectError, tempRoot } from './cli-test-support.js';
import { VdevLock } from './vdev-lock.js';

const VDEV_SIZE = '32M';

const temp = tempRoot('mirrorpool-cli-dataset-');


/** A fresh home and vdev folder per test with pool `tank` created, and runners bound to that home. */
async function workspace(): Promise<{ dir: string; cli: Cli; ok: Cli }> {
  const w = await cliWorkspace(temp);
  await w.ok('pool', 'create', '--size', VDEV_SIZE, 'tank', join(w.dir, 'a.img'));
  return w;
}

interface DatasetRow {
  name: string;
  type: string;
  guid: string;
  createTxg: number;
  creationMs: number;
  usedBytes: number | null;
  referencedBytes: number | null;
  origin: string | null;
}

interface PropertyRow {
  name: string;
  property: string;
  value: string;
  source: string;
}

async function listJson(cli: Cli, ...args: string[]): Promise<DatasetRow[]> {
  const r = await cli('dataset', 'list', '--json', ...args);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out) as DatasetRow[];
}

async function names(cli: Cli, ...args: string[]): Promise<string[]> {
  return (await listJson(cli, ...args)).map((d) => d.name);
}

async function props(cli: Cli, name: string): Promise<Map<string, PropertyRow>> {
  const r = await cli('dataset', 'get', '--json', 'all', name);
  expect(r.code, r.err).toBe(0);
  return new Map((JSON.parse(r.out) as PropertyRow[]).map((p) => [p.property, p]));
}

describe('mirrorpool dataset and snapshot commands', () => {
  it('creates, lists, gets, sets, renames and destroys datasets', async () => {
    const { cli, ok } = await workspace();
    expect(await ok('dataset', 'create', 'tank/home')).toEqual({ code: 0, out: '', err: '' });
    await ok('dataset', 'create', '-o', 'recordsize=16K', '-o', 'checksum=sha256', 'tank/home/alice');
    await ok('dataset', 'create', 'tank/home/alice/docs');

    const rows = await listJson(cli);
    expect(rows.map((d) => d.name)).toEqual(['tank', 'tank/home', 'tank/home/alice', 'tank/home/alice/docs']);
    for (const d of rows) {
      expect(d.type).toBe('filesystem');
      expect(d.guid).toMatch(/^[1-9][0-9]*$/);
      expect(d.createTxg).toBeGreaterThan(0);
      expect(d.usedBytes).toBeGreaterThan(0);
      expect(d.referencedBytes).toBeGreaterThan(0);
      expect(d.origin).toBeNull();
    }
    expect(await names(cli, 'tank/home/alice')).toEqual(['tank/home/alice', 'tank/home/alice/docs']);
    expect((await ok('dataset', 'list')).out).toMatch(/^NAME +USED +REFER +CREATETXG +ORIGIN\ntank +\S+K +\S+K +\d+ +-\n/);

    const alice = await props(cli, 'tank/home/alice');
    for (const p of ['type', 'guid', 'createtxg', 'creation', 'used', 'referenced', 'written', 'usedbysnapshots', 'usedbychildren', 'available']) {
      expect(alice.get(p)?.source, p).toBe('-');
      expect(alice.get(p)?.value, p).toMatch(/^[0-9a-z]+$/);
    }
    expect(alice.get('recordsize')).toEqual({ name: 'tank/home/alice', property: 'recordsize', value: '16K', source: 'local' });
    expect((await props(cli, 'tank/home/alice/docs')).get('checksum')).toMatchObject({ value: 'sha256', source: 'inherited from tank/home/alice' });
    expect((await props(cli, 'tank/home')).get('sync')).toMatchObject({ value: 'standard', source: 'default' });

    await ok('dataset', 'set', 'readonly=on', 'tank/home');
    const some = await ok('dataset', 'get', 'readonly,used', 'tank/home/alice');
    expect(some.out).toMatch(/^NAME +PROPERTY +VALUE +SOURCE\ntank\/home\/alice +readonly +on +inherited from tank\/home\ntank\/home\/alice +used +[0-9.]+[BKM] +-\n$/);
    const exact = await ok('dataset', 'get', '-p', 'used', 'tank/home/alice');
    expect(exact.out).toMatch(/\n\S+ +used +[0-9]+ +-\n$/);

    await ok('dataset', 'rename', 'tank/home/alice', 'tank/alice');
    expect(await names(cli)).toEqual(['tank', 'tank/alice', 'tank/alice/docs', 'tank/home']);
    expect((await props(cli, 'tank/alice')).get('guid')?.value).toBe(alice.get('guid')?.value);

    expectError(await cli('dataset', 'destroy', 'tank/alice'), 1, 'EBUSY');
    await ok('dataset', 'destroy', 'tank/home');
    await ok('dataset', 'destroy', '-r', 'tank/alice');
    expect(await names(cli)).toEqual(['tank']);
  });

  it('takes snapshots and bookmarks, lists each type, renames a snapshot and destroys them', async () => {
    const { cli, ok } = await workspace();
    await ok('dataset', 'create', 'tank/ds');
    expect(await ok('snapshot', 'tank/ds@one')).toEqual({ code: 0, out: '', err: '' });
    await ok('snapshot', 'tank/ds@two');
    expect(await ok('bookmark', 'tank/ds@one', 'tank/ds#mark')).toEqual({ code: 0, out: '', err: '' });

    expect(await names(cli, '-t', 'snapshot')).toEqual(['tank/ds@one', 'tank/ds@two']);
    expect(await names(cli, '-t', 'snapshot,bookmark', 'tank/ds')).toEqual(['tank/ds@one', 'tank/ds@two', 'tank/ds#mark']);
    const all = await listJson(cli, '-t', 'all');
    expect(all.map((d) => [d.name, d.type])).toEqual([
      ['tank', 'filesystem'],
      ['tank/ds', 'filesystem'],
      ['tank/ds@one', 'snapshot'],
      ['tank/ds@two', 'snapshot'],
      ['tank/ds#mark', 'bookmark'],
    ]);
    const one = all.find((d) => d.name === 'tank/ds@one');
    const mark = all.find((d) => d.name === 'tank/ds#mark');
    expect(mark).toMatchObject({ guid: one?.guid, createTxg: one?.createTxg, usedBytes: null, referencedBytes: null });
    expect((await ok('dataset', 'list', '-t', 'bookmark')).out).toMatch(/\ntank\/ds#mark +- +- +\d+ +-\n$/);

    const snap = await props(cli, 'tank/ds@one');
    expect(snap.get('type')?.value).toBe('snapshot');
    for (const p of ['guid', 'createtxg', 'used', 'referenced', 'written', 'userrefs', 'clones']) expect(snap.get(p)?.value, p).toMatch(/^[0-9]+$/);
    expect([...(await props(cli, 'tank/ds#mark')).keys()]).toEqual(['type', 'guid', 'createtxg', 'creation']);

    await ok('dataset', 'rename', 'tank/ds@two', 'tank/ds@second');
    expect(await names(cli, '-t', 'snapshot')).toEqual(['tank/ds@one', 'tank/ds@second']);
    await ok('dataset', 'destroy', 'tank/ds#mark');
    await ok('dataset', 'destroy', 'tank/ds@one');
    expectError(await cli('dataset', 'destroy', 'tank/ds'), 1, 'EBUSY');
    await ok('dataset', 'destroy', '-r', 'tank/ds');
    expect(await names(cli, '-t', 'all')).toEqual(['tank']);
  });

  it('keeps a held snapshot until it is released', async () => {
    const { cli, ok } = await workspace();
    await ok('dataset', 'create', 'tank/ds');
    await ok('snapshot', 'tank/ds@s');
    expect(await ok('hold', 'keep', 'tank/ds@s')).toEqual({ code: 0, out: '', err: '' });
    await ok('hold', 'backup', 'tank/ds@s');
    expectError(await cli('hold', 'keep', 'tank/ds@s'), 1, 'EEXIST');
    expect((await props(cli, 'tank/ds@s')).get('userrefs')?.value).toBe('2');

    expectError(await cli('dataset', 'destroy', 'tank/ds@s'), 1, 'EBUSY');
    expectError(await cli('dataset', 'destroy', '-r', 'tank/ds'), 1, 'EBUSY');
    await ok('release', 'keep', 'tank/ds@s');
    expectError(await cli('release', 'keep', 'tank/ds@s'), 1, 'ENOENT');
    expectError(await cli('dataset', 'destroy', 'tank/ds@s'), 1, 'EBUSY');
    await ok('release', 'backup', 'tank/ds@s');
    await ok('dataset', 'destroy', 'tank/ds@s');
    expect(await names(cli, '-t', 'snapshot')).toEqual([]);
  });

  it('clones a snapshot and refuses to destroy that snapshot while the clone exists', async () => {
    const { cli, ok } = await workspace();
    await ok('dataset', 'create', 'tank/ds');
    await ok('snapshot', 'tank/ds@s');
    expect(await ok('clone', '-o', 'readonly=on', 'tank/ds@s', 'tank/copy')).toEqual({ code: 0, out: '', err: '' });
    const copy = (await listJson(cli)).find((d) => d.name === 'tank/copy');
    expect(copy?.origin).toBe('tank/ds@s');
    expect((await props(cli, 'tank/copy')).get('origin')?.value).toBe('tank/ds@s');
    expect((await props(cli, 'tank/copy')).get('readonly')).toMatchObject({ value: 'on', source: 'local' });
    expect((await props(cli, 'tank/ds@s')).get('clones')?.value).toBe('1');

    expectError(await cli('dataset', 'destroy', 'tank/ds@s'), 1, 'EBUSY');
    await ok('dataset', 'destroy', 'tank/copy');
    await ok('dataset', 'destroy', 'tank/ds@s');
  });

  it('rolls back to the newest snapshot, and to an older one only with -r', async () => {
    const { cli, ok } = await workspace();
    await ok('dataset', 'create', 'tank/ds');
    await ok('snapshot', 'tank/ds@one');
    await ok('snapshot', 'tank/ds@two');
    expectError(await cli('rollback', 'tank/ds@one'), 1, 'EEXIST');
    expect(await names(cli, '-t', 'snapshot')).toEqual(['tank/ds@one', 'tank/ds@two']);
    expect(await ok('rollback', 'tank/ds@two')).toEqual({ code: 0, out: '', err: '' });
    await ok('hold', 'keep', 'tank/ds@two');
    expectError(await cli('rollback', '-r', 'tank/ds@one'), 1, 'EBUSY');
    await ok('release', 'keep', 'tank/ds@two');
    await ok('rollback', '-r', 'tank/ds@one');
    expect(await names(cli, '-t', 'snapshot')).toEqual(['tank/ds@one']);
  });

  it('fails with exit status 1 and the engine code for bad names, missing things and cross-pool requests', async () => {
    const { dir, cli, ok } = await workspace();
    await ok('pool', 'create', '--size', VDEV_SIZE, 'other', join(dir, 'b.img'));
    await ok('dataset', 'create', 'tank/ds');
    await ok('snapshot', 'tank/ds@s');
    const before = await listJson(cli, '-t', 'all');

    for (const bad of ['tank/a b', 'tank//x', 'tank/ds@', '1tank/ds', 'tank/../x', `tank/${'x'.repeat(300)}`]) {
      expectError(await cli('dataset', 'create', bad), 1, 'EINVAL');
    }
    expectError(await cli('snapshot', 'tank/ds'), 1, 'EINVAL');
    expectError(await cli('dataset', 'create', 'tank/ds@s2'), 1, 'EINVAL');
    expectError(await cli('bookmark', 'tank/ds@s', 'tank/other#m'), 1, 'EINVAL');
    expectError(await cli('hold', '', 'tank/ds@s'), 1, 'EINVAL');
    expectError(await cli('dataset', 'create', '-o', 'recordsize=3K', 'tank/x'), 1, 'EINVAL');
    expectError(await cli('dataset', 'create', '-o', 'color=blue', 'tank/x'), 1, 'EINVAL');
    expectError(await cli('dataset', 'set', 'readonly=maybe', 'tank/ds'), 1, 'EINVAL');
    expectError(await cli('dataset', 'get', 'nonsense', 'tank/ds'), 1, 'EINVAL');

    expectError(await cli('dataset', 'create', 'tank/missing/child'), 1, 'ENOENT');
    expectError(await cli('dataset', 'create', 'nopool/ds'), 1, 'ENOENT');
    expectError(await cli('dataset', 'create', 'tank/ds'), 1, 'EEXIST');
    expectError(await cli('snapshot', 'tank/ds@s'), 1, 'EEXIST');
    expectError(await cli('dataset', 'destroy', 'tank/ds@nope'), 1, 'ENOENT');
    expectError(await cli('dataset', 'get', 'all', 'tank/nope'), 1, 'ENOENT');
    expectError(await cli('rollback', 'tank/ds@nope'), 1, 'ENOENT');
    expectError(await cli('dataset', 'list', 'tank/nope'), 1, 'ENOENT');
    expectError(await cli('clone', 'tank/ds@s', 'other/copy'), 1, 'EXDEV');
    expectError(await cli('dataset', 'rename', 'tank/ds', 'other/ds'), 1, 'EXDEV');
    expectError(await cli('dataset', 'destroy', 'tank'), 1, 'EBUSY');

    expect(await listJson(cli, '-t', 'all')).toEqual(before);
  });

  it('rejects bad usage with exit status 2', async () => {
    const { cli } = await workspace();
    expectError(await cli('dataset', 'create', '-o', 'recordsize', 'tank/x'), 2, 'EINVAL');
    expectError(await cli('dataset', 'create', '-o', '=1', 'tank/x'), 2, 'EINVAL');
    expectError(await cli('dataset', 'create', '-o', 'sync=always', '-o', 'sync=disabled', 'tank/x'), 2, 'EINVAL');
    expectError(await cli('dataset', 'set', 'readonly', 'tank'), 2, 'EINVAL');
    expectError(await cli('dataset', 'list', '-t', 'volume'), 2, 'EINVAL');
    expectError(await cli('dataset', 'get', 'used,', 'tank'), 2, 'EINVAL');
    expectError(await cli('dataset', 'create'), 2, 'EINVAL');
    expectError(await cli('snapshot'), 2, 'EINVAL');
    expectError(await cli('hold', 'tag'), 2, 'EINVAL');
    expect((await cli('dataset')).code).toBe(2);
    expect(await names(cli, '-t', 'all')).toEqual(['tank']);
    const help = await cli('dataset', 'list', '--help');
    expect(help.code).toBe(0);
    expect(help.out).toContain('Usage: mirrorpool dataset list');
  });

  it('lists the datasets of every imported pool, and still lists the others when one is busy', async () => {
    const { dir, cli, ok } = await workspace();
    await ok('pool', 'create', '--size', VDEV_SIZE, 'other', join(dir, 'b.img'));
    await ok('dataset', 'create', 'other/x');
    await ok('dataset', 'create', 'tank/y');
    expect(await names(cli)).toEqual(['other', 'other/x', 'tank', 'tank/y']);

    const lock = await VdevLock.acquire([join(dir, 'b.img')]);
    try {
      const r = await cli('dataset', 'list', '--json');
      expectError(r, 1, 'EBUSY');
      expect((JSON.parse(r.out) as DatasetRow[]).map((d) => d.name)).toEqual(['tank', 'tank/y']);
      expectError(await cli('dataset', 'list', 'other/x'), 1, 'EBUSY');
    } finally {
      await lock.release();
    }
    expect(await names(cli, 'other')).toEqual(['other', 'other/x']);
  });
});
