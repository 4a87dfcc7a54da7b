import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { type ErrorCode, Prng, SimDisk, hasCode } from '../lib/index.js';
import { type Range, RangeTree } from './range-tree.js';
import { SpaceMap, type SpaceMapLoad, type SpaceMapOptions, TXG_DEFER } from './space-map.js';
import { SECTOR_BYTES, spaceMapLayout } from './space-map-format.js';
import { TestVdevIo } from './test-vdev-io.js';
import { txg } from './types.js';

const MS_START = 64 * 1024;
const MS_BYTES = 256 * 1024;
const SECTORS = MS_BYTES / SECTOR_BYTES;
const SMALL_LOG: SpaceMapOptions = { logBytes: 4 * SECTOR_BYTES };

class CrashMarker extends Error {}

/** The naive model: per sector, allocated or not, and the txg that last freed it. */
class Model {
  alloc = new Uint8Array(SECTORS);
  freedTxg = new Float64Array(SECTORS);
  constructor(readonly reservedSectors: number) {}

  clone(): Model {
    const m = new Model(this.reservedSectors);
    m.alloc.set(this.alloc);
    m.freedTxg.set(this.freedTxg);
    return m;
  }

  private runs(pred: (i: number) => boolean): Range[] {
    const out: Range[] = [];
    for (let i = 0; i < SECTORS; ) {
      if (!pred(i)) {
        i++;
        continue;
      }
      let j = i;
      while (j < SECTORS && pred(j)) j++;
      out.push({ start: MS_START + i * SECTOR_BYTES, size: (j - i) * SECTOR_BYTES });
      i = j;
    }
    return out;
  }

  allocated(): Range[] {
    return this.runs((i) => this.alloc[i] === 1);
  }

  deferred(ub: number): Map<number, Range[]> {
    const out = new Map<number, Range[]>();
    for (let t = Math.max(1, ub - TXG_DEFER + 1); t <= ub; t++) {
      const r = this.runs((i) => this.alloc[i] === 0 && this.freedTxg[i] === t);
      if (r.length > 0) out.set(t, r);
    }
    return out;
  }

  /** Applies txg t's operations where valid: frees of allocated runs, allocations of allocatable runs. */
  applyOps(t: number, ops: readonly Op[]): { allocs: Range[]; frees: Range[] } {
    const allocs = new RangeTree(SECTOR_BYTES);
    const frees = new RangeTree(SECTOR_BYTES);
    const touched = new Uint8Array(SECTORS);
    for (const op of ops) {
      const s = this.reservedSectors + (op.sector % (SECTORS - this.reservedSectors));
      const ok = (i: number): boolean =>
        i < SECTORS && touched[i] === 0 &&
        (op.alloc ? this.alloc[i] === 0 && (this.freedTxg[i] === 0 || this.freedTxg[i]! <= t - TXG_DEFER - 1) : this.alloc[i] === 1);
      let n = 0;
      while (n < op.sectors && ok(s + n)) n++;
      if (n === 0) continue;
      for (let i = s; i < s + n; i++) {
        touched[i] = 1;
        this.alloc[i] = op.alloc ? 1 : 0;
        this.freedTxg[i] = op.alloc ? 0 : t;
      }
      (op.alloc ? allocs : frees).add(MS_START + s * SECTOR_BYTES, n * SECTOR_BYTES);
    }
    return { allocs: allocs.ranges(), frees: frees.ranges() };
  }

  randomTxg(rng: Prng, t: number, opsMax: number): { allocs: Range[]; frees: Range[] } {
    const ops = Array.from({ length: rng.int(opsMax + 1) }, () => ({ alloc: rng.chance(0.6), sector: rng.int(SECTORS), sectors: 1 + rng.int(8) }));
    return this.applyOps(t, ops);
  }
}

interface Op {
  alloc: boolean;
  sector: number;
  sectors: number;
}

const opArb: fc.Arbitrary<Op> = fc.record({ alloc: fc.boolean(), sector: fc.nat(SECTORS - 1), sectors: fc.integer({ min: 1, max: 8 }) });
const txgArb = fc.record({ ops: fc.array(opArb, { maxLength: 8 }), condense: fc.boolean(), check: fc.boolean() });

function makeIo(seed: number, copies = 1): { io: TestVdevIo; disks: SimDisk[] } {
  const rng = new Prng(seed);
  const disks = Array.from({ length: copies }, () => new SimDisk({ sizeBytes: MS_START + MS_BYTES + 64 * 1024, random: rng.fork() }));
  return { io: new TestVdevIo(disks), disks };
}

function expectMatches(loaded: SpaceMapLoad, model: Model, ub: number, context: string): void {
  loaded.allocated.checkInvariants();
  expect(loaded.allocated.ranges(), context).toEqual(model.allocated());
  const deferred = new Map([...loaded.deferred].map(([t, tree]) => [t as number, tree.ranges()]));
  expect(deferred, context).toEqual(model.deferred(ub));
  expect(loaded.spaceMap.allocated.ranges(), context).toEqual(model.allocated());
}

/**
 * A load reads a small reserved area whole, a large one only in the slot its headers name: every
 * test runs both ways (loadWholeAreaBytesMax 0 makes these small maps load the second way).
 */
const LOAD_MODES: [string, SpaceMapOptions][] = [['whole', {}], ['newer slot only', { loadWholeAreaBytesMax: 0 }]];
let loadMode: SpaceMapOptions = {};

async function load(io: TestVdevIo, ub: number, options: SpaceMapOptions = SMALL_LOG): Promise<SpaceMapLoad> {
  return SpaceMap.load(io, MS_START, MS_BYTES, txg(ub), { ...options, ...loadMode });
}

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<Record<string, unknown>> {
  try {
    await p;
  } catch (e) {
    if (hasCode(e, code)) return e.details;
    throw e;
  }
  throw new Error(`expected ${code}`);
}

const reservedSectors = spaceMapLayout(MS_BYTES, SMALL_LOG.logBytes).reservedBytes / SECTOR_BYTES;

describe.each(LOAD_MODES)('SpaceMap, reserved area read %s', (_, mode) => {
  beforeAll(() => {
    loadMode = mode;
  });

  it('loads a freshly formatted map as empty', async () => {
    const { io } = makeIo(1);
    const sm = await SpaceMap.format(io, MS_START, MS_BYTES);
    await io.sync();
    const loaded = await load(io, 0, {});
    expect(loaded.allocated.count).toBe(0);
    expect(loaded.deferred.size).toBe(0);
    expect(sm.reservedBytes).toBe(SpaceMap.reservedBytes(MS_BYTES));
  });

  it('leaves a free map unwritten and unread: what the disk held there before does not matter', async () => {
    const { io, disks } = makeIo(2, 2);
    const l = spaceMapLayout(MS_BYTES, SMALL_LOG.logBytes);
    const garbage = new Uint8Array(l.reservedBytes);
    new Prng(9).fill(garbage);
    await io.write(MS_START, garbage);
    const sm = await SpaceMap.format(io, MS_START, MS_BYTES, SMALL_LOG);
    const data = MS_START + l.reservedBytes;
    await sm.appendTxg(txg(1), [{ start: data, size: 1024 }], []);
    await io.sync();
    const mapA = MS_START + SECTOR_BYTES;
    await expect(disks[0]!.read(mapA, l.mapBytes)).resolves.toEqual(garbage.subarray(SECTOR_BYTES, SECTOR_BYTES + l.mapBytes));
    expect((await load(io, 1)).allocated.ranges()).toEqual([{ start: data, size: 1024 }]);
    // Once condensed with something allocated, the map is written and checked like any other.
    const again = (await load(io, 1)).spaceMap;
    await again.appendTxg(txg(2), [{ start: data + 4096, size: 512 }], [], { condense: true });
    await io.sync();
    expect((await load(io, 2)).allocated.ranges()).toEqual([{ start: data, size: 1024 }, { start: data + 4096, size: 512 }]);
    for (const d of disks) d.flipBit(MS_START + l.slotBytes + SECTOR_BYTES, 0);
    await expectCode(load(io, 2), 'ECKSUM');
  });

  it('matches a naive bitmap for any sequence of txgs, loads and condenses (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(txgArb, { minLength: 1, maxLength: 30 }), async (txgs) => {
        const { io } = makeIo(3);
        const sm = await SpaceMap.format(io, MS_START, MS_BYTES, SMALL_LOG);
        const model = new Model(reservedSectors);
        for (const [i, step] of txgs.entries()) {
          const t = i + 1;
          const { allocs, frees } = model.applyOps(t, step.ops);
          await sm.appendTxg(txg(t), allocs, frees, { condense: step.condense && t % 4 === 0 });
          expect(sm.allocated.ranges()).toEqual(model.allocated());
          await io.sync();
          if (step.check || i === txgs.length - 1) expectMatches(await load(io, t), model, t, `txg ${t}`);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('reproduces the model after every txg of a random workload, through many condenses', async () => {
    for (const seed of [11, 12, 13]) {
      const rng = new Prng(seed);
      const { io } = makeIo(seed);
      let sm = await SpaceMap.format(io, MS_START, MS_BYTES, SMALL_LOG);
      const model = new Model(reservedSectors);
      let condenses = 0;
      for (let t = 1; t <= 150; t++) {
        const { allocs, frees } = model.randomTxg(rng, t, 6);
        const r = await sm.appendTxg(txg(t), allocs, frees);
        if (r.condensed) condenses++;
        await io.sync();
        const loaded = await load(io, t);
        expectMatches(loaded, model, t, `seed ${seed} txg ${t}`);
        if (rng.chance(0.3)) sm = loaded.spaceMap; // carry on from the loaded copy sometimes
      }
      expect(condenses, `seed ${seed}`).toBeGreaterThan(10);
    }
  });

  it('condenses on demand and stays transparent with the default log size', async () => {
    const rng = new Prng(5);
    const { io } = makeIo(5);
    const sm = await SpaceMap.format(io, MS_START, MS_BYTES);
    const model = new Model(SpaceMap.reservedBytes(MS_BYTES) / SECTOR_BYTES);
    for (let t = 1; t <= 40; t++) {
      const { allocs, frees } = model.randomTxg(rng, t, 10);
      const r = await sm.appendTxg(txg(t), allocs, frees, { condense: t % 10 === 0 });
      if (t % 10 === 0) expect(r.condensed).toBe(true);
      await io.sync();
      expectMatches(await load(io, t, {}), model, t, `txg ${t}`);
    }
    expect(sm.describe().generation).toBeGreaterThanOrEqual(5);
  });

  it('survives crashes at every stage of a txg, mid-condense and torn writes', async () => {
    for (const seed of [101, 102, 103, 104]) {
      const rng = new Prng(seed);
      const { io, disks } = makeIo(seed);
      const disk = disks[0]!;
      let sm = await SpaceMap.format(io, MS_START, MS_BYTES, SMALL_LOG);
      await io.sync();
      let ub = 0;
      let durable = new Model(reservedSectors);
      let model = durable.clone();
      let crashes = 0;
      for (let t = 1; t <= 300; t++) {
        const { allocs, frees } = model.randomTxg(rng, t, rng.chance(0.2) ? 0 : 6);
        const stage = rng.int(10); // 0-2: crash during the append, 3: before sync, 4: after sync, else no crash
        let writesLeft = stage <= 2 ? rng.int(3) : -1;
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
          await sm.appendTxg(txg(t), allocs, frees);
        } catch (e) {
          if (!(e instanceof CrashMarker)) throw e;
          crashed = true;
        }
        io.beforeWrite = undefined;
        if (!crashed && stage === 3) {
          disk.crash('random');
          crashed = true;
        }
        if (!crashed) await io.sync();
        if (!crashed && stage === 4) {
          disk.crash('random');
          crashed = true;
        }
        if (crashed) {
          crashes++;
          const loaded = await load(io, ub);
          expectMatches(loaded, durable, ub, `seed ${seed} crash at txg ${t} stage ${stage}, ub ${ub}`);
          sm = loaded.spaceMap;
          model = durable.clone();
          t = ub; // the pool reopens at ub and syncs ub+1 next
          continue;
        }
        ub = t;
        durable = model.clone();
      }
      expect(crashes, `seed ${seed}`).toBeGreaterThan(30);
    }
  });

  it('never revives a record of a txg whose uberblock never landed', async () => {
    const { io } = makeIo(7);
    const sm = await SpaceMap.format(io, MS_START, MS_BYTES, SMALL_LOG);
    const base = MS_START + reservedSectors * SECTOR_BYTES;
    await sm.appendTxg(txg(1), [{ start: base, size: 512 }], []);
    await sm.appendTxg(txg(2), [{ start: base + 4096, size: 512 }], []);
    await io.sync(); // txg 2's record is durable, but its uberblock never lands
    const loaded = await load(io, 1);
    expect(loaded.allocated.ranges()).toEqual([{ start: base, size: 512 }]);
    expect(loaded.spaceMap.needsWrite).toBe(true);
    await loaded.spaceMap.appendTxg(txg(2), [], []); // the metaslab did not change in the new txg 2
    await io.sync();
    const later = await load(io, 9);
    expect(later.allocated.ranges()).toEqual([{ start: base, size: 512 }]);
  });

  it('erases a condensed slot whose uberblock never landed before it could be picked', async () => {
    const { io } = makeIo(8);
    const sm = await SpaceMap.format(io, MS_START, MS_BYTES, SMALL_LOG);
    const base = MS_START + reservedSectors * SECTOR_BYTES;
    await sm.appendTxg(txg(1), [{ start: base, size: 512 }], []);
    await sm.appendTxg(txg(2), [{ start: base + 4096, size: 1024 }], [], { condense: true });
    await io.sync();
    const loaded = await load(io, 1);
    expect(loaded.spaceMap.describe()).toMatchObject({ activeSlot: 0, generation: 1 });
    expect(loaded.spaceMap.needsWrite).toBe(true);
    await loaded.spaceMap.appendTxg(txg(2), [], []);
    await io.sync();
    const later = await load(io, 2);
    expect(later.allocated.ranges()).toEqual([{ start: base, size: 512 }]);
    expect(later.spaceMap.describe()).toMatchObject({ activeSlot: 0, generation: 1 });
  });

  it('keeps recent frees deferred across a load and a condense', async () => {
    const { io } = makeIo(9);
    const sm = await SpaceMap.format(io, MS_START, MS_BYTES, SMALL_LOG);
    const base = MS_START + reservedSectors * SECTOR_BYTES;
    await sm.appendTxg(txg(1), [{ start: base, size: 8192 }], []);
    await sm.appendTxg(txg(2), [], [{ start: base, size: 512 }]);
    await sm.appendTxg(txg(3), [], [{ start: base + 1024, size: 512 }], { condense: true });
    await io.sync();
    const at3 = await load(io, 3);
    expect([...at3.deferred].map(([t, r]) => [t, r.ranges()])).toEqual([
      [2, [{ start: base, size: 512 }]],
      [3, [{ start: base + 1024, size: 512 }]],
    ]);
    const at4 = await load(io, 4);
    expect([...at4.deferred.keys()]).toEqual([3]);
    expect((await load(io, 5)).deferred.size).toBe(0);
  });

  it('refuses a corrupt committed record on one disk and uses the good copy of a mirror', async () => {
    for (const copies of [1, 2]) {
      const { io, disks } = makeIo(20 + copies, copies);
      const sm = await SpaceMap.format(io, MS_START, MS_BYTES);
      const base = MS_START + SpaceMap.reservedBytes(MS_BYTES);
      await sm.appendTxg(txg(1), [{ start: base, size: 4096 }], []);
      await sm.appendTxg(txg(2), [{ start: base + 8192, size: 512 }], []);
      await io.sync();
      const l = spaceMapLayout(MS_BYTES);
      const logStart = MS_START + SECTOR_BYTES + l.mapBytes;
      disks[0]!.flipBit(logStart + SECTOR_BYTES + 130, 3); // inside txg 2's payload
      const loading = load(io, 2, {});
      if (copies === 1) {
        const details = await expectCode(loading, 'ECKSUM');
        expect(details).toMatchObject({ metaslabStart: MS_START, txg: 2 });
      } else {
        const loaded = await loading;
        expect(loaded.allocated.ranges()).toEqual([{ start: base, size: 4096 }, { start: base + 8192, size: 512 }]);
        expect(io.stats.heals).toBeGreaterThan(0);
      }
    }
  });

  it('ends the log at a corrupt record of a txg after the uberblock', async () => {
    const { io, disks } = makeIo(30);
    const sm = await SpaceMap.format(io, MS_START, MS_BYTES);
    const base = MS_START + SpaceMap.reservedBytes(MS_BYTES);
    await sm.appendTxg(txg(1), [{ start: base, size: 4096 }], []);
    await sm.appendTxg(txg(2), [{ start: base + 8192, size: 512 }], []);
    await io.sync();
    const l = spaceMapLayout(MS_BYTES);
    disks[0]!.flipBit(MS_START + SECTOR_BYTES + l.mapBytes + SECTOR_BYTES + 3, 0); // txg 2's magic
    const loaded = await load(io, 1, {});
    expect(loaded.allocated.ranges()).toEqual([{ start: base, size: 4096 }]);
  });

  it('gives EPROTO for a header with nothing valid, unless a mirror copy is good', async () => {
    for (const copies of [1, 2]) {
      const { io, disks } = makeIo(40 + copies, copies);
      const sm = await SpaceMap.format(io, MS_START, MS_BYTES);
      await sm.appendTxg(txg(1), [{ start: MS_START + SpaceMap.reservedBytes(MS_BYTES), size: 512 }], []);
      await io.sync();
      disks[0]!.flipBit(MS_START + 17, 2); // slot A's base txg
      const loading = load(io, 1, {});
      if (copies === 1) expect(await expectCode(loading, 'EPROTO')).toMatchObject({ metaslabStart: MS_START, vdev: 0 });
      else expect((await loading).allocated.sumBytes()).toBe(512);
    }
  });

  it('gives EPROTO, not an older state, when the newer slot of a condense is corrupt', async () => {
    const { io, disks } = makeIo(50);
    const sm = await SpaceMap.format(io, MS_START, MS_BYTES);
    const base = MS_START + SpaceMap.reservedBytes(MS_BYTES);
    await sm.appendTxg(txg(1), [{ start: base, size: 512 }], []);
    await sm.appendTxg(txg(2), [{ start: base + 4096, size: 512 }], [], { condense: true });
    await io.sync();
    expect(sm.describe().activeSlot).toBe(1);
    disks[0]!.flipBit(MS_START + spaceMapLayout(MS_BYTES).slotBytes + 9, 1); // slot B's generation
    await expectCode(load(io, 2, {}), 'EPROTO');
    // Rewinding to before the condense is still possible: the old slot is whole.
    expect((await load(io, 1, {})).allocated.sumBytes()).toBe(512);
  });

  it('gives ECKSUM for a corrupt bitmap on one disk and reads the good mirror copy', async () => {
    for (const copies of [1, 2]) {
      const { io, disks } = makeIo(60 + copies, copies);
      const sm = await SpaceMap.format(io, MS_START, MS_BYTES);
      await sm.appendTxg(txg(1), [{ start: MS_START + SpaceMap.reservedBytes(MS_BYTES), size: 512 }], [], { condense: true });
      await io.sync();
      disks[0]!.flipBit(MS_START + spaceMapLayout(MS_BYTES).slotBytes + SECTOR_BYTES + 1, 0);
      const loading = load(io, 1, {});
      if (copies === 1) expect(await expectCode(loading, 'ECKSUM')).toMatchObject({ metaslabStart: MS_START, slot: 1 });
      else expect((await loading).allocated.sumBytes()).toBe(512);
    }
  });

  it('loads with one read of its reserved area (after its two headers, when large) when nothing is damaged', async () => {
    const { io } = makeIo(70);
    const sm = await SpaceMap.format(io, MS_START, MS_BYTES, SMALL_LOG);
    const data = MS_START + SpaceMap.reservedBytes(MS_BYTES, SMALL_LOG);
    await sm.appendTxg(txg(1), [{ start: data, size: 1024 }], [], { condense: true });
    await sm.appendTxg(txg(2), [{ start: data + 4096, size: 512 }], []);
    await sm.appendTxg(txg(3), [], [{ start: data, size: 512 }]);
    await io.sync();
    const before = io.stats.reads;
    const loaded = await load(io, 3);
    // Read only the newer slot: both headers, then its span.
    expect(io.stats.reads - before).toBe(mode.loadWholeAreaBytesMax === 0 ? 3 : 1);
    expect(loaded.allocated.ranges()).toEqual([{ start: data + 512, size: 512 }, { start: data + 4096, size: 512 }]);
  });

  it('reads piece by piece when its reserved area cannot be read at once, and names the part that fails', async () => {
    const { io, disks } = makeIo(71);
    const sm = await SpaceMap.format(io, MS_START, MS_BYTES, SMALL_LOG);
    const data = MS_START + SpaceMap.reservedBytes(MS_BYTES, SMALL_LOG);
    await sm.appendTxg(txg(1), [{ start: data, size: 1024 }], []);
    await io.sync();
    const l = spaceMapLayout(MS_BYTES, SMALL_LOG.logBytes);
    // Slot B (not the active one) has a bad sector: only the one read covering all of it fails...
    const slotB = MS_START + l.slotBytes + SECTOR_BYTES;
    const fault = disks[0]!.injectFault({ op: 'read', effect: { kind: 'eio' }, range: [slotB, slotB + SECTOR_BYTES] });
    const before = io.stats.reads;
    expect((await load(io, 1)).allocated.ranges()).toEqual([{ start: data, size: 1024 }]);
    expect(io.stats.reads - before).toBeGreaterThan(2);
    fault.remove();
    // ...while a bad sector in what the load needs is EIO naming the slot, as a piecewise load gives.
    disks[0]!.injectFault({ op: 'read', effect: { kind: 'eio' }, range: [MS_START, MS_START + SECTOR_BYTES] });
    expect(await expectCode(load(io, 1), 'EIO')).toMatchObject({ metaslabStart: MS_START, slot: 0 });
  });

  it('gives EPROTO when loaded with a layout other than the one formatted', async () => {
    const { io } = makeIo(70);
    await SpaceMap.format(io, MS_START, MS_BYTES);
    await expectCode(load(io, 0, SMALL_LOG), 'EPROTO');
  });

  it('rewrites the log tail and erases the other slot once after a load, then writes only changes', async () => {
    const { io } = makeIo(80);
    const sm = await SpaceMap.format(io, MS_START, MS_BYTES);
    await sm.appendTxg(txg(3), [{ start: MS_START + SpaceMap.reservedBytes(MS_BYTES), size: 512 }], []);
    await io.sync();
    const loaded = await load(io, 3, {});
    expect(loaded.spaceMap.needsWrite).toBe(true);
    const writes = io.stats.writes;
    await loaded.spaceMap.appendTxg(txg(4), [], []);
    expect(io.stats.writes).toBe(writes + 2);
    expect(loaded.spaceMap.needsWrite).toBe(false);
    await loaded.spaceMap.appendTxg(txg(5), [], []);
    expect(io.stats.writes).toBe(writes + 2);
    expect(io.stats.rejected).toBe(0); // a clean load counts no checksum error
  });

  it('never picks a stale condensed slot that only one mirror child kept', async () => {
    const { io, disks } = makeIo(90, 2);
    const sm = await SpaceMap.format(io, MS_START, MS_BYTES);
    const base = MS_START + SpaceMap.reservedBytes(MS_BYTES);
    await sm.appendTxg(txg(1), [{ start: base, size: 512 }], []);
    await io.sync();
    const lost = disks[0]!.injectFault({ op: 'write', effect: { kind: 'lost' } });
    await sm.appendTxg(txg(2), [{ start: base + 4096, size: 512 }], [], { condense: true });
    lost.remove();
    await io.sync(); // child 1 holds the condensed slot of txg 2, whose uberblock never lands
    const loaded = await load(io, 1, {});
    expect(loaded.allocated.sumBytes()).toBe(512);
    await loaded.spaceMap.appendTxg(txg(2), [], []); // the new txg 2 did not touch this metaslab
    await io.sync();
    disks[0]!.injectFault({ op: 'read', effect: { kind: 'eio' } });
    const later = await load(io, 2, {});
    expect(later.allocated.ranges()).toEqual([{ start: base, size: 512 }]);
  });

  it('finds the newer slot on the other mirror child when a handoff names it', async () => {
    const { io, disks } = makeIo(91, 2);
    const sm = await SpaceMap.format(io, MS_START, MS_BYTES);
    const base = MS_START + SpaceMap.reservedBytes(MS_BYTES);
    await sm.appendTxg(txg(1), [{ start: base, size: 512 }], []);
    await io.sync();
    const slotB = MS_START + spaceMapLayout(MS_BYTES).slotBytes;
    const lost = disks[0]!.injectFault({ op: 'write', effect: { kind: 'lost' }, range: [slotB, slotB + 4096] });
    await sm.appendTxg(txg(2), [{ start: base + 4096, size: 512 }], [], { condense: true });
    lost.remove();
    await io.sync();
    const loaded = await load(io, 2, {});
    expect(loaded.allocated.ranges()).toEqual([{ start: base, size: 512 }, { start: base + 4096, size: 512 }]);
    expect(loaded.spaceMap.describe()).toMatchObject({ activeSlot: 1, generation: 2 });
    expect(io.stats.heals).toBeGreaterThan(0);
  });
});
