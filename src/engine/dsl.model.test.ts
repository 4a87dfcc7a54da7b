// Model test of the dataset layer: random sequences of put/write/rm/snapshot/destroy/rollback/
// clone/bookmark/hold/release/export/import against a naive model (names → Map of key bytes).
// After every step every head and snapshot reads exactly as the model says — so a snapshot's
// content never changes, and clones diverge on their own — and the pool checks its invariants
// after every txg (space figures, deadlists, no leaked or doubly used block). At the end
// everything is destroyed and allocated space is back at the baseline exactly.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as keyed from './keyed.js';
import type { Pool } from './pool.js';
import { codeOf, createSimPool, importSimPool, pattern, simMachine } from './test-support.js';

type Keys = Map<string, Uint8Array>;

interface Model {
  heads: Map<string, { keys: Keys; snaps: string[]; origin?: string }>;
  snaps: Map<string, { keys: Keys; holds: Set<string>; clones: number }>;
  bookmarks: Set<string>;
}

type Op =
  | { op: 'put'; ds: number; key: number; seed: number; len: number }
  | { op: 'write'; ds: number; key: number; seed: number; offset: number; len: number }
  | { op: 'rm'; ds: number; key: number }
  | { op: 'snapshot'; ds: number; name: number }
  | { op: 'destroySnap'; ds: number; name: number }
  | { op: 'rollback'; ds: number; name: number; recursive: boolean }
  | { op: 'clone'; ds: number; name: number }
  | { op: 'destroyHead'; ds: number }
  | { op: 'bookmark'; ds: number; name: number }
  | { op: 'hold'; ds: number; name: number; release: boolean }
  | { op: 'reimport' };

const KEYS = ['a', 'b', 'c', 'd/e'];
const SNAPS = ['s0', 's1', 's2', 's3'];
const BASE_HEADS = ['tank/x', 'tank/y'];
const CLONES = ['tank/c0', 'tank/c1', 'tank/c2'];
const HEADS = [...BASE_HEADS, ...CLONES];

/** Mostly the two base datasets, sometimes a clone. */
const dsArb = fc.oneof({ weight: 4, arbitrary: fc.nat(1) }, { weight: 2, arbitrary: fc.integer({ min: 2, max: 4 }) });
const snapArb = fc.nat(2);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ op: fc.constant('put' as const), ds: dsArb, key: fc.nat(2), seed: fc.nat(1000), len: fc.oneof(fc.nat(3000), fc.nat(150_000)) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('write' as const), ds: dsArb, key: fc.nat(2), seed: fc.nat(1000), offset: fc.nat(100_000), len: fc.nat(20_000) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('rm' as const), ds: dsArb, key: fc.nat(2) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('snapshot' as const), ds: dsArb, name: snapArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('destroySnap' as const), ds: dsArb, name: snapArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('rollback' as const), ds: dsArb, name: snapArb, recursive: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('clone' as const), ds: dsArb, name: snapArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('destroyHead' as const), ds: dsArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('bookmark' as const), ds: dsArb, name: snapArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('hold' as const), ds: dsArb, name: snapArb, release: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ op: 'reimport' as const }) },
);


function withWrite(cur: Uint8Array | undefined, offset: number, data: Uint8Array): Uint8Array {
  const base = cur ?? new Uint8Array(0);
  if (data.length === 0) return base; // like pwrite: writing nothing never extends
  const out = new Uint8Array(Math.max(base.length, offset + data.length));
  out.set(base);
  out.set(data, offset);
  return out;
}

/** Applies `o` to the model and returns the error code the pool must give ('ok' for none). */
function expected(m: Model, o: Op): string {
  if (o.op === 'reimport') return 'ok';
  const ds = HEADS[o.ds] ?? '';
  const head = m.heads.get(ds);
  if (head === undefined) return 'ENOENT';
  const key = 'key' in o ? (KEYS[o.key] ?? '') : '';
  const snapName = 'name' in o ? (SNAPS[o.name] ?? '') : '';
  const full = `${ds}@${snapName}`;
  const snap = m.snaps.get(full);
  switch (o.op) {
    case 'put':
      head.keys.set(key, pattern(o.seed, o.len));
      return 'ok';
    case 'write':
      if (!head.keys.has(key)) return 'ENOENT';
      head.keys.set(key, withWrite(head.keys.get(key), o.offset, pattern(o.seed, o.len)));
      return 'ok';
    case 'rm':
      if (!head.keys.delete(key)) return 'ENOENT';
      return 'ok';
    case 'snapshot':
      if (snap !== undefined) return 'EEXIST';
      m.snaps.set(full, { keys: new Map(head.keys), holds: new Set(), clones: 0 });
      head.snaps.push(snapName);
      return 'ok';
    case 'destroySnap':
      if (snap === undefined) return 'ENOENT';
      if (snap.holds.size > 0 || snap.clones > 0) return 'EBUSY';
      m.snaps.delete(full);
      head.snaps.splice(head.snaps.indexOf(snapName), 1);
      return 'ok';
    case 'rollback': {
      if (snap === undefined) return 'ENOENT';
      const newer = head.snaps.slice(head.snaps.indexOf(snapName) + 1);
      if (newer.length > 0 && !o.recursive) return 'EEXIST';
      for (const n of newer) {
        const s = m.snaps.get(`${ds}@${n}`);
        if (s !== undefined && (s.holds.size > 0 || s.clones > 0)) return 'EBUSY';
      }
      for (const n of newer) m.snaps.delete(`${ds}@${n}`);
      head.snaps.length = head.snaps.indexOf(snapName) + 1;
      head.keys = new Map(snap.keys);
      return 'ok';
    }
    case 'clone': {
      if (snap === undefined) return 'ENOENT';
      const name = CLONES.find((c) => !m.heads.has(c));
      if (name === undefined) return 'skip';
      snap.clones++;
      m.heads.set(name, { keys: new Map(snap.keys), snaps: [], origin: full });
      return `clone:${name}`;
    }
    case 'destroyHead': {
      if (BASE_HEADS.includes(ds)) return 'skip';
      for (const s of head.snaps) {
        const sn = m.snaps.get(`${ds}@${s}`);
        if (sn !== undefined && (sn.holds.size > 0 || sn.clones > 0)) return 'EBUSY';
      }
      for (const s of head.snaps) m.snaps.delete(`${ds}@${s}`);
      for (const b of [...m.bookmarks]) if (b.startsWith(`${ds}#`)) m.bookmarks.delete(b);
      if (head.origin !== undefined) {
        const origin = m.snaps.get(head.origin);
        if (origin !== undefined) origin.clones--;
      }
      m.heads.delete(ds);
      return 'ok';
    }
    case 'bookmark': {
      if (snap === undefined) return 'ENOENT';
      const mark = `${ds}#${snapName}`;
      if (m.bookmarks.has(mark)) return 'EEXIST';
      m.bookmarks.add(mark);
      return 'ok';
    }
    case 'hold':
      if (snap === undefined) return 'ENOENT';
      if (o.release) return snap.holds.delete('t') ? 'ok' : 'ENOENT';
      if (snap.holds.has('t')) return 'EEXIST';
      snap.holds.add('t');
      return 'ok';
  }
}

async function apply(pool: Pool, o: Op, cloneName: string): Promise<void> {
  if (o.op === 'reimport') return;
  const ds = HEADS[o.ds] ?? '';
  const key = 'key' in o ? (KEYS[o.key] ?? '') : '';
  const full = 'name' in o ? `${ds}@${SNAPS[o.name] ?? ''}` : '';
  const assign = (): ReturnType<Pool['assign']> => pool.assign();
  switch (o.op) {
    case 'put':
      return void (await pool.dsl.withView(ds, 'write', (v) => keyed.putKey(v, assign, key, pattern(o.seed, o.len))));
    case 'write':
      return void (await pool.dsl.withView(ds, 'write', (v) => keyed.writeKey(v, assign, key, o.offset, pattern(o.seed, o.len))));
    case 'rm':
      return pool.dsl.withView(ds, 'write', (v) => keyed.removeKey(v, assign, key));
    case 'snapshot':
      return pool.dsl.snapshot(full);
    case 'destroySnap':
      return pool.dsl.destroy(full);
    case 'rollback':
      return pool.dsl.rollback(full, { recursive: o.recursive });
    case 'clone':
      return pool.dsl.clone(full, cloneName);
    case 'destroyHead':
      return pool.dsl.destroy(ds, { recursive: true });
    case 'bookmark':
      return pool.dsl.bookmark(full, `${ds}#${SNAPS[o.name] ?? ''}`);
    case 'hold':
      return o.release ? pool.dsl.release('t', full) : pool.dsl.hold('t', full);
  }
}

async function compare(pool: Pool, m: Model, label: string): Promise<void> {
  const views: [string, Keys][] = [...[...m.heads].map(([n, h]): [string, Keys] => [n, h.keys]), ...[...m.snaps].map(([n, s]): [string, Keys] => [n, s.keys])];
  const listed = (await pool.dsl.list({ types: ['filesystem', 'snapshot', 'bookmark'] })).map((e) => e.name).filter((n) => n !== 'tank');
  expect(new Set(listed), `${label}: names`).toEqual(new Set([...m.heads.keys(), ...m.snaps.keys(), ...m.bookmarks]));
  for (const [name, keys] of views) {
    await pool.dsl.withView(name, 'read', async (v) => {
      const infos = await keyed.listKeys(v);
      expect(infos.map((k) => k.key), `${label}: keys of ${name}`).toEqual([...keys.keys()].sort());
      for (const info of infos) {
        const got = await keyed.readKey(v, info.key, 0, info.size);
        const want = keys.get(info.key) ?? new Uint8Array(0);
        expect(Buffer.from(got).equals(Buffer.from(want)), `${label}: ${name} key ${info.key}`).toBe(true);
      }
    });
  }
}

/**
 * Allocated bytes once every deferred free has been released, less the MOS's dnode array: that
 * array's size depends on which object numbers the surviving MOS objects happen to hold (a
 * dataset's current deadlist may sit in a later dnode block than the one it replaced), not on
 * any block being leaked. Every other block — data, trees, ZAPs, deadlists, records — counts.
 */
async function settledAllocated(pool: Pool): Promise<number> {
  for (let i = 0; i < 4; i++) await pool.syncTask(async () => undefined);
  return pool.allocator.allocatedBytes() - pool.allocator.deferredBytes() - pool.mos.summary().metaUsedBytes;
}

describe('dataset layer against a model', () => {
  it('matches the model after every step and frees everything it allocated', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1 << 30 }), fc.array(opArb, { minLength: 10, maxLength: 40 }), async (seed, ops) => {
        const machine = simMachine(seed, 2, 48 * 1024 * 1024);
        let pool = await createSimPool(machine);
        try {
          await pool.dsl.create('tank/x', new Map([['recordsize', '4K']]));
          await pool.dsl.create('tank/y');
          const baseline = await settledAllocated(pool);
          const m: Model = { heads: new Map(BASE_HEADS.map((n) => [n, { keys: new Map(), snaps: [] }])), snaps: new Map(), bookmarks: new Set() };
          for (const [i, o] of ops.entries()) {
            const label = `seed ${seed} step ${i} ${JSON.stringify(o)}`;
            const want = expected(m, o);
            if (want === 'skip') continue;
            const cloneName = want.startsWith('clone:') ? want.slice(6) : '';
            if (o.op === 'reimport') {
              await pool.export();
              pool = await importSimPool(machine);
            } else {
              expect(await codeOf(() => apply(pool, o, cloneName)), label).toBe(cloneName === '' ? want : 'ok');
            }
            await compare(pool, m, label);
          }
          // Destroy everything: clones (newest first), then snapshots, bookmarks and keys.
          for (const c of [...CLONES].reverse()) if (m.heads.has(c)) await pool.dsl.destroy(c, { recursive: true }).catch(async (e: unknown) => {
            // A clone of a clone: destroy in dependency order on the next pass.
            if (!(e instanceof Error && 'code' in e && e.code === 'EBUSY')) throw e;
          });
          for (const c of [...CLONES].reverse()) if ((await pool.dsl.list()).some((e) => e.name === c)) await pool.dsl.destroy(c, { recursive: true });
          for (const [name, s] of m.snaps) {
            if (name.startsWith('tank/c')) continue;
            for (const tag of s.holds) await pool.dsl.release(tag, name);
            await pool.dsl.destroy(name);
          }
          for (const b of m.bookmarks) if (!b.startsWith('tank/c')) await pool.dsl.destroy(b);
          for (const ds of BASE_HEADS) {
            for (const k of m.heads.get(ds)?.keys.keys() ?? []) {
              await pool.dsl.withView(ds, 'write', (v) => keyed.removeKey(v, () => pool.assign(), k));
            }
          }
          expect(await settledAllocated(pool), `seed ${seed}: allocated space back at baseline`).toBe(baseline);
          await pool.checkInvariants();
        } finally {
          await pool.export();
        }
      }),
      { numRuns: Number(process.env.MODEL_RUNS ?? 20) },
    );
  }, 300_000);
});
