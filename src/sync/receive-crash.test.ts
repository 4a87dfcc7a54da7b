// Crash safety of receive: power is cut at every write and sync of a full, an incremental and a
// resumed receive, the disks keep, drop or tear what was not yet synced, and the pool is imported
// again. The target must then be exactly as before the receive or exactly as the stream left it,
// never in between; the pool must pass its invariant checks; and the same stream must then land
// (the import after a crash destroys the temporary dataset a cut receive left; a stopped
// resumable receive keeps it with its token, and resumes from it).

import { afterAll, describe, expect, it } from 'vitest';
import { PowerCutDisk, PowerSwitch, Prng, SimClock, SimDisk, hasCode, idle } from '../lib/index.js';
import { Pool, keyed } from '../engine/index.js';
import { collect, content, pattern, put, simPool, SYNC_TEST_TUNING } from './pool-test-support.js';
import { receiveStream, sendPlan, sendStream } from './stream.js';

/**
 * The invariants are checked once per cut, after the import, rather than at every txg. Past
 * 512 KiB of dirty data a txg syncs on its own, so a receive of a few MiB lands over several txgs
 * and a cut can fall after some of its data is on disk.
 */
const TUNING = { ...SYNC_TEST_TUNING, checkEveryTxg: false, dirtySyncBytes: 512 * 1024 };

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
 * sender's; a dataset's own guid is drawn on this pool). Listings leave out a leftover temporary
 * dataset.
 */
async function targetState(pool: Pool): Promise<string> {
  const out: string[] = [];
  for (const e of await pool.dsl.list({ types: ['filesystem', 'snapshot'] })) {
    out.push(e.type === 'snapshot' ? `${e.name} ${e.guid}` : `${e.name} ${await content(pool, e.name)}`);
  }
  return out.join('\n');
}

/**
 * A source pool (left open, for streams resumed from tokens) and its streams: full @a, and
 * @a -> @b with writes, a new key, a removed key and a truncation. The new key's 2.5 MiB in 4 KiB
 * blocks are 640 WRITE records, more than one batch of a receive even when resumed halfway.
 */
async function source(): Promise<{ src: Pool; full: Uint8Array; incremental: Uint8Array; contents: { a: string; b: string } }> {
  const src = await simPool('src', 1);
  await src.dsl.create('src/d', new Map([['recordsize', '4K']]));
  for (let k = 0; k < 6; k++) await put(src, 'src/d', `k${k}`, pattern(k, 20_000 + k * 9_000));
  await src.dsl.snapshot('src/d@a');
  await put(src, 'src/d', 'k1', pattern(100, 70_000));
  await put(src, 'src/d', 'k6', pattern(106, 2560 * 1024));
  await src.dsl.withView('src/d', 'write', async (v) => {
    await keyed.removeKey(v, () => src.assign(), 'k2');
    await keyed.truncateKey(v, () => src.assign(), 'k4', 5_000);
    await keyed.writeKey(v, () => src.assign(), 'k5', 40_000, pattern(105, 3_000));
  });
  await src.dsl.snapshot('src/d@b');
  const full = await collect(sendStream(src, await sendPlan(src, 'src/d@a')));
  const incremental = await collect(sendStream(src, await sendPlan(src, 'src/d@b', { from: 'src/d@a' })));
  const contents = { a: await content(src, 'src/d@a'), b: await content(src, 'src/d@b') };
  return { src, full, incremental, contents };
}

/** Whether the temporary dataset of a receive into dst/d exists (listings leave it out). */
function tempExists(pool: Pool): Promise<boolean> {
  return pool.dsl.withView('dst/d%recv', 'read', () => Promise.resolve(true)).catch((e: unknown) => {
    if (hasCode(e, 'ENOENT')) return false;
    throw e;
  });
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  await Promise.resolve();
  yield bytes;
}

/** Cuts at the end of a receive (its last txgs: the swap, their uberblocks and labels) and spread over the rest. */
const LAST_CUTS = 40;
const SPREAD_CUTS = 30;

/** The cuts to try of a receive making `ops` I/Os: every one with RECEIVE_CRASH_CUTS=all (npm run test:crash). */
function cutsFor(ops: number): number[] {
  const all = Array.from({ length: ops }, (_, i) => i);
  if (process.env['RECEIVE_CRASH_CUTS'] === 'all') return all;
  const head = Math.max(0, ops - LAST_CUTS);
  const spread = Array.from({ length: SPREAD_CUTS }, (_, i) => Math.floor((i * head) / SPREAD_CUTS));
  return [...new Set([...spread, ...all.slice(head)])];
}

type Kind = 'full' | 'incremental' | 'resumed';
const TITLES: Record<Kind, string> = {
  full: 'a full receive',
  incremental: 'an incremental receive',
  resumed: 'an incremental receive resumed from its token',
};

describe('receive crash safety', () => {
  const sourced = source();
  afterAll(async () => (await sourced).src.export());

  for (const kind of ['full', 'incremental', 'resumed'] as const) {
    it(`leaves the target as before or as received after power loss at any I/O of ${TITLES[kind]}, and the stream lands again`, async () => {
      const { src, full, incremental, contents } = await sourced;
      /** The stream that continues the stopped receive into dst/d of `pool`. */
      const resumeStream = async (pool: Pool): Promise<Uint8Array> => {
        const token = pool.dsl.receiveResumeToken('dst/d');
        expect(token, 'a stopped receive keeps its token').toBeDefined();
        return collect(sendStream(src, await sendPlan(src, '', { token: token ?? '' })));
      };
      // The pool before the stream: empty; holding @a; or holding @a and a resumable receive of
      // @a -> @b that stopped halfway.
      const prepare = async (m: Machine): Promise<Pool> => {
        const pool = await m.create();
        if (kind !== 'full') await receiveStream(pool, 'dst/d', once(full));
        if (kind === 'resumed') {
          const half = await receiveStream(pool, 'dst/d', once(incremental.subarray(0, incremental.length >> 1)), { resumable: true }).then(() => null, (e: unknown) => e);
          expect(hasCode(half, 'EPROTO'), String(half)).toBe(true);
        }
        await pool.sync();
        return pool;
      };
      // The states before and after, the stream, and the I/Os its receive makes, from a run
      // without a cut.
      const clean = new Machine(7);
      const pool = await prepare(clean);
      const before = await targetState(pool);
      const stream = kind === 'full' ? full : kind === 'incremental' ? incremental : await resumeStream(pool);
      if (kind === 'resumed') expect(stream.length).toBeLessThan(incremental.length);
      const start = clean.power.ops;
      await receiveStream(pool, 'dst/d', once(stream));
      const receiveOps = clean.power.ops - start;
      const after = await targetState(pool);
      expect(await content(pool, 'dst/d')).toBe(kind === 'full' ? contents.a : contents.b);
      await pool.export();
      expect(after).not.toBe(before);
      expect(receiveOps).toBeGreaterThan(10);
      const outcomes = { before: 0, after: 0 };
      for (const cut of cutsFor(receiveOps)) {
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
        // The import gave back the space of what the cut receive had written: only a stopped
        // resumable receive's temporary dataset (with its token) is left.
        expect(await tempExists(again), `cut ${cut}: the temporary dataset`).toBe(kind === 'resumed' && state === before);
        // A receive that returned is durable: late cuts fall on the last copies of the uberblock,
        // which a pool may fail to write once one copy is on disk.
        if (landed) expect(state, `cut ${cut}: the receive returned`).toBe(after);
        await again.checkInvariants();
        if (state === before) {
          outcomes.before++;
          // A stopped receive resumes from the token it kept, whatever the cut receive had
          // already written past it.
          await receiveStream(again, 'dst/d', once(kind === 'resumed' ? await resumeStream(again) : stream));
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
