// Streams as bytes, end to end: resume after a cut at any byte offset, the estimate, and damaged
// streams — every one refused with a coded error and the target exactly as it was.
import { describe, expect, it } from 'vitest';
import { MirrorpoolError, Prng, bytesEqual, concatBytes } from '../lib/index.js';
import { type Pool, keyed } from '../engine/index.js';
import { chunks, collect, content, pattern, poolState, put, simPool, SYNC_TEST_TUNING } from './pool-test-support.js';
import { estimateSend, packageSnapshots, receiveStream, sendPackage, sendPlan, sendStream, sendStreamParts } from './stream.js';
import { FRAME_PREFIX_BYTES } from './stream-encoder.js';

/** A source dataset with two snapshots: @1 (about 600 KiB in 14 keys) and @2 (a few changes). */
async function source(seed: number): Promise<Pool> {
  const src = await simPool('src', seed);
  await src.dsl.create('src/d', new Map([['recordsize', '16K']]));
  for (let i = 0; i < 14; i++) await put(src, 'src/d', `k${i}`, pattern(seed + i, 20_000 + i * 5000));
  await src.dsl.snapshot('src/d@1');
  await put(src, 'src/d', 'k3', pattern(seed + 100, 7000));
  await put(src, 'src/d', 'new', pattern(seed + 101, 90_000));
  await src.dsl.withView('src/d', 'write', async (v) => {
    const { keyed } = await import('../engine/index.js');
    await keyed.removeKey(v, () => src.assign(), 'k5');
  });
  await src.dsl.snapshot('src/d@2');
  return src;
}

async function streamOf(pool: Pool, to: string, from?: string): Promise<Uint8Array> {
  return collect(sendStream(pool, await sendPlan(pool, to, from === undefined ? {} : { from })));
}

/**
 * `bytes` in chunks of random sizes, each copied into a buffer of its own that recycle() takes
 * back and scribbles over at once: a chunk recycled while a record still referenced it would
 * corrupt the received data. Counts the recycled chunks and refuses a chunk recycled twice.
 */
function scribbledChunks(bytes: Uint8Array, seed: number): { source: AsyncIterable<Uint8Array>; recycle: (chunk: Uint8Array) => void; recycled: () => number } {
  const lent = new Set<Uint8Array>();
  let recycled = 0;
  async function* source(): AsyncGenerator<Uint8Array> {
    for await (const piece of chunks(bytes, seed)) {
      const own = piece.slice();
      lent.add(own);
      yield own;
    }
  }
  return {
    source: source(),
    recycle(chunk) {
      expect(lent.delete(chunk), 'a chunk is handed back once').toBe(true);
      chunk.fill(0xa5);
      recycled++;
    },
    recycled: () => recycled,
  };
}

describe('streams as bytes', () => {
  it('hands chunks back only after their records are applied (recycled chunks are overwritten at once)', async () => {
    const src = await source(9);
    const full = await streamOf(src, 'src/d@1');
    const inc = await streamOf(src, 'src/d@2', 'src/d@1');
    const dst = await simPool('dst', 10);
    for (const [i, bytes] of [full, inc].entries()) {
      const c = scribbledChunks(bytes, 30 + i);
      await receiveStream(dst, 'dst/d', c.source, { recycle: c.recycle });
      expect(c.recycled()).toBeGreaterThan(0);
    }
    expect(await content(dst, 'dst/d')).toBe(await content(src, 'src/d@2'));
    expect(await content(dst, 'dst/d@1')).toBe(await content(src, 'src/d@1'));
    await dst.checkInvariants();
  });


  it('reuses the buffers it gathers split frames into only once their records are applied', async () => {
    // 4 KiB records in 1000-byte chunks: every WRITE frame is split and gathered, and the ~600
    // records span several batches, so gathered buffers are reused while later frames arrive. A
    // buffer reused before its record was applied would corrupt the received data.
    const src = await simPool('src', 40);
    await src.dsl.create('src/d', new Map([['recordsize', '4K']]));
    for (let i = 0; i < 6; i++) await put(src, 'src/d', `k${i}`, pattern(40 + i, 400_000));
    await src.dsl.snapshot('src/d@1');
    const bytes = await streamOf(src, 'src/d@1');
    async function* small(): AsyncGenerator<Uint8Array> {
      for (let at = 0; at < bytes.length; at += 1000) yield bytes.slice(at, at + 1000);
    }
    const dst = await simPool('dst', 41);
    await receiveStream(dst, 'dst/d', small());
    expect(await content(dst, 'dst/d')).toBe(await content(src, 'src/d@1'));
    await dst.checkInvariants();
  });

  it('reuses the buffers a send reads runs into only once the consumer asked for the next frame', async () => {
    // 16 MiB in 1 MiB keys of 128 KiB records on one vdev: runs of back-to-back blocks, more of
    // them than a send reads ahead, so run buffers are reused. The consumer copies each frame and
    // then scribbles over its parts (it is done with them): a buffer reused early would change
    // records still waiting to be encoded (ECKSUM) or sent, and the copy would not receive whole.
    const src = await simPool('src', 50, SYNC_TEST_TUNING, 1);
    await src.dsl.create('src/d');
    for (let i = 0; i < 16; i++) await put(src, 'src/d', `k${i}`, pattern(50 + i, 1024 * 1024));
    await src.dsl.snapshot('src/d@1');
    const frames: Uint8Array[] = [];
    for await (const parts of sendStreamParts(src, await sendPlan(src, 'src/d@1'))) {
      frames.push(concatBytes(parts));
      for (const p of parts) p.fill(0xa5);
    }
    const bytes = concatBytes(frames);
    expect(bytesEqual(bytes, await streamOf(src, 'src/d@1'))).toBe(true);
    const dst = await simPool('dst', 51);
    await receiveStream(dst, 'dst/d', chunks(bytes, 52));
    expect(await content(dst, 'dst/d')).toBe(await content(src, 'src/d@1'));
  });

  it('reads the scattered single blocks of an incremental send into reused buffers as well', async () => {
    // Every other 128 KiB record of 24 keys changed: 96 blocks, none next to another of its
    // object, so each is a run of one. They share the few buffers a send keeps reading ahead
    // (each new buffer is fresh memory, which costs more than the read); the consumer scribbles
    // over each frame's parts once it has copied them, as above.
    const src = await simPool('src', 53, SYNC_TEST_TUNING, 1);
    await src.dsl.create('src/d');
    for (let i = 0; i < 24; i++) await put(src, 'src/d', `k${i}`, pattern(53 + i, 1024 * 1024));
    await src.dsl.snapshot('src/d@1');
    for (let i = 0; i < 24; i++) {
      for (let piece = 0; piece < 8; piece += 2) {
        await src.dsl.withView('src/d', 'write', (v) => keyed.writeKey(v, () => src.assign(), `k${i}`, piece * 128 * 1024, pattern(100 * i + piece, 128 * 1024)));
      }
    }
    await src.dsl.snapshot('src/d@2');
    const frames: Uint8Array[] = [];
    const buffers = new Set<ArrayBufferLike>();
    let writes = 0;
    for await (const parts of sendStreamParts(src, await sendPlan(src, 'src/d@2', { from: 'src/d@1' }))) {
      frames.push(concatBytes(parts));
      if (parts.length === 3) {
        writes++;
        buffers.add((parts[1] as Uint8Array).buffer);
      }
      for (const p of parts) p.fill(0xa5);
    }
    expect(writes).toBe(96);
    expect(buffers.size).toBeLessThan(writes / 2);
    const bytes = concatBytes(frames);
    expect(bytesEqual(bytes, await streamOf(src, 'src/d@2', 'src/d@1'))).toBe(true);
    const dst = await simPool('dst', 54);
    await receiveStream(dst, 'dst/d', chunks(await streamOf(src, 'src/d@1'), 55));
    await receiveStream(dst, 'dst/d', chunks(bytes, 56));
    expect(await content(dst, 'dst/d')).toBe(await content(src, 'src/d@2'));
  });

  it('estimates the exact size of full and incremental streams', async () => {
    const src = await source(3);
    for (const [to, from] of [['src/d@1', undefined], ['src/d@2', 'src/d@1'], ['src/d@2', undefined]] as const) {
      const plan = await sendPlan(src, to, from === undefined ? {} : { from });
      const bytes = await streamOf(src, to, from);
      const estimate = await estimateSend(src, plan);
      expect(Math.abs(estimate - bytes.length) / bytes.length, `${from ?? 'full'} -> ${to}`).toBeLessThanOrEqual(0.1);
    }
  });

  it('resumes a stream cut at 100+ random byte offsets to an identical result', async () => {
    const src = await source(5);
    const full = await streamOf(src, 'src/d@1');
    const inc = await streamOf(src, 'src/d@2', 'src/d@1');
    const want1 = await content(src, 'src/d@1');
    const want2 = await content(src, 'src/d@2');
    const r = new Prng(17);
    const cuts = Number(process.env['RESUME_CUTS'] ?? 104);
    const dst = await simPool('dst', 6, { ...SYNC_TEST_TUNING, checkEveryTxg: false });
    for (let i = 0; i < cuts; i++) {
      // Alternate: a cut full stream (target absent), a cut incremental one (target at @1).
      const incremental = i % 2 === 1;
      if (incremental) {
        if ((await dst.dsl.list()).some((e) => e.name === 'dst/d@2')) await dst.dsl.rollback('dst/d@1', { recursive: true });
      } else if ((await dst.dsl.list()).some((e) => e.name === 'dst/d')) {
        await dst.dsl.destroy('dst/d', { recursive: true });
      }
      const bytes = incremental ? inc : full;
      const cut = 1 + r.int(bytes.length - 1);
      const label = `cut ${i} at byte ${cut} of ${bytes.length} (${incremental ? 'incremental' : 'full'})`;
      const first = await receiveStream(dst, 'dst/d', chunks(bytes.subarray(0, cut), i), { resumable: true }).then(() => null, (e: unknown) => e);
      expect(first, label).toBeInstanceOf(MirrorpoolError);
      const token = (first as MirrorpoolError).details['token'];
      if (typeof token !== 'string') {
        // Cut inside BEGIN: nothing started, nothing to resume; the stream is simply sent again.
        expect(cut, label).toBeLessThan(200);
        await receiveStream(dst, 'dst/d', chunks(bytes, i));
      } else {
        const rest = await collect(sendStream(src, await sendPlan(src, '', { token })));
        await receiveStream(dst, 'dst/d', chunks(rest, i), { resumable: true });
      }
      expect(await content(dst, 'dst/d'), label).toBe(incremental ? want2 : want1);
    }
    await dst.checkInvariants();
  }, 240_000);

  it('sends every snapshot in between as a package (-I), each received with its guid', async () => {
    const src = await source(12);
    await put(src, 'src/d', 'k1', pattern(300, 30_000));
    await src.dsl.snapshot('src/d@3');
    await put(src, 'src/d', 'k2', pattern(301, 30_000));
    await src.dsl.snapshot('src/d@4');
    const dst = await simPool('dst', 13);
    await receiveStream(dst, 'dst/d', chunks(await streamOf(src, 'src/d@1')));
    expect(await packageSnapshots(src, 'src/d@1', 'src/d@4')).toEqual(['src/d@2', 'src/d@3', 'src/d@4']);
    const pkg = await collect(sendPackage(src, 'src/d@1', 'src/d@4'));
    const result = await receiveStream(dst, 'dst/d', chunks(pkg, 3));
    expect(result.snapshot).toBe('dst/d@4');
    const snaps = async (p: Pool, ds: string): Promise<string[]> =>
      (await p.dsl.list({ types: ['snapshot'] })).filter((e) => e.name.startsWith(`${ds}@`)).map((e) => `${e.name.slice(ds.length)}:${e.guid}`);
    expect(await snaps(dst, 'dst/d')).toEqual(await snaps(src, 'src/d'));
    for (const s of ['2', '3', '4']) expect(await content(dst, `dst/d@${s}`), s).toBe(await content(src, `src/d@${s}`));
    // A package cut inside its second stream keeps the first (each stream is atomic on its own).
    await dst.dsl.rollback('dst/d@1', { recursive: true });
    const firstEnd = (await collect(sendStream(src, await sendPlan(src, 'src/d@2', { from: 'src/d@1' }), { more: true }))).length;
    await expect(receiveStream(dst, 'dst/d', chunks(pkg.subarray(0, firstEnd + 50)))).rejects.toMatchObject({ code: 'EPROTO' });
    expect((await snaps(dst, 'dst/d')).map((x) => x.split(':')[0])).toEqual(['@1', '@2']);
    // A single stream followed by anything is refused before it is applied.
    const one = await streamOf(src, 'src/d@3', 'src/d@2');
    await expect(receiveStream(dst, 'dst/d', chunks(new Uint8Array(Buffer.concat([one, new Uint8Array([1, 2, 3])]))))).rejects.toMatchObject({ code: 'EPROTO' });
    expect((await snaps(dst, 'dst/d')).map((x) => x.split(':')[0])).toEqual(['@1', '@2']);
    await expect(packageSnapshots(src, 'src/d#nope', 'src/d@4')).rejects.toMatchObject({ code: 'ENOENT' });
    await dst.checkInvariants();
  });

  it('refuses 1000 damaged streams with coded errors, bounded memory, and the target unchanged', async () => {
    const src = await source(9);
    const dst = await simPool('dst', 10, { ...SYNC_TEST_TUNING, checkEveryTxg: false });
    await receiveStream(dst, 'dst/d', chunks(await streamOf(src, 'src/d@1')));
    const inc = await streamOf(src, 'src/d@2', 'src/d@1');
    // Frame boundaries, for reordering and duplicating whole records.
    const frames: Uint8Array[] = [];
    for (let at = 0; at < inc.length; ) {
      const n = FRAME_PREFIX_BYTES + new DataView(inc.buffer, inc.byteOffset + at, 4).getUint32(0, true);
      frames.push(inc.subarray(at, at + n));
      at += n;
    }
    const before = await poolState(dst);
    const r = new Prng(Number(process.env['STREAM_SEED'] ?? 23));
    const mutations = Number(process.env['STREAM_MUTATIONS'] ?? 1000);
    const kinds = ['flip', 'flip', 'flip', 'truncate', 'reorder', 'duplicate', 'drop', 'magic', 'length', 'garbage', 'splice'] as const;
    const heapStart = process.memoryUsage().heapUsed;
    let heapPeak = heapStart;
    const codes = new Map<string, number>();
    for (let i = 0; i < mutations; i++) {
      const kind = kinds[r.int(kinds.length)] ?? 'flip';
      let bytes: Uint8Array;
      if (kind === 'flip') {
        bytes = inc.slice();
        const at = r.int(bytes.length);
        bytes[at] = (bytes[at] ?? 0) ^ (1 << r.int(8));
      } else if (kind === 'truncate') {
        bytes = inc.subarray(0, r.int(inc.length));
      } else if (kind === 'reorder' || kind === 'duplicate' || kind === 'drop') {
        const list = [...frames];
        const a = 1 + r.int(list.length - 1);
        const b = 1 + r.int(list.length - 1);
        if (kind === 'reorder') [list[a], list[b]] = [list[b] as Uint8Array, list[a] as Uint8Array];
        if (kind === 'duplicate') list.splice(a, 0, list[a] as Uint8Array);
        if (kind === 'drop') list.splice(a, 1);
        if (kind === 'reorder' && a === b) list.splice(a, 1);
        bytes = new Uint8Array(Buffer.concat(list));
      } else if (kind === 'magic') {
        bytes = inc.slice();
        const at = Buffer.from(bytes).indexOf('MPSTREAM') + r.int(8);
        bytes[at] = (bytes[at] ?? 0) ^ 0x20;
      } else if (kind === 'length') {
        bytes = inc.slice();
        const f = frames[r.int(frames.length)] as Uint8Array;
        new DataView(bytes.buffer, f.byteOffset - inc.byteOffset, 4).setUint32(0, [0, 0xffffffff, 0x7fffffff, 2 ** 21, f.length + 1][r.int(5)] ?? 0, true);
      } else if (kind === 'garbage') {
        bytes = new Uint8Array(1 + r.int(4096));
        r.fill(bytes);
      } else {
        const cut = r.int(inc.length);
        const junk = new Uint8Array(1 + r.int(64));
        r.fill(junk);
        bytes = new Uint8Array(Buffer.concat([inc.subarray(0, cut), junk, inc.subarray(cut)]));
      }
      const label = `mutation ${i} (${kind})`;
      const e = await receiveStream(dst, 'dst/d', chunks(bytes, i)).then(() => null, (x: unknown) => x);
      expect(e, label).toBeInstanceOf(MirrorpoolError);
      const code = (e as MirrorpoolError).code;
      expect(['EPROTO', 'ECKSUM', 'ENOTSUP', 'ESTALE', 'ENOENT'], `${label}: ${(e as Error).message}`).toContain(code);
      codes.set(code, (codes.get(code) ?? 0) + 1);
      if (i % 50 === 0) {
        expect(await poolState(dst), label).toBe(before);
        heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
      }
    }
    expect(await poolState(dst)).toBe(before);
    expect(heapPeak - heapStart).toBeLessThan(128 * 1024 * 1024);
    // The undamaged stream still applies.
    await receiveStream(dst, 'dst/d', chunks(inc));
    expect(await content(dst, 'dst/d')).toBe(await content(src, 'src/d@2'));
    await dst.checkInvariants();
  }, 600_000);
});
