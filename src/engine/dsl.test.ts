import { describe, expect, it } from 'vitest';
import { hasCode } from '../lib/index.js';
import * as keyed from './keyed.js';
import type { Pool } from './pool.js';
import { ObjectType } from './dnode.js';
import { codeOf, createSimPool, importSimPool, pattern, simMachine, TEST_TUNING } from './test-support.js';
import { lookupBlock } from './tree.js';
import { objectId } from './types.js';
import { leafLayout } from './vdev.js';

async function put(pool: Pool, ds: string, key: string, data: Uint8Array): Promise<void> {
  await pool.dsl.withView(ds, 'write', (v) => keyed.putKey(v, () => pool.assign(), key, data));
}

async function get(pool: Pool, name: string, key: string): Promise<Uint8Array> {
  return pool.dsl.withView(name, 'read', async (v) => {
    const info = await keyed.keyInfo(v, key);
    return keyed.readKey(v, key, 0, info.size);
  });
}

async function keys(pool: Pool, name: string): Promise<string[]> {
  return pool.dsl.withView(name, 'read', async (v) => (await keyed.listKeys(v)).map((k) => k.key));
}


function prop(props: { property: string; value: string }[], name: string): number {
  const found = props.find((p) => p.property === name);
  expect(found, name).toBeDefined();
  return Number(found?.value);
}

/**
 * Allocated bytes once every deferred free has been released, less the MOS's dnode array: that
 * array's size depends on which object numbers the surviving MOS objects happen to hold (a
 * dataset's current deadlist may sit in a later dnode block than the one it replaced), not on
 * any block being leaked. Every other block — data, trees, ZAPs, deadlists, records — counts.
 */
async function settledAllocated(pool: Pool): Promise<number> {
  for (let i = 0; i < 4; i++) await pool.syncTask(async () => undefined);
  return pool.allocator.allocatedBytes() - pool.allocator.deferredBytes() - pool.mos.summary().metaUsedBytes;
}

describe('datasets and snapshots', () => {
  it('keeps a snapshot readable and unchanged while the head moves on', async () => {
    const m = simMachine(1);
    const pool = await createSimPool(m);
    await pool.dsl.create('tank/a');
    await put(pool, 'tank/a', 'k', pattern(1, 300_000));
    await pool.dsl.snapshot('tank/a@s1');
    await put(pool, 'tank/a', 'k', pattern(2, 1000));
    await put(pool, 'tank/a', 'other', pattern(3, 10));
    expect(Buffer.from(await get(pool, 'tank/a@s1', 'k')).equals(Buffer.from(pattern(1, 300_000)))).toBe(true);
    expect(await keys(pool, 'tank/a@s1')).toEqual(['k']);
    expect(await keys(pool, 'tank/a')).toEqual(['k', 'other']);
    await pool.export();
    const again = await importSimPool(m);
    expect(Buffer.from(await get(again, 'tank/a@s1', 'k')).equals(Buffer.from(pattern(1, 300_000)))).toBe(true);
    expect(Buffer.from(await get(again, 'tank/a', 'k')).equals(Buffer.from(pattern(2, 1000)))).toBe(true);
    await again.checkInvariants();
    await again.export();
  });

  it('rolls back to a snapshot, and refuses past newer snapshots without -r', async () => {
    const pool = await createSimPool(simMachine(2));
    await pool.dsl.create('tank/a');
    await put(pool, 'tank/a', 'k', pattern(1, 5000));
    await pool.dsl.snapshot('tank/a@s1');
    await put(pool, 'tank/a', 'k', pattern(2, 5000));
    await pool.dsl.snapshot('tank/a@s2');
    await put(pool, 'tank/a', 'k', pattern(3, 5000));
    expect(await codeOf(pool.dsl.rollback('tank/a@s1'))).toBe('EEXIST');
    await pool.dsl.rollback('tank/a@s2');
    expect(Buffer.from(await get(pool, 'tank/a', 'k')).equals(Buffer.from(pattern(2, 5000)))).toBe(true);
    await pool.dsl.hold('keep', 'tank/a@s2');
    expect(await codeOf(pool.dsl.rollback('tank/a@s1', { recursive: true }))).toBe('EBUSY');
    await pool.dsl.release('keep', 'tank/a@s2');
    await pool.dsl.rollback('tank/a@s1', { recursive: true });
    expect(Buffer.from(await get(pool, 'tank/a', 'k')).equals(Buffer.from(pattern(1, 5000)))).toBe(true);
    expect((await pool.dsl.list({ types: ['snapshot'] })).map((e) => e.name)).toEqual(['tank/a@s1']);
    await pool.export();
  });

  it('lets a clone diverge from its origin, and keeps the origin while the clone lives', async () => {
    const pool = await createSimPool(simMachine(3));
    await pool.dsl.create('tank/a');
    await put(pool, 'tank/a', 'k', pattern(1, 70_000));
    await pool.dsl.snapshot('tank/a@s1');
    await pool.dsl.clone('tank/a@s1', 'tank/c');
    await put(pool, 'tank/c', 'k', pattern(2, 100));
    await put(pool, 'tank/a', 'k', pattern(3, 100));
    expect(Buffer.from(await get(pool, 'tank/c', 'k')).equals(Buffer.from(pattern(2, 100)))).toBe(true);
    expect(Buffer.from(await get(pool, 'tank/a@s1', 'k')).equals(Buffer.from(pattern(1, 70_000)))).toBe(true);
    expect(await codeOf(pool.dsl.destroy('tank/a@s1'))).toBe('EBUSY');
    expect((await pool.dsl.properties('tank/c')).find((p) => p.property === 'origin')?.value).toBe('tank/a@s1');
    await pool.dsl.destroy('tank/c');
    await pool.dsl.destroy('tank/a@s1');
    await pool.export();
  });

  it('keeps bookmarks after their snapshot is gone, and renames datasets and snapshots', async () => {
    const pool = await createSimPool(simMachine(4));
    await pool.dsl.create('tank/a');
    await pool.dsl.create('tank/a/b');
    await pool.dsl.snapshot('tank/a/b@s1');
    await pool.dsl.bookmark('tank/a/b@s1', 'tank/a/b#m1');
    const snapGuid = (await pool.dsl.properties('tank/a/b@s1')).find((p) => p.property === 'guid')?.value;
    await pool.dsl.destroy('tank/a/b@s1');
    expect(pool.dsl.bookmarkOf('tank/a/b#m1').guid.toString()).toBe(snapGuid);
    await pool.dsl.create('tank/x');
    await pool.dsl.rename('tank/a', 'tank/x/y');
    await pool.dsl.snapshot('tank/x/y/b@s2');
    await pool.dsl.rename('tank/x/y/b@s2', 'tank/x/y/b@s3');
    expect(await codeOf(pool.dsl.rename('tank/x', 'tank/x/y/b/z'))).toBe('EINVAL');
    const names = (await pool.dsl.list({ types: ['filesystem', 'snapshot', 'bookmark'] })).map((e) => e.name);
    expect(names).toEqual(['tank', 'tank/x', 'tank/x/y', 'tank/x/y/b', 'tank/x/y/b@s3', 'tank/x/y/b#m1']);
    await pool.export();
  });

  it('keeps no ZAP for an empty map: the first entry makes one and the last one frees it', async () => {
    const m = simMachine(12);
    let pool = await createSimPool(m);
    /** ZAP objects in the MOS: the catalog's maps and the pool directory. */
    const zaps = async (): Promise<number> => {
      let n = 0;
      for (let obj = 1; obj < pool.mos.nextObject(); obj++) {
        const header = await pool.mos.header(objectId(obj));
        if (header.type === ObjectType.zap) n++;
      }
      return n;
    };
    const before = await zaps();
    const steps: [string, () => Promise<unknown>, number][] = [
      ['an empty dataset: the first child of tank', () => pool.dsl.create('tank/a'), 1],
      ['a second empty dataset', () => pool.dsl.create('tank/b'), 1],
      ['a property', () => pool.dsl.setProperty('tank/a', 'recordsize', '16K'), 2],
      ['a dataset made with a property', () => pool.dsl.create('tank/a/c', new Map([['readonly', 'on']])), 4],
      ['a snapshot', () => pool.dsl.snapshot('tank/b@s1'), 5],
      ['a snapshot renamed (the map never empties)', () => pool.dsl.rename('tank/b@s1', 'tank/b@s2'), 5],
      ['a bookmark', () => pool.dsl.bookmark('tank/b@s2', 'tank/b#m'), 6],
      ['a hold', () => pool.dsl.hold('t', 'tank/b@s2'), 7],
      ['the import', async () => ((await pool.export(), (pool = await importSimPool(m)))), 7],
      ['what the import loaded', async () => {
        expect((await pool.dsl.properties('tank/a/c')).find((p) => p.property === 'recordsize')).toMatchObject({ value: '16K', source: 'inherited from tank/a' });
        expect(pool.dsl.holds('tank/b@s2').has('t')).toBe(true);
        expect(pool.dsl.bookmarkOf('tank/b#m').txg).toBeGreaterThan(0);
      }, 7],
      ['the hold released', () => pool.dsl.release('t', 'tank/b@s2'), 6],
      ['the snapshot destroyed', () => pool.dsl.destroy('tank/b@s2'), 5],
      ['the bookmark destroyed', () => pool.dsl.destroy('tank/b#m'), 4],
      ['a dataset renamed, the only child of its parent', () => pool.dsl.rename('tank/a/c', 'tank/a/d'), 4],
      ['a dataset moved to another parent', () => pool.dsl.rename('tank/a/d', 'tank/b/d'), 4],
      ['the moved dataset destroyed', () => pool.dsl.destroy('tank/b/d'), 2],
      ['both datasets destroyed', async () => (await pool.dsl.destroy('tank/a'), await pool.dsl.destroy('tank/b')), 0],
    ];
    for (const [what, step, extra] of steps) {
      await step();
      expect(await zaps(), what).toBe(before + extra);
    }
    await pool.export();
  });

  it('inherits properties down the tree and applies recordsize and readonly', async () => {
    const pool = await createSimPool(simMachine(5));
    await pool.dsl.create('tank/a', new Map([['recordsize', '16K']]));
    await pool.dsl.create('tank/a/b');
    const props = await pool.dsl.properties('tank/a/b');
    expect(props.find((p) => p.property === 'recordsize')).toMatchObject({ value: '16K', source: 'inherited from tank/a' });
    await put(pool, 'tank/a/b', 'k', pattern(1, 100_000));
    await pool.dsl.setProperty('tank/a', 'readonly', 'on');
    expect(await codeOf(put(pool, 'tank/a/b', 'k', pattern(2, 10)))).toBe('EROFS');
    await pool.dsl.setProperty('tank/a/b', 'readonly', 'off');
    await put(pool, 'tank/a/b', 'k', pattern(2, 10));
    await pool.export();
  });

  it('accounts used, referenced, written and usedbysnapshots', async () => {
    const pool = await createSimPool(simMachine(6));
    await pool.dsl.create('tank/a', new Map([['recordsize', '4K']]));
    await put(pool, 'tank/a', 'k', pattern(1, 64 * 1024));
    await pool.sync();
    const before = await pool.dsl.properties('tank/a');
    expect(prop(before, 'referenced')).toBeGreaterThanOrEqual(64 * 1024);
    expect(prop(before, 'usedbysnapshots')).toBe(0);
    await pool.dsl.snapshot('tank/a@s1');
    const snapped = await pool.dsl.properties('tank/a');
    expect(prop(snapped, 'written')).toBe(0);
    // Blocks shared with a snapshot stay charged to the dataset until it kills them.
    expect(prop(snapped, 'usedbydataset')).toBe(prop(snapped, 'referenced'));
    expect(prop(snapped, 'used')).toBe(prop(before, 'used'));
    await pool.dsl.clone('tank/a@s1', 'tank/c');
    const clone = await pool.dsl.properties('tank/c');
    expect(prop(clone, 'referenced')).toBe(prop(snapped, 'referenced'));
    expect(prop(clone, 'used')).toBe(0);
    await pool.dsl.destroy('tank/c');
    await pool.dsl.withView('tank/a', 'write', (v) => keyed.writeKey(v, () => pool.assign(), 'k', 0, pattern(2, 16 * 1024)));
    await pool.sync();
    const after = await pool.dsl.properties('tank/a');
    expect(prop(after, 'usedbysnapshots')).toBeGreaterThanOrEqual(16 * 1024);
    expect(prop(after, 'written')).toBeGreaterThanOrEqual(16 * 1024);
    expect(prop(await pool.dsl.properties('tank/a@s1'), 'used')).toBe(prop(after, 'usedbysnapshots'));
    await pool.dsl.destroy('tank/a@s1');
    expect(prop(await pool.dsl.properties('tank/a'), 'usedbysnapshots')).toBe(0);
    await pool.export();
  });

  it('returns allocated space exactly to the baseline after destroying every snapshot, clone and key', async () => {
    const pool = await createSimPool(simMachine(7));
    await pool.dsl.create('tank/a');
    const baseline = await settledAllocated(pool);
    for (let i = 0; i < 6; i++) await put(pool, 'tank/a', `k${i}`, pattern(i, 20_000 * (i + 1)));
    await pool.dsl.snapshot('tank/a@s1');
    await put(pool, 'tank/a', 'k1', pattern(9, 5000));
    await pool.dsl.withView('tank/a', 'write', (v) => keyed.removeKey(v, () => pool.assign(), 'k2'));
    await pool.dsl.snapshot('tank/a@s2');
    await pool.dsl.clone('tank/a@s2', 'tank/c');
    await put(pool, 'tank/c', 'new', pattern(10, 40_000));
    await pool.dsl.snapshot('tank/c@c1');
    await pool.dsl.bookmark('tank/a@s1', 'tank/a#b1');
    await pool.dsl.hold('t', 'tank/a@s1');
    await pool.dsl.release('t', 'tank/a@s1');
    await put(pool, 'tank/a', 'k3', pattern(11, 1000));
    await pool.dsl.destroy('tank/c', { recursive: true });
    await pool.dsl.destroy('tank/a@s1');
    await pool.dsl.destroy('tank/a@s2');
    await pool.dsl.destroy('tank/a#b1');
    for (const k of await keys(pool, 'tank/a')) await pool.dsl.withView('tank/a', 'write', (v) => keyed.removeKey(v, () => pool.assign(), k));
    expect(await settledAllocated(pool)).toBe(baseline);
    await pool.export();
  });
});

describe('bad input changes nothing', () => {
  it('answers invalid names, missing parents, busy snapshots and long keys with coded errors', async () => {
    const pool = await createSimPool(simMachine(8));
    await pool.dsl.create('tank/a');
    await put(pool, 'tank/a', 'k', pattern(1, 100));
    await pool.dsl.snapshot('tank/a@s1');
    await pool.dsl.hold('h', 'tank/a@s1');
    await pool.sync();
    const txgBefore = pool.uberblock.txg;
    const cases: [string, () => Promise<unknown>][] = [
      ['EINVAL', () => pool.dsl.create('tank/bad name')],
      ['EINVAL', () => pool.dsl.create('tank//a')],
      ['EINVAL', () => pool.dsl.create(`tank/${'x'.repeat(300)}`)],
      ['EINVAL', () => pool.dsl.create('tank/a@s')],
      ['EINVAL', () => pool.dsl.create('tank/b', new Map([['recordsize', '3000']]))],
      ['EINVAL', () => pool.dsl.create('tank/b', new Map([['colour', 'red']]))],
      ['ENOENT', () => pool.dsl.create('tank/missing/child')],
      ['ENOENT', () => pool.dsl.create('other/a')],
      ['EEXIST', () => pool.dsl.create('tank/a')],
      ['EEXIST', () => pool.dsl.snapshot('tank/a@s1')],
      ['EBUSY', () => pool.dsl.destroy('tank/a@s1')],
      ['EBUSY', () => pool.dsl.destroy('tank/a')],
      ['EBUSY', () => pool.dsl.destroy('tank/a', { recursive: true })],
      ['EBUSY', () => pool.dsl.destroy('tank')],
      ['ENOENT', () => pool.dsl.destroy('tank/a@nope')],
      ['ENOENT', () => pool.dsl.destroy('tank/a#nope')],
      ['ENOENT', () => pool.dsl.release('nope', 'tank/a@s1')],
      ['EEXIST', () => pool.dsl.hold('h', 'tank/a@s1')],
      ['EINVAL', () => pool.dsl.bookmark('tank/a@s1', 'tank/b#m')],
      ['EROFS', () => put(pool, 'tank/a@s1', 'k', pattern(2, 10))],
      ['EINVAL', () => put(pool, 'tank/a', 'x'.repeat(1025), pattern(2, 10))],
      ['EINVAL', () => put(pool, 'tank/a', '', pattern(2, 10))],
      ['ENOENT', () => get(pool, 'tank/a', 'missing')],
      ['EINVAL', () => pool.dsl.snapshot('tank/a@s2', { guid: 0n })],
      ['EINVAL', () => pool.dsl.rename('tank/a', 'tank/a@x')],
    ];
    for (const [code, run] of cases) expect(await codeOf(run()), `${code} case ${cases.findIndex((c) => c[1] === run)}`).toBe(code);
    await pool.sync();
    expect(pool.uberblock.txg).toBe(txgBefore);
    expect((await pool.dsl.list({ types: ['filesystem', 'snapshot'] })).map((e) => e.name)).toEqual(['tank', 'tank/a', 'tank/a@s1']);
    expect(hasCode(await pool.dsl.destroy('tank/a@s1').catch((e: unknown) => e), 'EBUSY')).toBe(true);
    await pool.export();
  });
});

describe('for the cluster layer', () => {
  it('takes a snapshot with a given guid and records the applied TID in the txg of its data', async () => {
    const m = simMachine(9);
    const pool = await createSimPool(m);
    await pool.dsl.create('tank/a');
    await pool.dsl.withView('tank/a', 'write', async (v) => {
      const tx = await pool.assign();
      try {
        v.setAppliedTid(tx, 42n);
      } finally {
        tx.commit();
      }
      await keyed.putKey(v, () => pool.assign(), 'k', pattern(1, 10), { object: 77 });
    });
    await pool.dsl.snapshot('tank/a@s1', { guid: 0x1234n });
    await pool.export();
    const again = await importSimPool(m);
    const props = await again.dsl.properties('tank/a@s1');
    expect(props.find((p) => p.property === 'guid')?.value).toBe(String(0x1234n));
    expect((await again.dsl.properties('tank/a')).find((p) => p.property === 'appliedtid')?.value).toBe('42');
    const info = await again.dsl.withView('tank/a@s1', 'read', (v) => keyed.keyInfo(v, 'k'));
    expect(info.object).toBe(77);
    await again.export();
  });

  it('gives the same object numbers and key directory on two pools for the same operations', async () => {
    const run = async (seed: number): Promise<string> => {
      const pool = await createSimPool(simMachine(seed));
      await pool.dsl.create('tank/a');
      for (let i = 0; i < 40; i++) await put(pool, 'tank/a', `key-${(i * 7) % 23}`, pattern(i, 100 + i));
      await pool.dsl.withView('tank/a', 'write', (v) => keyed.removeKey(v, () => pool.assign(), 'key-3'));
      const out = await pool.dsl.withView('tank/a', 'read', (v) => keyed.listKeys(v));
      await pool.export();
      return JSON.stringify(out.map((k) => [k.key, k.object, k.size]));
    };
    expect(await run(10)).toBe(await run(11));
  });
});

describe('faults in the middle of a change', () => {
  it('suspends the pool rather than commit a snapshot destroy that could not read its deadlists', async () => {
    const m = simMachine(12);
    let pool = await createSimPool(m);
    await pool.dsl.create('tank/a', new Map([['recordsize', '4K']]));
    await put(pool, 'tank/a', 'k', pattern(1, 64 * 1024));
    await pool.dsl.snapshot('tank/a@s1');
    await put(pool, 'tank/a', 'k', pattern(2, 64 * 1024));
    await pool.export();
    pool = await importSimPool(m);
    // Damage every copy of every deadlist block: the destroy cannot read what it must free.
    let damaged = 0;
    for (let obj = 1; obj < pool.mos.nextObject(); obj++) {
      const d = await pool.mos.syncedDnode(objectId(obj));
      if (d.type !== ObjectType.deadlist || d.size === 0) continue;
      const bp = await lookupBlock(pool.store, d, 0, { what: 'test' });
      for (const dva of bp.dvas) {
        const disk = m.disks[dva.vdev];
        if (disk === undefined) throw new Error('no disk');
        disk.flipBit(leafLayout(disk.size()).dataStartBytes + dva.offset + 64, 1);
        damaged++;
      }
    }
    expect(damaged).toBeGreaterThanOrEqual(2);
    expect(await codeOf(pool.dsl.destroy('tank/a@s1'))).toBe('ECKSUM');
    expect(pool.status().state).toBe('SUSPENDED');
    await pool.abandon();
    const again = await importSimPool(m, { ...TEST_TUNING, checkEveryTxg: false });
    expect(again.dsl.holds('tank/a@s1').size).toBe(0); // the snapshot is still there
    expect(Buffer.from(await get(again, 'tank/a@s1', 'k')).equals(Buffer.from(pattern(1, 64 * 1024)))).toBe(true);
    await again.abandon();
  });
});
