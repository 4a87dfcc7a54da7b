// Crash tests: a workload of many txgs runs on SimDisks behind a power switch that cuts power
// after exactly N writes/syncs (N sweeps every sync boundary and random points between). After
// each cut every disk crashes — unsynced writes kept, dropped or torn by sector — and import must
// succeed and show exactly the state of a txg whose uberblock had been written: the last one
// whose sync completed, or the one being synced if its uberblock made it to disk.
import { describe, expect, it } from 'vitest';
import { Prng, hasCode } from '../lib/index.js';
import * as dmu from './dmu.js';
import { ObjectType } from './dnode.js';
import type { Pool } from './pool.js';
import { KEY_DIRECTORY } from './keyed.js';
import { createSimPool, importSimPool, pattern, simMachine } from './test-support.js';
import type { ObjectId } from './types.js';

type State = Map<ObjectId, Uint8Array>;

interface Run {
  /** Model state of each txg at the moment its sync began (what its uberblock covers). */
  states: Map<number, State>;
  /** Last txg whose sync() returned. */
  completed: number;
  /** I/Os done when the run ended. */
  ops: number;
  /** I/O counts at the start and end of every sync. */
  boundaries: number[];
  cut: boolean;
}

function copy(s: State): State {
  return new Map([...s].map(([k, v]) => [k, v.slice()]));
}

/** Runs the deterministic workload of `seed`; stops at the first I/O after power is cut. */
async function workload(seed: number, cutAt: number): Promise<Run & { pool: Pool | null; m: ReturnType<typeof simMachine> }> {
  const m = simMachine(seed, 2, 24 * 1024 * 1024);
  const r = new Prng(seed ^ 0x5a5a5a5a);
  const states = new Map<number, State>();
  const model: State = new Map();
  let completed = 0;
  let pool: Pool | null = null;
  const boundaries: number[] = [];
  try {
    pool = await createSimPool(m);
    completed = pool.lastSyncedTxg;
    states.set(completed, new Map());
    m.power.cutAt = cutAt;
    for (let step = 0; step < 8; step++) {
      const tx = await pool.assign();
      try {
        for (let i = 0; i < 4; i++) {
          const objs = [...model.keys()];
          const choice = r.int(10);
          if (objs.length < 3 || choice === 0) {
            const obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: [4096, 131072][r.int(2)] ?? 4096, checksumKind: 1 });
            model.set(obj, new Uint8Array(0));
          } else if (choice === 1) {
            const obj = objs[r.int(objs.length)] as ObjectId;
            await dmu.freeObject(pool.root, tx, obj);
            model.delete(obj);
          } else if (choice === 2) {
            const obj = objs[r.int(objs.length)] as ObjectId;
            const size = r.int(200_000);
            await dmu.truncate(pool.root, tx, obj, size);
            const cur = model.get(obj) ?? new Uint8Array(0);
            const next = new Uint8Array(size);
            next.set(cur.subarray(0, Math.min(size, cur.length)));
            model.set(obj, next);
          } else {
            const obj = objs[r.int(objs.length)] as ObjectId;
            const offset = r.int(300_000);
            const data = pattern(r.u32(), 1 + r.int(150_000));
            await dmu.write(pool.root, tx, obj, offset, data);
            const cur = model.get(obj) ?? new Uint8Array(0);
            const next = new Uint8Array(Math.max(cur.length, offset + data.length));
            next.set(cur);
            next.set(data, offset);
            model.set(obj, next);
          }
        }
      } finally {
        tx.commit();
      }
      states.set(pool.openTxg, copy(model));
      boundaries.push(m.power.ops);
      completed = await pool.sync();
      boundaries.push(m.power.ops);
    }
    return { states, completed, ops: m.power.ops, boundaries, cut: false, pool, m };
  } catch (e) {
    if (!hasCode(e, 'EIO') || !m.power.off) throw e;
    await pool?.abandon();
    return { states, completed, ops: m.power.ops, boundaries, cut: true, pool: null, m };
  }
}

async function expectState(pool: Pool, state: State, label: string): Promise<void> {
  for (const [obj, bytes] of state) {
    const got = await dmu.read(pool.root, obj, 0, bytes.length + 1);
    expect(Buffer.from(got).equals(Buffer.from(bytes)), `${label}: object ${obj}`).toBe(true);
  }
  // Objects the state does not have must not exist (object 1 is the key directory).
  for (let obj = KEY_DIRECTORY + 1; obj < 40; obj++) {
    if (state.has(obj as ObjectId)) continue;
    const exists = await dmu.objectInfo(pool.root, obj as ObjectId).then(() => true, (e: unknown) => {
      if (hasCode(e, 'ENOENT')) return false;
      throw e;
    });
    expect(exists, `${label}: object ${obj} should not exist`).toBe(false);
  }
}

// CRASH_SEEDS widens the sweep for soak runs (npm run test:crash); CI runs the first few.
const SEEDS = Array.from({ length: Number(process.env['CRASH_SEEDS'] ?? 4) }, (_, i) => 11 + i);

describe('pool crash safety', () => {
  for (const seed of SEEDS) {
    it(`imports the last durable txg after power loss at any I/O (seed ${seed})`, async () => {
      const full = await workload(seed, Number.POSITIVE_INFINITY);
      expect(full.cut).toBe(false);
      await full.pool?.export();
      const total = full.ops;
      const r = new Prng(seed);
      const points = new Set<number>();
      for (let i = 0; i < 16; i++) points.add(r.int(total));
      for (const b of full.boundaries) for (const d of [-1, 0, 1]) if (b + d >= 0 && b + d < total) points.add(b + d);
      for (const cutAt of [...points].sort((a, b) => a - b)) {
        const run = await workload(seed, cutAt);
        run.m.crash();
        const label = `seed ${seed} cut at I/O ${cutAt}/${total}`;
        const pool = await importSimPool(run.m);
        const t = pool.uberblock.txg;
        expect([run.completed, run.completed + 1], label).toContain(t);
        const state = run.states.get(t);
        expect(state, `${label}: no model state for txg ${t}`).toBeDefined();
        await expectState(pool, state ?? new Map<ObjectId, Uint8Array>(), `${label} (txg ${t})`);
        await pool.checkInvariants();
        // The pool keeps working after the crash.
        const tx = await pool.assign();
        const obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: 4096, checksumKind: 1 });
        await dmu.write(pool.root, tx, obj, 0, pattern(cutAt, 50_000));
        tx.commit();
        await pool.sync();
        await pool.export();
        const again = await importSimPool(run.m);
        expect(Buffer.from(await dmu.read(again.root, obj, 0, 50_000)).equals(Buffer.from(pattern(cutAt, 50_000)))).toBe(true);
        await again.export();
      }
    });
  }
});
