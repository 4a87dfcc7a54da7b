import { describe, expect, it } from 'vitest';
import { AssertionFailure, Prng, SimDisk, hasCode } from '../lib/index.js';
import {
  LAST_METASLAB_BYTES_MIN, MetaslabGroup, TXG_DEFER, chooseMetaslabShift, metaslabSlices,
} from './metaslab.js';
import { type Range, RangeTree } from './range-tree.js';
import { SpaceMap } from './space-map.js';
import { TestVdevIo } from './test-vdev-io.js';
import { txg } from './types.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const SMALL_LOG = { logBytes: 4 * 512 };

function makeVdev(seed: number, sizeBytes: number): { io: TestVdevIo; disk: SimDisk } {
  const disk = new SimDisk({ sizeBytes, random: new Prng(seed) });
  return { io: new TestVdevIo([disk]), disk };
}

class CrashMarker extends Error {}

interface Block {
  offset: number;
  size: number;
  birth: number;
}
interface Freed {
  offset: number;
  size: number;
  txg: number;
}

/** The model: live blocks and synced frees, as the pool would know them. */
class Model {
  live = new Map<number, Block>();
  freed: Freed[] = [];
  clone(): Model {
    const m = new Model();
    m.live = new Map(this.live);
    m.freed = [...this.freed];
    return m;
  }
  allocated(): Range[] {
    const tree = new RangeTree(512);
    for (const b of this.live.values()) tree.add(b.offset, b.size);
    return tree.ranges();
  }
  deferred(doneTxg: number): Map<number, Range[]> {
    const out = new Map<number, RangeTree>();
    for (const f of this.freed) {
      if (f.txg <= doneTxg - TXG_DEFER) continue;
      let tree = out.get(f.txg);
      if (tree === undefined) out.set(f.txg, (tree = new RangeTree(512)));
      tree.add(f.offset, f.size);
    }
    return new Map([...out].sort((a, b) => a[0] - b[0]).map(([t, tree]) => [t, tree.ranges()]));
  }
  /** Ranges an allocation in `t` must not touch. */
  forbidden(t: number, pendingFrees: readonly Freed[]): RangeTree {
    const tree = new RangeTree(512);
    for (const b of this.live.values()) tree.add(b.offset, b.size);
    for (const f of [...this.freed, ...pendingFrees]) if (f.txg >= t - TXG_DEFER) tree.add(f.offset, f.size);
    return tree;
  }
}

function expectGroupMatches(group: MetaslabGroup, model: Model, doneTxg: number, context: string): void {
  group.checkInvariants();
  const snap = group.snapshot();
  expect(snap.allocated, context).toEqual(model.allocated());
  const deferred = new Map([...snap.deferred].sort((a, b) => a[0] - b[0]));
  expect(deferred, context).toEqual(model.deferred(doneTxg));
}

describe('metaslab sizing', () => {
  it('chooses between 50 and 200 metaslabs of 256 KiB to 1 GiB', () => {
    for (const asize of [20 * MiB, 100 * MiB, 3 * GiB, 37 * GiB + 512, 190 * GiB]) {
      const shift = chooseMetaslabShift(asize);
      const count = metaslabSlices(asize, shift).length;
      expect(count, `asize ${asize}`).toBeGreaterThanOrEqual(50);
      expect(count, `asize ${asize}`).toBeLessThanOrEqual(200);
    }
    expect(chooseMetaslabShift(1 * MiB)).toBe(18);
    expect(chooseMetaslabShift(64 * 1024 * GiB)).toBe(30);
  });

  it('uses a trailing partial slice only when it is large enough', () => {
    const full = 2 ** 18;
    expect(metaslabSlices(4 * full + LAST_METASLAB_BYTES_MIN, 18).at(-1)).toEqual({ start: 4 * full, size: LAST_METASLAB_BYTES_MIN });
    expect(metaslabSlices(4 * full + LAST_METASLAB_BYTES_MIN - 512, 18)).toHaveLength(4);
  });
});

describe('MetaslabGroup', () => {
  it('allocates the blocks of one txg back to back', async () => {
    const { io } = makeVdev(1, 8 * MiB);
    const group = await MetaslabGroup.format(io);
    const offsets: number[] = [];
    for (let i = 0; i < 100; i++) offsets.push(group.allocate(8 * KiB, txg(1))!);
    for (let i = 1; i < offsets.length; i++) {
      // Back to back except where one metaslab is full and the next begins after its space map.
      const step = offsets[i]! - offsets[i - 1]!;
      if (step !== 8 * KiB) expect(offsets[i]! % 2 ** group.metaslabShift).toBe(SpaceMap.reservedBytes(2 ** group.metaslabShift));
    }
    expect(offsets.filter((o, i) => i > 0 && o - offsets[i - 1]! === 8 * KiB).length).toBeGreaterThan(90);
    group.checkInvariants();
  });

  it('frees a block born in the same txg at once', async () => {
    const { io } = makeVdev(2, 4 * MiB);
    const group = await MetaslabGroup.format(io);
    const blocks: number[] = [];
    for (let b = group.allocate(4 * KiB, txg(1)); b !== null; b = group.allocate(4 * KiB, txg(1))) blocks.push(b);
    const a = blocks[7]!;
    group.free(a, 4 * KiB, txg(1), txg(1));
    expect(group.freeBytes()).toBeGreaterThanOrEqual(4 * KiB);
    expect(group.allocate(4 * KiB, txg(1))).toBe(a);
    group.checkInvariants();
  });

  it('does not reuse a freed block before TXG_DEFER more txgs have synced', async () => {
    const { io } = makeVdev(3, 2 * MiB);
    const group = await MetaslabGroup.format(io, 18);
    const blocks: number[] = [];
    for (let b = group.allocate(8 * KiB, txg(1)); b !== null; b = group.allocate(8 * KiB, txg(1))) blocks.push(b);
    await group.sync(txg(1));
    group.syncDone(txg(1));
    const victim = blocks[5]!;
    group.free(victim, 8 * KiB, txg(2), txg(1));
    let t = 2;
    for (; t < 2 + TXG_DEFER; t++) {
      await group.sync(txg(t));
      group.syncDone(txg(t));
      expect(group.allocate(8 * KiB, txg(t + 1)), `txg ${t + 1}`).toBeNull();
      group.checkInvariants();
    }
    await group.sync(txg(t));
    group.syncDone(txg(t));
    expect(group.allocate(8 * KiB, txg(t + 1))).toBe(victim);
    group.checkInvariants();
  });

  it('keeps recent frees deferred after a load', async () => {
    const { io } = makeVdev(4, 2 * MiB);
    const group = await MetaslabGroup.format(io);
    const a = group.allocate(8 * KiB, txg(1))!;
    const b = group.allocate(8 * KiB, txg(1))!;
    await group.sync(txg(1));
    group.syncDone(txg(1));
    group.free(a, 8 * KiB, txg(2), txg(1));
    await group.sync(txg(2));
    group.syncDone(txg(2));
    group.free(b, 8 * KiB, txg(3), txg(1));
    await group.sync(txg(3));
    await io.sync();
    group.syncDone(txg(3));
    const loaded = await MetaslabGroup.load(io, group.metaslabShift, txg(3));
    loaded.checkInvariants();
    expect(loaded.snapshot().deferred).toEqual(group.snapshot().deferred);
    expect([...loaded.snapshot().deferred.keys()].sort()).toEqual([2, 3]);
    expect(loaded.freeBytes()).toBe(group.freeBytes());
    const later = await MetaslabGroup.load(io, group.metaslabShift, txg(4));
    expect([...later.snapshot().deferred.keys()]).toEqual([3]);
  });

  it('returns null when no metaslab has a contiguous run of the size asked', async () => {
    const { io } = makeVdev(5, 1 * MiB);
    const group = await MetaslabGroup.format(io);
    expect(group.allocate(2 ** group.metaslabShift, txg(1))).toBeNull();
    while (group.allocate(64 * KiB, txg(1)) !== null) group.checkInvariants();
    expect(group.freeBytes()).toBeLessThan(64 * KiB * group.metaslabs.length);
    group.checkInvariants();
  });

  it('treats bad arguments as programmer errors', async () => {
    const { io } = makeVdev(6, 1 * MiB);
    const group = await MetaslabGroup.format(io);
    const a = group.allocate(4 * KiB, txg(1))!;
    expect(() => group.allocate(1000, txg(1))).toThrow(AssertionFailure);
    expect(() => group.allocate(0, txg(1))).toThrow(AssertionFailure);
    expect(() => group.free(a + 8 * KiB, 4 * KiB, txg(2), txg(1))).toThrow(AssertionFailure);
    await group.sync(txg(1));
    group.syncDone(txg(1));
    group.free(a, 4 * KiB, txg(2), txg(1));
    expect(() => group.free(a, 4 * KiB, txg(2), txg(1))).toThrow(AssertionFailure);
    expect(() => group.allocate(4 * KiB, txg(1))).toThrow(AssertionFailure);
    group.checkInvariants();
  });

  it('names the metaslab whose space map is unreadable', async () => {
    const { io, disk } = makeVdev(7, 2 * MiB);
    const group = await MetaslabGroup.format(io);
    await io.sync();
    const msBytes = 2 ** group.metaslabShift;
    disk.flipBit(3 * msBytes + 20, 0);
    try {
      await MetaslabGroup.load(io, group.metaslabShift, txg(0));
      expect.unreachable();
    } catch (e) {
      expect(hasCode(e, 'EPROTO') && e.details).toMatchObject({ metaslab: 3, metaslabStart: 3 * msBytes, vdev: 0 });
    }
  });

  it('loads exactly the last synced txg after crashes at many points of a long workload', async () => {
    for (const seed of [1001, 1002, 1003]) {
      const rng = new Prng(seed);
      const { io, disk } = makeVdev(seed, 2 * MiB);
      let group = await MetaslabGroup.format(io, undefined, SMALL_LOG);
      await io.sync();
      let ub = 0;
      let durable = new Model();
      let model = durable.clone();
      let crashes = 0;
      for (let t = 1; t <= 160; t++) {
        const context = `seed ${seed} txg ${t} ub ${ub}`;
        const pendingFrees: Freed[] = [];
        for (let k = rng.int(12); k > 0; k--) {
          const size = (1 + rng.int(16)) * 512;
          const offset = group.allocate(size, txg(t));
          if (offset === null) continue;
          expect(model.forbidden(t, pendingFrees).overlaps(offset, size), context).toBe(false);
          model.live.set(offset, { offset, size, birth: t });
        }
        for (let k = rng.int(8); k > 0 && model.live.size > 0; k--) {
          const blocks = [...model.live.values()];
          const b = blocks[rng.int(blocks.length)]!;
          group.free(b.offset, b.size, txg(t), txg(b.birth));
          model.live.delete(b.offset);
          if (b.birth !== t) pendingFrees.push({ offset: b.offset, size: b.size, txg: t });
        }
        group.checkInvariants();
        const stage = rng.int(8); // 0-1: during sync, 2: before the disk sync, 3: before the uberblock
        let writesLeft = stage <= 1 ? rng.int(4) : -1;
        let dead = false; // after the crash no write of this txg may land
        io.beforeWrite = () => {
          if (dead) throw new CrashMarker();
          if (writesLeft-- === 0) {
            disk.crash('random');
            dead = true;
            throw new CrashMarker();
          }
        };
        let crashed = false;
        try {
          await group.sync(txg(t));
        } catch (e) {
          if (!(e instanceof CrashMarker)) throw e;
          crashed = true;
        }
        io.beforeWrite = undefined;
        if (!crashed && stage >= 2 && stage <= 3) {
          if (stage === 3) await io.sync();
          disk.crash('random');
          crashed = true;
        }
        if (crashed) {
          crashes++;
          group = await MetaslabGroup.load(io, group.metaslabShift, txg(ub), SMALL_LOG);
          expectGroupMatches(group, durable, ub, `${context} crash stage ${stage}`);
          model = durable.clone();
          t = ub;
          continue;
        }
        await io.sync();
        ub = t;
        group.syncDone(txg(t));
        model.freed.push(...pendingFrees);
        model.freed = model.freed.filter((f) => f.txg > t - TXG_DEFER);
        durable = model.clone();
        expectGroupMatches(group, model, t, context);
      }
      expect(crashes, `seed ${seed}`).toBeGreaterThan(20);
      expect(group.metaslabs.some((ms) => ms.spaceMapInfo().generation > 3), `seed ${seed}: condensed`).toBe(true);
    }
  });
});
