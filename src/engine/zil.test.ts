// The intent log at the dataset level: record format, and crash tests on SimDisk — every
// acknowledged synchronous change survives every power cut (torn log blocks included), each key
// shows a state it really had, and replaying the same log twice gives the same state.

import { describe, expect, it } from 'vitest';
import { Prng } from '../lib/index.js';
import * as keyed from './keyed.js';
import type { Pool } from './pool.js';
import { codeOf, createSimPool, importSimPool, pattern, type SimMachine, simMachine, TEST_TUNING } from './test-support.js';
import { txg } from './types.js';
import { ZilOp, decodeZilRecord, encodeZilRecord } from './zil.js';

const TUNING = { ...TEST_TUNING, logExtentBytes: 64 * 1024 };
const KEYS = ['alpha', 'beta', 'gamma'];


function applyWrite(cur: Uint8Array, offset: number, data: Uint8Array): Uint8Array {
  if (data.length === 0) return cur;
  const out = new Uint8Array(Math.max(cur.length, offset + data.length));
  out.set(cur);
  out.set(data, offset);
  return out;
}

async function contents(pool: Pool): Promise<Map<string, Uint8Array>> {
  return pool.dsl.withView('tank/a', 'read', async (v) => {
    const out = new Map<string, Uint8Array>();
    for (const k of await keyed.listKeys(v)) out.set(k.key, await keyed.readKey(v, k.key, 0, k.size));
    return out;
  });
}

/** A machine whose disks hold what `m`'s disks hold durably. */
async function cloneDurable(m: SimMachine, seed: number): Promise<SimMachine> {
  const first = m.disks[0];
  if (first === undefined) throw new Error('no disks');
  const c = simMachine(seed, m.disks.length, first.size());
  for (const [i, d] of m.disks.entries()) {
    const target = c.disks[i];
    if (target === undefined) throw new Error('no disk');
    for (let at = 0; at < d.size(); at += 8 * 1024 * 1024) await target.write(at, d.durableBytes(at, Math.min(8 * 1024 * 1024, d.size() - at)));
    await target.sync();
  }
  return c;
}

describe('intent log records', () => {
  it('round-trip and refuse malformed bytes with EPROTO', async () => {
    const r = { op: ZilOp.write, txg: txg(42), key: 'ключ', arg: 4096, data: pattern(1, 300) };
    const back = decodeZilRecord(encodeZilRecord(r), {});
    expect({ ...back, data: Buffer.from(back.data) }).toEqual({ ...r, data: Buffer.from(r.data) });
    const bytes = encodeZilRecord(r);
    const bad = [bytes.subarray(0, 10), Uint8Array.from([9, ...bytes.subarray(1)]), encodeZilRecord({ ...r, op: ZilOp.truncate })];
    for (const b of bad) expect(await codeOf(() => decodeZilRecord(b, {}))).toBe('EPROTO');
  });
});

describe('intent log crash safety', () => {
  it('brings back acknowledged synchronous changes made after the last txg sync', async () => {
    // Extents large enough that the log needs no new one (allocating one syncs a txg).
    const tuning = { ...TEST_TUNING, logExtentBytes: 512 * 1024 };
    const m = simMachine(7, 2, 128 * 1024 * 1024);
    const pool = await createSimPool(m, tuning);
    await pool.dsl.create('tank/a');
    await pool.dsl.withView('tank/a', 'write', (v) => keyed.putKey(v, () => pool.assign(), 'warm', pattern(0, 10), { sync: true }));
    await pool.sync();
    const synced = pool.uberblock.txg;
    await pool.dsl.withView('tank/a', 'write', async (v) => {
      for (let i = 0; i < 20; i++) await keyed.putKey(v, () => pool.assign(), `k${i}`, pattern(i, 3000 + i * 500), { sync: true });
      await keyed.writeKey(v, () => pool.assign(), 'k3', 100, pattern(99, 50), { sync: true });
      await keyed.truncateKey(v, () => pool.assign(), 'k4', 10, { sync: true });
      await keyed.removeKey(v, () => pool.assign(), 'k5', { sync: true });
    });
    expect(pool.uberblock.txg).toBe(synced); // nothing reached disk through a txg
    await pool.abandon();
    m.crash();
    const again = await importSimPool(m, tuning);
    const got = await contents(again);
    expect([...got.keys()].sort()).toEqual(['warm', ...Array.from({ length: 20 }, (_, i) => `k${i}`).filter((k) => k !== 'k5')].sort());
    expect(Buffer.from(got.get('k3') ?? []).equals(Buffer.from(applyWrite(pattern(3, 4500), 100, pattern(99, 50))))).toBe(true);
    expect(got.get('k4')?.length).toBe(10);
    await again.checkInvariants();
    await again.export();
  });

  it('logs every change under sync=always and none under sync=disabled', async () => {
    const tuning = { ...TEST_TUNING, logExtentBytes: 512 * 1024 };
    const m = simMachine(9, 2, 128 * 1024 * 1024);
    const pool = await createSimPool(m, tuning);
    await pool.dsl.create('tank/a', new Map([['sync', 'always']]));
    await pool.dsl.create('tank/b', new Map([['sync', 'disabled']]));
    // Warm up: tank/a's log exists with extents to spare; everything so far is durable.
    await pool.dsl.withView('tank/a', 'write', (v) => keyed.putKey(v, () => pool.assign(), 'warm', pattern(0, 10)));
    await pool.sync();
    const synced = pool.uberblock.txg;
    await pool.dsl.withView('tank/a', 'write', (v) => keyed.putKey(v, () => pool.assign(), 'k', pattern(1, 5000)));
    await pool.dsl.withView('tank/b', 'write', (v) => keyed.putKey(v, () => pool.assign(), 'k', pattern(2, 5000), { sync: true }));
    expect(pool.uberblock.txg).toBe(synced);
    await pool.abandon();
    m.crash();
    const again = await importSimPool(m, tuning);
    const a = await again.dsl.withView('tank/a', 'read', (v) => keyed.readKey(v, 'k', 0, 5000));
    expect(Buffer.from(a).equals(Buffer.from(pattern(1, 5000)))).toBe(true);
    expect(await codeOf(again.dsl.withView('tank/b', 'read', (v) => keyed.keyInfo(v, 'k')))).toBe('ENOENT');
    await again.export();
  });

  it('never replays a synchronous change onto a state missing an earlier unlogged one', async () => {
    const m = simMachine(8);
    const pool = await createSimPool(m, TUNING);
    await pool.dsl.create('tank/a');
    await pool.dsl.withView('tank/a', 'write', async (v) => {
      await keyed.putKey(v, () => pool.assign(), 'k', pattern(1, 1000));
      await keyed.writeKey(v, () => pool.assign(), 'k', 0, pattern(2, 10), { sync: true });
    });
    await pool.abandon();
    m.crash();
    const again = await importSimPool(m, TUNING);
    const got = (await contents(again)).get('k') ?? new Uint8Array(0);
    expect(Buffer.from(got).equals(Buffer.from(applyWrite(pattern(1, 1000), 0, pattern(2, 10))))).toBe(true);
    await again.export();
  });

  it('keeps every acknowledged synchronous change through power cuts, and replays the same way twice', async () => {
    const seeds = Number(process.env.CRASH_SEEDS ?? 4);
    for (let seed = 100; seed < 100 + seeds; seed++) {
      const m = simMachine(seed);
      const pool = await createSimPool(m, TUNING);
      await pool.dsl.create('tank/a', new Map([['recordsize', '4K']]));
      for (const k of KEYS) await pool.dsl.withView('tank/a', 'write', (v) => keyed.putKey(v, () => pool.assign(), k, new Uint8Array(0)));
      await pool.sync();
      const history = new Map<string, Uint8Array[]>(KEYS.map((k) => [k, [new Uint8Array(0)]]));
      const acked = new Map(KEYS.map((k) => [k, 0]));
      const random = new Prng(seed);
      m.power.cutAt = m.power.ops + 20 + random.int(600);
      const lane = async (key: string, r: Prng): Promise<void> => {
        const states = history.get(key) ?? [];
        for (let i = 0; i < 40; i++) {
          const cur = states.at(-1) ?? new Uint8Array(0);
          const kind = r.int(10);
          const sync = kind < 8;
          await pool.dsl.withView('tank/a', 'write', async (v) => {
            if (kind === 9) {
              const size = r.int(cur.length + 1);
              states.push(cur.slice(0, size));
              await keyed.truncateKey(v, () => pool.assign(), key, size, { sync: true });
            } else {
              const offset = r.int(20_000);
              const data = pattern(seed * 1000 + i, 1 + r.int(9000));
              states.push(applyWrite(cur, offset, data));
              await keyed.writeKey(v, () => pool.assign(), key, offset, data, { sync });
            }
          });
          if (sync || kind === 9) acked.set(key, states.length - 1);
          if (r.int(12) === 0) await pool.sync();
        }
      };
      const lanes = KEYS.map((k) => lane(k, random.fork()).catch((e: unknown) => {
        if (!(e instanceof Error)) throw e; // the power went
      }));
      await Promise.all(lanes);
      await pool.abandon();
      m.crash();
      const clone = await cloneDurable(m, seed);
      const first = await importSimPool(m, TUNING);
      const state = await contents(first);
      for (const k of KEYS) {
        const states = history.get(k) ?? [];
        const got = state.get(k) ?? new Uint8Array(0);
        const at = states.findIndex((s, i) => i >= (acked.get(k) ?? 0) && Buffer.from(s).equals(Buffer.from(got)));
        expect(at, `seed ${seed} key ${k}: a state at or after the acknowledged one (${acked.get(k)} of ${states.length - 1})`).toBeGreaterThanOrEqual(0);
      }
      await first.checkInvariants();
      await first.export();
      // The same log replayed again, once interrupted by a power cut mid-replay, then in full.
      clone.power.cutAt = clone.power.ops + 30;
      await importSimPool(clone, TUNING).then((p) => p.abandon(), (e: unknown) => {
        if (!(e instanceof Error)) throw e;
      });
      clone.crash();
      const second = await importSimPool(clone, TUNING);
      const again = await contents(second);
      expect([...again.keys()], `seed ${seed}`).toEqual([...state.keys()]);
      for (const [k, v] of state) expect(Buffer.from(again.get(k) ?? []).equals(Buffer.from(v)), `seed ${seed} key ${k}: same replay`).toBe(true);
      await second.export();
    }
  }, 120_000);
});
