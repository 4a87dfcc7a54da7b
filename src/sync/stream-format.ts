// One send-stream record <-> its bytes: a msgpack array whose first element is the RecordKind and
// whose other elements are the record's fields in a fixed order (the FIELDS table below, which is
// the wire format; docs/stream-format.md mirrors it).
//
// Both directions run the same field checks, so whatever encodeRecord writes decodeRecord reads
// back, and a record that would not decode is never written: a bad field is EINVAL on encode and
// EPROTO on decode, a WRITE whose data does not match its checksum is ECKSUM on both (the encoder
// takes a verified WRITE's pair on trust: stream-record.ts, verifiedWrite). Decoding first
// passes the bytes through scanRecordBytes (msgpack-scan.ts), so msgpackr only ever parses a flat
// array of plain scalars.
//
// Callers: StreamEncoder and StreamDecoder (framing), and transports that carry one record per
// message.

import type { Options as MsgpackOptions, Packr, Unpackr } from 'msgpackr';
import * as msgpackPure from 'msgpackr/pack';
import { Fletcher4, assert, bytesEqual, fletcher4, hasCode, limits, mpError } from '../lib/index.js';
import type { ErrorCode } from '../lib/index.js';
import { BONUS_BYTES_MAX, NAME_BYTES_MAX, parseName } from '../engine/index.js';
import type { Guid, ObjectId, Txg } from '../engine/index.js';
import { scanRecordBytes } from './msgpack-scan.js';
import {
  RECORD_KIND_LABELS,
  RecordKind,
  isVerifiedWrite,
  STREAM_CHECKSUM_BYTES,
  STREAM_FEATURES_KNOWN,
  STREAM_MAGIC,
  STREAM_VERSION,
} from './stream-record.js';
import type { BeginRecord, StreamRecord, WriteRecord } from './stream-record.js';

/** Field order on the wire, after the kind. Never reorder: append a version instead. */
export const FIELDS: Readonly<Record<RecordKind, readonly string[]>> = {
  [RecordKind.begin]: ['magic', 'version', 'features', 'toGuid', 'fromGuid', 'toName', 'creationMs', 'toTxg',
    'fromTxg', 'resumeObject', 'resumeOffset'],
  [RecordKind.object]: ['object', 'objectType', 'blockBytes', 'maxBlockBytes', 'checksumKind', 'bonus', 'size'],
  [RecordKind.freeObjects]: ['first', 'count'],
  [RecordKind.write]: ['object', 'offset', 'data', 'checksum'],
  [RecordKind.free]: ['object', 'offset', 'length'],
  [RecordKind.snapshot]: ['name', 'guid', 'creationMs', 'txg'],
  [RecordKind.end]: ['checksum', 'toGuid'],
};

const SAFE = Number.MAX_SAFE_INTEGER;
const U8 = 0xff;
const U32 = 0xffff_ffff;
const U64 = 0xffff_ffff_ffff_ffffn;
const BLOCK_BYTES_MIN = limits.sectorBytes;
const BLOCK_BYTES_MAX = limits.streamWriteBytesMax;
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

// 'msgpackr/pack' resolves in Node to msgpackr's plain-JS build, which never loads the optional
// native string extractor that the package root would; its bundled typings do not resolve under
// NodeNext, so the classes are typed from the root's typings.
const msgpack = msgpackPure as unknown as {
  readonly Packr: new (options: MsgpackOptions) => Packr;
  readonly Unpackr: new (options: MsgpackOptions) => Unpackr;
};
// useRecords: false and no moreTypes keep the encoding to plain msgpack arrays, ints, strings and
// bins; int64AsType: 'bigint' returns the 8-byte ints guids travel in as exact bigints.
const packr = new msgpack.Packr({ useRecords: false, moreTypes: false });
const unpackr = new msgpack.Unpackr({ useRecords: false, mapsAsObjects: false, int64AsType: 'bigint' });

/** The record's bytes, in a new array the caller owns. EINVAL for a field out of range. */
export function encodeRecord(r: StreamRecord): Uint8Array {
  const fields = toFields(r);
  fromFields(fields, 'EINVAL', r.kind === RecordKind.write && isVerifiedWrite(r));
  const packed = packr.pack(fields);
  const out = new Uint8Array(packed.length);
  out.set(packed);
  assert(out.length <= limits.streamRecordBytesMax, `encoded ${RECORD_KIND_LABELS[r.kind]} exceeds the record bound`);
  return out;
}

/**
 * The bytes of WRITE record `r` without a copy of its data: `head` (the array header, kind,
 * object, offset and the data's bin header) and `tail` (the checksum field), so that head, r.data
 * and tail back to back are exactly encodeRecord(r). Same checks and errors as encodeRecord.
 * A sender writes the data from the buffer it was read into.
 */
export function encodeWriteParts(r: WriteRecord): { readonly head: Uint8Array; readonly tail: Uint8Array } {
  const fields = toFields(r);
  fromFields(fields, 'EINVAL', isVerifiedWrite(r));
  const head = new Uint8Array(WRITE_HEAD_BYTES_MAX);
  head[0] = 0x90 + fields.length;
  head[1] = RecordKind.write;
  let at = packUint(head, 2, r.object);
  at = packUint(head, at, r.offset);
  const length = r.data.length;
  const view = new DataView(head.buffer);
  if (length < 0x100) {
    head[at++] = 0xc4;
    head[at++] = length;
  } else if (length < 0x10000) {
    head[at++] = 0xc5;
    view.setUint16(at, length);
    at += 2;
  } else {
    head[at++] = 0xc6;
    view.setUint32(at, length);
    at += 4;
  }
  const tail = new Uint8Array(2 + STREAM_CHECKSUM_BYTES);
  tail[0] = 0xc4;
  tail[1] = STREAM_CHECKSUM_BYTES;
  tail.set(r.checksum, 2);
  assert(at + length + tail.length <= limits.streamRecordBytesMax, 'encoded WRITE exceeds the record bound');
  return { head: head.subarray(0, at), tail };
}

/**
 * The running checksum END carries: fletcher-4 over the bytes of every record before END, in
 * order, with zeros inserted so that each record, and each WRITE's data, starts and ends on a
 * 32-bit word. A WRITE's data, whose own fletcher-4 is its checksum field, is taken in through
 * that field (Fletcher4.append) instead of being read again; callers check the field against the
 * data first (the decoder always, the encoder unless the WRITE is a verified one).
 */
export class StreamChecksum {
  private readonly sum = new Fletcher4();

  /** A record other than WRITE, as encoded. */
  record(body: Uint8Array): void {
    this.sum.update(body).pad();
  }

  /** WRITE `r` as encoded: `head`, then r.data, then `tail` (encodeWriteParts). */
  write(head: Uint8Array, r: WriteRecord, tail: Uint8Array): void {
    this.sum.update(head).append(r.checksum, r.data.length).update(tail).pad();
  }

  /** WRITE `r` as decodeRecord returned it from `body`, its data a view into `body`. */
  decodedWrite(body: Uint8Array, r: WriteRecord): void {
    const at = r.data.byteOffset - body.byteOffset;
    assert(r.data.buffer === body.buffer && at >= 0 && at + r.data.length <= body.length, 'WRITE data is not a view into its record');
    this.write(body.subarray(0, at), r, body.subarray(at + r.data.length));
  }

  /** The checksum; the object is finished afterwards. */
  digest(): Uint8Array {
    return this.sum.digest();
  }
}

/** Bytes of a WRITE head at most: array, kind, two ints of up to 9 bytes, a bin32 header. */
const WRITE_HEAD_BYTES_MAX = 2 + 9 + 9 + 5;

/** A non-negative safe integer at `at` as msgpackr packs it; returns the position after it. */
function packUint(out: Uint8Array, at: number, n: number): number {
  assert(Number.isSafeInteger(n) && n >= 0);
  if (n < 0x80) {
    out[at] = n;
    return at + 1;
  }
  if (n < 0x100) {
    out[at] = 0xcc;
    out[at + 1] = n;
    return at + 2;
  }
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  if (n < 0x10000) {
    out[at] = 0xcd;
    view.setUint16(at + 1, n);
    return at + 3;
  }
  if (n <= 0xffff_ffff) {
    out[at] = 0xce;
    view.setUint32(at + 1, n);
    return at + 5;
  }
  // Above 32 bits msgpackr picks the form (a float64 for a safe integer); take its bytes.
  const packed = packr.pack(n);
  assert(packed.length <= 9);
  out.set(packed, at);
  return at + packed.length;
}

/**
 * The record in `bytes`: EPROTO when malformed, ENOTSUP for a newer version or unknown feature,
 * ECKSUM for a WRITE whose data does not match its checksum. The bytes are handed over: a WRITE's
 * data and a record's bonus/checksum are views into them.
 */
export function decodeRecord(bytes: Uint8Array): StreamRecord {
  scanRecordBytes(bytes);
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch (e) {
    // scanRecordBytes admits only input msgpackr parses; keep the coded error if that ever slips.
    throw mpError('EPROTO', `stream record: msgpack decoding failed: ${String(e)}`, {}, e);
  }
  assert(Array.isArray(value), 'scanRecordBytes admitted a non-array');
  return fromFields(value, 'EPROTO');
}

function toFields(r: StreamRecord): unknown[] {
  switch (r.kind) {
    case RecordKind.begin:
      return [r.kind, STREAM_MAGIC, STREAM_VERSION, r.features, r.toGuid, r.fromGuid, r.toName, r.creationMs, r.toTxg,
        r.fromTxg, r.resumeObject, r.resumeOffset];
    case RecordKind.object:
      return [r.kind, r.object, r.objectType, r.blockBytes, r.maxBlockBytes, r.checksumKind, r.bonus, r.size];
    case RecordKind.freeObjects:
      return [r.kind, r.first, r.count];
    case RecordKind.write:
      return [r.kind, r.object, r.offset, r.data, r.checksum];
    case RecordKind.free:
      return [r.kind, r.object, r.offset, r.length];
    case RecordKind.snapshot:
      return [r.kind, r.name, r.guid, r.creationMs, r.txg];
    case RecordKind.end:
      return [r.kind, r.checksum, r.toGuid];
  }
}

type FieldCode = Extract<ErrorCode, 'EPROTO' | 'EINVAL'>;

/**
 * Checks every field of a record in wire form and builds the record; a WRITE's data against its
 * checksum unless `dataVerified` (its maker did: stream-record.ts, verifiedWrite).
 */
function fromFields(values: readonly unknown[], code: FieldCode, dataVerified = false): StreamRecord {
  const kind = values[0];
  if (!isRecordKind(kind)) {
    throw mpError(code, `stream record: unknown record kind ${String(kind)}`, { kind: String(kind) });
  }
  const f = new Fields(values, kind, code);
  switch (kind) {
    case RecordKind.begin:
      return readBegin(f);
    case RecordKind.object: {
      f.count();
      const blockBytes = f.powerOfTwo(3, BLOCK_BYTES_MIN, BLOCK_BYTES_MAX);
      return {
        kind, object: f.int(1, 1, SAFE) as ObjectId, objectType: f.int(2, 0, U8), blockBytes,
        maxBlockBytes: f.powerOfTwo(4, blockBytes, BLOCK_BYTES_MAX), checksumKind: f.int(5, 0, U8),
        bonus: f.bytes(6, 0, BONUS_BYTES_MAX), size: f.int(7, 0, SAFE),
      };
    }
    case RecordKind.freeObjects: {
      f.count();
      const first = f.int(1, 1, SAFE);
      return { kind, first: first as ObjectId, count: f.int(2, 1, SAFE - first) };
    }
    case RecordKind.write:
      return readWrite(f, dataVerified);
    case RecordKind.free: {
      f.count();
      const offset = f.int(2, 0, SAFE);
      return { kind, object: f.int(1, 1, SAFE) as ObjectId, offset, length: f.int(3, 1, SAFE - offset) };
    }
    case RecordKind.snapshot:
      f.count();
      return {
        kind, name: f.snapshotName(1), guid: f.u64(2, 1n) as Guid, creationMs: f.int(3, 0, SAFE),
        txg: f.int(4, 1, SAFE) as Txg,
      };
    case RecordKind.end:
      f.count();
      return { kind, checksum: f.bytes(1, STREAM_CHECKSUM_BYTES, STREAM_CHECKSUM_BYTES), toGuid: f.u64(2, 1n) as Guid };
  }
}

function readBegin(f: Fields): BeginRecord {
  if (f.text(1, NAME_BYTES_MAX) !== STREAM_MAGIC) f.fail(1, 'not a mirrorpool stream (bad magic)');
  const version = f.int(2, 1, U32);
  // A decoder meeting a newer stream says ENOTSUP; an encoder asked to write one was given bad input.
  const unsupported = f.code === 'EPROTO' ? 'ENOTSUP' : f.code;
  if (version !== STREAM_VERSION) {
    throw mpError(unsupported, `BEGIN.version: stream version ${version} is not supported (this build reads ${STREAM_VERSION})`,
      { record: 'BEGIN', field: 'version', value: version });
  }
  f.count();
  const features = f.int(3, 0, U32);
  const unknown = (features & ~STREAM_FEATURES_KNOWN) >>> 0;
  if (unknown !== 0) {
    throw mpError(unsupported, `BEGIN.features: unknown stream feature bits 0x${unknown.toString(16)}`,
      { record: 'BEGIN', field: 'features', value: features });
  }
  const toGuid = f.u64(4, 1n) as Guid;
  const fromGuid = f.u64(5, 0n) as Guid | 0n;
  if (fromGuid === toGuid) f.fail(5, 'equals toGuid');
  const toName = f.snapshotName(6);
  const creationMs = f.int(7, 0, SAFE);
  const toTxg = f.int(8, 1, SAFE) as Txg;
  const fromTxg = f.int(9, 0, toTxg - 1) as Txg;
  if ((fromGuid === 0n) !== (fromTxg === 0)) f.fail(9, 'must be 0 exactly when fromGuid is 0 (a full stream)');
  const resumeObject = f.int(10, 0, SAFE) as ObjectId;
  const resumeOffset = f.int(11, 0, resumeObject === 0 ? 0 : SAFE);
  return { kind: RecordKind.begin, features, toGuid, fromGuid, toName, creationMs, toTxg, fromTxg, resumeObject,
    resumeOffset };
}

function readWrite(f: Fields, dataVerified: boolean): StreamRecord {
  f.count();
  const object = f.int(1, 1, SAFE) as ObjectId;
  const offset = f.int(2, 0, SAFE);
  const data = f.bytes(3, 1, Math.min(limits.streamWriteBytesMax, SAFE - offset));
  const checksum = f.bytes(4, STREAM_CHECKSUM_BYTES, STREAM_CHECKSUM_BYTES);
  if (!dataVerified && !bytesEqual(fletcher4(data), checksum)) {
    throw mpError('ECKSUM', `WRITE: data of object ${object} at offset ${offset} does not match its checksum`,
      { record: 'WRITE', object, offset, length: data.length });
  }
  return { kind: RecordKind.write, object, offset, data, checksum };
}

function isRecordKind(v: unknown): v is RecordKind {
  return typeof v === 'number' && Object.hasOwn(RECORD_KIND_LABELS, v);
}

/** Typed, range-checked access to one record's wire fields; errors name the record and field. */
class Fields {
  private readonly label: string;
  private readonly names: readonly string[];

  constructor(
    private readonly values: readonly unknown[],
    kind: RecordKind,
    readonly code: FieldCode,
  ) {
    this.label = RECORD_KIND_LABELS[kind];
    this.names = FIELDS[kind];
  }

  fail(i: number, why: string, value?: unknown): never {
    const field = this.names[i - 1] ?? `#${i}`;
    const details = value === undefined ? { record: this.label, field } : { record: this.label, field, value };
    throw mpError(this.code, `${this.label}.${field}: ${why}`, details);
  }

  count(): void {
    const want = this.names.length + 1;
    if (this.values.length !== want) {
      throw mpError(this.code, `${this.label}: expected ${want} fields, got ${this.values.length}`,
        { record: this.label, fields: this.values.length });
    }
  }

  /** A safe integer in [min, max] (never -0). */
  int(i: number, min: number, max: number): number {
    const v = this.values[i];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || Object.is(v, -0)) this.fail(i, 'not a safe integer', typeOf(v));
    if (v < min || v > max) this.fail(i, `${v} is outside [${min}, ${max}]`, v);
    return v;
  }

  powerOfTwo(i: number, min: number, max: number): number {
    const v = this.int(i, min, max);
    if ((v & (v - 1)) !== 0) this.fail(i, `${v} is not a power of two`, v);
    return v;
  }

  /** A u64 at least `min`, carried as an 8-byte msgpack int. */
  u64(i: number, min: bigint): bigint {
    const v = this.values[i];
    if (typeof v !== 'bigint') this.fail(i, 'not a 64-bit integer', typeOf(v));
    if (v < min || v > U64) this.fail(i, `${v} is outside [${min}, 2^64)`, String(v));
    return v;
  }

  bytes(i: number, min: number, max: number): Uint8Array {
    const v = this.values[i];
    if (!(v instanceof Uint8Array)) this.fail(i, 'not binary', typeOf(v));
    if (v.length < min || v.length > max) this.fail(i, `${v.length} bytes is outside [${min}, ${max}]`, v.length);
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  }

  text(i: number, bytesMax: number): string {
    const v = this.values[i];
    if (typeof v !== 'string') this.fail(i, 'not text', typeOf(v));
    // Text on the wire is printable ASCII (msgpack-scan.ts checks the bytes), so characters are bytes.
    if (!PRINTABLE_ASCII.test(v)) this.fail(i, 'text fields hold printable ASCII only');
    if (v.length > bytesMax) this.fail(i, `longer than ${bytesMax} bytes`, v.length);
    return v;
  }

  snapshotName(i: number): string {
    const text = this.text(i, NAME_BYTES_MAX);
    try {
      parseName(text, ['snapshot']);
    } catch (e) {
      if (!hasCode(e, 'EINVAL')) throw e;
      this.fail(i, `not a snapshot name: ${e.message}`, text);
    }
    return text;
  }
}

function typeOf(v: unknown): string {
  return v instanceof Uint8Array ? 'binary' : typeof v;
}
