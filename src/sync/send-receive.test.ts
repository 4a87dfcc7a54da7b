import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Prng, fletcher4 } from '../lib/index.js';
import { type Pool, keyed, objectId } from '../engine/index.js';
import { content, pattern, put, simPool } from './pool-test-support.js';
import { beginRecord, changeRecords, planSend } from './send.js';
import { receiveRecords } from './receive.js';
import { decodeResumeToken, encodeResumeToken, planResume } from './resume-token.js';
import { RecordKind, type StreamRecord, isVerifiedWrite } from './stream-record.js';

/** The records of a send, END included (the checksum is the encoder's: receive does not check it). */
async function sendAll(pool: Pool, to: string, from?: string): Promise<StreamRecord[]> {
  const plan = await planSend(pool, to, from === undefined ? {} : { from });
  const out: StreamRecord[] = [beginRecord(plan)];
  for await (const r of changeRecords(pool, plan)) out.push(r);
  out.push({ kind: RecordKind.end, checksum: new Uint8Array(32), toGuid: plan.toGuid });
  return out;
}

async function* each(records: readonly StreamRecord[]): AsyncGenerator<StreamRecord> {
  for (const r of records) yield r;
}

/** src/d holding 320 small keys, snapshotted as src/d@1 and received whole as dst/d. */
async function replicatedKeys(srcSeed: number, dstSeed: number): Promise<{ src: Pool; dst: Pool }> {
  const src = await simPool('src', srcSeed);
  const dst = await simPool('dst', dstSeed);
  await src.dsl.create('src/d');
  for (let i = 0; i < 320; i++) await put(src, 'src/d', `k${i}`, pattern(i, 300));
  await src.dsl.snapshot('src/d@1');
  await receiveRecords(dst, 'dst/d', each(await sendAll(src, 'src/d@1')));
  return { src, dst };
}

type Op = { op: 'put'; key: number; size: number } | { op: 'write'; key: number; offset: number; size: number } | { op: 'truncate'; key: number; size: number } | { op: 'rm'; key: number };

async function applyOp(pool: Pool, ds: string, o: Op, seed: number): Promise<void> {
  await pool.dsl.withView(ds, 'write', async (v) => {
    const key = `k${o.key}`;
    const have = (await keyed.listKeys(v)).some((k) => k.key === key);
    const assign = (): ReturnType<Pool['assign']> => pool.assign();
    if (o.op === 'put' || !have) await keyed.putKey(v, assign, key, pattern(seed, o.op === 'rm' ? 10 : o.size));
    else if (o.op === 'write') await keyed.writeKey(v, assign, key, o.offset, pattern(seed, o.size));
    else if (o.op === 'truncate') await keyed.truncateKey(v, assign, key, o.size);
    else await keyed.removeKey(v, assign, key);
  });
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('put' as const), key: fc.integer({ min: 0, max: 12 }), size: fc.integer({ min: 0, max: 300_000 }) }),
  fc.record({ op: fc.constant('write' as const), key: fc.integer({ min: 0, max: 12 }), offset: fc.integer({ min: 0, max: 400_000 }), size: fc.integer({ min: 1, max: 70_000 }) }),
  fc.record({ op: fc.constant('truncate' as const), key: fc.integer({ min: 0, max: 12 }), size: fc.integer({ min: 0, max: 200_000 }) }),
  fc.record({ op: fc.constant('rm' as const), key: fc.integer({ min: 0, max: 12 }) }),
);

describe('send and receive', () => {
  it('round-trips random workloads: full, incremental from a snapshot and from a bookmark, guids kept', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1_000_000 }), fc.array(fc.array(opArb, { maxLength: 12 }), { minLength: 2, maxLength: 4 }), fc.boolean(), async (seed, rounds, viaBookmark) => {
        const src = await simPool('src', seed);
        const dst = await simPool('dst', seed + 7);
        await src.dsl.create('src/d', new Map([['recordsize', seed % 2 === 0 ? '8K' : '128K']]));
        let prev: string | undefined;
        for (const [i, ops] of rounds.entries()) {
          for (const [j, o] of ops.entries()) await applyOp(src, 'src/d', o, seed * 100 + i * 10 + j);
          const snap = `src/d@s${i}`;
          await src.dsl.snapshot(snap);
          let from = prev;
          if (prev !== undefined && viaBookmark) {
            await src.dsl.bookmark(prev, `src/d#b${i}`);
            await src.dsl.destroy(prev);
            from = `src/d#b${i}`;
          }
          await receiveRecords(dst, 'dst/d', each(await sendAll(src, snap, from)));
          const sent = (await src.dsl.list({ types: ['snapshot'] })).find((e) => e.name === snap);
          const got = (await dst.dsl.list({ types: ['snapshot'] })).find((e) => e.name === `dst/d@s${i}`);
          expect(got?.guid, `guid of s${i}`).toBe(sent?.guid);
          expect(got?.creationMs).toBe(sent?.creationMs);
          expect(await content(dst, `dst/d@s${i}`), `s${i}`).toBe(await content(src, snap));
          expect(await content(dst, 'dst/d')).toBe(await content(src, snap));
          prev = snap;
        }
        await dst.checkInvariants();
        await src.export();
        await dst.export();
      }),
      { numRuns: Number(process.env['MODEL_RUNS'] ?? 8) },
    );
  }, 240_000);

  it('sends only what changed: an incremental stream follows the change, not the dataset', async () => {
    const src = await simPool('src', 3);
    await src.dsl.create('src/d', new Map([['recordsize', '16K']]));
    for (let i = 0; i < 32; i++) await put(src, 'src/d', `k${i}`, pattern(i, 256 * 1024));
    await src.dsl.snapshot('src/d@1');
    await src.dsl.withView('src/d', 'write', (v) => keyed.writeKey(v, () => src.assign(), 'k7', 100_000, pattern(70, 16 * 1024)));
    await src.dsl.snapshot('src/d@2');
    const bytes = (records: StreamRecord[]): number => records.reduce((sum, r) => sum + (r.kind === RecordKind.write ? r.data.length : 0), 0);
    const full = bytes(await sendAll(src, 'src/d@2'));
    const inc = await sendAll(src, 'src/d@2', 'src/d@1');
    expect(full).toBeGreaterThanOrEqual(32 * 256 * 1024);
    // Two 16 KiB blocks of k7 (the write straddles them) and the key directory's changed blocks.
    expect(bytes(inc)).toBeLessThanOrEqual(2 * 16 * 1024 + 64 * 1024);
    expect(inc.filter((r) => r.kind === RecordKind.object).length).toBeLessThan(40);
    // Whole blocks go out with their pointer's checksum, verified by the read: encoding trusts
    // them (verifiedWrite), so every one must match its data.
    const writes = (await sendAll(src, 'src/d@2')).filter((r) => r.kind === RecordKind.write);
    expect(writes.length).toBeGreaterThan(32);
    for (const w of writes) {
      if (w.data.length === 16 * 1024) expect(isVerifiedWrite(w)).toBe(true);
      expect(Buffer.from(fletcher4(w.data)).equals(Buffer.from(w.checksum))).toBe(true);
    }
  });

  it('leaves alone the objects an incremental stream carries unchanged (the rest of a changed dnode block, from a bookmark)', async () => {
    const { src, dst } = await replicatedKeys(5, 6);
    // From a bookmark (the snapshot gone), a send cannot tell which objects of a changed dnode
    // block changed, and carries them all.
    await src.dsl.bookmark('src/d@1', 'src/d#1');
    await src.dsl.destroy('src/d@1');
    // One key in every 32 is overwritten in place: each dnode block has a changed object.
    for (let i = 0; i < 320; i += 32) await src.dsl.withView('src/d', 'write', (v) => keyed.writeKey(v, () => src.assign(), `k${i}`, 0, pattern(1000 + i, 100)));
    await src.dsl.snapshot('src/d@2');
    const inc = await sendAll(src, 'src/d@2', 'src/d#1');
    // Records are applied in batches of 256 after BEGIN. When the stream is asked for the one
    // after them, that batch has been applied: which of its objects are dirty in the receive's
    // temporary dataset?
    const firstBatch = inc.slice(1, 257);
    const written = new Set(firstBatch.filter((r) => r.kind === RecordKind.write).map((r) => r.object));
    const carried = firstBatch.flatMap((r) => (r.kind === RecordKind.object && !written.has(r.object) ? [r.object] : []));
    let dirty: { carried: number[]; written: number[] } | null = null;
    async function* watched(): AsyncGenerator<StreamRecord> {
      for (const [i, r] of inc.entries()) {
        if (i === 257) {
          dirty = await dst.dsl.withView('dst/d%recv', 'read', (v) => Promise.resolve({
            carried: carried.filter((o) => v.os.isDirty(objectId(o))),
            written: [...written].filter((o) => v.os.isDirty(objectId(o))),
          }));
        }
        yield r;
      }
    }
    await receiveRecords(dst, 'dst/d', watched());
    expect(carried.length).toBeGreaterThan(200);
    expect(written.size).toBeGreaterThan(5);
    expect(dirty).toEqual({ carried: [], written: [...written] });
    expect(await content(dst, 'dst/d')).toBe(await content(src, 'src/d@2'));
    await dst.checkInvariants();
  });

  it('carries only the objects that changed when the from point is a snapshot', async () => {
    const { src, dst } = await replicatedKeys(7, 8);
    await src.dsl.bookmark('src/d@1', 'src/d#1');
    // One key in every 32 overwritten in place (a changed object in each dnode block), one grown.
    for (let i = 0; i < 320; i += 32) await src.dsl.withView('src/d', 'write', (v) => keyed.writeKey(v, () => src.assign(), `k${i}`, 0, pattern(1000 + i, 100)));
    await put(src, 'src/d', 'k5', pattern(5, 900));
    await src.dsl.snapshot('src/d@2');
    const objects = (records: readonly StreamRecord[]): number => records.filter((r) => r.kind === RecordKind.object).length;
    const fromSnapshot = await sendAll(src, 'src/d@2', 'src/d@1');
    // A bookmark whose snapshot still exists is sent from the snapshot; once it is gone, the
    // stream carries nearly all 320 keys again. The snapshot's carries the 11 changed keys and the
    // objects of the key directory that changed.
    expect(objects(await sendAll(src, 'src/d@2', 'src/d#1'))).toBe(objects(fromSnapshot));
    await src.dsl.destroy('src/d@1');
    const fromBookmark = await sendAll(src, 'src/d@2', 'src/d#1');
    expect(objects(fromBookmark)).toBeGreaterThan(300);
    expect(objects(fromSnapshot)).toBeGreaterThanOrEqual(11);
    expect(objects(fromSnapshot)).toBeLessThan(20);
    const data = (records: readonly StreamRecord[]): StreamRecord[] => records.filter((r) => r.kind === RecordKind.write || r.kind === RecordKind.free);
    expect(data(fromSnapshot)).toEqual(data(fromBookmark));
    await receiveRecords(dst, 'dst/d', each(fromSnapshot));
    expect(await content(dst, 'dst/d')).toBe(await content(src, 'src/d@2'));
    await dst.checkInvariants();
  });

  it('resumes a stream cut after any record, full and incremental, to the same result', async () => {
    const src = await simPool('src', 31);
    await src.dsl.create('src/d', new Map([['recordsize', '16K']]));
    for (let i = 0; i < 6; i++) await put(src, 'src/d', `k${i}`, pattern(i, 40_000 + i * 9000));
    await src.dsl.snapshot('src/d@1');
    await put(src, 'src/d', 'k2', pattern(77, 5000));
    await put(src, 'src/d', 'k9', pattern(78, 60_000));
    await src.dsl.snapshot('src/d@2');
    const full = await sendAll(src, 'src/d@1');
    const inc = await sendAll(src, 'src/d@2', 'src/d@1');
    const r = new Prng(4);
    for (let trial = 0; trial < 12; trial++) {
      const dst = await simPool('dst', 40 + trial);
      for (const [stream, snap] of [[full, 'src/d@1'], [inc, 'src/d@2']] as const) {
        const cut = 1 + r.int(stream.length - 1);
        const err = await receiveRecords(dst, 'dst/d', each(stream.slice(0, cut)), { resumable: true }).then(() => null, (e: unknown) => e);
        expect(err, `cut at record ${cut}`).toMatchObject({ code: 'EPROTO' });
        const token = (err as { details: { token: string } }).details.token;
        // A fresh stream is refused while the stopped one waits.
        await expect(receiveRecords(dst, 'dst/d', each(stream))).rejects.toMatchObject({ code: 'EBUSY' });
        const plan = await planResume(src, token);
        const rest: StreamRecord[] = [beginRecord(plan)];
        for await (const rec of changeRecords(src, plan)) rest.push(rec);
        rest.push({ kind: RecordKind.end, checksum: new Uint8Array(32), toGuid: plan.toGuid });
        await receiveRecords(dst, 'dst/d', each(rest), { resumable: true });
        expect(await content(dst, 'dst/d'), `trial ${trial} cut ${cut}`).toBe(await content(src, snap));
      }
      await dst.checkInvariants();
      await dst.export();
    }
  }, 120_000);

  it('refuses forged and stale resume tokens with clear codes', async () => {
    const src = await simPool('src', 51);
    await src.dsl.create('src/d');
    await src.dsl.create('src/e');
    await put(src, 'src/d', 'k', pattern(1, 100_000));
    await put(src, 'src/e', 'k', pattern(2, 100_000));
    await src.dsl.snapshot('src/d@1');
    await src.dsl.snapshot('src/e@1');
    await put(src, 'src/d', 'k', pattern(3, 50_000));
    await src.dsl.snapshot('src/d@2');
    const guidOf = async (name: string): Promise<bigint> => (await src.dsl.list({ types: ['snapshot'] })).find((e) => e.name === name)?.guid ?? 0n;
    const good = { toGuid: await guidOf('src/d@2'), toName: 'src/d@2', fromGuid: await guidOf('src/d@1'), object: 2, offset: 0 } as const;
    const code = (token: string): Promise<unknown> => planResume(src, token).then(() => 'ok', (e: unknown) => (e as { code?: string }).code);
    expect(await code(encodeResumeToken(good as never))).toBe('ok');
    expect(await code(encodeResumeToken({ ...good, toGuid: 12345n } as never)), 'wrong to guid').toBe('ESTALE');
    expect(await code(encodeResumeToken({ ...good, fromGuid: 777n } as never)), 'unknown from guid').toBe('ENOENT');
    expect(await code(encodeResumeToken({ ...good, toName: 'src/e@1' } as never)), 'another dataset').toBe('ESTALE');
    expect(await code(encodeResumeToken({ ...good, toName: 'src/d@gone' } as never)), 'missing snapshot').toBe('ENOENT');
    expect(await code(encodeResumeToken({ ...good, offset: 10_000_000 } as never)), 'offset past the end').toBe('EINVAL');
    expect(await code(encodeResumeToken({ ...good, fromGuid: await guidOf('src/d@2'), toGuid: await guidOf('src/d@2') } as never)), 'from not older').toBe('EINVAL');
    const text = encodeResumeToken(good as never);
    expect(await code(`${text.slice(0, -3)}AAA`), 'altered').toBe('EINVAL');
    expect(await code(text.slice(0, 25)), 'cut').toBe('EINVAL');
    expect(await code(`9${text.slice(1)}`), 'version').toBe('ENOTSUP');
    for (const junk of ['', 'x', '1-zz-zz', '1-0123456789abcdef-!!!', 'a'.repeat(5000)]) expect(await code(junk), JSON.stringify(junk.slice(0, 20))).toBe('EINVAL');
    expect(decodeResumeToken(text)).toEqual(good);
  });

  it('refuses an incremental stream onto a diverged target unless forced, leaving it unchanged', async () => {
    const src = await simPool('src', 5);
    const dst = await simPool('dst', 6);
    await src.dsl.create('src/d');
    await put(src, 'src/d', 'a', pattern(1, 50_000));
    await src.dsl.snapshot('src/d@1');
    await receiveRecords(dst, 'dst/d', each(await sendAll(src, 'src/d@1')));
    await put(src, 'src/d', 'b', pattern(2, 70_000));
    await src.dsl.snapshot('src/d@2');
    const stream = await sendAll(src, 'src/d@2', 'src/d@1');
    // The name of a receive's temporary dataset is not a target.
    await expect(receiveRecords(dst, 'dst/d%recv', each(stream))).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(receiveRecords(dst, 'dst/e%recv', each(await sendAll(src, 'src/d@1')))).rejects.toMatchObject({ code: 'EINVAL' });
    // The target moves on by itself.
    await put(dst, 'dst/d', 'local', pattern(3, 1000));
    const before = await content(dst, 'dst/d');
    await expect(receiveRecords(dst, 'dst/d', each(stream))).rejects.toMatchObject({ code: 'ESTALE' });
    expect(await content(dst, 'dst/d')).toBe(before);
    expect((await dst.dsl.list()).map((e) => e.name)).toEqual(['dst', 'dst/d']);
    // A snapshot of its own is a divergence too.
    await dst.dsl.snapshot('dst/d@mine');
    await expect(receiveRecords(dst, 'dst/d', each(stream))).rejects.toMatchObject({ code: 'ESTALE' });
    // The refusal does not wait for more of the stream: here the rest never comes. The stream
    // is read while the target is checked, so only a refusal that comes first can end this.
    let stalled = false;
    async function* stalls(): AsyncGenerator<StreamRecord> {
      yield stream[0]!;
      stalled = true;
      await new Promise(() => undefined);
    }
    await expect(receiveRecords(dst, 'dst/d', stalls(), { resumable: true })).rejects.toMatchObject({ code: 'ESTALE' });
    expect(stalled).toBe(true);
    expect(await content(dst, 'dst/d')).toBe(before);
    expect((await dst.dsl.list()).map((e) => e.name)).toEqual(['dst', 'dst/d']);
    await receiveRecords(dst, 'dst/d', each(stream), { force: true });
    expect(await content(dst, 'dst/d')).toBe(await content(src, 'src/d@2'));
    expect((await dst.dsl.list({ types: ['snapshot'] })).map((e) => e.name)).toEqual(['dst/d@1', 'dst/d@2']);
    await dst.checkInvariants();
  });

  it('leaves the target exactly as it was when a stream breaks off or carries bad records', async () => {
    const src = await simPool('src', 8);
    const dst = await simPool('dst', 9);
    await src.dsl.create('src/d');
    for (let i = 0; i < 5; i++) await put(src, 'src/d', `k${i}`, pattern(i, 90_000));
    await src.dsl.snapshot('src/d@1');
    const full = await sendAll(src, 'src/d@1');
    await receiveRecords(dst, 'dst/d', each(full));
    await put(src, 'src/d', 'k1', pattern(50, 20_000));
    await src.dsl.snapshot('src/d@2');
    const inc = await sendAll(src, 'src/d@2', 'src/d@1');
    const before = await content(dst, 'dst/d');
    for (const cut of [1, 2, Math.floor(inc.length / 2), inc.length - 1]) {
      await expect(receiveRecords(dst, 'dst/d', each(inc.slice(0, cut)))).rejects.toMatchObject({ code: 'EPROTO' });
      expect(await content(dst, 'dst/d')).toBe(before);
    }
    const bad = inc.map((r) => (r.kind === RecordKind.write ? { ...r, object: 999_999 as typeof r.object } : r));
    await expect(receiveRecords(dst, 'dst/d', each(bad))).rejects.toMatchObject({ code: 'EPROTO' });
    expect(await content(dst, 'dst/d')).toBe(before);
    expect((await dst.dsl.list()).map((e) => e.name)).toEqual(['dst', 'dst/d']);
    await receiveRecords(dst, 'dst/d', each(inc));
    expect(await content(dst, 'dst/d')).toBe(await content(src, 'src/d@2'));
    await dst.checkInvariants();
  });
});
