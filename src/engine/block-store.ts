// BlockStore: what an object set needs from the pool to keep its blocks — read a block by its
// pointer (verified, healed, cached) or an indirect block as decoded pointers, write a new block
// (allocated and checksummed), free one.
// The pool implements it over the space allocator, BlockIo and the block cache; datasets wrap
// `free` to send blocks older than their newest snapshot to a deadlist instead.

import type { BlockPointer, BlockType, Txg } from './types.js';

export interface ReadContext {
  /** What is being read, for error messages ("dataset pool/a", "MOS"). */
  readonly what: string;
  readonly object?: number;
  readonly offset?: number;
}

export interface WriteMeta {
  readonly type: BlockType;
  readonly level: number;
  readonly checksumKind: number;
  /** Non-hole data blocks beneath (1 for a data block). */
  readonly fill: number;
  /** Copies to keep: 1 for data, 2 (on distinct vdevs where possible) for metadata. */
  readonly copies: number;
  /** The checksum of `data` (of checksumKind), when the writer already knows it. */
  readonly checksum?: Uint8Array;
  /**
   * For an indirect block, the pointers `data` encodes: the store may keep them so the next
   * reader of the block need not decode it. Never modified afterwards.
   */
  readonly pointers?: readonly BlockPointer[];
}

export interface BlockStore {
  /** Reads and verifies a block; a hole reads as lsize zeros. ECKSUM/EIO only with no good copy. */
  read(bp: BlockPointer, context: ReadContext): Promise<Uint8Array>;
  /**
   * read() into a fresh buffer the caller owns and may modify; a block read from disk for this is
   * not cached (the caller is about to replace it).
   */
  readOwned(bp: BlockPointer, context: ReadContext): Promise<Uint8Array>;
  /**
   * Reads blocks stored back to back with one I/O into a fresh buffer the caller owns, or into
   * `into` (exactly the blocks' sizes added up; the caller's own buffer, reused), each verified;
   * null when that is not possible (not back to back, some already cached, a copy failed), and
   * the caller reads them one by one (what `into` holds is then undefined).
   */
  readRun(bps: readonly BlockPointer[], context: ReadContext, into?: Uint8Array): Promise<Uint8Array | null>;
  /**
   * Reads an indirect block and decodes its pointers (EPROTO if any is invalid). The array may be
   * shared with other readers: never modify it.
   */
  readPointers(bp: BlockPointer, context: ReadContext): Promise<readonly BlockPointer[]>;
  /** Allocates and writes `data` (a sector multiple) in txg `txg`; returns its pointer. ENOSPC. */
  write(data: Uint8Array, meta: WriteMeta, txg: Txg): Promise<BlockPointer>;
  /** Releases a block that txg `txg` no longer references. */
  free(bp: BlockPointer, txg: Txg): void;
}

/** Allocated bytes of a block, all copies. */
export function bpAllocatedBytes(bp: BlockPointer): number {
  let sum = 0;
  for (const dva of bp.dvas) sum += dva.asize;
  return sum;
}
