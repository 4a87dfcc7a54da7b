import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PoolTuning } from './pool.js';
import {
  TEST_TUNING, changeSample, codeOf, createSimPool, dumpPool as dump, importSimPool, pattern, populateSample as populate, putKey as put,
  rewindSimPool as rewind, simMachine,
} from './test-support.js';

describe('pool checkpoint', () => {
  it('rewinds to the checkpointed state exactly, dropping later data, datasets, snapshots and logged writes', async () => {
    const m = simMachine(11);
    const pool = await createSimPool(m);
    await populate(pool);
    const named = (await pool.namedLog('replication')).log;
    await named.waitDurable(named.append(pattern(1, 100)));
    const before = await dump(pool);
    const rec = await pool.checkpoint();
    expect(rec.txg).toBe(pool.checkpointStatus().txg);
    expect(pool.status().checkpoint.state).toBe('active');
    await changeSample(pool, 5);
    expect(pool.checkpointStatus().heldBytes).toBeGreaterThan(600_000);
    const changed = await dump(pool);
    expect(changed).not.toBe(before);
    // A logged write the next import would replay: the rewind must drop it instead.
    await put(pool, 'tank/a', 'late', pattern(7, 5000), true);
    await named.waitDurable(named.append(pattern(2, 100)));
    await pool.abandon();
    m.crash();
    const back = await rewind(m);
    expect(await dump(back)).toBe(before);
    expect(back.checkpointStatus().state).toBe('none');
    expect(back.uberblock.checkpointTxg).toBe(0);
    await back.checkInvariants();
    // Every durable log is emptied: its records are later than the checkpoint or covered by it.
    const { log: backLog, records } = await back.namedLog('replication');
    expect(records).toEqual([]);
    await backLog.waitDurable(backLog.append(pattern(3, 100)));
    // The rewound pool works and stays rewound; its intent logs take new records.
    await put(back, 'tank/a', 'after', pattern(8, 50_000));
    await put(back, 'tank/a', 'after-sync', pattern(9, 3000), true);
    const after = await dump(back);
    await back.abandon();
    m.crash();
    const again = await importSimPool(m);
    expect(await dump(again)).toBe(after);
    expect((await again.namedLog('replication')).records.map((r) => Buffer.from(r.data).equals(Buffer.from(pattern(3, 100))))).toEqual([true]);
    expect(await codeOf(again.checkpoint())).toBe('ok');
    await again.checkInvariants();
    await again.export();
  });

  it('refuses a second checkpoint, a discard without one, and a rewind without one', async () => {
    const m = simMachine(12);
    const pool = await createSimPool(m);
    expect(await codeOf(pool.discardCheckpoint())).toBe('ENOENT');
    await pool.checkpoint();
    const txgBefore = pool.uberblock.txg;
    expect(await codeOf(pool.checkpoint())).toBe('EEXIST');
    expect(pool.uberblock.txg, 'a refusal writes nothing').toBe(txgBefore);
    await pool.dsl.create('tank/x');
    await put(pool, 'tank/x', 'k', pattern(1, 300_000));
    await pool.dsl.destroy('tank/x');
    await pool.discardCheckpoint();
    expect(await codeOf(pool.discardCheckpoint())).toMatch(/ENOENT|EBUSY/);
    await pool.checkpointDiscardDone();
    expect(pool.checkpointStatus()).toMatchObject({ state: 'none', heldBytes: 0 });
    await pool.export();
    expect(await codeOf(rewind(m))).toBe('ENOENT');
    const again = await importSimPool(m);
    await again.checkInvariants();
    await again.export();
  });

  it('discards in bounded chunks across txgs, resumes after export, and gives every byte back', async () => {
    const m = simMachine(13);
    // 16 entries per step: the retained blocks take many txgs to give back.
    const tuning: PoolTuning = { ...TEST_TUNING, checkpointDiscardMemoryBytes: 2048 };
    const pool = await createSimPool(m, tuning);
    await pool.dsl.create('tank/a');
    for (let i = 0; i < 40; i++) await put(pool, 'tank/a', `k${i}`, pattern(i, 64 * 1024));
    await pool.checkpoint();
    await pool.dsl.destroy('tank/a');
    const held = pool.checkpointStatus().heldBytes;
    expect(held).toBeGreaterThan(40 * 64 * 1024);
    const start = pool.uberblock.txg;
    await pool.discardCheckpoint();
    expect(pool.checkpointStatus().state).toBe('discarding');
    expect(pool.checkpointStatus().discardStartBytes).toBe(held);
    // Export in the middle; the next import carries on.
    await pool.export();
    const again = await importSimPool(m, tuning);
    expect(again.checkpointStatus().state).not.toBe('active');
    await again.checkpointDiscardDone();
    expect(again.checkpointStatus()).toMatchObject({ state: 'none', heldBytes: 0, discardError: null });
    expect(again.uberblock.txg - start).toBeGreaterThan(5);
    // checkInvariants: allocated = live + deferred, nothing else held.
    await again.checkInvariants();
    expect(await codeOf(again.checkpoint())).toBe('ok');
    await again.export();
  });

  it('after a finished discard, allocates exactly what the same pool allocates had the checkpoint never existed', async () => {
    const settled = async (withCheckpoint: boolean): Promise<number> => {
      const m = simMachine(14);
      const pool = await createSimPool(m, { ...TEST_TUNING, checkpointDiscardMemoryBytes: 2048 });
      await populate(pool);
      if (withCheckpoint) await pool.checkpoint();
      await changeSample(pool, 3);
      if (withCheckpoint) {
        await pool.discardCheckpoint();
        await pool.checkpointDiscardDone();
      }
      for (let i = 0; i < 4; i++) await pool.syncTask(async () => undefined);
      expect(pool.allocator.deferredBytes()).toBe(0);
      const bytes = pool.allocator.allocatedBytes();
      await pool.export();
      return bytes;
    };
    expect(await settled(true)).toBe(await settled(false));
  });

  it('never reallocates a block born at or before the checkpoint while it exists (checked after every txg)', async () => {
    const ops = fc.array(
      fc.oneof(
        fc.record({ op: fc.constant('put' as const), ds: fc.integer({ min: 0, max: 2 }), key: fc.integer({ min: 0, max: 5 }), size: fc.integer({ min: 1, max: 150_000 }) }),
        fc.record({ op: fc.constant('snap' as const), ds: fc.integer({ min: 0, max: 2 }) }),
        fc.record({ op: fc.constant('destroy' as const), ds: fc.integer({ min: 0, max: 2 }) }),
        fc.record({ op: fc.constant('checkpoint' as const) }),
        fc.record({ op: fc.constant('discard' as const) }),
      ),
      { minLength: 5, maxLength: 25 },
    );
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1_000_000 }), ops, async (seed, list) => {
        const m = simMachine(seed, 2, 24 * 1024 * 1024);
        // checkEveryTxg: after every txg, no live block overlaps a block the checkpoint reaches,
        // and the checkpoint's lists hold exactly the blocks only it reaches.
        const pool = await createSimPool(m, { ...TEST_TUNING, checkpointDiscardMemoryBytes: 4096 });
        let snaps = 0;
        for (const o of list) {
          const ds = `tank/d${'ds' in o ? o.ds : 0}`;
          const exists = (await pool.dsl.list()).some((e) => e.name === ds);
          if (o.op === 'put') {
            if (!exists) await pool.dsl.create(ds);
            await put(pool, ds, `k${o.key}`, pattern(seed + o.size, o.size));
          } else if (o.op === 'snap' && exists) {
            await pool.dsl.snapshot(`${ds}@s${snaps++}`);
          } else if (o.op === 'destroy' && exists) {
            await pool.dsl.destroy(ds, { recursive: true });
          } else if (o.op === 'checkpoint') {
            expect(await codeOf(pool.checkpoint())).toMatch(/^(ok|EEXIST|EBUSY)$/);
          } else if (o.op === 'discard') {
            expect(await codeOf(pool.discardCheckpoint())).toMatch(/^(ok|ENOENT|EBUSY)$/);
          }
          await pool.sync();
        }
        if (pool.checkpointStatus().state === 'active') await pool.discardCheckpoint();
        await pool.checkpointDiscardDone();
        expect(pool.checkpointStatus().state).toBe('none');
        await pool.checkInvariants();
        await pool.export();
      }),
      { numRuns: Number(process.env['MODEL_RUNS'] ?? 12) },
    );
  }, 240_000);
});

describe('checkpoint record on disk', () => {
  it('refuses a record of the wrong size, version or txg with EPROTO', async () => {
    const { decodeRecord, encodeRecord } = await import('./checkpoint.js');
    const m = simMachine(15);
    const pool = await createSimPool(m);
    const rec = await pool.checkpoint();
    const bytes = encodeRecord(rec);
    expect(decodeRecord(bytes)).toEqual(rec);
    expect(await codeOf(() => decodeRecord(bytes.subarray(1)))).toBe('EPROTO');
    const version = bytes.slice();
    version[0] = 9;
    expect(await codeOf(() => decodeRecord(version))).toBe('EPROTO');
    const zero = bytes.slice();
    zero.fill(0, 8, 16);
    expect(await codeOf(() => decodeRecord(zero))).toBe('EPROTO');
    await pool.export();
  });
});
