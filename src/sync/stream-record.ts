// The records of a send stream, as values. A stream is BEGIN, then OBJECT / FREEOBJECTS / WRITE /
// FREE / SNAPSHOT records, then END. stream-format.ts turns one record into bytes and back,
// stream-order.ts checks the sequence, stream-encoder.ts and stream-decoder.ts frame them for pipes
// and files. docs/stream-format.md describes the wire form.
//
// Invariants every record that leaves the codec satisfies: numbers are safe integers in the ranges
// documented here, guids are u64, WRITE.checksum is the fletcher-4 of WRITE.data.

import { FLETCHER4_DIGEST_BYTES, fletcher4 } from '../lib/index.js';
import type { Guid, ObjectId, Txg } from '../engine/index.js';

/** The numeric kind that opens every encoded record. Never renumber: it is on the wire. */
export const RecordKind = {
  begin: 1,
  object: 2,
  freeObjects: 3,
  write: 4,
  free: 5,
  snapshot: 6,
  end: 7,
} as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];
export type RecordKindName = keyof typeof RecordKind;

/** Upper-case names used in error messages and docs. */
export const RECORD_KIND_LABELS: Readonly<Record<RecordKind, string>> = {
  1: 'BEGIN',
  2: 'OBJECT',
  3: 'FREEOBJECTS',
  4: 'WRITE',
  5: 'FREE',
  6: 'SNAPSHOT',
  7: 'END',
};

export const STREAM_MAGIC = 'MPSTREAM';
export const STREAM_VERSION = 2;

/** BEGIN.features bits. A decoder refuses (ENOTSUP) a stream with a bit it does not know. */
export const StreamFeature = {
  /** The stream carries SNAPSHOT records for intermediate snapshots (decoded; not yet sent). */
  snapshots: 1,
  /** Another stream of the same package follows this one's END (`send -I`, see stream.ts). */
  package: 2,
} as const;
export const STREAM_FEATURES_KNOWN = StreamFeature.snapshots | StreamFeature.package;

/** Bytes of WRITE.checksum and END.checksum (a fletcher-4 digest). */
export const STREAM_CHECKSUM_BYTES = FLETCHER4_DIGEST_BYTES;

export interface BeginRecord {
  readonly kind: typeof RecordKind.begin;
  /** StreamFeature bits (u32). */
  readonly features: number;
  readonly toGuid: Guid;
  /** Guid of the from snapshot or bookmark; 0n for a full stream. */
  readonly fromGuid: Guid | 0n;
  /** `dataset@snapshot` the stream recreates, at most 255 bytes. */
  readonly toName: string;
  readonly creationMs: number;
  readonly toTxg: Txg;
  /** 0 for a full stream; otherwise the from point's txg, below toTxg. */
  readonly fromTxg: Txg;
  /** 0 unless the stream resumes a cut-off receive at this object. */
  readonly resumeObject: ObjectId;
  /** Byte offset within resumeObject; 0 when not resuming. */
  readonly resumeOffset: number;
}

export interface ObjectRecord {
  readonly kind: typeof RecordKind.object;
  readonly object: ObjectId;
  /** Engine ObjectType (u8); the receiver checks it names a type it can create. */
  readonly objectType: number;
  /** Power of two in [512, 1 MiB], at most maxBlockBytes. */
  readonly blockBytes: number;
  readonly maxBlockBytes: number;
  /** Engine ChecksumKind (u8). */
  readonly checksumKind: number;
  /** At most BONUS_BYTES_MAX (320) bytes. */
  readonly bonus: Uint8Array;
  /** The object's length in bytes. */
  readonly size: number;
}

export interface FreeObjectsRecord {
  readonly kind: typeof RecordKind.freeObjects;
  /** Objects [first, first + count) do not exist in the to snapshot. */
  readonly first: ObjectId;
  readonly count: number;
}

export interface WriteRecord {
  readonly kind: typeof RecordKind.write;
  readonly object: ObjectId;
  readonly offset: number;
  /** 1 byte to 1 MiB. A decoded record's data is a view into the bytes it was decoded from. */
  readonly data: Uint8Array;
  /** fletcher-4 of data (32 bytes). */
  readonly checksum: Uint8Array;
}

export interface FreeRecord {
  readonly kind: typeof RecordKind.free;
  readonly object: ObjectId;
  readonly offset: number;
  /** At least 1; "to the end of the object" is Number.MAX_SAFE_INTEGER - offset. */
  readonly length: number;
}

export interface SnapshotRecord {
  readonly kind: typeof RecordKind.snapshot;
  /** `dataset@snapshot` of an intermediate snapshot, same dataset as BEGIN.toName. */
  readonly name: string;
  readonly guid: Guid;
  readonly creationMs: number;
  readonly txg: Txg;
}

export interface EndRecord {
  readonly kind: typeof RecordKind.end;
  /** Running fletcher-4 over the encoded bytes of every record before END. */
  readonly checksum: Uint8Array;
  readonly toGuid: Guid;
}

export type StreamRecord =
  | BeginRecord
  | ObjectRecord
  | FreeObjectsRecord
  | WriteRecord
  | FreeRecord
  | SnapshotRecord
  | EndRecord;

export type RecordCounts = Record<RecordKindName, number>;

export function emptyRecordCounts(): RecordCounts {
  return { begin: 0, object: 0, freeObjects: 0, write: 0, free: 0, snapshot: 0, end: 0 };
}

const KIND_NAMES: Readonly<Record<RecordKind, RecordKindName>> = {
  1: 'begin',
  2: 'object',
  3: 'freeObjects',
  4: 'write',
  5: 'free',
  6: 'snapshot',
  7: 'end',
};

export function recordKindName(kind: RecordKind): RecordKindName {
  return KIND_NAMES[kind];
}

/**
 * WRITE records whose maker verified the checksum against the data, in the buffer the record
 * keeps (a send's block reads check each block against its pointer's fletcher-4): encoding trusts
 * the pair instead of hashing the data again. A receiver checks every WRITE all the same.
 */
const verifiedWrites = new WeakSet<WriteRecord>();

/** Marks `r` as verified by its maker (see verifiedWrites); returns it. */
export function verifiedWrite(r: WriteRecord): WriteRecord {
  verifiedWrites.add(r);
  return r;
}

export function isVerifiedWrite(r: WriteRecord): boolean {
  return verifiedWrites.has(r);
}

/** A WRITE record with its checksum computed; the record keeps (does not copy) `data`. */
export function makeWriteRecord(object: ObjectId, offset: number, data: Uint8Array): WriteRecord {
  return { kind: RecordKind.write, object, offset, data, checksum: fletcher4(data) };
}
