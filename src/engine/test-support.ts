// Test support for the engine: pools on SimDisks behind a power switch (lib/power-cut.ts), so
// crash tests can cut power at every I/O boundary of a workload. Used only by tests.

import { PowerCutDisk, PowerSwitch, Prng, SimClock, SimDisk, idle, sha256 } from '../lib/index.js';
import * as keyed from './keyed.js';
import { type LeafInput, Pool, type PoolTuning } from './pool.js';
import type { BlockPointer } from './types.js';
import { leafLayout } from './vdev.js';

export interface SimMachine {
  readonly seed: number;
  readonly random: Prng;
  readonly clock: SimClock;
  readonly disks: SimDisk[];
  readonly power: PowerSwitch;
  /** The disks as the pool sees them (behind the power switch). */
  leaves(): LeafInput[];
  /** Power loss: every disk crashes (keeping, dropping or tearing unsynced writes); power returns. */
  crash(): void;
}

export function simMachine(seed: number, disks = 2, diskBytes = 32 * 1024 * 1024): SimMachine {
  const random = new Prng(seed);
  const sims = Array.from({ length: disks }, () => new SimDisk({ sizeBytes: diskBytes, random: random.fork() }));
  const power = new PowerSwitch();
  return {
    seed,
    random,
    clock: new SimClock(),
    disks: sims,
    power,
    leaves: () => sims.map((d, i) => ({ disk: new PowerCutDisk(d, power), path: `sim${i}` })),
    crash: () => {
      for (const d of sims) d.crash('random');
      power.ops = 0;
      power.cutAt = Number.POSITIVE_INFINITY;
    },
  };
}

/** The leaf byte where copy `copy` of a block starts, on its (single-disk) top-level vdev. */
export function leafByte(m: SimMachine, bp: BlockPointer, copy: number): { disk: SimDisk; at: number } {
  const dva = bp.dvas[copy];
  if (dva === undefined) throw new Error(`no copy ${copy}`);
  const disk = m.disks[dva.vdev];
  if (disk === undefined) throw new Error(`no disk ${dva.vdev}`);
  return { disk, at: leafLayout(disk.size()).dataStartBytes + dva.offset };
}

export const TEST_TUNING: PoolTuning = { txgTimeoutMs: 0, checkEveryTxg: true, dirtyMaxBytes: 64 * 1024 * 1024 };

// Each of these first lets the event loop turn. A simulated disk completes every operation at
// once, so a sweep of crashes and imports runs as one chain of microtasks; without a turn now and
// then, the test worker reads no message for minutes and its calls to the runner time out.

/** A pool striped over the machine's disks (one top-level vdev each). */
export async function createSimPool(m: SimMachine, tuning: PoolTuning = TEST_TUNING): Promise<Pool> {
  await idle();
  return Pool.create('tank', m.leaves().map((l) => [l]), { clock: m.clock, random: m.random, tuning });
}

export async function importSimPool(m: SimMachine, tuning: PoolTuning = TEST_TUNING): Promise<Pool> {
  await idle();
  return Pool.import(m.leaves(), { clock: m.clock, random: m.random, tuning });
}

/** Imports the pool rewound to its checkpoint. */
export async function rewindSimPool(m: SimMachine, tuning: PoolTuning = TEST_TUNING): Promise<Pool> {
  await idle();
  return Pool.import(m.leaves(), { clock: m.clock, random: m.random, tuning }, { rewindToCheckpoint: true });
}

/** Writes key `key` of dataset `ds` whole (durable on return with `sync`). */
export async function putKey(pool: Pool, ds: string, key: string, data: Uint8Array, sync = false): Promise<void> {
  await pool.dsl.withView(ds, 'write', (v) => keyed.putKey(v, () => pool.assign(), key, data, { sync }));
}

/** Every dataset, snapshot and bookmark (with guid) and every key's size and content hash, as one string. */
export async function dumpPool(pool: Pool): Promise<string> {
  const out: string[] = [];
  for (const e of await pool.dsl.list({ types: ['filesystem', 'snapshot', 'bookmark'] })) {
    out.push(`${e.type} ${e.name} ${e.guid}`);
    if (e.type === 'bookmark') continue;
    await pool.dsl.withView(e.name, 'read', async (v) => {
      for (const k of await keyed.listKeys(v)) {
        const bytes = await keyed.readKey(v, k.key, 0, k.size + 1);
        out.push(`  ${k.key} ${bytes.length} ${Buffer.from(sha256(bytes)).toString('hex').slice(0, 16)}`);
      }
    });
  }
  return out.join('\n');
}

/** Datasets, a snapshot, a clone and a bookmark with data (tank/a, tank/b, tank/c). */
export async function populateSample(pool: Pool): Promise<void> {
  await pool.dsl.create('tank/a');
  await pool.dsl.create('tank/b');
  for (let i = 0; i < 6; i++) await putKey(pool, 'tank/a', `k${i}`, pattern(i, 40_000 + i * 7000));
  await putKey(pool, 'tank/b', 'big', pattern(99, 600_000));
  await pool.dsl.snapshot('tank/a@s1');
  await pool.dsl.clone('tank/a@s1', 'tank/c');
  await pool.dsl.bookmark('tank/a@s1', 'tank/a#m1');
  await putKey(pool, 'tank/a', 'k0', pattern(1000, 10_000));
  await pool.sync();
}

/**
 * After populateSample: overwrites, destroys datasets and snapshots, creates new ones and logs a
 * synchronous write — one durable step each.
 */
export const SAMPLE_CHANGES: readonly ((pool: Pool, seed: number) => Promise<void>)[] = [
  (pool) => pool.dsl.destroy('tank/c'),
  (pool, seed) => putKey(pool, 'tank/a', 'k1', pattern(seed + 1, 80_000)).then(() => pool.sync()).then(() => undefined),
  (pool) => pool.dsl.destroy('tank/a@s1'),
  (pool) => pool.dsl.destroy('tank/b', { recursive: true }),
  (pool) => pool.dsl.create('tank/new'),
  (pool, seed) => putKey(pool, 'tank/new', 'fresh', pattern(seed + 2, 200_000)).then(() => pool.sync()).then(() => undefined),
  (pool) => pool.dsl.snapshot('tank/new@n1'),
  (pool, seed) => putKey(pool, 'tank/a', 'logged', pattern(seed + 3, 3000), true),
];

export async function changeSample(pool: Pool, seed: number): Promise<void> {
  for (const change of SAMPLE_CHANGES) await change(pool, seed);
}

/** Deterministic content for a write: depends only on the arguments. */
export function pattern(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** The error code `run` (or the promise) fails with, or 'ok'; errors without a code are rethrown. */
export async function codeOf(run: (() => unknown) | Promise<unknown>): Promise<string> {
  try {
    await (typeof run === 'function' ? run() : run);
    return 'ok';
  } catch (e) {
    if (e instanceof Error && 'code' in e) return String(e.code);
    throw e;
  }
}
