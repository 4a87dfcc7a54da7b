// Damage on disk, at the pool level: a flipped bit in a data block (one copy) is ECKSUM naming
// the object and offset; in a metadata block (two copies) it is healed from the good copy and
// rewritten; a damaged newest uberblock falls back to the txg before; foreign, truncated and
// incomplete vdev sets are refused with clear codes; a destroy that cannot read what it would free
// fails with ECKSUM and leaves the pool running, so a damaged leftover of a cut receive does not
// stop an import.
import { describe, expect, it } from 'vitest';
import { MirrorpoolError, Prng, SimDisk } from '../lib/index.js';
import * as dmu from './dmu.js';
import { DNODES_PER_BLOCK, ObjectType } from './dnode.js';
import * as keyed from './keyed.js';
import { decodeObjsetPhys } from './objset.js';
import { Pool } from './pool.js';
import { type SimMachine, createSimPool, importSimPool, leafByte, pattern, simMachine, TEST_TUNING } from './test-support.js';
import { lookupBlock } from './tree.js';
import { type BlockPointer, type ObjectId, UBERBLOCK_RING_SLOTS, layout } from './types.js';
import { leafLayout } from './vdev.js';

async function poolWithObject(seed: number): Promise<{ m: SimMachine; obj: ObjectId; data: Uint8Array }> {
  const m = simMachine(seed);
  const pool = await createSimPool(m);
  const tx = await pool.assign();
  const obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: 4096, checksumKind: 1 });
  const data = pattern(seed, 4096 * 300);
  await dmu.write(pool.root, tx, obj, 0, data);
  tx.commit();
  await pool.export();
  return { m, obj, data };
}

async function codeOf(p: Promise<unknown>): Promise<{ code: string; details: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof MirrorpoolError) return { code: e.code, details: { ...e.details } };
    throw e;
  }
  return { code: 'ok', details: {} };
}

describe('pool corruption', () => {
  it('reports a flipped bit in a data block as ECKSUM naming the object and offset', async () => {
    const { m, obj } = await poolWithObject(21);
    let pool = await importSimPool(m);
    const d = await pool.root.syncedDnode(obj);
    const bp = await lookupBlock(pool.store, d, 7, { what: 'test' });
    expect(bp.dvas).toHaveLength(1);
    await pool.export();
    const { disk, at } = leafByte(m, bp, 0);
    disk.flipBit(at + 100, 3);
    pool = await importSimPool(m);
    expect(await dmu.read(pool.root, obj, 0, 4096 * 7)).toHaveLength(4096 * 7);
    const got = await codeOf(dmu.read(pool.root, obj, 4096 * 7, 10));
    expect(got.code).toBe('ECKSUM');
    expect(got.details).toMatchObject({ object: obj, offset: 4096 * 7 });
    await pool.export();
  });

  it('heals a damaged metadata block from its other copy and rewrites it', async () => {
    const { m, obj, data } = await poolWithObject(22);
    let pool = await importSimPool(m);
    const meta = pool.root.summary();
    expect(meta.dnodeBlocks).toBeGreaterThan(0);
    const dnodeBlock = await lookupBlock(pool.store, await metaRoot(pool), Math.floor(obj / DNODES_PER_BLOCK), { what: 'test' });
    expect(dnodeBlock.dvas.length).toBe(2);
    await pool.export();
    const bad = leafByte(m, dnodeBlock, 0);
    const other = leafByte(m, dnodeBlock, 1);
    const good = await other.disk.read(other.at, dnodeBlock.psize);
    bad.disk.flipBit(bad.at + 17, 0);
    pool = await importSimPool(m);
    expect(Buffer.from(await dmu.read(pool.root, obj, 0, data.length)).equals(Buffer.from(data))).toBe(true);
    expect(pool.blockIo.counters.healedBlocks).toBeGreaterThan(0);
    expect(Buffer.from(await bad.disk.read(bad.at, dnodeBlock.psize)).equals(Buffer.from(good))).toBe(true);
    await pool.export();
  });

  it('drops what a cut receive left at import, and leaves it in place when it is damaged (a destroy that cannot read it fails alone)', async () => {
    const m = simMachine(31);
    let pool = await createSimPool(m);
    const roots: BlockPointer[] = [];
    for (const target of ['tank/a', 'tank/b']) {
      const temp = await pool.dsl.receiveBegin(target, null);
      await pool.dsl.withView(temp, 'write', (v) => keyed.putKey(v, () => pool.assign(), 'k', pattern(5, 200_000)));
      await pool.sync();
      roots.push(await pool.dsl.withView(temp, 'read', (v) => Promise.resolve(v.os.rootPointer())));
    }
    await pool.export();
    // Both copies of tank/b%recv's object set block: destroying it cannot read its tree.
    const damaged = roots[1]!;
    expect(damaged.dvas).toHaveLength(2);
    for (const copy of [0, 1]) {
      const { disk, at } = leafByte(m, damaged, copy);
      disk.flipBit(at + 40, 2);
    }
    // The invariant check after every txg walks every dataset, and this one cannot be walked.
    const tuning = { ...TEST_TUNING, checkEveryTxg: false };
    pool = await importSimPool(m, tuning);
    const state = (name: string): Promise<string> => codeOf(pool.dsl.withView(name, 'read', () => Promise.resolve())).then((r) => r.code);
    expect(await state('tank/a%recv')).toBe('ENOENT');
    expect(await state('tank/b%recv')).toBe('ECKSUM');
    // A destroy that cannot list what it frees fails with the read's code; the pool goes on.
    expect((await codeOf(pool.dsl.destroy('tank/b%recv'))).code).toBe('ECKSUM');
    await pool.dsl.create('tank/c');
    await pool.dsl.withView('tank/c', 'write', (v) => keyed.putKey(v, () => pool.assign(), 'k', pattern(6, 50_000)));
    await pool.export();
    pool = await importSimPool(m, tuning);
    expect(await state('tank/c')).toBe('ok');
    expect(await state('tank/b%recv')).toBe('ECKSUM');
    await pool.export();
  });

  it('falls back to the previous txg when the newest uberblock is damaged on every label', async () => {
    const m = simMachine(23);
    let pool = await createSimPool(m);
    let tx = await pool.assign();
    const obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: 4096, checksumKind: 1 });
    await dmu.write(pool.root, tx, obj, 0, pattern(1, 5000));
    tx.commit();
    const before = await pool.sync();
    tx = await pool.assign();
    await dmu.write(pool.root, tx, obj, 0, pattern(2, 9000));
    tx.commit();
    const newest = await pool.sync();
    expect(pool.uberblock.txg).toBe(newest);
    await pool.export();
    for (const disk of m.disks) {
      for (const label of leafLayout(disk.size()).labelOffsets) {
        if (label === undefined) continue;
        const slot = label + layout.labelConfigBytes + (newest % UBERBLOCK_RING_SLOTS) * layout.uberblockBytes;
        disk.flipBit(slot + 20, 1);
      }
    }
    pool = await importSimPool(m);
    expect(pool.uberblock.txg).toBe(before);
    expect(Buffer.from(await dmu.read(pool.root, obj, 0, 10_000)).equals(Buffer.from(pattern(1, 5000)))).toBe(true);
    await pool.checkInvariants();
    await pool.export();
  });

  it('refuses a non-pool disk, a truncated vdev and a missing member with clear codes', async () => {
    const env = { clock: simMachine(1).clock, random: new Prng(1), tuning: TEST_TUNING };
    const foreign = new SimDisk({ sizeBytes: 8 * 1024 * 1024, random: new Prng(2) });
    await foreign.write(0, pattern(3, 1024 * 1024));
    expect((await codeOf(Pool.import([{ disk: foreign, path: 'foreign' }], env))).code).toBe('EPROTO');

    const { m } = await poolWithObject(24);
    const missing = m.leaves().slice(0, 1);
    expect((await codeOf(Pool.import(missing, { ...env, clock: m.clock }))).code).toBe('ENOENT');

    const first = m.disks[0];
    if (first === undefined) throw new Error('no disk');
    await first.resize(first.size() - 1024 * 1024);
    await first.sync();
    expect((await codeOf(importSimPool(m))).code).toBe('EPROTO');
  });
});

async function metaRoot(pool: Pool): Promise<{ bp: BlockPointer; levels: number }> {
  const phys = decodeObjsetPhys(await pool.store.read(pool.root.rootPointer(), { what: 'test' }), { what: 'test' });
  return { bp: phys.meta.bp, levels: phys.meta.levels };
}
