import { describe, expect, it } from 'vitest';
import { AssertionFailure, Prng, SimDisk, hasCode } from '../lib/index.js';
import { ROTOR_RUN_BYTES, SpaceAllocator } from './allocator.js';
import { MetaslabGroup, TXG_DEFER } from './metaslab.js';
import { TestVdevIo } from './test-vdev-io.js';
import { type Dva, txg } from './types.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function makeGroup(index: number, sizeBytes: number, seed = 1): Promise<{ group: MetaslabGroup; io: TestVdevIo }> {
  const disk = new SimDisk({ sizeBytes, random: new Prng(seed + index) });
  const io = new TestVdevIo([disk], { index });
  return { group: await MetaslabGroup.format(io), io };
}

async function makeAllocator(sizes: readonly number[]): Promise<{ alloc: SpaceAllocator; ios: TestVdevIo[] }> {
  const made = await Promise.all(sizes.map((s, i) => makeGroup(i, s)));
  return { alloc: new SpaceAllocator(made.map((m) => m.group)), ios: made.map((m) => m.io) };
}

function expectDisjoint(dvas: readonly Dva[]): void {
  for (const [i, a] of dvas.entries()) {
    for (const b of dvas.slice(i + 1)) {
      expect(a.vdev !== b.vdev || a.offset + a.asize <= b.offset || b.offset + b.asize <= a.offset).toBe(true);
    }
  }
}

function expectCode(f: () => unknown, code: 'ENOSPC'): Record<string, unknown> {
  try {
    f();
  } catch (e) {
    if (hasCode(e, code)) return e.details;
    throw e;
  }
  throw new Error(`expected ${code}`);
}

describe('SpaceAllocator', () => {
  it('places the copies of a block on distinct vdevs when there are enough', async () => {
    const { alloc } = await makeAllocator([4 * MiB, 4 * MiB, 4 * MiB]);
    for (let i = 0; i < 200; i++) {
      const copies = 1 + (i % 3);
      const dvas = alloc.allocate(4 * KiB, copies, txg(1));
      expect(dvas).toHaveLength(copies);
      expect(new Set(dvas.map((d) => d.vdev)).size).toBe(copies);
      expect(dvas.every((d) => d.asize === 4 * KiB)).toBe(true);
      alloc.checkInvariants();
    }
  });

  it('falls back to another metaslab of the same vdev when there are fewer vdevs than copies', async () => {
    const { alloc } = await makeAllocator([8 * MiB]);
    const group = alloc.group(0);
    for (let i = 0; i < 50; i++) {
      const dvas = alloc.allocate(8 * KiB, 3, txg(1));
      expect(dvas).toHaveLength(3);
      expectDisjoint(dvas);
      const metaslabs = new Set(dvas.map((d) => Math.floor(d.offset / 2 ** group.metaslabShift)));
      expect(metaslabs.size).toBe(3);
      alloc.checkInvariants();
    }
  });

  it('keeps first copies of one txg sequential on a vdev for a run before rotating', async () => {
    const { alloc } = await makeAllocator([4 * MiB, 4 * MiB]);
    const dvas = Array.from({ length: 256 }, () => alloc.allocate(4 * KiB, 1, txg(1))[0]!);
    const perRun = ROTOR_RUN_BYTES / (4 * KiB);
    let switches = 0;
    for (let i = 1; i < dvas.length; i++) {
      const [a, b] = [dvas[i - 1]!, dvas[i]!];
      if (a.vdev !== b.vdev) switches++;
      else if (b.offset !== a.offset + a.asize) expect(b.offset % 2 ** alloc.group(b.vdev).metaslabShift).toBeLessThan(64 * KiB);
    }
    expect(switches).toBeGreaterThanOrEqual(Math.floor(dvas.length / perRun) - 1);
    expect(switches).toBeLessThanOrEqual(Math.ceil(dvas.length / perRun) + 1);
  });

  it('favours the vdev with more free space', async () => {
    const { alloc } = await makeAllocator([8 * MiB, 8 * MiB]);
    // Fill most of vdev 0 directly through its group.
    for (let i = 0; i < 1200; i++) alloc.group(0).allocate(4 * KiB, txg(1));
    const before = alloc.vdevSpaces().map((v) => v.allocatedBytes);
    for (let i = 0; i < 1000; i++) alloc.allocate(4 * KiB, 1, txg(1));
    const after = alloc.vdevSpaces().map((v) => v.allocatedBytes);
    const grew = after.map((a, i) => a - before[i]!);
    expect(grew[1]!).toBeGreaterThan(1.5 * grew[0]!);
    alloc.checkInvariants();
  });

  it('throws ENOSPC when not even one copy fits, and places what it can for metadata', async () => {
    const { alloc } = await makeAllocator([1 * MiB]);
    const blocks: Dva[] = [];
    for (;;) {
      try {
        blocks.push(...alloc.allocate(16 * KiB, 1, txg(1)));
      } catch (e) {
        if (!hasCode(e, 'ENOSPC')) throw e;
        expect(e.details).toMatchObject({ sizeBytes: 16 * KiB, freeBytes: alloc.freeBytes() });
        break;
      }
      alloc.checkInvariants();
    }
    // Free exactly one 16 KiB block (born in this txg: at once): one copy fits, two do not.
    const victim = blocks[3]!;
    alloc.free(victim, txg(1), txg(1));
    const free = alloc.freeBytes();
    expect(expectCode(() => alloc.allocate(16 * KiB, 2, txg(1)), 'ENOSPC')).toMatchObject({ copies: 2, placed: 1 });
    expect(alloc.freeBytes()).toBe(free); // the copy that fitted was given back
    const meta = alloc.allocate(16 * KiB, 2, txg(1), { metadata: true });
    expect(meta).toEqual([victim]);
    alloc.checkInvariants();
  });

  it('allocates on a vdev added later', async () => {
    const { alloc } = await makeAllocator([1 * MiB]);
    while (alloc.freeBytes() >= 64 * KiB) {
      try {
        alloc.allocate(64 * KiB, 1, txg(1));
      } catch (e) {
        if (!hasCode(e, 'ENOSPC')) throw e;
        break;
      }
    }
    const { group } = await makeGroup(1, 2 * MiB);
    alloc.addGroup(group);
    expect(alloc.allocate(64 * KiB, 1, txg(1))[0]!.vdev).toBe(1);
    expect(() => alloc.addGroup(group)).toThrow(AssertionFailure);
    alloc.checkInvariants();
  });

  it('frees, syncs and defers through every group, and reloads the same figures', async () => {
    const rng = new Prng(77);
    const { alloc, ios } = await makeAllocator([2 * MiB, 3 * MiB, 2 * MiB]);
    const live: { dvas: Dva[]; birth: number }[] = [];
    for (let t = 1; t <= 30; t++) {
      for (let k = rng.int(20); k > 0; k--) {
        live.push({ dvas: alloc.allocate((1 + rng.int(8)) * 512, 1 + rng.int(3), txg(t)), birth: t });
      }
      for (let k = rng.int(10); k > 0 && live.length > 0; k--) {
        const [b] = live.splice(rng.int(live.length), 1);
        for (const d of b!.dvas) alloc.free(d, txg(t), txg(b!.birth));
      }
      alloc.checkInvariants();
      await alloc.sync(txg(t));
      for (const io of ios) await io.sync();
      alloc.syncDone(txg(t));
      alloc.checkInvariants();
      const liveBytes = live.reduce((sum, b) => sum + b.dvas.reduce((s, d) => s + d.asize, 0), 0);
      expect(alloc.allocatedBytes(), 'seed 77').toBe(liveBytes + alloc.deferredBytes());
      expect(alloc.allocatedBytes() + alloc.freeBytes()).toBe(alloc.totalBytes());
    }
    const groups = await Promise.all(alloc.vdevSpaces().map((v, i) => MetaslabGroup.load(ios[i]!, alloc.group(v.vdev).metaslabShift, txg(30))));
    const reloaded = new SpaceAllocator(groups);
    reloaded.checkInvariants();
    expect(reloaded.vdevSpaces()).toEqual(alloc.vdevSpaces());
    expect(reloaded.deferredBytes()).toBeGreaterThan(0);
    expect(TXG_DEFER).toBe(2);
  });

  it('rejects bad arguments as programmer errors', async () => {
    const { alloc } = await makeAllocator([1 * MiB]);
    expect(() => alloc.allocate(100, 1, txg(1))).toThrow(AssertionFailure);
    expect(() => alloc.allocate(512, 0, txg(1))).toThrow(AssertionFailure);
    expect(() => alloc.allocate(512, 4, txg(1))).toThrow(AssertionFailure);
    expect(() => alloc.free({ vdev: 5, offset: 0, asize: 512 }, txg(1), txg(1))).toThrow(AssertionFailure);
  });
});
