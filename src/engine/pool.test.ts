// The pool and the DMU against a naive model: a Map of object number -> bytes. Every step
// compares reads with the model, across syncs, exports and imports, and checkInvariants() runs
// after every txg (space accounting, no double references, every checksum).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChecksumKind, PowerCutDisk, type PowerSwitch, type SimDisk, fletcher4, hasCode, idle, mpError } from '../lib/index.js';
import * as dmu from './dmu.js';
import { ObjectType } from './dnode.js';
import type { Pool } from './pool.js';
import { createSimPool, importSimPool, pattern, simMachine } from './test-support.js';
import type { ObjectId } from './types.js';

type Model = Map<ObjectId, Uint8Array>;

/** A disk whose flushes wait while its gate is closed: a txg's sync can be held halfway. */
class HeldFlushDisk extends PowerCutDisk {
  constructor(inner: SimDisk, power: PowerSwitch, private readonly gate: { wait: Promise<void> }) {
    super(inner, power);
  }

  override async sync(): Promise<void> {
    await this.gate.wait;
    await super.sync();
  }
}

async function inTx(pool: Pool, fn: (tx: dmu.Tx) => Promise<void>): Promise<void> {
  const tx = await pool.assign();
  try {
    await fn(tx);
  } finally {
    tx.commit();
  }
}

async function expectMatches(pool: Pool, model: Model, only?: ObjectId): Promise<void> {
  for (const [obj, bytes] of model) {
    if (only !== undefined && obj !== only) continue;
    const info = await dmu.objectInfo(pool.root, obj);
    expect(info.size, `object ${obj} size`).toBe(bytes.length);
    const got = await dmu.read(pool.root, obj, 0, bytes.length + 100);
    expect(Buffer.from(got).equals(Buffer.from(bytes)), `object ${obj} content`).toBe(true);
  }
}

function resized(b: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n);
  out.set(b.subarray(0, Math.min(n, b.length)));
  return out;
}

const op = fc.oneof(
  { weight: 2, arbitrary: fc.record({ k: fc.constant('create' as const), blockBytes: fc.constantFrom(512, 4096, 131072) }) },
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant('write' as const),
      pick: fc.nat(),
      offset: fc.oneof(fc.nat({ max: 4096 }), fc.nat({ max: 700_000 })),
      length: fc.oneof(fc.integer({ min: 1, max: 600 }), fc.integer({ min: 1, max: 300_000 })),
      seed: fc.nat(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('freeRange' as const), pick: fc.nat(), offset: fc.nat({ max: 700_000 }), length: fc.nat({ max: 400_000 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('truncate' as const), pick: fc.nat(), size: fc.nat({ max: 800_000 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('free' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('sync' as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('reimport' as const) }) },
);

describe('pool and DMU', () => {
  it('writes, reads back, syncs, exports and imports an object', async () => {
    const m = simMachine(1);
    let pool = await createSimPool(m);
    let obj = 0 as ObjectId;
    const data = pattern(7, 300_000);
    await inTx(pool, async (tx) => {
      obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: 131072, checksumKind: 1 });
      await dmu.write(pool.root, tx, obj, 1000, data);
    });
    expect(Buffer.from(await dmu.read(pool.root, obj, 1000, data.length)).equals(Buffer.from(data))).toBe(true);
    await pool.sync();
    await pool.export();
    pool = await importSimPool(m);
    expect((await dmu.objectInfo(pool.root, obj)).size).toBe(301_000);
    expect(Buffer.from(await dmu.read(pool.root, obj, 1000, data.length)).equals(Buffer.from(data))).toBe(true);
    expect(Buffer.from(await dmu.read(pool.root, obj, 0, 1000)).equals(Buffer.from(new Uint8Array(1000)))).toBe(true);
    await pool.export();
  });

  it('reports unsynced changes until the txg holding them is on disk', async () => {
    const m = simMachine(2);
    const pool = await createSimPool(m);
    await pool.sync();
    expect(pool.hasUnsyncedChanges()).toBe(false);
    await inTx(pool, async (tx) => {
      const obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: 131072, checksumKind: 1 });
      await dmu.write(pool.root, tx, obj, 0, pattern(3, 5000));
    });
    expect(pool.hasUnsyncedChanges()).toBe(true);
    const syncing = pool.sync();
    expect(pool.hasUnsyncedChanges()).toBe(true);
    await syncing;
    expect(pool.hasUnsyncedChanges()).toBe(false);
    await pool.export();
  });

  it('lets a transaction of a closing txg write after a newer one asked to, and keeps the txgs in order', async () => {
    const m = simMachine(4);
    let pool = await createSimPool(m);
    const objs: ObjectId[] = [];
    await inTx(pool, async (tx) => {
      for (let i = 0; i < 2; i++) objs.push(await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: 4096, checksumKind: 1 }));
    });
    await pool.sync();
    const [a, b] = objs as [ObjectId, ObjectId];
    const older = await pool.assign();
    await dmu.write(pool.root, older, a, 0, pattern(1, 5000));
    // The sync closes older's txg and waits for it to commit; a transaction asked for now belongs
    // to the next txg and writes the same object set, and older writes once more after that.
    const syncing = pool.sync();
    await idle();
    let newerTxg = 0;
    const newer = inTx(pool, async (tx) => {
      newerTxg = tx.txg;
      await dmu.write(pool.root, tx, b, 0, pattern(2, 5000));
      await dmu.write(pool.root, tx, a, 100, pattern(3, 10));
    });
    await idle();
    await dmu.write(pool.root, older, a, 2000, pattern(4, 3000));
    older.commit();
    await Promise.all([syncing, newer]);
    expect(newerTxg).toBe(older.txg + 1);
    const expected = new Map<ObjectId, Uint8Array>([[a, pattern(1, 5000)], [b, pattern(2, 5000)]]);
    expected.get(a)?.set(pattern(4, 3000), 2000);
    expected.get(a)?.set(pattern(3, 10), 100);
    await expectMatches(pool, expected);
    await pool.sync();
    await pool.checkInvariants();
    await pool.export();
    pool = await importSimPool(m);
    await expectMatches(pool, expected);
    await pool.export();
  });

  it('resolves syncTaskRun once its task has run, before its txg is durable, which still lands first', async () => {
    const m = simMachine(6);
    const gate = { wait: Promise.resolve(), open: (): void => undefined };
    const pool = await createSimPool({ ...m, leaves: () => m.disks.map((d, i) => ({ disk: new HeldFlushDisk(d, m.power, gate), path: `sim${i}` })) });
    let obj = 0 as ObjectId;
    await inTx(pool, async (tx) => {
      obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: 4096, checksumKind: 1 });
    });
    await pool.sync();
    gate.wait = new Promise((open) => (gate.open = open));
    // The task's txg also writes data, so it has a flush to wait on.
    await inTx(pool, (tx) => dmu.write(pool.root, tx, obj, 0, pattern(1, 5000)));
    let ranIn = 0;
    await pool.syncTaskRun(async (tx) => {
      ranIn = tx.txg;
    });
    expect(ranIn).toBeGreaterThan(0);
    expect(pool.lastSyncedTxg).toBeLessThan(ranIn);
    // Work goes on in the next txg meanwhile; neither txg is durable until the flush is let go.
    let wroteIn = 0;
    await inTx(pool, async (tx) => {
      wroteIn = tx.txg;
      await dmu.write(pool.root, tx, obj, 4000, pattern(3, 1000));
    });
    expect(wroteIn).toBe(ranIn + 1);
    const synced = pool.sync();
    await idle();
    expect(pool.lastSyncedTxg).toBeLessThan(ranIn);
    gate.open();
    expect(await synced).toBeGreaterThanOrEqual(wroteIn);
    const expected = pattern(1, 5000);
    expected.set(pattern(3, 1000), 4000);
    await expectMatches(pool, new Map([[obj, expected]]));
    // A task that refuses rejects with its refusal, and its txg syncs on.
    await expect(pool.syncTaskRun(() => Promise.reject(mpError('EBUSY', 'refused')))).rejects.toMatchObject({ code: 'EBUSY' });
    // A txg that fails before its task runs rejects with the suspension.
    await inTx(pool, (tx) => dmu.write(pool.root, tx, obj, 0, pattern(2, 5000)));
    for (const d of m.disks) d.injectFault({ op: 'write', effect: { kind: 'eio' } });
    let ran = false;
    const failed = pool.syncTaskRun(async () => {
      ran = true;
    });
    await expect(failed).rejects.toThrow(/pool suspended/);
    expect(ran).toBe(false);
    await pool.abandon();
  });

  it('syncs a whole block written with its fletcher-4 under that checksum, unless the block changed since', async () => {
    const m = simMachine(3);
    let pool = await createSimPool(m);
    const BS = 4096;
    const block = (seed: number): Uint8Array => pattern(seed, BS);
    // A checksum that does not match what is written: if the sync uses it, reading the block back fails.
    const lie = fletcher4(block(99));
    let f4 = 0 as ObjectId;
    let sha = 0 as ObjectId;
    await inTx(pool, async (tx) => {
      f4 = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: BS, checksumKind: ChecksumKind.fletcher4 });
      sha = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: BS, checksumKind: ChecksumKind.sha256 });
      await dmu.write(pool.root, tx, f4, 0, block(0), fletcher4(block(0)));
      await dmu.write(pool.root, tx, f4, BS, block(1), lie);
      // Changed in place after the whole write, by a partial write, a partial free, a second whole write.
      await dmu.write(pool.root, tx, f4, 2 * BS, block(2), lie);
      await dmu.write(pool.root, tx, f4, 2 * BS + 10, pattern(20, 100));
      await dmu.write(pool.root, tx, f4, 3 * BS, block(3), lie);
      await dmu.freeRange(pool.root, tx, f4, 3 * BS + 7, 50);
      await dmu.write(pool.root, tx, f4, 4 * BS, block(4), lie);
      await dmu.write(pool.root, tx, f4, 4 * BS, block(5));
      // A fletcher-4 says nothing about a sha256 object's block; nor about a write of more than one block.
      await dmu.write(pool.root, tx, sha, 0, block(6), lie);
      await dmu.write(pool.root, tx, f4, 5 * BS, pattern(7, 2 * BS), lie);
      // The digest is the caller's again once write returns (a decoder reuses its buffer).
      const digest = fletcher4(block(8));
      await dmu.write(pool.root, tx, f4, 7 * BS, block(8), digest);
      digest.fill(0xee);
    });
    await pool.sync();
    await pool.export();
    pool = await importSimPool(m);
    const expected = new Uint8Array(8 * BS);
    expected.set(block(0), 0);
    expected.set(block(1), BS);
    expected.set(block(2), 2 * BS);
    expected.set(pattern(20, 100), 2 * BS + 10);
    expected.set(block(3), 3 * BS);
    expected.fill(0, 3 * BS + 7, 3 * BS + 57);
    expected.set(block(5), 4 * BS);
    expected.set(pattern(7, 2 * BS), 5 * BS);
    expected.set(block(8), 7 * BS);
    for (const b of [0, 2, 3, 4, 5, 6, 7]) {
      expect(Buffer.from(await dmu.read(pool.root, f4, b * BS, BS)).equals(Buffer.from(expected.subarray(b * BS, (b + 1) * BS))), `block ${b}`).toBe(true);
    }
    expect(Buffer.from(await dmu.read(pool.root, sha, 0, BS)).equals(Buffer.from(block(6)))).toBe(true);
    // Block 1 was synced under the checksum its writer vouched for.
    await expect(dmu.read(pool.root, f4, BS, BS)).rejects.toMatchObject({ code: 'ECKSUM' });
    await pool.export();
  });

  it('finds data and holes with offsetNext', async () => {
    const m = simMachine(2);
    const pool = await createSimPool(m);
    let obj = 0 as ObjectId;
    await inTx(pool, async (tx) => {
      obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: 4096, checksumKind: 1 });
      await dmu.write(pool.root, tx, obj, 4096 * 100, pattern(1, 4096));
      await dmu.write(pool.root, tx, obj, 4096 * 300, pattern(2, 10));
    });
    expect(await pool.offsetNext(pool.root, obj, 0, false)).toBe(4096 * 100);
    expect(await pool.offsetNext(pool.root, obj, 4096 * 100, true)).toBe(4096 * 101);
    expect(await pool.offsetNext(pool.root, obj, 4096 * 101, false)).toBe(4096 * 300);
    expect(await pool.offsetNext(pool.root, obj, 4096 * 300 + 5, true)).toBe(4096 * 300 + 10);
    expect(await pool.offsetNext(pool.root, obj, 4096 * 301, false)).toBe(null);
    await pool.export();
  });

  it('rejects bad DMU arguments with coded errors and changes nothing', async () => {
    const m = simMachine(3);
    const pool = await createSimPool(m);
    await inTx(pool, async (tx) => {
      const obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: 4096, checksumKind: 1 });
      await dmu.write(pool.root, tx, obj, 0, pattern(3, 100));
      const bad = [
        dmu.write(pool.root, tx, obj, -1, pattern(1, 1)),
        dmu.write(pool.root, tx, obj, 2 ** 60, pattern(1, 1)),
        dmu.read(pool.root, obj, 0.5, 1),
        dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: 3000, checksumKind: 1 }),
        dmu.setBonus(pool.root, tx, obj, new Uint8Array(1000)),
        dmu.read(pool.root, 999 as ObjectId, 0, 1),
        dmu.claimObject(pool.root, tx, obj, { type: ObjectType.plain, blockBytes: 4096, checksumKind: 1 }),
      ];
      const codes = await Promise.all(bad.map((p) => p.then(() => 'ok', (e: unknown) => (hasCode(e, 'EINVAL') ? 'EINVAL' : hasCode(e, 'ENOENT') ? 'ENOENT' : hasCode(e, 'EEXIST') ? 'EEXIST' : String(e)))));
      expect(codes).toEqual(['EINVAL', 'EINVAL', 'EINVAL', 'EINVAL', 'EINVAL', 'ENOENT', 'EEXIST']);
      expect(Buffer.from(await dmu.read(pool.root, obj, 0, 200)).equals(Buffer.from(pattern(3, 100)))).toBe(true);
    });
    await pool.export();
  });

  it('matches a Map model over random operations, syncs, exports and imports', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 0xffff_ffff }), fc.array(op, { minLength: 1, maxLength: 30 }), async (seed, ops) => {
        const m = simMachine(seed);
        let pool = await createSimPool(m);
        const model: Model = new Map();
        const pick = (n: number): ObjectId | undefined => [...model.keys()][n % Math.max(1, model.size)];
        for (const o of ops) {
          if (o.k === 'sync') {
            await pool.sync();
            await expectMatches(pool, model);
            continue;
          }
          if (o.k === 'reimport') {
            await pool.export();
            pool = await importSimPool(m);
            await expectMatches(pool, model);
            continue;
          }
          if (o.k === 'create') {
            await inTx(pool, async (tx) => {
              const obj = await dmu.createObject(pool.root, tx, { type: ObjectType.plain, blockBytes: o.blockBytes, checksumKind: 1 });
              model.set(obj, new Uint8Array(0));
            });
            continue;
          }
          const obj = pick(o.pick);
          if (obj === undefined) continue;
          const cur = model.get(obj) ?? new Uint8Array(0);
          await inTx(pool, async (tx) => {
            if (o.k === 'write') {
              const data = pattern(o.seed, o.length);
              await dmu.write(pool.root, tx, obj, o.offset, data);
              const next = resized(cur, Math.max(cur.length, o.offset + o.length));
              next.set(data, o.offset);
              model.set(obj, next);
            } else if (o.k === 'freeRange') {
              await dmu.freeRange(pool.root, tx, obj, o.offset, o.length);
              const next = cur.slice();
              if (o.offset < next.length) next.fill(0, o.offset, Math.min(next.length, o.offset + o.length));
              model.set(obj, next);
            } else if (o.k === 'truncate') {
              await dmu.truncate(pool.root, tx, obj, o.size);
              model.set(obj, resized(cur, o.size));
            } else {
              await dmu.freeObject(pool.root, tx, obj);
              model.delete(obj);
            }
          });
          await expectMatches(pool, model, obj);
        }
        await pool.sync();
        await expectMatches(pool, model);
        await pool.export();
      }),
      { numRuns: 30 },
    );
  });
});
