// Crash safety of receive: power is cut at every write and sync of an incremental receive (and
// a full one), the disks keep, drop or tear what was not yet synced, and the pool is imported
// again. The target must then be exactly as before the receive or exactly as the stream left it,
// never in between; the pool must pass its invariant checks; and the same stream must then land
// (a crash leaves at most the temporary dataset, which the next receive replaces).

import { describe, expect, it } from 'vitest';
import { PowerCutDisk, PowerSwitch, Prng, SimClock, SimDisk, hasCode, idle } from '../lib/index.js';
import { Pool, keyed } from '../engine/index.js';
import { collect, content, pattern, put, simPool, SYNC_TEST_TUNING } from './pool-test-support.js';
import { receiveStream, sendPlan, sendStream } from './stream.js';

/** The invariants are checked once per cut, after the import, rather than at every txg. */
const TUNING = { ...SYNC_TEST_TUNING, checkEveryTxg: false };

/**
 * A target pool on two SimDisks behind one power switch. The pool draws from the same random
 * sequence on every machine, so each makes the same I/Os up to its cut; `seed` chooses what
 * the disks keep of unsynced writes when power goes.
 */
class Machine {
  readonly power = new PowerSwitch();
  readonly random = new Prng(7);
  readonly disks: SimDisk[];

  constructor(seed: number) {
    const crashes = new Prng(seed);
    this.disks = [0, 1].map(() => new SimDisk({ sizeBytes: 16 * 1024 * 1024, random: crashes.fork() }));
  }

  private leaves(): { disk: PowerCutDisk; path: string }[] {
    return this.disks.map((d, i) => ({ disk: new PowerCutDisk(d, this.power), path: `dst${i}` }));
  }

  create(): Promise<Pool> {
    return Pool.create('dst', this.leaves().map((l) => [l]), { clock: new SimClock(), random: this.random, tuning: TUNING });
  }

  /** Power loss, then power back and the pool imported. */
  async crashAndImport(): Promise<Pool> {
    for (const d of this.disks) d.crash('random');
    this.power.ops = 0;
    this.power.cutAt = Number.POSITIVE_INFINITY;
    await idle();
    return Pool.import(this.leaves(), { clock: new SimClock(), random: this.random, tuning: TUNING });
  }
}

/**
 * Every dataset with its content and every snapshot with its guid (a received snapshot keeps the
 * sender's; a dataset's own guid is drawn on this pool), leaving out a leftover temporary dataset.
 */
async function targetState(pool: Pool): Promise<string> {
  const out: string[] = [];
  for (const e of await pool.dsl.list({ types: ['filesystem', 'snapshot'] })) {
    if (e.name.includes('%recv')) continue;
    out.push(e.type === 'snapshot' ? `${e.name} ${e.guid}` : `${e.name} ${await content(pool, e.name)}`);
  }
  return out.join('\n');
}

/** Streams of a source dataset: full @a, and @a -> @b with writes, a new key, a removed key and a truncation. */
async function sourceStreams(): Promise<{ full: Uint8Array; incremental: Uint8Array; contents: { a: string; b: string } }> {
  const src = await simPool('src', 1);
  await src.dsl.create('src/d', new Map([['recordsize', '16K']]));
  for (let k = 0; k < 6; k++) await put(src, 'src/d', `k${k}`, pattern(k, 20_000 + k * 9_000));
  await src.dsl.snapshot('src/d@a');
  await put(src, 'src/d', 'k1', pattern(100, 70_000));
  await put(src, 'src/d', 'k6', pattern(106, 33_000));
  await src.dsl.withView('src/d', 'write', async (v) => {
    await keyed.removeKey(v, () => src.assign(), 'k2');
    await keyed.truncateKey(v, () => src.assign(), 'k4', 5_000);
    await keyed.writeKey(v, () => src.assign(), 'k5', 40_000, pattern(105, 3_000));
  });
  await src.dsl.snapshot('src/d@b');
  const full = await collect(sendStream(src, await sendPlan(src, 'src/d@a')));
  const incremental = await collect(sendStream(src, await sendPlan(src, 'src/d@b', { from: 'src/d@a' })));
  const contents = { a: await content(src, 'src/d@a'), b: await content(src, 'src/d@b') };
  await src.export();
  return { full, incremental, contents };
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  await Promise.resolve();
  yield bytes;
}

describe('receive crash safety', () => {
  const streams = sourceStreams();
  for (const kind of ['full', 'incremental'] as const) {
    it(`leaves the target as before or as received after power loss at any I/O of ${kind === 'full' ? 'a full' : 'an incremental'} receive, and the stream lands again`, async () => {
      const { full, incremental, contents } = await streams;
      const stream = kind === 'full' ? full : incremental;
      // The pool before the stream: empty, or holding @a.
      const prepare = async (m: Machine): Promise<Pool> => {
        const pool = await m.create();
        if (kind === 'incremental') await receiveStream(pool, 'dst/d', once(full));
        await pool.sync();
        return pool;
      };
      // The states before and after, and the I/Os the receive makes, from a run without a cut.
      const clean = new Machine(7);
      const pool = await prepare(clean);
      const before = await targetState(pool);
      const start = clean.power.ops;
      await receiveStream(pool, 'dst/d', once(stream));
      const receiveOps = clean.power.ops - start;
      const after = await targetState(pool);
      expect(await content(pool, 'dst/d')).toBe(kind === 'full' ? contents.a : contents.b);
      await pool.export();
      expect(after).not.toBe(before);
      expect(receiveOps).toBeGreaterThan(10);
      const outcomes = { before: 0, after: 0 };
      for (let cut = 0; cut < receiveOps; cut++) {
        const m = new Machine(1000 + cut);
        const p = await prepare(m);
        m.power.cutAt = m.power.ops + cut;
        const landed = await receiveStream(p, 'dst/d', once(stream)).then(
          () => true,
          (e: unknown) => {
            if (!hasCode(e, 'EIO') || !m.power.off) throw e;
            return false;
          },
        );
        await p.abandon();
        const again = await m.crashAndImport();
        const state = await targetState(again);
        expect([before, after], `cut ${cut} of ${receiveOps}`).toContain(state);
        // A receive that returned is durable: late cuts fall on the last copies of the uberblock,
        // which a pool may fail to write once one copy is on disk.
        if (landed) expect(state, `cut ${cut}: the receive returned`).toBe(after);
        await again.checkInvariants();
        if (state === before) {
          outcomes.before++;
          await receiveStream(again, 'dst/d', once(stream));
          expect(await targetState(again), `cut ${cut}: the stream again`).toBe(after);
          await again.checkInvariants();
        } else {
          outcomes.after++;
        }
        await again.export();
      }
      // Cuts early in the receive lose it, cuts after its last txg's uberblock keep it.
      expect(outcomes.before).toBeGreaterThan(0);
      expect(outcomes.after).toBeGreaterThan(0);
    }, 300_000);
  }
});
