// Crash tests of the dataset layer: a seeded workload of keyed puts/writes/removes, dataset
// creation, snapshots (some taken in the same txg as the data before them), snapshot and clone
// destroys, rollbacks (with and without -r), clones, bookmarks and holds runs on SimDisks behind
// a power switch. Every step ends with its change durable in exactly one txg, so a naive model
// (names → Map of key bytes; a snapshot is a frozen copy, rollback restores it, a clone copies
// it) gives the state each uberblock covers. Power is cut at the last I/O of every step and the
// first of the next (each step's one txg sync ends there), at the fsync that would make each
// step's uberblock durable, and at random I/Os; the disks keep, drop or tear each unsynced write.
// Import must then succeed, the pool's invariants (space figures, deadlists, no leaked or doubly
// used block) must hold, and every dataset, snapshot, bookmark, hold and key byte must be exactly
// that of the last durable txg — or of the txg in progress when its uberblock reached a label
// before the cut. Every few cuts the pool must also take new work and survive export.
// Failures name the seed, the cut I/O and the step (operation) in progress.
import { describe, expect, it } from 'vitest';
import { AssertionFailure, MirrorpoolError, PowerCutDisk, type PowerSwitch, Prng, type SimDisk, hasCode, idle } from '../lib/index.js';
import type { DatasetView } from './dsl.js';
import * as keyed from './keyed.js';
import { Pool, type PoolTuning } from './pool.js';
import { type SimMachine, TEST_TUNING, importSimPool, pattern, simMachine } from './test-support.js';

type Keys = Map<string, Uint8Array>;

interface Head {
  keys: Keys;
  /** Snapshot names, oldest first. */
  snaps: string[];
  origin?: string;
}

interface Snap {
  readonly keys: Keys;
  readonly holds: Set<string>;
  clones: number;
}

interface Model {
  readonly heads: Map<string, Head>;
  readonly snaps: Map<string, Snap>;
  readonly bookmarks: Set<string>;
}

type Edit =
  | { op: 'put'; ds: string; key: string; seed: number; len: number }
  | { op: 'write'; ds: string; key: string; seed: number; offset: number; len: number }
  | { op: 'rm'; ds: string; key: string };

type Op =
  /** Edits in one txg; with `snapshot`, that snapshot is taken in the same txg. */
  | { op: 'data'; edits: Edit[]; snapshot?: string }
  | { op: 'create'; ds: string; recordsize?: string }
  | { op: 'snapshot'; snap: string }
  | { op: 'destroy'; name: string }
  | { op: 'rollback'; snap: string; recursive: boolean }
  | { op: 'clone'; snap: string; ds: string }
  | { op: 'bookmark'; snap: string; mark: string }
  | { op: 'hold'; snap: string; tag: string }
  | { op: 'release'; snap: string; tag: string };

const BASE_HEADS = ['tank/a', 'tank/b'];
const EXTRA_HEADS = ['tank/n0', 'tank/a/n1'];
const CLONES = ['tank/c0', 'tank/c1', 'tank/c2'];
const KEYS = ['k0', 'k1', 'k2', 'dir/k3'];
const SNAPS = ['s0', 's1', 's2', 's3'];
const TAGS = ['t0', 't1'];
const STEPS = 20;
/** Random cut points per seed, on top of the ones around every step boundary and fsync. */
const RANDOM_CUTS = 10;
/**
 * A txg sync ends with two label phases, each writing the uberblock to every disk and then
 * syncing every disk (two disks here), so its 4th fsync from the end is the first after the
 * uberblock's first copies: a cut there fails the call while those copies, unsynced, may survive,
 * and import must then show that txg.
 */
const UBERBLOCK_SYNC_FROM_END = 4;
/** One cut in this many also checks the pool takes new work and survives export afterwards. */
const USABLE_EVERY = 4;
/**
 * Replays up to a cut skip the per-txg invariant walk: the uncut run did it after every txg of
 * the same workload, and the check after import covers the crash.
 */
const CUT_TUNING: PoolTuning = { ...TEST_TUNING, checkEveryTxg: false };

function emptyModel(): Model {
  return { heads: new Map(), snaps: new Map(), bookmarks: new Set() };
}

/** A copy that later steps cannot change (key bytes are never changed in place). */
function copyModel(m: Model): Model {
  return {
    heads: new Map([...m.heads].map(([n, h]) => [n, { ...h, keys: new Map(h.keys), snaps: [...h.snaps] }])),
    snaps: new Map([...m.snaps].map(([n, s]) => [n, { keys: s.keys, holds: new Set(s.holds), clones: s.clones }])),
    bookmarks: new Set(m.bookmarks),
  };
}

function pick<T>(r: Prng, items: readonly T[]): T {
  const item = items[r.int(items.length)];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

function headOf(full: string): string {
  return full.split(/[@#]/)[0] ?? '';
}

/** The edits of one txg, valid against the model as it stands. */
function dataEdits(r: Prng, m: Model): Edit[] {
  const keysNow = new Map([...m.heads].map(([n, h]) => [n, new Set(h.keys.keys())]));
  const edits: Edit[] = [];
  for (let i = 1 + r.int(3); i > 0; i--) {
    const ds = pick(r, [...keysNow.keys()]);
    const present = [...(keysNow.get(ds) ?? [])];
    const choice = r.int(10);
    if (present.length === 0 || choice < 6) {
      const key = pick(r, KEYS);
      const len = r.chance(0.25) ? 1 + r.int(120_000) : r.int(6000);
      edits.push({ op: 'put', ds, key, seed: r.u32(), len });
      keysNow.get(ds)?.add(key);
    } else if (choice < 9) {
      edits.push({ op: 'write', ds, key: pick(r, present), seed: r.u32(), offset: r.int(50_000), len: 1 + r.int(16_000) });
    } else {
      const key = pick(r, present);
      edits.push({ op: 'rm', ds, key });
      keysNow.get(ds)?.delete(key);
    }
  }
  return edits;
}

/** The next operation: mostly ones that succeed, sometimes one the DSL must refuse. */
function nextOp(r: Prng, m: Model, step: number): Op {
  const base = BASE_HEADS[step];
  if (base !== undefined) return step === 0 ? { op: 'create', ds: base, recordsize: '4K' } : { op: 'create', ds: base };
  const heads = [...m.heads.keys()];
  const snaps = [...m.snaps.keys()];
  const freeSnapName = (ds: string): string | undefined => SNAPS.find((s) => !m.snaps.has(`${ds}@${s}`));
  for (;;) {
    const choice = r.int(24);
    if (choice < 8) return { op: 'data', edits: dataEdits(r, m) };
    if (choice < 10) {
      const edits = dataEdits(r, m);
      const ds = pick(r, edits).ds;
      const name = freeSnapName(ds);
      if (name !== undefined) return { op: 'data', edits, snapshot: `${ds}@${name}` };
      continue;
    }
    if (choice < 13) {
      const ds = pick(r, heads);
      const name = freeSnapName(ds);
      if (name !== undefined) return { op: 'snapshot', snap: `${ds}@${name}` };
      continue;
    }
    if (snaps.length === 0) continue;
    const snap = pick(r, snaps);
    if (choice < 15) return { op: 'destroy', name: snap };
    if (choice < 17) return { op: 'rollback', snap, recursive: r.chance(0.75) };
    if (choice === 17) {
      const ds = CLONES.find((c) => !m.heads.has(c));
      if (ds !== undefined) return { op: 'clone', snap, ds };
      continue;
    }
    if (choice === 18) {
      const doomed = heads.filter((h) => !BASE_HEADS.includes(h));
      if (doomed.length > 0) return { op: 'destroy', name: pick(r, doomed) };
      continue;
    }
    if (choice === 19) {
      const ds = EXTRA_HEADS.find((h) => !m.heads.has(h));
      if (ds !== undefined) return r.chance(0.5) ? { op: 'create', ds, recordsize: '16K' } : { op: 'create', ds };
      continue;
    }
    if (choice === 20) return { op: 'bookmark', snap, mark: `${headOf(snap)}#${pick(r, SNAPS)}` };
    if (choice === 21 && m.bookmarks.size > 0) return { op: 'destroy', name: pick(r, [...m.bookmarks]) };
    if (choice === 22) return { op: 'hold', snap, tag: pick(r, TAGS) };
    if (choice === 23) {
      const held = [...m.snaps].filter(([, s]) => s.holds.size > 0);
      if (held.length === 0 || r.chance(0.2)) return { op: 'release', snap, tag: pick(r, TAGS) };
      const [name, s] = pick(r, held);
      return { op: 'release', snap: name, tag: pick(r, [...s.holds]) };
    }
  }
}

function withWrite(cur: Uint8Array | undefined, offset: number, data: Uint8Array): Uint8Array {
  const base = cur ?? new Uint8Array(0);
  const out = new Uint8Array(Math.max(base.length, offset + data.length));
  out.set(base);
  out.set(data, offset);
  return out;
}

function snapBusy(s: Snap | undefined): boolean {
  return s !== undefined && (s.holds.size > 0 || s.clones > 0);
}

/** Applies `o` to the model; returns the code the pool must answer with ('ok' for none). */
function expected(m: Model, o: Op): string {
  switch (o.op) {
    case 'data': {
      for (const e of o.edits) {
        const head = m.heads.get(e.ds);
        if (head === undefined) throw new Error(`workload bug: edit of missing ${e.ds}`);
        if (e.op === 'put') head.keys.set(e.key, pattern(e.seed, e.len));
        else if (e.op === 'write') head.keys.set(e.key, withWrite(head.keys.get(e.key), e.offset, pattern(e.seed, e.len)));
        else head.keys.delete(e.key);
      }
      return o.snapshot === undefined ? 'ok' : expected(m, { op: 'snapshot', snap: o.snapshot });
    }
    case 'create':
      m.heads.set(o.ds, { keys: new Map(), snaps: [] });
      return 'ok';
    case 'snapshot': {
      const head = m.heads.get(headOf(o.snap));
      if (head === undefined) return 'ENOENT';
      if (m.snaps.has(o.snap)) return 'EEXIST';
      m.snaps.set(o.snap, { keys: new Map(head.keys), holds: new Set(), clones: 0 });
      head.snaps.push(o.snap.slice(o.snap.indexOf('@') + 1));
      return 'ok';
    }
    case 'destroy':
      return destroyed(m, o.name);
    case 'rollback': {
      const ds = headOf(o.snap);
      const head = m.heads.get(ds);
      const snap = m.snaps.get(o.snap);
      if (head === undefined || snap === undefined) return 'ENOENT';
      const at = head.snaps.indexOf(o.snap.slice(ds.length + 1));
      const newer = head.snaps.slice(at + 1).map((s) => `${ds}@${s}`);
      if (newer.length > 0 && !o.recursive) return 'EEXIST';
      if (newer.some((s) => snapBusy(m.snaps.get(s)))) return 'EBUSY';
      for (const s of newer) m.snaps.delete(s);
      head.snaps.length = at + 1;
      head.keys = new Map(snap.keys);
      return 'ok';
    }
    case 'clone': {
      const snap = m.snaps.get(o.snap);
      if (snap === undefined) return 'ENOENT';
      snap.clones++;
      m.heads.set(o.ds, { keys: new Map(snap.keys), snaps: [], origin: o.snap });
      return 'ok';
    }
    case 'bookmark':
      if (!m.snaps.has(o.snap)) return 'ENOENT';
      if (m.bookmarks.has(o.mark)) return 'EEXIST';
      m.bookmarks.add(o.mark);
      return 'ok';
    case 'hold': {
      const snap = m.snaps.get(o.snap);
      if (snap === undefined) return 'ENOENT';
      if (snap.holds.has(o.tag)) return 'EEXIST';
      snap.holds.add(o.tag);
      return 'ok';
    }
    case 'release':
      return m.snaps.get(o.snap)?.holds.delete(o.tag) === true ? 'ok' : 'ENOENT';
  }
}

function destroyed(m: Model, name: string): string {
  if (name.includes('#')) return m.bookmarks.delete(name) ? 'ok' : 'ENOENT';
  if (name.includes('@')) {
    const snap = m.snaps.get(name);
    const head = m.heads.get(headOf(name));
    if (snap === undefined || head === undefined) return 'ENOENT';
    if (snapBusy(snap)) return 'EBUSY';
    m.snaps.delete(name);
    head.snaps.splice(head.snaps.indexOf(name.slice(name.indexOf('@') + 1)), 1);
    return 'ok';
  }
  const head = m.heads.get(name);
  if (head === undefined) return 'ENOENT';
  if (head.snaps.some((s) => snapBusy(m.snaps.get(`${name}@${s}`)))) return 'EBUSY';
  for (const s of head.snaps) m.snaps.delete(`${name}@${s}`);
  for (const b of [...m.bookmarks]) if (headOf(b) === name) m.bookmarks.delete(b);
  const origin = head.origin === undefined ? undefined : m.snaps.get(head.origin);
  if (origin !== undefined) origin.clones--;
  m.heads.delete(name);
  return 'ok';
}

async function edit(pool: Pool, view: DatasetView, e: Edit): Promise<void> {
  const assign = (): ReturnType<Pool['assign']> => pool.assign();
  if (e.op === 'put') await keyed.putKey(view, assign, e.key, pattern(e.seed, e.len));
  else if (e.op === 'write') await keyed.writeKey(view, assign, e.key, e.offset, pattern(e.seed, e.len));
  else await keyed.removeKey(view, assign, e.key);
}

async function apply(pool: Pool, o: Op): Promise<void> {
  switch (o.op) {
    case 'data':
      for (const e of o.edits) await pool.dsl.withView(e.ds, 'write', (v) => edit(pool, v, e));
      // Without a sync in between, the snapshot's txg is the one holding the edits.
      if (o.snapshot !== undefined) await pool.dsl.snapshot(o.snapshot);
      else await pool.sync();
      return;
    case 'create':
      return pool.dsl.create(o.ds, o.recordsize === undefined ? new Map() : new Map([['recordsize', o.recordsize]]));
    case 'snapshot':
      return pool.dsl.snapshot(o.snap);
    case 'destroy':
      return pool.dsl.destroy(o.name, { recursive: !o.name.includes('@') && !o.name.includes('#') });
    case 'rollback':
      return pool.dsl.rollback(o.snap, { recursive: o.recursive });
    case 'clone':
      return pool.dsl.clone(o.snap, o.ds);
    case 'bookmark':
      return pool.dsl.bookmark(o.snap, o.mark);
    case 'hold':
      return pool.dsl.hold(o.tag, o.snap);
    case 'release':
      return pool.dsl.release(o.tag, o.snap);
  }
}

/** A PowerCutDisk that tells which I/O number each of its syncs is (for cut points). */
class SyncTapDisk extends PowerCutDisk {
  constructor(
    inner: SimDisk,
    private readonly switchOf: PowerSwitch,
    private readonly syncs: number[],
  ) {
    super(inner, switchOf);
  }

  override sync(): Promise<void> {
    this.syncs.push(this.switchOf.ops);
    return super.sync();
  }
}

/** The code an operation ended with; a power cut propagates (it ends the run). */
async function outcome(m: SimMachine, run: () => Promise<void>): Promise<string> {
  try {
    await run();
    return 'ok';
  } catch (e) {
    // A refusal comes before any I/O, so it can follow a cut that no I/O has run into yet.
    if (e instanceof MirrorpoolError && !(hasCode(e, 'EIO') && m.power.off)) return e.code;
    throw e;
  }
}

interface Run {
  readonly m: SimMachine;
  /** The pool still open when the run was not cut. */
  readonly pool: Pool | null;
  /** Model state at the uberblock txg each completed step left (and at pool creation). */
  readonly states: Map<number, Model>;
  /** Uberblock txg after each completed step. */
  readonly ubs: number[];
  /** The uberblock txg at pool creation. */
  readonly firstUb: number;
  /** What the step in progress at the cut would have left. */
  readonly pending: Model | null;
  readonly ops: Op[];
  /** I/O count at the start and end of every step. */
  readonly boundaries: number[];
  /** I/O number of every disk sync, in order. */
  readonly syncs: number[];
  readonly ioTotal: number;
  readonly cut: boolean;
}

/** Runs the deterministic workload of `seed`; stops at the first I/O after power is cut. */
async function workload(seed: number, cutAt: number, tuning: PoolTuning = TEST_TUNING): Promise<Run> {
  const m = simMachine(seed, 2, 16 * 1024 * 1024);
  const r = new Prng(seed ^ 0x2545f491);
  const model = emptyModel();
  const states = new Map<number, Model>();
  const ubs: number[] = [];
  const ops: Op[] = [];
  const boundaries: number[] = [];
  const syncs: number[] = [];
  let firstUb = 0;
  let pending: Model | null = null;
  let pool: Pool | null = null;
  try {
    const leaves = m.disks.map((d, i) => ({ disk: new SyncTapDisk(d, m.power, syncs), path: `sim${i}` }));
    pool = await Pool.create('tank', leaves.map((l) => [l]), { clock: m.clock, random: m.random, tuning });
    firstUb = pool.uberblock.txg;
    states.set(firstUb, copyModel(model));
    m.power.cutAt = cutAt;
    for (let step = 0; step < STEPS; step++) {
      const o = nextOp(r, model, step);
      ops.push(o);
      const want = expected(model, o);
      pending = copyModel(model);
      const label = `seed ${seed} step ${step} ${JSON.stringify(o)}`;
      const before = pool.uberblock.txg;
      boundaries.push(m.power.ops);
      const p = pool;
      expect(await outcome(m, () => apply(p, o)), label).toBe(want);
      boundaries.push(m.power.ops);
      const after = pool.uberblock.txg;
      // A change is durable once its call returns; a refusal writes nothing.
      if (want === 'ok') expect(after, `${label}: a new uberblock`).toBeGreaterThan(before);
      else expect(after, `${label}: no new uberblock`).toBe(before);
      states.set(after, pending);
      ubs.push(after);
      pending = null;
    }
    return { m, pool, states, ubs, firstUb, pending, ops, boundaries, syncs, ioTotal: m.power.ops, cut: false };
  } catch (e) {
    if (!hasCode(e, 'EIO') || !m.power.off) {
      // The engine's own failures (a broken invariant after a txg) get the repro in front.
      if (e instanceof AssertionFailure || e instanceof MirrorpoolError) {
        throw new Error(`seed ${seed} cut at I/O ${cutAt}, step ${ops.length - 1} ${JSON.stringify(ops.at(-1))}: ${e.message}`, { cause: e });
      }
      throw e;
    }
    await pool?.abandon();
    return { m, pool: null, states, ubs, firstUb, pending, ops, boundaries, syncs, ioTotal: m.power.ops, cut: true };
  }
}

/** Every name, snapshot order, origin, hold and key byte of the pool equals the model. */
async function expectModel(pool: Pool, model: Model, label: string): Promise<void> {
  const entries = (await pool.dsl.list({ types: ['filesystem', 'snapshot', 'bookmark'] })).filter((e) => e.name !== 'tank');
  const names = (type: string): string[] => entries.filter((e) => e.type === type).map((e) => e.name).sort();
  expect(names('filesystem'), `${label}: datasets`).toEqual([...model.heads.keys()].sort());
  expect(names('snapshot'), `${label}: snapshots`).toEqual([...model.snaps.keys()].sort());
  expect(names('bookmark'), `${label}: bookmarks`).toEqual([...model.bookmarks].sort());
  for (const [name, head] of model.heads) {
    const chain = entries.filter((e) => e.type === 'snapshot' && headOf(e.name) === name).map((e) => e.name);
    expect(chain, `${label}: snapshots of ${name}, oldest first`).toEqual(head.snaps.map((s) => `${name}@${s}`));
    expect(entries.find((e) => e.name === name)?.origin, `${label}: origin of ${name}`).toBe(head.origin);
    await expectKeys(pool, name, head.keys, label);
  }
  for (const [name, snap] of model.snaps) {
    expect([...pool.dsl.holds(name).keys()].sort(), `${label}: holds of ${name}`).toEqual([...snap.holds].sort());
    await expectKeys(pool, name, snap.keys, label);
  }
}

async function expectKeys(pool: Pool, name: string, keys: Keys, label: string): Promise<void> {
  await pool.dsl.withView(name, 'read', async (v) => {
    const infos = await keyed.listKeys(v);
    expect(infos.map((k) => k.key), `${label}: keys of ${name}`).toEqual([...keys.keys()].sort());
    for (const info of infos) {
      const got = await keyed.readKey(v, info.key, 0, info.size + 1);
      const want = keys.get(info.key) ?? new Uint8Array(0);
      expect(Buffer.from(got).equals(Buffer.from(want)), `${label}: ${name} key ${info.key} (${got.length} vs ${want.length} bytes)`).toBe(true);
    }
  });
}

/** Runs `fn`, putting `label` (seed, cut, step) in front of any error it throws. */
async function labelled<T>(label: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw new Error(`${label}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/**
 * Cut points: at the last I/O of every step and the first of the next, at the fsync that makes each step's uberblock durable
 * on its first disk, plus random I/Os (the seed picks them).
 */
function cutPoints(seed: number, full: Run): number[] {
  const r = new Prng(seed);
  const points = new Set<number>();
  for (let i = 0; i < RANDOM_CUTS; i++) points.add(r.int(full.ioTotal));
  for (const b of full.boundaries) for (const d of [-1, 0]) if (b + d >= 0 && b + d < full.ioTotal) points.add(b + d);
  for (let i = 0; i + 1 < full.boundaries.length; i += 2) {
    const [start = 0, end = 0] = full.boundaries.slice(i, i + 2);
    const inStep = full.syncs.filter((s) => s >= start && s < end);
    const at = inStep[inStep.length - UBERBLOCK_SYNC_FROM_END];
    if (at !== undefined) points.add(at);
  }
  return [...points].sort((a, b) => a - b);
}

/** After a crash, the pool still takes a dataset, data and a snapshot, and they survive export. */
async function expectUsable(m: SimMachine, pool: Pool, cutAt: number, label: string): Promise<void> {
  const data = pattern(cutAt, 30_000);
  await pool.dsl.create('tank/after');
  await pool.dsl.withView('tank/after', 'write', (v) => keyed.putKey(v, () => pool.assign(), 'k', data));
  await pool.dsl.snapshot('tank/after@s');
  await pool.export();
  const again = await importSimPool(m);
  try {
    const got = await again.dsl.withView('tank/after@s', 'read', (v) => keyed.readKey(v, 'k', 0, data.length + 1));
    expect(Buffer.from(got).equals(Buffer.from(data)), `${label}: data written after the crash`).toBe(true);
    await again.checkInvariants();
  } finally {
    await again.export();
  }
}

// CRASH_SEEDS widens the sweep like pool-crash.test.ts (npm run sim, npm run test:crash).
const SEEDS = Array.from({ length: Number(process.env['CRASH_SEEDS'] ?? 2) }, (_, i) => 301 + i);

describe('dataset layer crash safety', () => {
  for (const seed of SEEDS) {
    it(`imports the datasets, snapshots and keys of the last durable txg after power loss at any I/O (seed ${seed})`, async () => {
      const full = await workload(seed, Number.POSITIVE_INFINITY);
      expect(full.cut, `seed ${seed}`).toBe(false);
      await full.pool?.checkInvariants();
      await full.pool?.export();
      for (const [i, cutAt] of cutPoints(seed, full).entries()) {
        const run = await workload(seed, cutAt, CUT_TUNING);
        // A cut at the last label sync may leave the run whole: the other disk's labels count.
        await run.pool?.abandon();
        run.m.crash();
        const step = run.ubs.length;
        const label = `seed ${seed} cut at I/O ${cutAt}/${full.ioTotal} in step ${step} ${JSON.stringify(run.ops[step])}`;
        const pool = await labelled(`${label}: import`, () => importSimPool(run.m));
        const t = pool.uberblock.txg;
        const last = run.ubs.at(-1) ?? run.firstUb;
        // The last completed step's txg, or the txg of the step in progress if its uberblock landed.
        expect([last, full.ubs[step] ?? last], label).toContain(t);
        const want = t === last ? run.states.get(last) : run.pending;
        expect(want, `${label}: no model state for txg ${t}`).toBeDefined();
        await labelled(`${label} (txg ${t})`, () => pool.checkInvariants());
        await expectModel(pool, want ?? emptyModel(), `${label} (txg ${t})`);
        if (i % USABLE_EVERY === 0) await labelled(label, () => expectUsable(run.m, pool, cutAt, label));
        else await pool.export();
        // SimDisks answer in microtasks: without a turn of the event loop now and then, a long
        // sweep starves the test runner's own messages (it reports an RPC timeout).
        await idle();
      }
    }, 300_000);
  }
});
