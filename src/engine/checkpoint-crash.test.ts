// Power cuts at every stage of a checkpoint's life: while it is taken, while the pool changes
// under it, during a rewind at import, while a second one is taken and changed under, and many
// times during its discard. After each cut the pool imports, its invariants hold (no block the
// checkpoint reaches was reused; its lists hold exactly what only it reaches; nothing leaks),
// its checkpoint state is one the interrupted step allows, and a checkpoint that survived still
// rewinds to exactly the state it was taken of.

import { describe, expect, it } from 'vitest';
import { MirrorpoolError, Prng, hasCode, idle, mpError } from '../lib/index.js';
import type { CheckpointState } from './checkpoint.js';
import type { Pool, PoolTuning } from './pool.js';
import {
  SAMPLE_CHANGES, type SimMachine, TEST_TUNING, createSimPool, dumpPool, importSimPool, pattern, populateSample, putKey, rewindSimPool, simMachine,
} from './test-support.js';

/** 16 entries per discard step: the discard runs over many txgs, each a crash point. */
const TUNING: PoolTuning = { ...TEST_TUNING, checkpointDiscardMemoryBytes: 2048 };
/** Replays up to a cut skip the per-txg invariant walk (the uncut run did it). */
const CUT_TUNING: PoolTuning = { ...TUNING, checkEveryTxg: false };
const RANDOM_CUTS = 12;
/** Extra random cuts inside the discard, which has the most txgs of its own. */
const DISCARD_CUTS = 24;

interface Ctx {
  readonly m: SimMachine;
  pool: Pool;
  readonly tuning: PoolTuning;
  /** Content each checkpoint was taken of. */
  checkpointed: string | null;
}

interface Step {
  readonly name: string;
  /** Checkpoint states a cut inside this step may leave. */
  readonly allowed: readonly CheckpointState[];
  readonly run: (c: Ctx, seed: number) => Promise<void>;
}

const STEPS: readonly Step[] = [
  {
    name: 'take a checkpoint',
    allowed: ['none', 'active'],
    run: async (c) => {
      c.checkpointed = await dumpPool(c.pool);
      await c.pool.checkpoint();
    },
  },
  ...SAMPLE_CHANGES.map((change, i): Step => ({ name: `change ${i} under the checkpoint`, allowed: ['active'], run: (c, seed) => change(c.pool, seed) })),
  {
    name: 'rewind at import',
    allowed: ['active', 'none'],
    run: async (c) => {
      await c.pool.export();
      c.pool = await rewindSimPool(c.m, c.tuning);
    },
  },
  { name: 'write after the rewind', allowed: ['none'], run: (c, seed) => putKey(c.pool, 'tank/a', 'k2', pattern(seed + 9, 90_000)).then(() => undefined) },
  {
    name: 'take a second checkpoint',
    allowed: ['none', 'active'],
    run: async (c) => {
      c.checkpointed = await dumpPool(c.pool);
      await c.pool.checkpoint();
    },
  },
  { name: 'destroy a clone under the second checkpoint', allowed: ['active'], run: (c) => c.pool.dsl.destroy('tank/c') },
  { name: 'destroy a dataset under the second checkpoint', allowed: ['active'], run: (c) => c.pool.dsl.destroy('tank/a', { recursive: true }) },
  {
    name: 'discard',
    allowed: ['active', 'discarding', 'none'],
    run: async (c) => {
      await c.pool.discardCheckpoint();
      await c.pool.checkpointDiscardDone();
      const error = c.pool.checkpointStatus().discardError;
      // The background discard stops at the cut like everything else.
      if (error !== null && c.m.power.off) throw mpError('EIO', `the discard stopped: ${error}`);
      expect(error).toBeNull();
    },
  },
];

interface Run {
  readonly m: SimMachine;
  readonly pool: Pool | null;
  /** Index of the step the cut fell in (STEPS.length when none). */
  readonly step: number;
  /** Content the surviving checkpoint (if any) was taken of, per step reached. */
  readonly checkpointed: string | null;
  /** I/O count at the start of every step, and the total. */
  readonly boundaries: number[];
  readonly ioTotal: number;
}

async function scenario(seed: number, cutAt: number, tuning: PoolTuning): Promise<Run> {
  const m = simMachine(seed, 2, 16 * 1024 * 1024);
  const c: Ctx = { m, pool: await createSimPool(m, tuning), tuning, checkpointed: null };
  await populateSample(c.pool);
  const boundaries: number[] = [];
  m.power.ops = 0;
  m.power.cutAt = cutAt;
  let step = 0;
  try {
    for (; step < STEPS.length; step++) {
      boundaries.push(m.power.ops);
      await (STEPS[step] as Step).run(c, seed);
    }
    return { m, pool: c.pool, step, checkpointed: c.checkpointed, boundaries, ioTotal: m.power.ops };
  } catch (e) {
    // With the power off, reads fail too: an import then finds no label (EPROTO) rather than EIO.
    if (!(e instanceof MirrorpoolError && (hasCode(e, 'EIO') || hasCode(e, 'EPROTO')) && m.power.off)) {
      throw new Error(`seed ${seed} cut at ${cutAt}, step ${STEPS[step]?.name}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    await c.pool.abandon();
    return { m, pool: null, step, checkpointed: c.checkpointed, boundaries, ioTotal: m.power.ops };
  }
}

function cutPoints(seed: number, full: Run): number[] {
  const r = new Prng(seed);
  const points = new Set<number>();
  for (let i = 0; i < RANDOM_CUTS; i++) points.add(r.int(full.ioTotal));
  for (const b of full.boundaries) for (const d of [-1, 0, 1]) if (b + d >= 0 && b + d < full.ioTotal) points.add(b + d);
  const discardStart = full.boundaries.at(-1) ?? 0;
  for (let i = 0; i < DISCARD_CUTS; i++) points.add(discardStart + r.int(full.ioTotal - discardStart));
  return [...points].sort((a, b) => a - b);
}

async function checkAfterCut(run: Run, label: string): Promise<void> {
  const step = STEPS[run.step];
  expect(step, label).toBeDefined();
  // The per-txg check (TUNING) walks every state the resumed discard goes through.
  let pool = await importSimPool(run.m, TUNING);
  const state = pool.checkpointStatus().state;
  expect(step?.allowed, `${label}: checkpoint state ${state}`).toContain(state);
  if (state === 'discarding') {
    await pool.checkpointDiscardDone();
    expect(pool.checkpointStatus(), label).toMatchObject({ state: 'none', heldBytes: 0, discardError: null });
  }
  await pool.checkInvariants();
  if (state === 'active') {
    // The surviving checkpoint still holds exactly the state it was taken of.
    await pool.export();
    pool = await rewindSimPool(run.m, TUNING);
    expect(await dumpPool(pool), `${label}: rewound content`).toBe(run.checkpointed);
    await pool.checkInvariants();
  }
  await pool.export();
}

const SEEDS = Array.from({ length: Number(process.env['CRASH_SEEDS'] ?? 1) }, (_, i) => 601 + i);

describe('checkpoint crash safety', () => {
  for (const seed of SEEDS) {
    it(`survives power loss while taken, held, rewound and discarded (seed ${seed})`, async () => {
      const full = await scenario(seed, Number.POSITIVE_INFINITY, TUNING);
      expect(full.step).toBe(STEPS.length);
      await full.pool?.checkInvariants();
      await full.pool?.export();
      const points = cutPoints(seed, full);
      for (const cutAt of points) {
        const run = await scenario(seed, cutAt, CUT_TUNING);
        await run.pool?.abandon();
        run.m.crash();
        const label = `seed ${seed} cut at I/O ${cutAt}/${full.ioTotal} in step "${STEPS[run.step]?.name ?? 'done'}"`;
        if (run.step === STEPS.length) continue;
        try {
          await checkAfterCut(run, label);
        } catch (e) {
          throw new Error(`${label}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
        }
        await idle();
      }
    }, 600_000);
  }
});
