// Vdev administration: add, attach, detach and reguid on SimDisks — the data stays readable,
// the pool imports afterwards, an attached child really holds every block (the original is made
// unreadable and everything is read back), and a power cut at any I/O of each change leaves a
// pool that imports as it was before the change or as it is after it.
import { describe, expect, it } from 'vitest';
import { PowerCutDisk, type PowerSwitch, Prng, type SimDisk, hasCode, idle } from '../lib/index.js';
import * as dmu from './dmu.js';
import { ObjectType } from './dnode.js';
import { readDiskLabels } from './label.js';
import { type LeafInput, Pool } from './pool.js';
import { type SimMachine, TEST_TUNING, codeOf, pattern, simMachine } from './test-support.js';
import { type Guid, type ObjectId, layout } from './types.js';
import { Leaf, TopVdev, leafLayout } from './vdev.js';

const DISK_BYTES = 16 * 1024 * 1024;
const SMALL_DISK_BYTES = 8 * 1024 * 1024;
const CRASH_DISK_BYTES = 8 * 1024 * 1024;

type Data = Map<ObjectId, Uint8Array>;

function leaf(m: SimMachine, i: number): LeafInput {
  const d = m.disks[i];
  if (d === undefined) throw new Error(`no disk ${i}`);
  return { disk: new PowerCutDisk(d, m.power), path: `sim${i}` };
}

function env(m: SimMachine): { clock: SimMachine['clock']; random: SimMachine['random']; tuning: typeof TEST_TUNING } {
  return { clock: m.clock, random: m.random, tuning: TEST_TUNING };
}

function create(m: SimMachine, vdevs: readonly (readonly number[])[]): Promise<Pool> {
  return Pool.create('tank', vdevs.map((v) => v.map((i) => leaf(m, i))), env(m));
}

/**
 * A disk whose plain writes land only after many turns of the event loop's microtask queue, so
 * an attach copy's write to it is overtaken by intent-log writes (writeDurable) to the same range.
 */
class SlowWriteDisk extends PowerCutDisk {
  override async writeDurable(offset: number, data: Uint8Array): Promise<void> {
    for (let i = 0; i < 500; i++) await Promise.resolve();
    await super.writeDurable(offset, data);
  }

  override async write(offset: number, data: Uint8Array): Promise<void> {
    for (let i = 0; i < 500; i++) await Promise.resolve();
    await super.write(offset, data);
  }
}

/**
 * A disk that loses every config written to its labels (the writes never reach it) and cuts the
 * power when asked to make one durable: writes of zeros there (clearing) and all else pass.
 */
class PowerCutAtConfigSync extends PowerCutDisk {
  private configPending = false;

  constructor(inner: SimDisk, private readonly switch_: PowerSwitch) {
    super(inner, switch_);
  }

  override async write(offset: number, data: Uint8Array): Promise<void> {
    const inLabel = leafLayout(this.size()).labelOffsets.some((at) => at !== undefined && offset < at + layout.labelBytes && offset + data.length > at);
    if (inLabel && data.some((b) => b !== 0)) {
      this.configPending = true;
      return;
    }
    await super.write(offset, data);
  }

  override async sync(): Promise<void> {
    if (this.configPending) this.switch_.cutAt = this.switch_.ops;
    await super.sync();
  }
}

/** A disk that cuts the power once a config written to its labels is durable (its sync returned). */
class PowerCutAfterConfigSync extends PowerCutDisk {
  private configWritten = false;

  constructor(inner: SimDisk, private readonly switch_: PowerSwitch) {
    super(inner, switch_);
  }

  override async write(offset: number, data: Uint8Array): Promise<void> {
    const inLabel = leafLayout(this.size()).labelOffsets.some((at) => at !== undefined && offset < at + layout.labelBytes && offset + data.length > at);
    if (inLabel && data.some((b) => b !== 0)) this.configWritten = true;
    await super.write(offset, data);
  }

  override async sync(): Promise<void> {
    await super.sync();
    if (this.configWritten) this.switch_.cutAt = this.switch_.ops;
  }
}

/** Imports from every disk that carries a label (as a scan of a folder would). */
async function importLabelled(m: SimMachine): Promise<Pool> {
  const leaves: LeafInput[] = [];
  for (const [i, d] of m.disks.entries()) if ((await readDiskLabels(d)).configs.length > 0) leaves.push(leaf(m, i));
  return Pool.import(leaves, env(m));
}

/** Writes `count` objects of a few hundred KiB each in one txg and syncs. */
async function writeData(pool: Pool, seed: number, count: number, data: Data = new Map()): Promise<Data> {
  const r = new Prng(seed);
  const tx = await pool.assign();
  try {
    for (let i = 0; i < count; i++) {
      const obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: 131072, checksumKind: 1 });
      const bytes = pattern(r.u32(), 100_000 + r.int(300_000));
      await dmu.write(pool.root, tx, obj, 0, bytes);
      data.set(obj, bytes);
    }
  } finally {
    tx.commit();
  }
  await pool.sync();
  return data;
}

async function expectData(pool: Pool, data: Data, label = ''): Promise<void> {
  for (const [obj, bytes] of data) {
    const got = await dmu.read(pool.root, obj, 0, bytes.length + 1);
    expect(Buffer.from(got).equals(Buffer.from(bytes)), `${label} object ${obj}`).toBe(true);
  }
}

/** Makes the data area of disk `i` fail every read (its labels stay readable, so import still finds it). */
function failDataReads(m: SimMachine, i: number): void {
  const d = m.disks[i];
  if (d === undefined) throw new Error(`no disk ${i}`);
  d.injectFault({ op: 'read', effect: { kind: 'eio' }, range: [2 * layout.labelBytes, d.size() - 2 * layout.labelBytes] });
}

function shape(pool: Pool): string {
  return pool.vdevs.map((v) => `${v.kind}(${v.children.map((c) => c.path).join(',')})`).join(' ');
}

describe('pool add', () => {
  it('an added disk that is not given to import is missing (ENOENT), whether or not the older disks carry txgs written since', async () => {
    for (const txgsAfter of [0, 3]) {
      const m = simMachine(2 + txgsAfter, 3, DISK_BYTES);
      const pool = await create(m, [[0]]);
      await writeData(pool, 2, 2);
      // sim0's odd labels refuse writes during the add, so they keep the config before it: an
      // older config is there to fall back to, and only the pool's own record says the add landed.
      const sim0 = m.disks[0]!;
      const odd = [1, 3].map((i) => leafLayout(sim0.size()).labelOffsets[i]!);
      const faults = odd.map((at) => sim0.injectFault({ op: 'write', effect: { kind: 'eio' }, range: [at, at + layout.labelBytes] }));
      await pool.addVdev([leaf(m, 1), leaf(m, 2)]);
      for (const f of faults) f.remove();
      expect((await readDiskLabels(sim0)).configs.map((c) => c.config.vdevs.length).sort()).toEqual([1, 1, 2, 2]);
      for (let i = 0; i < txgsAfter; i++) await writeData(pool, 10 + i, 1);
      await pool.export();
      // The mirror's uberblocks and MOS may all sit on sim0: only the pool's record tells.
      const run = Pool.import([leaf(m, 0), leaf(m, 1)], env(m));
      await expect(run).rejects.toThrow(/last seen at sim2\) is missing/);
      expect(await codeOf(Pool.import([leaf(m, 0)], env(m)))).toBe('ENOENT');
      const whole = await importLabelled(m);
      expect(shape(whole)).toBe('disk(sim0) mirror(sim1,sim2)');
      await whole.export();
    }
  });

  it('adds a plain disk and a mirror; new data spreads over them and survives export and import', async () => {
    const m = simMachine(1, 4, DISK_BYTES);
    const pool = await create(m, [[0]]);
    const data = await writeData(pool, 1, 4);
    const sizeBefore = pool.allocator.totalBytes();
    await pool.addVdev([leaf(m, 1)]);
    await pool.addVdev([leaf(m, 2), leaf(m, 3)]);
    expect(shape(pool)).toBe('disk(sim0) disk(sim1) mirror(sim2,sim3)');
    expect(pool.config.vdevs.map((v) => v.kind)).toEqual(['disk', 'disk', 'mirror']);
    expect(pool.config.txg).toBeLessThanOrEqual(pool.uberblock.txg);
    expect(pool.allocator.totalBytes()).toBeGreaterThan(2 * sizeBefore);
    await writeData(pool, 2, 12, data);
    expect(pool.allocator.vdevSpace(1).allocatedBytes).toBeGreaterThan(0);
    expect(pool.allocator.vdevSpace(2).allocatedBytes).toBeGreaterThan(0);
    await expectData(pool, data);
    await pool.checkInvariants();
    await pool.export();

    const again = await importLabelled(m);
    expect(shape(again)).toBe('disk(sim0) disk(sim1) mirror(sim2,sim3)');
    await expectData(again, data);
    await again.checkInvariants();
    await again.export();
  });

  it('refuses a disk already in the pool, a disk given twice, no disk and a disk too small', async () => {
    const m = simMachine(2, 3, DISK_BYTES);
    const pool = await create(m, [[0]]);
    expect(await codeOf(pool.addVdev([leaf(m, 0)]))).toBe('EINVAL');
    expect(await codeOf(pool.addVdev([leaf(m, 1), { ...leaf(m, 1), path: 'sim1' }]))).toBe('EINVAL');
    expect(await codeOf(pool.addVdev([]))).toBe('EINVAL');
    const tiny = simMachine(3, 1, 512 * 1024);
    expect(await codeOf(pool.addVdev([{ disk: new PowerCutDisk(tiny.disks[0] as never, tiny.power), path: 'tiny' }]))).toBe('EINVAL');
    expect(pool.vdevs).toHaveLength(1);
    await pool.checkInvariants();
    await pool.export();
  });
});

describe('pool attach', () => {
  it('an attached child that is not given to import is missing (ENOENT), even where an older config without it is at hand', async () => {
    const m = simMachine(4, 2, DISK_BYTES);
    const pool = await create(m, [[0]]);
    await writeData(pool, 4, 2);
    // sim0's odd labels refuse writes during the attach, so they keep the config before it (a
    // plain disk); the vdev count is the same either way: only the pool's record says it landed.
    const sim0 = m.disks[0]!;
    const odd = [1, 3].map((i) => leafLayout(sim0.size()).labelOffsets[i]!);
    const faults = odd.map((at) => sim0.injectFault({ op: 'write', effect: { kind: 'eio' }, range: [at, at + layout.labelBytes] }));
    await pool.attach('sim0', leaf(m, 1));
    for (const f of faults) f.remove();
    expect((await readDiskLabels(sim0)).configs.map((c) => c.config.vdevs[0]?.children.length).sort()).toEqual([1, 1, 2, 2]);
    await writeData(pool, 5, 1);
    await pool.export();
    await expect(Pool.import([leaf(m, 0)], env(m))).rejects.toThrow(/last seen at sim1\) is missing/);
    const whole = await importLabelled(m);
    expect(shape(whole)).toBe('mirror(sim0,sim1)');
    await whole.export();
  });

  it('copies every block to the new child: with the original unreadable, everything reads back from it', async () => {
    const m = simMachine(4, 2, DISK_BYTES);
    const pool = await create(m, [[0]]);
    const data = await writeData(pool, 4, 6);
    await pool.attach('sim0', leaf(m, 1));
    expect(shape(pool)).toBe('mirror(sim0,sim1)');
    expect(pool.config.vdevs[0]?.children.map((c) => c.path)).toEqual(['sim0', 'sim1']);
    await writeData(pool, 5, 2, data);
    await pool.export();

    failDataReads(m, 0);
    const again = await importLabelled(m);
    await expectData(again, data, 'after attach, original child unreadable:');
    await again.checkInvariants();
    expect(again.vdevs[0]?.children[0]?.counters.readErrors).toBeGreaterThan(0);
    await again.export();
  });

  it('keeps on the new child every intent-log record appended while attach runs', async () => {
    const m = simMachine(5, 2, DISK_BYTES);
    const pool = await create(m, [[0]]);
    const data = await writeData(pool, 6, 4);
    const { log } = await pool.namedLog('test');
    const written: Uint8Array[] = [];
    const appendOne = async (): Promise<void> => {
      const bytes = pattern(1000 + written.length, 512 + ((written.length * 997) % 4000));
      written.push(bytes);
      await log.waitDurable(log.append(bytes));
    };
    // The log's extents exist before the copy starts, so the copy reaches the block being written.
    for (let i = 0; i < 4; i++) await appendOne();
    let attached = false;
    let duringAttach = 0;
    const original = pool.vdevs[0]?.children[0];
    if (original === undefined) throw new Error('no child');
    const attach = pool.attach(original.guid, leaf(m, 1)).finally(() => {
      attached = true;
      duringAttach = written.length;
    });
    while (!attached || written.length < 16) await appendOne();
    await attach;
    expect(duringAttach).toBeGreaterThan(4);
    await pool.export();

    failDataReads(m, 0);
    const again = await importLabelled(m);
    const { records } = await again.namedLog('test');
    expect(records.map((r) => Buffer.from(r.data).toString('hex'))).toEqual(written.map((b) => Buffer.from(b).toString('hex')));
    await expectData(again, data);
    await again.checkInvariants();
    await again.export();
  });

  it('refuses a disk smaller than the vdev, an unknown child and a disk already in the pool', async () => {
    const m = simMachine(6, 3, DISK_BYTES);
    const pool = await create(m, [[0], [1]]);
    const small = simMachine(7, 1, SMALL_DISK_BYTES);
    expect(await codeOf(pool.attach('sim0', { disk: new PowerCutDisk(small.disks[0] as never, small.power), path: 'small' }))).toBe('EINVAL');
    expect(await codeOf(pool.attach('nope', leaf(m, 2)))).toBe('ENOENT');
    expect(await codeOf(pool.attach(123n as never, leaf(m, 2)))).toBe('ENOENT');
    expect(await codeOf(pool.attach('sim0', leaf(m, 1)))).toBe('EINVAL');
    expect(shape(pool)).toBe('disk(sim0) disk(sim1)');
    await pool.checkInvariants();
    await pool.export();
  });
});

describe('TopVdev.copyToChild', () => {
  const KIB4 = 4096;

  function vdevOn(m: SimMachine, slowFirst: boolean): { top: TopVdev; fresh: Leaf } {
    const disk = (i: number): PowerCutDisk => {
      const d = m.disks[i];
      if (d === undefined) throw new Error(`no disk ${i}`);
      return slowFirst && i === 0 ? new SlowWriteDisk(d, m.power) : i === 1 && !slowFirst ? new SlowWriteDisk(d, m.power) : new PowerCutDisk(d, m.power);
    };
    const top = new TopVdev({ index: 0, guid: 1n as Guid, children: [{ disk: disk(0), path: 'a', guid: 2n as Guid }] });
    return { top, fresh: new Leaf({ disk: disk(1), path: 'b', guid: 3n as Guid }) };
  }

  it('a write racing with the copy of its range is not overwritten by the older copy', async () => {
    const m = simMachine(12, 2, 4 * 1024 * 1024);
    const { top, fresh } = vdevOn(m, false);
    await top.write(0, pattern(1, 64 * 1024));
    top.addResilveringChild(fresh);
    // The copy reads the old bytes, then its write to the slow new child is overtaken by this one.
    const copy = top.copyToChild(fresh, 0, 64 * 1024);
    const write = top.writeDurable(0, pattern(2, KIB4));
    await Promise.all([copy, write]);
    expect(Buffer.from(await fresh.readData(0, KIB4)).equals(Buffer.from(pattern(2, KIB4)))).toBe(true);
    expect(Buffer.from(await fresh.readData(KIB4, KIB4)).equals(Buffer.from(pattern(1, 64 * 1024).subarray(KIB4, 2 * KIB4)))).toBe(true);
  });

  it('a write in flight before the child joined is waited for before the copy reads', async () => {
    const m = simMachine(13, 2, 4 * 1024 * 1024);
    const { top, fresh } = vdevOn(m, true);
    await top.write(0, pattern(3, 64 * 1024));
    const write = top.writeDurable(0, pattern(4, KIB4)); // reaches only the old child, slowly
    top.addResilveringChild(fresh);
    await Promise.all([top.copyToChild(fresh, 0, 64 * 1024), write]);
    expect(Buffer.from(await fresh.readData(0, KIB4)).equals(Buffer.from(pattern(4, KIB4)))).toBe(true);
  });

  it('a resilvering child serves no read, even when every other copy fails', async () => {
    const m = simMachine(14, 2, 4 * 1024 * 1024);
    const { top, fresh } = vdevOn(m, false);
    top.addResilveringChild(fresh);
    await top.write(0, pattern(5, KIB4));
    m.disks[0]?.injectFault({ op: 'read', effect: { kind: 'eio' } });
    expect(await codeOf(top.read(0, KIB4))).toBe('EIO');
    top.finishResilver(fresh);
    expect(Buffer.from(await top.read(0, KIB4)).equals(Buffer.from(pattern(5, KIB4)))).toBe(true);
  });
});

describe('pool detach', () => {
  it('turns a two-way mirror into a disk; the detached disk no longer carries a label', async () => {
    const m = simMachine(8, 2, DISK_BYTES);
    const pool = await create(m, [[0, 1]]);
    const data = await writeData(pool, 8, 4);
    await pool.detach('sim0');
    expect(shape(pool)).toBe('disk(sim1)');
    expect(pool.config.vdevs[0]?.kind).toBe('disk');
    await writeData(pool, 9, 2, data);
    await pool.export();
    expect((await readDiskLabels(m.disks[0] as never)).configs).toHaveLength(0);
    const again = await Pool.import([leaf(m, 1)], env(m));
    await expectData(again, data);
    await again.checkInvariants();
    await again.export();
  });

  it('refuses the only child of a vdev, an unknown one, and the last healthy copy', async () => {
    const m = simMachine(9, 3, DISK_BYTES);
    const pool = await create(m, [[0], [1, 2]]);
    expect(await codeOf(pool.detach('sim0'))).toBe('EINVAL');
    expect(await codeOf(pool.detach('sim9'))).toBe('ENOENT');
    const two = pool.vdevs[1]?.children[1];
    if (two === undefined) throw new Error('no child');
    two.faulted = true;
    expect(await codeOf(pool.detach('sim1'))).toBe('EBUSY');
    expect(shape(pool)).toBe('disk(sim0) mirror(sim1,sim2)');
    await pool.export();
  });
});

describe('pool reguid', () => {
  it('gives the pool a new guid that every label and the next uberblocks carry', async () => {
    const m = simMachine(10, 2, DISK_BYTES);
    const pool = await create(m, [[0], [1]]);
    const data = await writeData(pool, 10, 3);
    const old = pool.guid;
    const guid = await pool.reguid();
    expect(guid).not.toBe(old);
    expect(pool.guid).toBe(guid);
    expect(pool.uberblock.poolGuid).toBe(guid);
    await pool.export();
    for (const d of m.disks) {
      const labels = await readDiskLabels(d);
      expect(labels.configs.map((c) => c.config.poolGuid)).toEqual([guid, guid, guid, guid]);
    }
    const again = await importLabelled(m);
    expect(again.guid).toBe(guid);
    await expectData(again, data);
    await again.checkInvariants();
    await again.export();
  });
});

describe('vdev administration with a checkpoint', () => {
  it('refuses attach, detach and reguid with EBUSY while a checkpoint exists, and allows add', async () => {
    const m = simMachine(11, 4, DISK_BYTES);
    const pool = await create(m, [[0, 1]]);
    await writeData(pool, 11, 2);
    await pool.checkpoint();
    expect(pool.checkpointHeld()).toBe(true);
    expect(await codeOf(pool.attach('sim0', leaf(m, 2)))).toBe('EBUSY');
    expect(await codeOf(pool.detach('sim1'))).toBe('EBUSY');
    expect(await codeOf(pool.reguid())).toBe('EBUSY');
    await pool.addVdev([leaf(m, 3)]);
    expect(shape(pool)).toBe('mirror(sim0,sim1) disk(sim3)');
    await pool.checkInvariants();
    await pool.discardCheckpoint();
    await pool.checkpointDiscardDone();
    await pool.sync();
    expect(pool.checkpointHeld()).toBe(false);
    await pool.detach('sim1');
    await pool.reguid();
    await pool.checkInvariants();
    await pool.export();
  });
});

// ---- crash tests ----

type Change = 'add' | 'add-mirror' | 'attach' | 'detach' | 'reguid';

interface Setup {
  readonly disks: number;
  readonly vdevs: readonly (readonly number[])[];
}

const SETUPS: Record<Change, Setup> = {
  add: { disks: 2, vdevs: [[0]] },
  'add-mirror': { disks: 3, vdevs: [[0]] },
  attach: { disks: 2, vdevs: [[0]] },
  detach: { disks: 2, vdevs: [[0, 1]] },
  reguid: { disks: 2, vdevs: [[0], [1]] },
};

const BEFORE: Record<Change, string> = {
  add: 'disk(sim0)',
  'add-mirror': 'disk(sim0)',
  attach: 'disk(sim0)',
  detach: 'mirror(sim0,sim1)',
  reguid: 'disk(sim0) disk(sim1)',
};

const AFTER: Record<Change, string> = {
  add: 'disk(sim0) disk(sim1)',
  'add-mirror': 'disk(sim0) mirror(sim1,sim2)',
  attach: 'mirror(sim0,sim1)',
  detach: 'disk(sim1)',
  reguid: 'disk(sim0) disk(sim1)',
};

function change(c: Change, pool: Pool, m: SimMachine): Promise<unknown> {
  switch (c) {
    case 'add':
      return pool.addVdev([leaf(m, 1)]);
    case 'add-mirror':
      return pool.addVdev([leaf(m, 1), leaf(m, 2)]);
    case 'attach':
      return pool.attach('sim0', leaf(m, 1));
    case 'detach':
      return pool.detach('sim0');
    case 'reguid':
      return pool.reguid();
  }
}

interface Run {
  readonly m: SimMachine;
  readonly data: Data;
  readonly guid: bigint;
  /** I/Os the change took (uncut run). */
  readonly opsFrom: number;
  readonly opsTo: number;
  readonly cut: boolean;
}

/** Builds the pool and its data, then runs the change with power cut `cutAfter` I/Os into it. */
async function run(c: Change, seed: number, cutAfter: number): Promise<Run> {
  const s = SETUPS[c];
  const m = simMachine(seed, s.disks, CRASH_DISK_BYTES);
  const pool = await create(m, s.vdevs);
  const data = await writeData(pool, seed, 3);
  const guid = pool.guid;
  const opsFrom = m.power.ops;
  m.power.cutAt = opsFrom + cutAfter;
  try {
    await change(c, pool, m);
    await pool.export();
    return { m, data, guid, opsFrom, opsTo: m.power.ops, cut: false };
  } catch (e) {
    if (!hasCode(e, 'EIO') || !m.power.off) throw e;
    await pool.abandon();
    return { m, data, guid, opsFrom, opsTo: m.power.ops, cut: true };
  }
}

/**
 * After a crash: the pool imports as before or after the change, with its data and invariants.
 * With `thorough`, it also takes new data and imports again — after an attach, with the original
 * child unreadable, so the new child must hold every block.
 */
async function checkAfterCrash(c: Change, r: Run, label: string, thorough: boolean): Promise<'before' | 'after'> {
  const pool = await importLabelled(r.m);
  const now = shape(pool);
  expect([BEFORE[c], AFTER[c]], `${label}: shape`).toContain(now);
  await expectData(pool, r.data, `${label}:`);
  await pool.checkInvariants();
  const which = c === 'reguid' ? (pool.guid === r.guid ? 'before' : 'after') : now === BEFORE[c] ? 'before' : 'after';
  if (c !== 'reguid') expect(pool.guid, `${label}: guid`).toBe(r.guid);
  if (!thorough && !(c === 'attach' && which === 'after')) {
    await pool.export();
    return which;
  }
  const more = await writeData(pool, 99, 2, new Map(r.data));
  await pool.export();
  if (c === 'attach' && which === 'after') failDataReads(r.m, 0); // the copy must be complete
  const again = await (c === 'detach' && which === 'after' ? Pool.import([leaf(r.m, 1)], env(r.m)) : importLabelled(r.m));
  expect(shape(again), `${label}: shape after reimport`).toBe(now);
  await expectData(again, more, `${label} (reimported):`);
  await again.checkInvariants();
  await again.export();
  return which;
}

/**
 * Every I/O of the change when there are few; else the first ones (clearing and formatting the
 * new disks), the last ones (the labels and the uberblock, where the change becomes durable) and
 * random ones between. VDEV_CRASH_CUTS widens the sweep for soak runs.
 */
function cutPoints(total: number, seed: number): number[] {
  const width = Number(process.env['VDEV_CRASH_CUTS'] ?? 16);
  if (total <= 3 * width) return Array.from({ length: total }, (_, i) => i);
  const r = new Prng(seed);
  const points = new Set<number>();
  for (let i = 0; i < width; i++) points.add(i);
  for (let i = total - width - 12; i < total; i++) points.add(i);
  for (let i = 0; i < width; i++) points.add(r.int(total));
  return [...points].sort((a, b) => a - b);
}

describe('vdev administration crash safety', () => {
  /**
   * A mirror add cut after one new disk took the new config: sim1's labels name the mirror
   * (sim1, sim2), sim2 has no label, no uberblock of the change landed. The pool's data is returned.
   */
  async function addCutAfterOneNewDisk(m: SimMachine): Promise<Data> {
    const pool = await create(m, [[0]]);
    const data = await writeData(pool, 31, 3);
    const sim2 = m.disks[2];
    if (sim2 === undefined) throw new Error('no disk 2');
    await expect(pool.addVdev([leaf(m, 1), { disk: new PowerCutAtConfigSync(sim2, m.power), path: 'sim2' }])).rejects.toThrow(/no label could be written/);
    await pool.abandon();
    m.crash();
    const sim1Configs = (await readDiskLabels(m.disks[1]!)).configs;
    expect(sim1Configs.some((c) => c.config.vdevs.length === 2)).toBe(true);
    expect((await readDiskLabels(sim2)).configs).toEqual([]);
    return data;
  }

  /**
   * An attach cut once the new child's labels took the new config (they go first, before any
   * other label names it) and before anything else of the change: sim1's labels name the mirror,
   * sim0's the plain disk, no uberblock of the change landed. The pool's data is returned.
   */
  async function attachCutAfterChildLabels(m: SimMachine): Promise<Data> {
    const pool = await create(m, [[0]]);
    const data = await writeData(pool, 41, 3);
    const sim1 = m.disks[1];
    if (sim1 === undefined) throw new Error('no disk 1');
    await expect(pool.attach('sim0', { disk: new PowerCutAfterConfigSync(sim1, m.power), path: 'sim1' })).rejects.toThrow(/failed to sync/);
    await pool.abandon();
    m.crash();
    const children = async (d: SimDisk): Promise<number[]> => (await readDiskLabels(d)).configs.map((c) => c.config.vdevs[0]?.children.length ?? 0);
    expect(new Set(await children(sim1))).toEqual(new Set([2]));
    expect(new Set(await children(m.disks[0]!))).toEqual(new Set([1]));
    return data;
  }

  it('an attach cut after the new child took the new config, the pool then used from the old disk alone: a later import with both passes the stale child over', async () => {
    const m = simMachine(41, 2, CRASH_DISK_BYTES);
    const data = await attachCutAfterChildLabels(m);
    // A pool cache lists the disks of the last config the pool had: the old disk only.
    const alone = await Pool.import([leaf(m, 0)], env(m));
    expect(shape(alone)).toBe('disk(sim0)');
    // Txgs past the config sim1 carries, which sim1 never sees.
    const more = await writeData(alone, 42, 2, new Map(data));
    await alone.export();
    const both = await importLabelled(m);
    expect(shape(both)).toBe('disk(sim0)');
    await expectData(both, more, 'imported with both:');
    const more2 = await writeData(both, 43, 1, new Map(more));
    await both.export();
    const again = await importLabelled(m);
    expect(shape(again)).toBe('disk(sim0)');
    await expectData(again, more2, 'imported again:');
    await again.checkInvariants();
    // sim1 can be attached again, and then holds everything.
    await again.attach('sim0', leaf(m, 1));
    expect(shape(again)).toBe('mirror(sim0,sim1)');
    await again.export();
    failDataReads(m, 0);
    const mirror = await importLabelled(m);
    await expectData(mirror, more2, 'from the re-attached child:');
    await mirror.export();
  });

  it('an attach cut after the new child took the new config, imported with both at once: the mirror stands and stays after new txgs', async () => {
    const m = simMachine(44, 2, CRASH_DISK_BYTES);
    const data = await attachCutAfterChildLabels(m);
    // No txg passed the change: sim1 holds a full copy of the pool as it was, so the mirror is taken.
    const both = await importLabelled(m);
    expect(shape(both)).toBe('mirror(sim0,sim1)');
    const more = await writeData(both, 45, 2, new Map(data));
    await both.export();
    const again = await importLabelled(m);
    expect(shape(again)).toBe('mirror(sim0,sim1)');
    await expectData(again, more, 'imported again:');
    await again.export();
    failDataReads(m, 0);
    const fromChild = await importLabelled(m);
    await expectData(fromChild, more, 'from the child alone:');
    await fromChild.export();
  });

  it('a power cut at any I/O of the import that takes such an attach leaves the mirror, relabelled or not', async () => {
    const uncut = simMachine(46, 2, CRASH_DISK_BYTES);
    await attachCutAfterChildLabels(uncut);
    const from = uncut.power.ops;
    await (await importLabelled(uncut)).export();
    const total = uncut.power.ops - from;
    expect(total).toBeGreaterThan(0);
    // Sampled as the change sweeps below are (VDEV_CRASH_CUTS=<large> takes every I/O).
    for (const k of cutPoints(total, 46)) {
      const m = simMachine(46, 2, CRASH_DISK_BYTES);
      const data = await attachCutAfterChildLabels(m);
      m.power.cutAt = m.power.ops + k;
      await importLabelled(m).then(
        (pool) => pool.abandon(),
        (e: unknown) => {
          if (!m.power.off) throw e;
        },
      );
      m.crash();
      const pool = await importLabelled(m);
      const label = `cut at I/O ${k}/${total}`;
      expect(shape(pool), label).toBe('mirror(sim0,sim1)');
      await expectData(pool, data, `${label}:`);
      const more = await writeData(pool, 47, 1, new Map(data));
      await pool.export();
      const again = await importLabelled(m);
      expect(shape(again), `${label}, imported again`).toBe('mirror(sim0,sim1)');
      await expectData(again, more, `${label}, imported again:`);
      await again.checkInvariants();
      await again.export();
      await idle();
    }
  }, 120_000);

  for (const firstWith of ['every labelled disk', 'the old disk only'] as const) {
    it(`an add of a mirror cut after one new disk took the new config: imported first with ${firstWith}, the pool is as before, and stays so after new txgs`, async () => {
      const m = simMachine(31, 3, CRASH_DISK_BYTES);
      const data = await addCutAfterOneNewDisk(m);
      // A pool cache lists the disks of the last config the pool had: the old disk only.
      const first = await (firstWith === 'the old disk only' ? Pool.import([leaf(m, 0)], env(m)) : importLabelled(m));
      expect(shape(first)).toBe('disk(sim0)');
      await expectData(first, data, 'after the crash:');
      // New txgs pass the config sim1 carries; it must still not be taken for the pool's.
      const more = await writeData(first, 32, 2, new Map(data));
      await first.export();
      const again = await importLabelled(m);
      expect(shape(again)).toBe('disk(sim0)');
      await expectData(again, more, 'imported again:');
      await again.checkInvariants();
      await again.export();
    });
  }

  it('a power cut at any I/O of the import that relabels after such a crash leaves the pool as before, relabelled or not', async () => {
    const uncut = simMachine(31, 3, CRASH_DISK_BYTES);
    await addCutAfterOneNewDisk(uncut);
    const from = uncut.power.ops;
    await (await importLabelled(uncut)).export();
    const total = uncut.power.ops - from;
    expect(total).toBeGreaterThan(0);
    for (let k = 0; k < total; k++) {
      const m = simMachine(31, 3, CRASH_DISK_BYTES);
      const data = await addCutAfterOneNewDisk(m);
      m.power.cutAt = m.power.ops + k;
      const cut = await importLabelled(m).then(
        async (pool) => {
          await pool.abandon();
          return false;
        },
        (e: unknown) => {
          // With the power off reads fail too: before the first write the import fails reading.
          if (!m.power.off) throw e;
          return true;
        },
      );
      expect(cut || k >= total - 1, `cut at I/O ${k}/${total}`).toBe(true);
      m.crash();
      const pool = await importLabelled(m);
      expect(shape(pool), `cut at I/O ${k}/${total}`).toBe('disk(sim0)');
      await expectData(pool, data, `cut at I/O ${k}/${total}:`);
      const more = await writeData(pool, 33, 1, new Map(data));
      await pool.export();
      const again = await importLabelled(m);
      expect(shape(again), `cut at I/O ${k}/${total}, imported again`).toBe('disk(sim0)');
      await expectData(again, more, `cut at I/O ${k}/${total}, imported again:`);
      await again.checkInvariants();
      await again.export();
      await idle();
    }
  }, 120_000);

  const changes: Change[] = ['add', 'add-mirror', 'attach', 'detach', 'reguid'];
  for (const c of changes) {
    it(`a power cut at any I/O of ${c} leaves the pool importable as before or after it`, async () => {
      const seed = 21 + changes.indexOf(c);
      const full = await run(c, seed, Number.POSITIVE_INFINITY);
      expect(full.cut).toBe(false);
      const total = full.opsTo - full.opsFrom;
      const seen = { before: 0, after: 0 };
      for (const [i, k] of cutPoints(total, seed).entries()) {
        const r = await run(c, seed, k);
        r.m.crash();
        seen[await checkAfterCrash(c, r, `${c} seed ${seed} cut at I/O ${k}/${total}`, i % 4 === 0)]++;
        // SimDisks answer in microtasks: a turn of the event loop keeps the runner's messages flowing.
        await idle();
      }
      // The sweep really crossed the point where the change became durable.
      expect(seen.before).toBeGreaterThan(0);
      expect(seen.after).toBeGreaterThan(0);
    }, 300_000);
  }
});
