// What the stream codec refuses, one rule at a time: malformed fields and msgpack forms
// (decodeRecord), records the sender must not write (encodeRecord, StreamEncoder), and the framing
// and sequence rules StreamDecoder enforces. Round trips and the mutation run are in
// stream-format.test.ts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MirrorpoolError, concatBytes, fletcher4, limits } from '../lib/index.js';
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
import type { BeginRecord, ObjectRecord, StreamRecord } from './index.js';
import { StreamChecksum, encodeWriteParts } from './stream-format.js';
import { verifiedWrite } from './stream-record.js';
import { rawRecord } from './stream-test-support.js';

/** The code `fn` fails with, 'no error', or a description of a failure that is not a MirrorpoolError. */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof MirrorpoolError) return e.code;
    return `not a MirrorpoolError: ${String(e)}`;
  }
  return 'no error';
}

const TO_GUID = guid(0xaaaa_bbbb_cccc_ddddn);
const BEGIN: BeginRecord = {
  kind: RecordKind.begin, features: StreamFeature.snapshots, toGuid: TO_GUID, fromGuid: guid(77n), toName: 'tank/home@c',
  creationMs: 1000, toTxg: txg(100), fromTxg: txg(10), resumeObject: objectId(0), resumeOffset: 0,
};
const OBJECT = (object: number): ObjectRecord => ({
  kind: RecordKind.object, object: objectId(object), objectType: 2, blockBytes: 4096, maxBlockBytes: 4096, checksumKind: 1,
  bonus: new Uint8Array(0), size: 8192,
});
const WRITE = (object: number): StreamRecord => makeWriteRecord(objectId(object), 0, new Uint8Array([1, 2, 3]));

/** Wire fields of a valid record of each kind, for tests that change one field. */
const beginFields = (): unknown[] => [1, 'MPSTREAM', STREAM_VERSION, 1, TO_GUID, 77n, 'tank/home@c', 1000, 100, 10, 0, 0];
const WIRE: Record<string, () => unknown[]> = {
  begin: beginFields,
  object: () => [2, 5, 2, 4096, 4096, 1, new Uint8Array(0), 8192],
  freeObjects: () => [3, 5, 2],
  write: () => [4, 5, 0, new Uint8Array([1, 2, 3]), fletcher4(new Uint8Array([1, 2, 3]))],
  free: () => [5, 5, 0, 10],
  snapshot: () => [6, 'tank/home@b', 5n, 10, 50],
  end: () => [7, new Uint8Array(32), TO_GUID],
};

function withField(kind: string, index: number, value: unknown): Uint8Array {
  const fields = WIRE[kind]!();
  fields[index] = value;
  return rawRecord(fields);
}

/** Frames `records` with correct length prefixes and, unless given, a correct END. */
function streamOf(records: readonly StreamRecord[], options: { end?: boolean; toGuid?: bigint } = {}): Uint8Array {
  const running = new StreamChecksum();
  const frames = records.map((r) => {
    const body = encodeRecord(r);
    if (r.kind === RecordKind.write) {
      const { head, tail } = encodeWriteParts(r);
      running.write(head, r, tail);
    } else {
      running.record(body);
    }
    return frame(body);
  });
  if (options.end !== false) {
    const end = encodeRecord({ kind: RecordKind.end, checksum: running.digest(), toGuid: guid(options.toGuid ?? TO_GUID) });
    frames.push(frame(end));
  }
  return concatBytes(frames);
}

function frame(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length, true);
  out.set(body, 4);
  return out;
}

/** Decodes a whole stream in one chunk; returns the error code, or 'ok'. */
function decodeAll(bytes: Uint8Array, decoder = new StreamDecoder()): string {
  return codeOf(() => {
    decoder.push(bytes);
    while (decoder.next() !== undefined);
    decoder.finish();
  });
}

describe('decodeRecord refuses malformed records', () => {
  it('accepts the valid wire fields these tests start from', () => {
    for (const [kind, fields] of Object.entries(WIRE)) {
      expect(codeOf(() => decodeRecord(rawRecord(fields()))), kind).toBe('no error');
    }
  });

  it.each([
    ['BEGIN with bad magic', withField('begin', 1, 'MPSTREAN')],
    ['BEGIN with version 0', withField('begin', 2, 0)],
    ['BEGIN with a u64 guid sent as a small int', withField('begin', 4, 5)],
    ['BEGIN with toGuid 0', withField('begin', 4, 0n)],
    ['BEGIN with a negative fromGuid', withField('begin', 5, -3n)],
    ['BEGIN with fromGuid equal to toGuid', withField('begin', 5, TO_GUID)],
    ['BEGIN with a dataset name instead of a snapshot', withField('begin', 6, 'tank/home')],
    ['BEGIN with a bookmark name', withField('begin', 6, 'tank/home#b')],
    ['BEGIN with a name over 255 bytes', withField('begin', 6, `tank/${'x'.repeat(250)}@s`)],
    ['BEGIN with a fractional creation time', withField('begin', 7, 1.5)],
    ['BEGIN with toTxg 0', withField('begin', 8, 0)],
    ['BEGIN with fromTxg not below toTxg', withField('begin', 9, 100)],
    ['BEGIN of an incremental stream from txg 0', withField('begin', 9, 0)],
    ['BEGIN with a resume offset but no resume object', withField('begin', 11, 5)],
    ['BEGIN with a field too many', rawRecord([...beginFields(), 0])],
    ['OBJECT for object 0', withField('object', 1, 0)],
    ['OBJECT with a type above 255', withField('object', 2, 256)],
    ['OBJECT with a block size that is not a power of two', withField('object', 3, 3000)],
    ['OBJECT with a block size below 512', withField('object', 3, 256)],
    ['OBJECT with a max block size below its block size', withField('object', 4, 2048)],
    ['OBJECT with a max block size above 1 MiB', withField('object', 4, 2 ** 21)],
    ['OBJECT with a 321-byte bonus', withField('object', 6, new Uint8Array(321))],
    ['OBJECT with a text bonus', withField('object', 6, 'bonus')],
    ['OBJECT with a negative size', withField('object', 7, -1)],
    ['OBJECT with an unsafe size', withField('object', 7, 2 ** 53)],
    ['OBJECT with a field missing', rawRecord(WIRE['object']!().slice(0, -1))],
    ['FREEOBJECTS with count 0', withField('freeObjects', 2, 0)],
    ['FREEOBJECTS past the safe range', withField('freeObjects', 2, Number.MAX_SAFE_INTEGER)],
    ['WRITE with empty data', rawRecord([4, 5, 0, new Uint8Array(0), fletcher4(new Uint8Array(0))])],
    ['WRITE with a 31-byte checksum', withField('write', 4, new Uint8Array(31))],
    ['WRITE with an end past the safe range', withField('write', 2, Number.MAX_SAFE_INTEGER - 1)],
    ['FREE with length 0', withField('free', 3, 0)],
    ['FREE with an end past the safe range', withField('free', 2, Number.MAX_SAFE_INTEGER)],
    ['SNAPSHOT with guid 0', withField('snapshot', 2, 0n)],
    ['SNAPSHOT with txg 0', withField('snapshot', 4, 0)],
    ['END with a short checksum', withField('end', 1, new Uint8Array(8))],
    ['a record of unknown kind 0', rawRecord([0, 1])],
    ['a record of unknown kind 8', rawRecord([8, 1])],
    ['a record whose kind is text', rawRecord(['BEGIN'])],
    ['a map instead of an array', rawRecord({ kind: 3, first: 5, count: 2 })],
    ['a nested array', rawRecord([3, [5], 2])],
    ['nil', rawRecord([3, null, 2])],
    ['a boolean', rawRecord([3, true, 2])],
    ['a float32', new Uint8Array([0x93, 0x03, 0xca, 0x40, 0xa0, 0x00, 0x00, 0x02])],
    ['a msgpackr extension (Date)', rawRecord([3, new Date(0), 2], true)],
    ['a msgpackr extension (Set)', rawRecord([3, new Set([5]), 2], true)],
    ['an array16 header', new Uint8Array([0xdc, 0x00, 0x03, 0x03, 0x05, 0x02])],
    ['an empty array', new Uint8Array([0x90])],
    ['no bytes', new Uint8Array(0)],
    ['trailing bytes', concatBytes([rawRecord(WIRE['free']!()), new Uint8Array([0])])],
    ['a truncated record', rawRecord(WIRE['write']!()).subarray(0, 20)],
    ['a str32 length past the end', new Uint8Array([0x92, 0x06, 0xdb, 0xff, 0xff, 0xff, 0xff, 0x41])],
    ['non-ASCII text', withField('snapshot', 1, 'tank/h\u00f6me@b')],
    ['a control character in text', withField('snapshot', 1, 'tank/home@b\n')],
  ])('%s is EPROTO', (_name, bytes) => {
    expect(codeOf(() => decodeRecord(bytes))).toBe('EPROTO');
  });

  it('another stream version (older or newer) and unknown feature bits are ENOTSUP', () => {
    expect(codeOf(() => decodeRecord(withField('begin', 2, STREAM_VERSION + 1)))).toBe('ENOTSUP');
    expect(codeOf(() => decodeRecord(withField('begin', 2, 1)))).toBe('ENOTSUP');
    expect(codeOf(() => decodeRecord(rawRecord([1, 'MPSTREAM', STREAM_VERSION + 1, 'a layout of the future'])))).toBe('ENOTSUP');
    expect(codeOf(() => decodeRecord(withField('begin', 3, 4)))).toBe('ENOTSUP');
    expect(codeOf(() => decodeRecord(withField('begin', 3, 0x8000_0000)))).toBe('ENOTSUP');
  });

  it('a WRITE whose data does not match its checksum is ECKSUM', () => {
    expect(codeOf(() => decodeRecord(withField('write', 3, new Uint8Array([1, 2, 4]))))).toBe('ECKSUM');
  });

  it('random bytes and damaged records fail only with MirrorpoolError', () => {
    const valid = Object.values(WIRE).map((fields) => rawRecord(fields()));
    const damaged = fc
      .tuple(fc.constantFrom(...valid), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }))
      .map(([bytes, edits]) => {
        const out = bytes.slice();
        for (const [at, value] of edits) out[at % out.length] = value;
        return out;
      });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), damaged), (bytes) => {
        const code = codeOf(() => decodeRecord(bytes));
        expect(['no error', 'EPROTO', 'ECKSUM', 'ENOTSUP']).toContain(code);
      }),
      { numRuns: 3000 },
    );
  });

  it('errors name the record and the field', () => {
    try {
      decodeRecord(withField('object', 3, 3000));
      expect.fail('decoded');
    } catch (e) {
      expect(e).toBeInstanceOf(MirrorpoolError);
      expect((e as MirrorpoolError).details).toMatchObject({ record: 'OBJECT', field: 'blockBytes', value: 3000 });
    }
  });
});

describe('the encoder writes only what the decoder accepts', () => {
  it('a record with a field out of range is EINVAL', () => {
    expect(codeOf(() => encodeRecord({ ...OBJECT(5), blockBytes: 1000 }))).toBe('EINVAL');
    expect(codeOf(() => encodeRecord({ ...BEGIN, toName: 'tank/home' }))).toBe('EINVAL');
    expect(codeOf(() => encodeRecord({ ...BEGIN, features: 4 }))).toBe('EINVAL');
    expect(codeOf(() => encodeRecord({ kind: RecordKind.free, object: objectId(1), offset: 0, length: 0 }))).toBe('EINVAL');
  });

  it('a WRITE whose data changed after its checksum was taken is ECKSUM', () => {
    const w = makeWriteRecord(objectId(5), 0, new Uint8Array([1, 2, 3]));
    w.data[0] = 9;
    expect(codeOf(() => encodeRecord(w))).toBe('ECKSUM');
  });

  it('takes a verified WRITE on trust, and the decoder still refuses its data if it does not match', () => {
    const w = verifiedWrite(makeWriteRecord(objectId(5), 0, new Uint8Array([1, 2, 3])));
    w.data[0] = 9;
    const body = encodeRecord(w);
    const { head, tail } = encodeWriteParts(w);
    expect(Buffer.compare(concatBytes([head, w.data, tail]), body)).toBe(0);
    expect(codeOf(() => decodeRecord(body))).toBe('ECKSUM');
  });

  it('records out of order are EINVAL, and a refused record leaves the encoder usable', () => {
    const encoder = new StreamEncoder();
    expect(codeOf(() => encoder.encode(OBJECT(5)))).toBe('EINVAL');
    expect(codeOf(() => encoder.end())).toBe('EINVAL');
    const frames = [encoder.encode(BEGIN)];
    expect(codeOf(() => encoder.encode(WRITE(5)))).toBe('EINVAL');
    expect(codeOf(() => encoder.encode({ kind: RecordKind.end, checksum: new Uint8Array(32), toGuid: TO_GUID }))).toBe('EINVAL');
    frames.push(encoder.encode(OBJECT(5)), encoder.encode(WRITE(5)), encoder.end());
    expect(codeOf(() => encoder.end())).toBe('EINVAL');
    expect(codeOf(() => encoder.encode(OBJECT(6)))).toBe('EINVAL');
    expect(encoder.counts).toMatchObject({ begin: 1, object: 1, write: 1, end: 1 });
    expect(encoder.encodedBytes).toBe(concatBytes(frames).length);
    expect(decodeAll(concatBytes(frames))).toBe('no error');
  });
});

describe('StreamDecoder enforces framing and order', () => {
  it('accepts a minimal full stream and counts its records', () => {
    const decoder = new StreamDecoder();
    const bytes = streamOf([{ ...BEGIN, features: 0, fromGuid: 0n, fromTxg: txg(0) }]);
    expect(decodeAll(bytes, decoder)).toBe('no error');
    expect(decoder.counts).toMatchObject({ begin: 1, end: 1, write: 0 });
    expect(decoder.consumedBytes).toBe(bytes.length);
    expect(decoder.begin?.toGuid).toBe(TO_GUID);
  });

  it.each<[string, Uint8Array]>([
    ['a stream that does not start with BEGIN', streamOf([OBJECT(5), BEGIN])],
    ['a stream that is only END', streamOf([])],
    ['a second BEGIN', streamOf([BEGIN, OBJECT(5), BEGIN])],
    ['a record after END', concatBytes([streamOf([BEGIN]), frame(encodeRecord(OBJECT(5)))])],
    ['bytes after END', concatBytes([streamOf([BEGIN]), new Uint8Array([1])])],
    ['END naming another snapshot', streamOf([BEGIN], { toGuid: 5n })],
    ['a stream that ends before END', streamOf([BEGIN, OBJECT(5), WRITE(5)], { end: false })],
    ['a stream cut inside a frame', streamOf([BEGIN, OBJECT(5)]).subarray(0, 70)],
    ['a stream cut inside a length prefix', streamOf([BEGIN]).subarray(0, 2)],
    ['an empty stream', new Uint8Array(0)],
    ['a frame of length 0', concatBytes([streamOf([BEGIN], { end: false }), new Uint8Array(4)])],
    ['a WRITE before any OBJECT', streamOf([BEGIN, WRITE(5)])],
    ['a FREE for an object other than the current one', streamOf([BEGIN, OBJECT(5), OBJECT(6), { kind: RecordKind.free, object: objectId(5), offset: 0, length: 1 }])],
    ['a WRITE to an object freed by FREEOBJECTS', streamOf([BEGIN, OBJECT(5), { kind: RecordKind.freeObjects, first: objectId(4), count: 2 }, WRITE(5)])],
    ['a WRITE carried over a SNAPSHOT', streamOf([BEGIN, OBJECT(5), { kind: RecordKind.snapshot, name: 'tank/home@b', guid: guid(5n), creationMs: 1, txg: txg(50) }, WRITE(5)])],
    ['a SNAPSHOT without the snapshots feature', streamOf([{ ...BEGIN, features: 0 }, { kind: RecordKind.snapshot, name: 'tank/home@b', guid: guid(5n), creationMs: 1, txg: txg(50) }])],
    ['a SNAPSHOT at the from txg', streamOf([BEGIN, { kind: RecordKind.snapshot, name: 'tank/home@b', guid: guid(5n), creationMs: 1, txg: txg(10) }])],
    ['a SNAPSHOT at the to txg', streamOf([BEGIN, { kind: RecordKind.snapshot, name: 'tank/home@b', guid: guid(5n), creationMs: 1, txg: txg(100) }])],
    ['SNAPSHOTs out of txg order', streamOf([BEGIN, { kind: RecordKind.snapshot, name: 'tank/home@b', guid: guid(5n), creationMs: 1, txg: txg(50) }, { kind: RecordKind.snapshot, name: 'tank/home@a', guid: guid(6n), creationMs: 1, txg: txg(40) }])],
    ['a SNAPSHOT with the to guid', streamOf([BEGIN, { kind: RecordKind.snapshot, name: 'tank/home@b', guid: TO_GUID, creationMs: 1, txg: txg(50) }])],
    ['a SNAPSHOT of another dataset', streamOf([BEGIN, { kind: RecordKind.snapshot, name: 'tank/other@b', guid: guid(5n), creationMs: 1, txg: txg(50) }])],
    ['a resumed stream writing below its resume object', streamOf([{ ...BEGIN, resumeObject: objectId(10), resumeOffset: 4096 }, WRITE(9)])],
    ['a resumed stream writing an object other than its OBJECT record', streamOf([{ ...BEGIN, resumeObject: objectId(10) }, OBJECT(12), WRITE(13)])],
  ])('%s is EPROTO', (_name, bytes) => {
    expect(decodeAll(bytes)).toBe('EPROTO');
  });

  it('an END checksum that does not match the records is ECKSUM', () => {
    const bytes = concatBytes([streamOf([BEGIN, OBJECT(5)], { end: false }), frame(encodeRecord({ kind: RecordKind.end, checksum: new Uint8Array(32), toGuid: TO_GUID }))]);
    expect(decodeAll(bytes)).toBe('ECKSUM');
  });

  it('a resumed stream may write objects at or past its resume object before any OBJECT record', () => {
    const begin = { ...BEGIN, resumeObject: objectId(10), resumeOffset: 4096 };
    expect(decodeAll(streamOf([begin, WRITE(10), WRITE(12), OBJECT(13), WRITE(13)]))).toBe('no error');
  });

  it('an -I stream carries SNAPSHOT records between the records of successive snapshots', () => {
    const snap = (name: string, g: bigint, t: number): StreamRecord => ({ kind: RecordKind.snapshot, name, guid: guid(g), creationMs: 1, txg: txg(t) });
    const records = [BEGIN, OBJECT(5), WRITE(5), snap('tank/home@a', 5n, 20), OBJECT(5), WRITE(5), snap('tank/home@b', 6n, 30), OBJECT(6)];
    const decoder = new StreamDecoder();
    expect(decodeAll(streamOf(records), decoder)).toBe('no error');
    expect(decoder.counts.snapshot).toBe(2);
  });

  it('refuses an oversized length prefix at once, without allocating the frame', () => {
    const decoder = new StreamDecoder();
    decoder.push(streamOf([BEGIN], { end: false }));
    expect(decoder.next()?.kind).toBe(RecordKind.begin);
    const prefix = new Uint8Array(4);
    new DataView(prefix.buffer).setUint32(0, limits.streamRecordBytesMax + 1, true);
    decoder.push(prefix);
    expect(codeOf(() => decoder.next())).toBe('EPROTO');
    expect(decoder.bufferedBytes).toBeLessThanOrEqual(4);
  });

  it('decodes a frame lying whole in a chunk in place and gathers a split one into the buffer frameBuffer gives', () => {
    const data = new Uint8Array(600).map((_, i) => i);
    const bytes = streamOf([BEGIN, OBJECT(5), makeWriteRecord(objectId(5), 0, data)]);
    const given: Uint8Array[] = [];
    const decoder = new StreamDecoder({ frameBuffer: (n) => (given.push(new Uint8Array(n + 8).subarray(4, 4 + n)), given.at(-1)!) });
    const at = bytes.length - 400; // inside the WRITE frame (the END frame is under 100 bytes)
    decoder.push(bytes.subarray(0, at));
    expect(decoder.next()?.kind).toBe(RecordKind.begin);
    expect(decoder.gathered).toBeUndefined();
    expect(decoder.next()?.kind).toBe(RecordKind.object);
    expect(decoder.next()).toBeUndefined();
    expect(given).toHaveLength(1);
    decoder.push(bytes.subarray(at));
    const write = decoder.next();
    expect(write?.kind === RecordKind.write && write.data.buffer === given[0]!.buffer && [...write.data].join() === [...data].join()).toBe(true);
    expect(decoder.gathered).toBe(given[0]);
    expect(decoder.next()?.kind).toBe(RecordKind.end);
    expect(decoder.gathered).toBeUndefined();
    decoder.finish();
  });

  it('honours a smaller frame bound given in its options', () => {
    const bytes = streamOf([BEGIN, OBJECT(5), makeWriteRecord(objectId(5), 0, new Uint8Array(600))]);
    expect(decodeAll(bytes, new StreamDecoder({ recordBytesMax: 512 }))).toBe('EPROTO');
    expect(decodeAll(bytes, new StreamDecoder({ recordBytesMax: 1024 }))).toBe('no error');
  });

  it('keeps failing with the first error once a stream is refused', () => {
    const decoder = new StreamDecoder();
    decoder.push(streamOf([BEGIN, WRITE(5)]));
    expect(decoder.next()?.kind).toBe(RecordKind.begin);
    let first: unknown;
    try {
      decoder.next();
    } catch (e) {
      first = e;
    }
    expect(first).toBeInstanceOf(MirrorpoolError);
    expect(() => decoder.next()).toThrow(first as Error);
    expect(() => decoder.finish()).toThrow(first as Error);
  });

  it('records() rejects a truncated source with EPROTO', async () => {
    async function* chunks(): AsyncGenerator<Uint8Array> {
      yield streamOf([BEGIN, OBJECT(5)], { end: false });
    }
    const decoder = new StreamDecoder();
    const seen: number[] = [];
    const run = async (): Promise<void> => {
      for await (const r of decoder.records(chunks())) seen.push(r.kind);
    };
    await expect(run()).rejects.toMatchObject({ code: 'EPROTO' });
    expect(seen).toEqual([RecordKind.begin, RecordKind.object]);
  });
});
