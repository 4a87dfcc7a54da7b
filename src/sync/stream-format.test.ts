// The send-stream codec: every record kind round-trips (fast-check), golden bytes pin the wire
// form, whole streams survive any chunking, and a seeded mutation run shows that no damaged stream
// decodes: bit flips, truncation, reordered, dropped or duplicated frames, bad magic or version,
// absurd length prefixes and garbage all end in EPROTO, ECKSUM or ENOTSUP, with memory bounded.
// Field-by-field rejections and the sequence rules are in stream-decoder.test.ts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MirrorpoolError, Prng, concatBytes, fletcher4, limits, toHex } from '../lib/index.js';
import { guid, objectId, txg } from '../engine/index.js';
import {
  RecordKind,
  StreamDecoder,
  StreamEncoder,
  STREAM_VERSION,
  StreamFeature,
  decodeRecord,
  encodeRecord,
  makeWriteRecord,
} from './index.js';
import { encodeWriteParts } from './stream-format.js';
import type { BeginRecord, StreamRecord } from './index.js';
import { rawRecord } from './stream-test-support.js';

// --- arbitraries ----------------------------------------------------------------------------------

const SAFE = Number.MAX_SAFE_INTEGER;
const guidArb = fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }).map((g) => guid(g));
const safeArb = fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: SAFE }));
const componentArb = fc.stringMatching(/^[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,11}$/);
const datasetArb = fc
  .tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9_.:-]{0,11}$/), fc.array(componentArb, { maxLength: 4 }))
  .map(([pool, path]) => [pool, ...path].join('/'));
const snapshotNameArb = fc.tuple(datasetArb, componentArb).map(([d, s]) => `${d}@${s}`);
const blockBytesArb = fc.integer({ min: 9, max: 20 }).map((s) => 2 ** s);

const beginArb: fc.Arbitrary<BeginRecord> = fc
  .record({
    features: fc.constantFrom(0, StreamFeature.snapshots),
    toGuid: guidArb,
    fromGuid: fc.option(guidArb, { nil: undefined }),
    toName: snapshotNameArb,
    creationMs: safeArb,
    toTxg: fc.integer({ min: 2, max: SAFE }),
    fromTxgPick: fc.double({ min: 0, max: 1, noNaN: true }),
    resume: fc.option(fc.tuple(fc.integer({ min: 1, max: SAFE }), safeArb), { nil: undefined }),
  })
  .filter((b) => b.fromGuid !== b.toGuid)
  .map((b) => ({
    kind: RecordKind.begin,
    features: b.features,
    toGuid: b.toGuid,
    fromGuid: b.fromGuid ?? 0n,
    toName: b.toName,
    creationMs: b.creationMs,
    toTxg: txg(b.toTxg),
    fromTxg: txg(b.fromGuid === undefined ? 0 : 1 + Math.floor(b.fromTxgPick * (b.toTxg - 2))),
    resumeObject: objectId(b.resume?.[0] ?? 0),
    resumeOffset: b.resume?.[1] ?? 0,
  }));

const objectArb: fc.Arbitrary<StreamRecord> = fc
  .record({
    object: fc.integer({ min: 1, max: SAFE }),
    objectType: fc.integer({ min: 0, max: 255 }),
    blockBytes: blockBytesArb,
    extraShift: fc.integer({ min: 0, max: 11 }),
    checksumKind: fc.integer({ min: 0, max: 255 }),
    bonus: fc.uint8Array({ maxLength: 320 }),
    size: safeArb,
  })
  .map((o) => ({
    kind: RecordKind.object,
    object: objectId(o.object),
    objectType: o.objectType,
    blockBytes: o.blockBytes,
    maxBlockBytes: Math.min(o.blockBytes * 2 ** o.extraShift, 1 << 20),
    checksumKind: o.checksumKind,
    bonus: o.bonus,
    size: o.size,
  }));

const freeObjectsArb: fc.Arbitrary<StreamRecord> = fc
  .tuple(fc.integer({ min: 1, max: SAFE - 1 }), fc.double({ min: 0, max: 1, noNaN: true }))
  .map(([first, pick]) => ({
    kind: RecordKind.freeObjects,
    first: objectId(first),
    count: 1 + Math.floor(pick * (SAFE - first - 1)),
  }));

const writeArb: fc.Arbitrary<StreamRecord> = fc
  .tuple(fc.integer({ min: 1, max: SAFE }), fc.integer({ min: 0, max: SAFE - 4096 }), fc.uint8Array({ minLength: 1, maxLength: 4096 }))
  .map(([object, offset, data]) => makeWriteRecord(objectId(object), offset, data));

const freeArb: fc.Arbitrary<StreamRecord> = fc
  .tuple(fc.integer({ min: 1, max: SAFE }), fc.integer({ min: 0, max: SAFE - 1 }), fc.double({ min: 0, max: 1, noNaN: true }))
  .map(([object, offset, pick]) => ({
    kind: RecordKind.free,
    object: objectId(object),
    offset,
    length: 1 + Math.floor(pick * (SAFE - offset - 1)),
  }));

const snapshotArb: fc.Arbitrary<StreamRecord> = fc
  .record({ name: snapshotNameArb, guid: guidArb, creationMs: safeArb, txg: fc.integer({ min: 1, max: SAFE }) })
  .map((s) => ({ kind: RecordKind.snapshot, name: s.name, guid: s.guid, creationMs: s.creationMs, txg: txg(s.txg) }));

const endArb: fc.Arbitrary<StreamRecord> = fc
  .tuple(fc.uint8Array({ minLength: 32, maxLength: 32 }), guidArb)
  .map(([checksum, toGuid]) => ({ kind: RecordKind.end, checksum, toGuid }));

const recordArb = fc.oneof(beginArb, objectArb, freeObjectsArb, writeArb, freeArb, snapshotArb, endArb);

// --- a seeded, valid stream -----------------------------------------------------------------------

interface BuiltStream {
  readonly records: StreamRecord[];
  /** One frame per record, END last. */
  readonly frames: Uint8Array[];
  readonly bytes: Uint8Array;
}

/** An incremental stream of about `objects` * 4 records: objects, writes, frees, snapshots. */
function buildStream(prng: Prng, objects: number): BuiltStream {
  const toGuid = guid(prng.u64() | 1n);
  const begin: BeginRecord = {
    kind: RecordKind.begin, features: StreamFeature.snapshots, toGuid, fromGuid: guid(toGuid ^ 2n), toName: 'tank/home@monday',
    creationMs: 1_700_000_000_000, toTxg: txg(10_000), fromTxg: txg(100), resumeObject: objectId(0), resumeOffset: 0,
  };
  const records: StreamRecord[] = [begin];
  let object = 0;
  let snapshotTxg = 100;
  for (let i = 0; i < objects; i++) {
    object += 1 + prng.int(20);
    if (prng.chance(0.1)) records.push({ kind: RecordKind.freeObjects, first: objectId(object), count: 1 + prng.int(5) });
    if (prng.chance(0.1)) object += 6;
    const blockBytes = 2 ** (9 + prng.int(4));
    records.push({
      kind: RecordKind.object, object: objectId(object), objectType: 2, blockBytes, maxBlockBytes: blockBytes,
      checksumKind: 1, bonus: randomBytes(prng, prng.int(64)), size: prng.int(1 << 20),
    });
    for (let w = prng.int(5); w > 0; w--) {
      records.push(makeWriteRecord(objectId(object), prng.int(1 << 20), randomBytes(prng, 1 + prng.int(blockBytes))));
    }
    if (prng.chance(0.3)) records.push({ kind: RecordKind.free, object: objectId(object), offset: prng.int(1 << 20), length: 1 + prng.int(1 << 20) });
    if (prng.chance(0.05) && snapshotTxg < 9_000) {
      snapshotTxg += 1 + prng.int(50);
      records.push({
        kind: RecordKind.snapshot, name: `tank/home@s${snapshotTxg}`, guid: guid(BigInt(snapshotTxg)), creationMs: 1_700_000_000_000,
        txg: txg(snapshotTxg),
      });
    }
  }
  const encoder = new StreamEncoder();
  const frames = records.map((r) => encoder.encode(r));
  frames.push(encoder.end());
  records.push(decodeRecord(frames[frames.length - 1]!.subarray(4)));
  return { records, frames, bytes: concatBytes(frames) };
}

function randomBytes(prng: Prng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  prng.fill(out);
  return out;
}

/** Decodes `bytes` pushed in chunks of random size (1 .. chunkMax); checks the memory bound. */
function decodeChunked(bytes: Uint8Array, prng: Prng, chunkMax: number): { records: StreamRecord[]; decoder: StreamDecoder } {
  const decoder = new StreamDecoder();
  const records: StreamRecord[] = [];
  for (let pos = 0; pos < bytes.length;) {
    const chunk = bytes.subarray(pos, pos + 1 + prng.int(chunkMax));
    pos += chunk.length;
    decoder.push(chunk);
    // One frame (and its prefix) plus the chunk just pushed, never more.
    if (decoder.bufferedBytes > limits.streamRecordBytesMax + 4 + chunk.length) {
      expect.fail(`decoder holds ${decoder.bufferedBytes} bytes after a ${chunk.length}-byte chunk`);
    }
    for (let r = decoder.next(); r !== undefined; r = decoder.next()) records.push(r);
  }
  decoder.finish();
  return { records, decoder };
}

// --- tests ----------------------------------------------------------------------------------------

describe('stream records', () => {
  it('every record kind decodes to what was encoded', () => {
    fc.assert(
      fc.property(recordArb, (r) => {
        expect(decodeRecord(encodeRecord(r))).toEqual(r);
      }),
      { numRuns: 700 },
    );
  });

  it('a record decodes the same from a view into a larger buffer', () => {
    fc.assert(
      fc.property(recordArb, fc.uint8Array({ maxLength: 9 }), (r, pad) => {
        const bytes = encodeRecord(r);
        const bigger = concatBytes([pad, bytes, pad]);
        expect(decodeRecord(bigger.subarray(pad.length, pad.length + bytes.length))).toEqual(r);
      }),
      { numRuns: 200 },
    );
  });

  it('the wire form of each record kind stays byte for byte the same', () => {
    const data = new TextEncoder().encode('mirrorpool');
    const toGuid = guid(0x0123_4567_89ab_cdefn);
    const records: StreamRecord[] = [
      {
        kind: RecordKind.begin, features: 1, toGuid, fromGuid: guid(0xfedc_ba98_7654_3210n), toName: 'tank/home@b',
        creationMs: 1_700_000_000_000, toTxg: txg(42), fromTxg: txg(7), resumeObject: objectId(0), resumeOffset: 0,
      },
      { kind: RecordKind.object, object: objectId(5), objectType: 2, blockBytes: 4096, maxBlockBytes: 131072, checksumKind: 1, bonus: new Uint8Array([1, 2]), size: 10 },
      makeWriteRecord(objectId(5), 0, data),
      { kind: RecordKind.free, object: objectId(5), offset: 4096, length: 2 ** 40 },
      { kind: RecordKind.freeObjects, first: objectId(6), count: 3 },
      { kind: RecordKind.snapshot, name: 'tank/home@a2', guid: guid(99n), creationMs: 5, txg: txg(9) },
    ];
    const encoder = new StreamEncoder();
    const frames = records.map((r) => toHex(encoder.encode(r)));
    frames.push(toHex(encoder.end()));
    expect(frames).toEqual(GOLDEN_FRAMES);
  });

  it('END carries fletcher-4 of the records with each record and each WRITE\'s data padded to whole words', () => {
    // Read byte by byte here, with the zeros written out: the encoder takes the WRITE's data in
    // through its checksum field (Fletcher4.append) and must come to the same sum.
    const bodies = GOLDEN_FRAMES.map((hex) => Buffer.from(hex, 'hex').subarray(4));
    const padded = (b: Uint8Array): Uint8Array => concatBytes([b, new Uint8Array((4 - (b.length % 4)) % 4)]);
    const pieces = bodies.slice(0, -1).flatMap((body) => {
      const r = decodeRecord(body);
      if (r.kind !== RecordKind.write) return [padded(body)];
      const at = body.indexOf(Buffer.from(r.data));
      return [padded(body.subarray(0, at)), padded(r.data), padded(body.subarray(at + r.data.length))];
    });
    const end = decodeRecord(bodies.at(-1)!);
    expect(end.kind).toBe(RecordKind.end);
    if (end.kind === RecordKind.end) expect(toHex(end.checksum)).toBe(toHex(fletcher4(concatBytes(pieces))));
  });
});

describe('stream framing', () => {
  it('a stream decodes to its records whatever the chunk sizes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), fc.integer({ min: 1, max: 9000 }), (seed, chunkMax) => {
        const prng = new Prng(seed);
        const s = buildStream(prng, 1 + prng.int(25));
        const { records, decoder } = decodeChunked(s.bytes, prng, chunkMax);
        expect(records).toEqual(s.records);
        expect(decoder.ended).toBe(true);
        expect(decoder.consumedBytes).toBe(s.bytes.length);
        expect(decoder.counts.write).toBe(s.records.filter((r) => r.kind === RecordKind.write).length);
        expect(decoder.counts.begin + decoder.counts.end).toBe(2);
      }),
      { numRuns: 40 },
    );
  });

  it('records() reads a stream from an async iterable of chunks', async () => {
    const prng = new Prng(7);
    const s = buildStream(prng, 30);
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (let pos = 0; pos < s.bytes.length; pos += 333) yield s.bytes.slice(pos, pos + 333);
    }
    const decoder = new StreamDecoder();
    const out: StreamRecord[] = [];
    for await (const r of decoder.records(chunks())) out.push(r);
    expect(out).toEqual(s.records);
    expect(decoder.consumedBytes).toBe(s.bytes.length);
  });

  it('a full-size WRITE fits in one frame and decodes', () => {
    const data = new Uint8Array(limits.streamWriteBytesMax).fill(7);
    const encoder = new StreamEncoder();
    const frames = [
      encoder.encode({ ...FULL_BEGIN, toGuid: guid(3n) }),
      encoder.encode({ kind: RecordKind.object, object: objectId(1), objectType: 2, blockBytes: 1 << 20, maxBlockBytes: 1 << 20, checksumKind: 1, bonus: new Uint8Array(), size: 1 << 20 }),
      encoder.encode(makeWriteRecord(objectId(1), 0, data)),
      encoder.end(),
    ];
    const { records } = decodeChunked(concatBytes(frames), new Prng(1), 1 << 18);
    expect(records.map((r) => r.kind)).toEqual([RecordKind.begin, RecordKind.object, RecordKind.write, RecordKind.end]);
  });
});

const FULL_BEGIN: BeginRecord = {
  kind: RecordKind.begin, features: 0, toGuid: guid(1n), fromGuid: 0n, toName: 'tank/a@b', creationMs: 0, toTxg: txg(5),
  fromTxg: txg(0), resumeObject: objectId(0), resumeOffset: 0,
};

// --- mutations ------------------------------------------------------------------------------------

type Mutation = { readonly name: string; readonly bytes: Uint8Array };

function setPrefix(frame: Uint8Array, length: number): Uint8Array {
  const out = frame.slice();
  new DataView(out.buffer).setUint32(0, length >>> 0, true);
  return out;
}

function frameOf(body: Uint8Array): Uint8Array {
  return concatBytes([setPrefix(new Uint8Array(4), body.length), body]);
}

/** One random damage to stream `s`; never returns the stream unchanged. */
function mutate(s: BuiltStream, prng: Prng): Mutation {
  const n = s.frames.length;
  const at = (): number => prng.int(n);
  const withFrames = (name: string, frames: Uint8Array[]): Mutation => ({ name, bytes: concatBytes(frames) });
  const begin = s.records[0] as BeginRecord;
  switch (prng.int(14)) {
    case 0:
    case 1: {
      const flips = 1 + (prng.chance(0.5) ? 0 : prng.int(8));
      const bytes = s.bytes.slice();
      const where: number[] = [];
      for (let i = 0; i < flips; i++) {
        const bit = prng.int(bytes.length * 8);
        where.push(bit);
        bytes[bit >> 3]! ^= 1 << (bit & 7);
      }
      return { name: `flip bits ${where.join(',')}`, bytes };
    }
    case 2: {
      const cut = prng.int(s.bytes.length);
      return { name: `truncate at ${cut}`, bytes: s.bytes.subarray(0, cut) };
    }
    case 3: {
      const i = at();
      return withFrames(`drop frame ${i}`, s.frames.filter((_, k) => k !== i));
    }
    case 4: {
      const i = at();
      const j = prng.int(n + 1);
      const frames = [...s.frames];
      frames.splice(j, 0, s.frames[i]!);
      return withFrames(`duplicate frame ${i} at ${j}`, frames);
    }
    case 5: {
      const i = at();
      const j = at();
      const frames = [...s.frames];
      [frames[i], frames[j]] = [frames[j]!, frames[i]!];
      return withFrames(`swap frames ${i} and ${j}`, frames);
    }
    case 6: {
      const magic = ['MPSTREAN', 'mpstream', '', 'MPSTREAM\u0000', 'ZFSSTREAM'][prng.int(5)]!;
      const body = rawRecord([1, magic, STREAM_VERSION, begin.features, begin.toGuid, begin.fromGuid, begin.toName, begin.creationMs, begin.toTxg, begin.fromTxg, 0, 0]);
      return withFrames(`magic ${JSON.stringify(magic)}`, [frameOf(body), ...s.frames.slice(1)]);
    }
    case 7: {
      const version = [0, 1, STREAM_VERSION + 1, 255, 0xffff_ffff][prng.int(5)]!;
      const body = rawRecord([1, 'MPSTREAM', version, begin.features, begin.toGuid, begin.fromGuid, begin.toName, begin.creationMs, begin.toTxg, begin.fromTxg, 0, 0]);
      return withFrames(`version ${version}`, [frameOf(body), ...s.frames.slice(1)]);
    }
    case 8: {
      const i = at();
      const body = s.frames[i]!.length - 4;
      const length = [0, 0xffff_ffff, limits.streamRecordBytesMax + 1, prng.u32(), body + 1 + prng.int(9), Math.max(0, body - 1 - prng.int(9))][prng.int(6)]!;
      if (length === body) return mutate(s, prng);
      return withFrames(`length prefix of frame ${i} set to ${length}`, s.frames.map((f, k) => (k === i ? setPrefix(f, length) : f)));
    }
    case 9: {
      const start = prng.int(s.bytes.length);
      const garbage = randomBytes(prng, 1 + prng.int(64));
      const bytes = s.bytes.slice();
      bytes.set(garbage.subarray(0, bytes.length - start), start);
      return { name: `overwrite ${garbage.length} bytes at ${start}`, bytes };
    }
    case 10: {
      const where = prng.int(s.bytes.length + 1);
      const garbage = randomBytes(prng, 1 + prng.int(64));
      return { name: `insert ${garbage.length} bytes at ${where}`, bytes: concatBytes([s.bytes.subarray(0, where), garbage, s.bytes.subarray(where)]) };
    }
    case 11:
      return withFrames('remove END', s.frames.slice(0, -1));
    case 12: {
      // A valid record with one field changed: only the running checksum (or the order) can tell.
      const i = 1 + prng.int(n - 2);
      const r = s.records[i]!;
      const changed = r.kind === RecordKind.write ? makeWriteRecord(r.object, r.offset + 1, r.data)
        : r.kind === RecordKind.free ? { ...r, length: r.length + 1 }
          : r.kind === RecordKind.object ? { ...r, size: r.size + 1 }
            : r.kind === RecordKind.freeObjects ? { ...r, count: r.count + 1 }
              : r.kind === RecordKind.snapshot ? { ...r, creationMs: r.creationMs + 1 } : r;
      if (changed === r) return mutate(s, prng);
      return withFrames(`change a field of frame ${i}`, s.frames.map((f, k) => (k === i ? frameOf(encodeRecord(changed)) : f)));
    }
    default: {
      const garbage = randomBytes(prng, 1 + prng.int(4096));
      return prng.chance(0.5)
        ? { name: `append ${garbage.length} garbage bytes`, bytes: concatBytes([s.bytes, garbage]) }
        : { name: `replace the stream by ${garbage.length} garbage bytes`, bytes: garbage };
    }
  }
}

describe('damaged streams', () => {
  it('every mutation of a valid stream fails with EPROTO, ECKSUM or ENOTSUP, in bounded memory', () => {
    // STREAM_SEED=<n> replays or explores another seed.
    const seed = Number(process.env['STREAM_SEED'] ?? 0x5eed_0003);
    const prng = new Prng(seed);
    const s = buildStream(prng, 80);
    expect(s.records.length).toBeGreaterThan(200);
    const codes = new Map<string, number>();
    const heapStart = process.memoryUsage().heapUsed;
    let heapMax = heapStart;
    for (let m = 0; m < 1200; m++) {
      const mutation = mutate(s, prng);
      const context = `seed ${seed}, mutation ${m}: ${mutation.name}`;
      if (mutation.bytes.length === s.bytes.length && mutation.bytes.every((b, i) => b === s.bytes[i])) {
        continue; // e.g. two equal frames swapped: not damage
      }
      let error: unknown;
      try {
        decodeChunked(mutation.bytes, prng, 1 + prng.int(5000));
      } catch (e) {
        error = e;
      }
      if (!(error instanceof MirrorpoolError)) expect.fail(`${context}: expected a MirrorpoolError, got ${String(error)}`);
      expect(['EPROTO', 'ECKSUM', 'ENOTSUP'], `${context}: ${error.message}`).toContain(error.code);
      codes.set(error.code, (codes.get(error.code) ?? 0) + 1);
      if (m % 50 === 0) heapMax = Math.max(heapMax, process.memoryUsage().heapUsed);
    }
    expect([...codes.keys()].sort()).toEqual(['ECKSUM', 'ENOTSUP', 'EPROTO']);
    expect(heapMax - heapStart, `seed ${seed}: heap grew by ${heapMax - heapStart} bytes`).toBeLessThan(64 * 1024 * 1024);
  });
});

// Pinned from stream version 2; a change here is a wire format change.
// Frame = u32 LE length, then the msgpack array: kind, fields (see docs/stream-format.md).
const GOLDEN_FRAMES: readonly string[] = [
  '380000009c01a84d5053545245414d0201d30123456789abcdefcffedcba9876543210ab74616e6b2f686f6d654062cb4278bcfe568000002a070000',
  '1200000098020502cd1000ce0002000001c40201020a',
  '3200000095040500c40a6d6972726f72706f6f6cc4204b48e3e100000000948d3836020000004a3c00fd030000006d543a3606000000',
  '0f000000940505cd1000cb4270000000000000',
  '0400000093030603',
  '1a0000009506ac74616e6b2f686f6d65406132d300000000000000630509',
  '2d0000009307c420adb66ba00c000000f2e579cb4a0100005109184d2e16000044ddb1856d190100d30123456789abcdef',
];

describe('WRITE records in parts', () => {
  it('writes head, data and tail that are byte for byte the encoded record', () => {
    const lengthArb = fc.oneof(fc.constantFrom(1, 255, 256, 65_535, 65_536, limits.streamWriteBytesMax), fc.integer({ min: 1, max: 70_000 }));
    const intArb = fc.oneof(fc.constantFrom(0, 1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 3), safeArb);
    fc.assert(
      fc.property(intArb, intArb, lengthArb, fc.integer({ min: 0, max: 2 ** 32 - 1 }), (object, offset, length, seed) => {
        const data = new Uint8Array(length);
        new Prng(seed).fill(data);
        const r = makeWriteRecord(objectId(Math.max(1, object)), Math.min(offset, SAFE - length), data);
        const { head, tail } = encodeWriteParts(r);
        expect(toHex(concatBytes([head, data, tail]))).toBe(toHex(encodeRecord(r)));
      }),
      { numRuns: 300 },
    );
  });

  it('frames a WRITE from parts exactly as a whole frame, with the same running checksum', () => {
    const r = new Prng(5);
    const blockBytes = limits.streamWriteBytesMax;
    const records: StreamRecord[] = [{
      kind: RecordKind.object, object: objectId(1), objectType: 1, blockBytes, maxBlockBytes: blockBytes, checksumKind: 1,
      bonus: new Uint8Array(0), size: 20 * blockBytes,
    }];
    for (let i = 0; i < 20; i++) {
      const data = new Uint8Array(1 + r.int(300_000));
      r.fill(data);
      records.push(makeWriteRecord(objectId(1), i * blockBytes, data));
    }
    const begin: BeginRecord = {
      kind: RecordKind.begin, features: 0, toGuid: guid(7n), fromGuid: 0n, toName: 'p/d@s', creationMs: 1, toTxg: txg(3),
      fromTxg: txg(0), resumeObject: objectId(0), resumeOffset: 0,
    };
    const whole = new StreamEncoder();
    const parts = new StreamEncoder();
    const a = [whole.encode(begin), ...records.map((x) => whole.encode(x)), whole.end()];
    const b = [...parts.encodeParts(begin), ...records.flatMap((x) => parts.encodeParts(x)), parts.end()];
    expect(toHex(concatBytes(b))).toBe(toHex(concatBytes(a)));
    expect(parts.encodedBytes).toBe(whole.encodedBytes);
    expect(parts.counts).toEqual(whole.counts);
  });

  it('refuses a WRITE whose data no longer matches its checksum, as encodeRecord does', () => {
    const data = new Uint8Array(1000).fill(3);
    const r = makeWriteRecord(objectId(1), 0, data);
    data[5] = 4;
    const error = (() => {
      try {
        encodeWriteParts(r);
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(error).toBeInstanceOf(MirrorpoolError);
    expect((error as MirrorpoolError).code).toBe('ECKSUM');
  });
});
