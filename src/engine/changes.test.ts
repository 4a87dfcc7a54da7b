import { describe, expect, it } from 'vitest';
import { type ChangeEvent, changesSince } from './changes.js';
import type { Pool } from './pool.js';
import { DNODES_PER_BLOCK } from './dnode.js';
import { decodeObjsetPhys } from './objset-phys.js';
import { type SimMachine, TEST_TUNING, createSimPool, importSimPool, leafByte, pattern, putKey, simMachine } from './test-support.js';
import { lookupBlock } from './tree.js';
import * as keyed from './keyed.js';

async function events(pool: Pool, snap: string, fromTxg: number, fromSnap?: string): Promise<ChangeEvent[]> {
  const from = fromSnap === undefined ? undefined : await pool.dsl.withView(fromSnap, 'read', (v) => Promise.resolve(v.os.rootPointer()));
  return pool.dsl.withView(snap, 'read', async (v) => {
    const out: ChangeEvent[] = [];
    for await (const e of changesSince(pool.store, v.os.rootPointer(), fromTxg, from === undefined ? {} : { from })) out.push(e);
    return out;
  });
}

/** A pool whose tank/a (4 KiB records) holds keys k0..k7 of 20 000 bytes, snapshotted as tank/a@1. */
async function eightKeysSnapshotted(seed: number): Promise<{ m: SimMachine; pool: Pool }> {
  const m = simMachine(seed);
  const pool = await createSimPool(m);
  await pool.dsl.create('tank/a', new Map([['recordsize', '4K']]));
  for (let i = 0; i < 8; i++) await putKey(pool, 'tank/a', `k${i}`, pattern(i, 20_000));
  await pool.dsl.snapshot('tank/a@1');
  return { m, pool };
}

const txgOf = async (pool: Pool, name: string): Promise<number> => (await pool.dsl.list({ types: ['snapshot'] })).find((e) => e.name === name)?.createTxg ?? -1;

describe('changes since a txg', () => {
  it('visits everything from txg 0 and only what changed after a snapshot, holes included', async () => {
    const m = simMachine(21);
    const pool = await createSimPool(m);
    await pool.dsl.create('tank/a', new Map([['recordsize', '4K']]));
    for (let i = 0; i < 20; i++) await putKey(pool, 'tank/a', `k${i}`, pattern(i, 64 * 1024));
    await pool.dsl.snapshot('tank/a@1');
    const full = await events(pool, 'tank/a@1', 0);
    const dataBlocks = full.filter((e) => e.kind === 'data').length;
    expect(dataBlocks).toBeGreaterThanOrEqual(20 * 16);
    expect(full.filter((e) => e.kind === 'free')).toEqual([]);
    // One block rewritten, one range punched, one key removed.
    await pool.dsl.withView('tank/a', 'write', async (v) => {
      await keyed.writeKey(v, () => pool.assign(), 'k3', 8192, pattern(99, 100));
      await keyed.truncateKey(v, () => pool.assign(), 'k4', 10_000);
      await keyed.removeKey(v, () => pool.assign(), 'k5');
    });
    await pool.dsl.snapshot('tank/a@2');
    const inc = await events(pool, 'tank/a@2', await txgOf(pool, 'tank/a@1'));
    const data = inc.filter((e) => e.kind === 'data');
    // k3's rewritten block, k4's last partial block, the key directory's changed blocks.
    expect(data.length).toBeLessThan(12);
    expect(data.some((e) => e.kind === 'data' && e.blockId === 2)).toBe(true);
    const objects = inc.filter((e) => e.kind === 'object').length;
    expect(objects).toBeLessThan(full.filter((e) => e.kind === 'object').length + 1);
    const freed = inc.filter((e) => e.kind === 'freeObjects');
    expect(freed.length).toBeGreaterThan(0);
    await pool.export();
  });

  it('reports an unchanged neighbour as an object only and a deep tree by its changed blocks alone', async () => {
    const m = simMachine(22);
    const pool = await createSimPool(m);
    await pool.dsl.create('tank/a', new Map([['recordsize', '4K']]));
    // 1 MiB of 4 KiB blocks: 256 blocks, two levels of indirect blocks.
    for (let i = 0; i < 3; i++) await putKey(pool, 'tank/a', `k${i}`, pattern(i, 1024 * 1024));
    await pool.dsl.snapshot('tank/a@1');
    const full = await events(pool, 'tank/a@1', 0);
    const objectOf = (key: number): number => {
      const objects = full.filter((e) => e.kind === 'object').map((e) => (e.kind === 'object' ? e.object : -1));
      return objects[objects.length - 3 + key] ?? -1;
    };
    expect(full.filter((e) => e.kind === 'data' && e.object === objectOf(1)).length).toBe(256);
    await pool.dsl.withView('tank/a', 'write', async (v) => {
      await keyed.writeKey(v, () => pool.assign(), 'k1', 200 * 4096, pattern(98, 4096));
    });
    await pool.dsl.snapshot('tank/a@2');
    const inc = await events(pool, 'tank/a@2', await txgOf(pool, 'tank/a@1'));
    const of = (object: number): ChangeEvent[] => inc.filter((e) => 'object' in e && e.object === object);
    expect(of(objectOf(1)).map((e) => e.kind)).toEqual(['object', 'data']);
    expect(of(objectOf(1)).find((e) => e.kind === 'data')).toMatchObject({ blockId: 200 });
    // The neighbours share k1's dnode block, so they are sent again, without any of their blocks.
    expect(of(objectOf(0)).map((e) => e.kind)).toEqual(['object']);
    expect(of(objectOf(2)).map((e) => e.kind)).toEqual(['object']);
    await pool.export();
  });

  it('with the from object set, leaves out the objects of a changed dnode block that did not change', async () => {
    const { pool } = await eightKeysSnapshotted(23);
    const objects = await pool.dsl.withView('tank/a', 'read', async (v) => new Map((await keyed.listKeys(v)).map((k) => [k.key, k.object as number])));
    // One object's data, one's size alone (a longer hole at its end), one removed; the rest as they were.
    await pool.dsl.withView('tank/a', 'write', async (v) => {
      await keyed.writeKey(v, () => pool.assign(), 'k1', 4096, pattern(90, 100));
      await keyed.truncateKey(v, () => pool.assign(), 'k2', 30_000);
      await keyed.removeKey(v, () => pool.assign(), 'k3');
    });
    await pool.dsl.snapshot('tank/a@2');
    const fromTxg = await txgOf(pool, 'tank/a@1');
    const reported = (list: ChangeEvent[]): Set<number> => new Set(list.flatMap((e) => (e.kind === 'object' ? [e.object] : [])));
    const key = (k: string): number => objects.get(k) ?? -1;
    const all = await events(pool, 'tank/a@2', fromTxg);
    const changed = await events(pool, 'tank/a@2', fromTxg, 'tank/a@1');
    // Without the from object set every allocated dnode of the changed block is reported.
    for (const k of ['k0', 'k1', 'k2', 'k4', 'k5', 'k6', 'k7']) expect(reported(all).has(key(k))).toBe(true);
    for (const k of ['k1', 'k2']) expect(reported(changed).has(key(k))).toBe(true);
    for (const k of ['k0', 'k3', 'k4', 'k5', 'k6', 'k7']) expect(reported(changed).has(key(k))).toBe(false);
    // The removed object is freed; slots free on both sides are not mentioned.
    const freed = changed.flatMap((e) => (e.kind === 'freeObjects' ? [[e.first, e.first + e.count]] : []));
    expect(freed.some(([a = 0, b = 0]) => a <= key('k3') && key('k3') < b)).toBe(true);
    expect(freed.some(([a = 0, b = 0]) => a <= key('k7') + 1 && key('k7') + 1 < b)).toBe(false);
    // The data events are the same either way.
    const data = (list: ChangeEvent[]): ChangeEvent[] => list.filter((e) => e.kind === 'data' || e.kind === 'free');
    expect(data(changed)).toEqual(data(all));
    await pool.export();
  });

  it('reports every object of the block when the from object set\'s dnode block cannot be read', async () => {
    // The from object set only shortens the walk: damage there must not fail a send.
    const made = await eightKeysSnapshotted(24);
    const m = made.m;
    let pool = made.pool;
    await pool.dsl.withView('tank/a', 'write', (v) => keyed.writeKey(v, () => pool.assign(), 'k1', 4096, pattern(90, 100)));
    await pool.dsl.snapshot('tank/a@2');
    const fromTxg = await txgOf(pool, 'tank/a@1');
    const all = await events(pool, 'tank/a@2', fromTxg);
    expect(all.filter((e) => e.kind === 'object').length).toBeGreaterThan(2);
    // Every copy of the from snapshot's first dnode block gets a flipped bit.
    const block = await pool.dsl.withView('tank/a@1', 'read', async (v) => {
      const meta = decodeObjsetPhys(await pool.store.read(v.os.rootPointer(), { what: 'test' }), { what: 'test' }).meta;
      return lookupBlock(pool.store, meta, 0, { what: 'test', object: 0 });
    });
    await pool.export();
    for (let copy = 0; copy < block.dvas.length; copy++) {
      const { disk, at } = leafByte(m, block, copy);
      disk.flipBit(at + 40, 2);
    }
    // (Without the check after each txg: it would find the damage and suspend the pool.)
    pool = await importSimPool(m, { ...TEST_TUNING, checkEveryTxg: false });
    expect(all.some((e) => e.kind === 'object' && e.object < DNODES_PER_BLOCK)).toBe(true);
    expect(await events(pool, 'tank/a@2', fromTxg, 'tank/a@1')).toEqual(all);
    await pool.export();
  });
});
