// The engine's shared vocabulary: branded ids, on-disk constants and the block pointer shape.
// Every engine module speaks these types; the on-disk constants never change once a pool exists
// (a change means a new format version).

import { type Random, assert } from '../lib/index.js';

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** Transaction group number. 0 means "never" (a hole that was never written). */
export type Txg = Brand<number, 'Txg'>;
/** Object number within an object set. */
export type ObjectId = Brand<number, 'ObjectId'>;
/** 64-bit unique id of a pool, vdev, dataset or snapshot. Never 0. */
export type Guid = Brand<bigint, 'Guid'>;

export function txg(n: number): Txg {
  assert(Number.isSafeInteger(n) && n >= 0, `txg must be a non-negative safe integer, got ${n}`);
  return n as Txg;
}

export function objectId(n: number): ObjectId {
  assert(Number.isSafeInteger(n) && n >= 0, `object id must be a non-negative safe integer, got ${n}`);
  return n as ObjectId;
}

export function guid(n: bigint): Guid {
  assert(n > 0n && n <= 0xffff_ffff_ffff_ffffn, `guid must be a non-zero u64, got ${n}`);
  return n as Guid;
}

/** A fresh non-zero guid. */
export function newGuid(random: Random): Guid {
  for (;;) {
    const g = random.u64();
    if (g !== 0n) return guid(g);
  }
}

/** Where every fixed on-disk size lives. */
export const layout = {
  /** Format version written in labels and uberblocks. */
  version: 1,
  /** Smallest allocation unit and I/O unit (= limits.sectorBytes). */
  sectorBytes: 512,
  /** Bytes of one label; two at the front of each leaf vdev, two at the back. */
  labelBytes: 256 * 1024,
  /** Labels per leaf vdev: [0] and [1] at the front, [2] and [3] at the back. */
  labelCount: 4,
  /** Bytes at the start of a label holding the pool config. */
  labelConfigBytes: 64 * 1024,
  /** Bytes of one uberblock slot; the ring fills the rest of the label. */
  uberblockBytes: 1024,
  /** Encoded size of a block pointer. */
  blockPointerBytes: 128,
  /** Most DVAs (copies) a block pointer holds. */
  dvasMax: 3,
} as const;

export const UBERBLOCK_RING_SLOTS = (layout.labelBytes - layout.labelConfigBytes) / layout.uberblockBytes;

/** Data virtual address: one copy of a block on one top-level vdev. */
export interface Dva {
  /** Index of the top-level vdev. */
  readonly vdev: number;
  /** Byte offset within the top-level vdev's allocatable space (a sector multiple). */
  readonly offset: number;
  /** Allocated bytes (a sector multiple, >= physical size). */
  readonly asize: number;
}

/** What a block holds; stored in its block pointer. Never renumber. */
export const BlockType = {
  none: 0,
  data: 1,
  indirect: 2,
  dnodes: 3,
  objset: 4,
  zap: 5,
  spaceMap: 6,
  intentLog: 7,
  deadlist: 8,
} as const;
export type BlockType = (typeof BlockType)[keyof typeof BlockType];

/**
 * A reference to one block. A hole has no DVAs; its birth txg is the txg in which the range
 * became a hole (0 if it never held data), so incremental sends can find frees by birth.
 */
export interface BlockPointer {
  readonly dvas: readonly Dva[];
  /** Logical bytes (what a reader gets). */
  readonly lsize: number;
  /** Physical bytes written (no compression yet: equals lsize). */
  readonly psize: number;
  readonly type: BlockType;
  /** 0 for data, n for an indirect block n levels above data. */
  readonly level: number;
  /** ChecksumKind id (lib/checksum.ts). */
  readonly checksumKind: number;
  readonly birth: Txg;
  /** Non-hole level-0 blocks beneath this pointer (1 for a data block). */
  readonly fill: number;
  /** 32-byte checksum of the child block's physical bytes. */
  readonly checksum: Uint8Array;
}

/** A hole that never held data. Holes made by freeing carry the freeing txg as their birth. */
export const HOLE: BlockPointer = Object.freeze({
  dvas: [],
  lsize: 0,
  psize: 0,
  type: BlockType.none,
  level: 0,
  checksumKind: 0,
  birth: 0 as Txg,
  fill: 0,
  checksum: new Uint8Array(32),
});

export function isHole(bp: BlockPointer): boolean {
  return bp.dvas.length === 0;
}

/**
 * One top-level vdev's allocatable space, as the space and block layers see it. Offsets are DVA
 * offsets (0 = first allocatable byte after the front labels), sector multiples.
 * Implemented by vdev.ts over leaf Disks (one, or several for a mirror).
 */
export interface VdevIo {
  /** Index of this top-level vdev in the pool. */
  readonly index: number;
  /** Allocatable bytes (a sector multiple). */
  readonly asizeBytes: number;
  /**
   * Reads [offset, offset+length). Tries each copy (mirror child) in turn until `accept` returns
   * true for the bytes (always true when absent), rewrites the copies that failed (self-heal,
   * volatile until the next sync) and returns the accepted bytes. With no acceptable copy it
   * throws ECKSUM if some copy was read but rejected, otherwise EIO. With `into` (exactly
   * `length` bytes) every copy is read into it, and it is what is returned (Disk.read).
   */
  read(offset: number, length: number, accept?: (bytes: Uint8Array) => boolean, into?: Uint8Array): Promise<Uint8Array>;
  /** Writes every copy. Volatile until the pool syncs its disks. EIO if no copy could be written. */
  write(offset: number, data: Uint8Array): Promise<void>;
}

/**
 * The bytes of one object, as structures built inside objects (the ZAP, space maps kept as
 * objects, deadlists) see them. Implemented by the DMU for an object within an open transaction;
 * reads see that transaction's own writes. Reads past size() return zeros up to the requested
 * length; holes read as zeros.
 */
export interface ObjectAccess {
  size(): number;
  read(offset: number, length: number): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Sets the size; bytes past the new size become a hole. */
  truncate(size: number): Promise<void>;
}
