// The read paths added for throughput: whole synced blocks stored back to back come with one disk
// read per span, sequential readers get read-ahead, and none of it may return stale or damaged
// bytes: a write (synced or not) after a span was read ahead is seen, a damaged block inside a
// span is ECKSUM naming its offset (or healed from a mirror copy), and export waits for read-ahead
// in flight. Also: the overlapped level-0 writes of a txg sync place blocks deterministically.
import { describe, expect, it } from 'vitest';
import { type Disk, MirrorpoolError, type SimDisk, bytesEqual } from '../lib/index.js';
import * as dmu from './dmu.js';
import { ObjectType } from './dnode.js';
import { type LeafInput, Pool } from './pool.js';
import { type SimMachine, TEST_TUNING, pattern, simMachine } from './test-support.js';
import { lookupBlock } from './tree.js';
import { type BlockPointer, type ObjectId, objectId } from './types.js';
import { leafLayout } from './vdev.js';

const BLOCK = 4096;
const BLOCKS = 64;
const SPAN = 4 * BLOCK;

/** Counts the reads a pool makes (and their sizes). */
class CountingDisk implements Disk {
  reads: number[] = [];
  constructor(private readonly inner: Disk) {}
  size(): number {
    return this.inner.size();
  }
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.reads.push(length);
    return this.inner.read(offset, length, into);
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.inner.write(offset, data);
  }
  writev(offset: number, parts: readonly Uint8Array[]): Promise<void> {
    return this.inner.writev(offset, parts);
  }
  writeDurable(offset: number, data: Uint8Array): Promise<void> {
    return this.inner.writeDurable(offset, data);
  }
  sync(): Promise<void> {
    return this.inner.sync();
  }
  resize(bytes: number): Promise<void> {
    return this.inner.resize(bytes);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function env(m: SimMachine): { clock: SimMachine['clock']; random: SimMachine['random']; tuning: typeof TEST_TUNING } {
  return { clock: m.clock, random: m.random, tuning: TEST_TUNING };
}

/** A pool (one vdev per entry of `layout`, each a plain disk or a mirror) holding one object of BLOCKS blocks. */
async function poolWithObject(m: SimMachine, layout: readonly number[][]): Promise<{ obj: ObjectId; data: Uint8Array }> {
  const leaves = m.leaves();
  const vdevs = layout.map((children) => children.map((i) => leaves[i] as LeafInput));
  const pool = await Pool.create('tank', vdevs, env(m));
  const tx = await pool.assign();
  const obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: BLOCK, checksumKind: 1 });
  const data = pattern(m.seed, BLOCK * BLOCKS);
  await dmu.write(pool.root, tx, obj, 0, data);
  tx.commit();
  await pool.export();
  return { obj, data };
}

async function reimport(m: SimMachine): Promise<{ pool: Pool; disks: CountingDisk[] }> {
  const disks = m.leaves().map((l) => new CountingDisk(l.disk));
  const pool = await Pool.import(
    disks.map((disk, i) => ({ disk, path: `sim${i}` })),
    env(m),
  );
  return { pool, disks };
}

async function bpOf(pool: Pool, obj: ObjectId, blockId: number): Promise<BlockPointer> {
  return lookupBlock(pool.store, await pool.root.syncedDnode(obj), blockId, { what: 'test' });
}

function leafByte(m: SimMachine, disk: number, offset: number): number {
  return leafLayout((m.disks[disk] as SimDisk).size()).dataStartBytes + offset;
}

describe('span reads and read-ahead', () => {
  it('reads a sequential object with one disk read per span and returns every byte', async () => {
    const m = simMachine(41, 1);
    const { obj, data } = await poolWithObject(m, [[0]]);
    const { pool, disks } = await reimport(m);
    await dmu.read(pool.root, obj, 0, BLOCK); // metadata now cached
    const before = disks[0]!.reads.length;
    for (let at = 0; at < data.length; at += SPAN) {
      const got = await dmu.read(pool.root, obj, at, SPAN);
      expect(bytesEqual(got, data.subarray(at, at + SPAN)), `span at ${at} (seed ${m.seed})`).toBe(true);
    }
    // The test pool's metaslabs are 256 KiB: the one span that straddles a metaslab boundary is
    // not back to back on disk and is read block by block; every other span is one read.
    const reads = disks[0]!.reads.slice(before);
    expect(reads.filter((n) => n === BLOCK).length, JSON.stringify(reads)).toBeLessThanOrEqual(SPAN / BLOCK);
    expect(reads.filter((n) => n === SPAN).length, JSON.stringify(reads)).toBeGreaterThanOrEqual(BLOCKS / 4 - 1);
    await pool.export();
  });

  it('falls back to block reads when blocks are striped over vdevs, with the same bytes', async () => {
    const m = simMachine(42, 2);
    const { obj, data } = await poolWithObject(m, [[0], [1]]);
    const { pool } = await reimport(m);
    for (let at = 0; at < data.length; at += SPAN) {
      expect(bytesEqual(await dmu.read(pool.root, obj, at, SPAN), data.subarray(at, at + SPAN)), `seed ${m.seed}`).toBe(true);
    }
    await pool.export();
  });

  it('never returns a span read ahead before a write, synced or not', async () => {
    const m = simMachine(43, 1);
    const { obj, data } = await poolWithObject(m, [[0]]);
    const { pool } = await reimport(m);
    for (let at = 0; at < 3 * SPAN; at += SPAN) await dmu.read(pool.root, obj, at, SPAN); // spans 3 and 4 now ahead
    const synced = pattern(1, SPAN);
    let tx = await pool.assign();
    await dmu.write(pool.root, tx, obj, 3 * SPAN, synced);
    tx.commit();
    await pool.sync();
    expect(bytesEqual(await dmu.read(pool.root, obj, 3 * SPAN, SPAN), synced), `seed ${m.seed}`).toBe(true);
    const dirty = pattern(2, 100);
    tx = await pool.assign();
    await dmu.write(pool.root, tx, obj, 4 * SPAN + 7, dirty);
    tx.commit();
    const got = await dmu.read(pool.root, obj, 4 * SPAN, SPAN);
    expect(bytesEqual(got.subarray(7, 107), dirty) && bytesEqual(got.subarray(0, 7), data.subarray(4 * SPAN, 4 * SPAN + 7))).toBe(true);
    expect(bytesEqual(await dmu.read(pool.root, obj, 5 * SPAN, SPAN), data.subarray(5 * SPAN, 6 * SPAN))).toBe(true);
    await pool.export();
  });

  it('reports a damaged block inside a span as ECKSUM naming its offset, and reads the rest', async () => {
    const m = simMachine(44, 1);
    const { obj, data } = await poolWithObject(m, [[0]]);
    let { pool } = await reimport(m);
    const bad = 9;
    const dva = (await bpOf(pool, obj, bad)).dvas[0]!;
    await pool.export();
    m.disks[0]!.flipBit(leafByte(m, dva.vdev, dva.offset) + 5, 2);
    ({ pool } = await reimport(m));
    const codes: string[] = [];
    for (let at = 0; at < data.length; at += SPAN) {
      try {
        const got = await dmu.read(pool.root, obj, at, SPAN);
        expect(bytesEqual(got, data.subarray(at, at + SPAN)), `span at ${at} (seed ${m.seed})`).toBe(true);
        codes.push('ok');
      } catch (e) {
        if (!(e instanceof MirrorpoolError)) throw e;
        codes.push(e.code);
        expect(e.details).toMatchObject({ object: obj, offset: bad * BLOCK });
      }
    }
    expect(codes.filter((c) => c !== 'ok')).toEqual(['ECKSUM']);
    expect(codes[Math.floor((bad * BLOCK) / SPAN)]).toBe('ECKSUM');
    await pool.export();
  });

  it('heals a damaged block of a mirrored span from the other side', async () => {
    const m = simMachine(45, 2);
    const { obj, data } = await poolWithObject(m, [[0, 1]]);
    let { pool } = await reimport(m);
    const dva = (await bpOf(pool, obj, 6)).dvas[0]!;
    await pool.export();
    const at = leafByte(m, 0, dva.offset);
    const good = await m.disks[0]!.read(at, 512);
    m.disks[0]!.flipBit(at + 1, 0);
    ({ pool } = await reimport(m));
    for (let off = 0; off < data.length; off += SPAN) {
      expect(bytesEqual(await dmu.read(pool.root, obj, off, SPAN), data.subarray(off, off + SPAN)), `seed ${m.seed}`).toBe(true);
    }
    await pool.export();
    expect(bytesEqual(await m.disks[0]!.read(at, 512), good)).toBe(true);
  });

  it('lets export wait for read-ahead still in flight', async () => {
    const m = simMachine(46, 1);
    const { obj } = await poolWithObject(m, [[0]]);
    const { pool } = await reimport(m);
    await dmu.read(pool.root, obj, 0, SPAN);
    await dmu.read(pool.root, obj, SPAN, SPAN);
    await expect(pool.export()).resolves.toBeUndefined();
  });
});

describe('txg sync with overlapped block writes', () => {
  it('places every block the same way on every run of the same workload', async () => {
    const images: Uint8Array[] = [];
    for (let run = 0; run < 2; run++) {
      const m = simMachine(47, 2, 8 * 1024 * 1024);
      const pool = await Pool.create('tank', m.leaves().map((l) => [l]), env(m));
      const tx = await pool.assign();
      for (let k = 0; k < 3; k++) {
        const obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: 8192, checksumKind: 1 });
        await dmu.write(pool.root, tx, obj, 0, pattern(k + 1, 8192 * 300 + 77));
      }
      tx.commit();
      await pool.sync();
      const tx2 = await pool.assign();
      await dmu.write(pool.root, tx2, objectId(2), 8192 * 150, pattern(9, 8192 * 40));
      tx2.commit();
      await pool.export();
      images.push(await m.disks[0]!.read(0, m.disks[0]!.size()), await m.disks[1]!.read(0, m.disks[1]!.size()));
    }
    expect(bytesEqual(images[0]!, images[2]!) && bytesEqual(images[1]!, images[3]!)).toBe(true);
  });
});
