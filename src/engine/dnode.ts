// The dnode: the 512-byte on-disk description of one object (after the DMU of seed 002).
// Dnodes live in the data blocks of an object set's meta-dnode, DNODES_PER_BLOCK to a block.
// A dnode has one block pointer, the root of a tree `levels` high: level 0 is data, each
// indirect block holds POINTERS_PER_INDIRECT pointers. The logical size of the object lives here
// too, so reads past it are short and holes are known without a separate record.
//
// Byte layout (little-endian):
//   0 type u8 (0 = free slot)   1 levels u8   2 checksum kind u8   3 bonus type u8
//   4 data block shift u8       5 max block shift u8 (a single block grows up to it)   6..7 reserved
//   8 bonus length u16          10..15 reserved
//  16 size u64 (logical bytes)  24 max block id + 1 u64 (0 = no block)
//  32 used bytes u64 (allocated, all copies)   40 created txg u64   48..63 reserved
//  64 block pointer (128)       192 bonus (BONUS_BYTES_MAX)

import { assert, mpError, readU64Number, writeU64Number } from '../lib/index.js';
import { decodeBlockPointer, encodeBlockPointer } from './blkptr.js';
import { type BlockPointer, HOLE, type Txg, layout, txg } from './types.js';

export const DNODE_BYTES = 512;
export const DNODE_BLOCK_BYTES = 16 * 1024;
export const DNODES_PER_BLOCK = DNODE_BLOCK_BYTES / DNODE_BYTES;
export const BONUS_BYTES_MAX = DNODE_BYTES - 192;
export const INDIRECT_SHIFT = 14;
export const INDIRECT_BYTES = 1 << INDIRECT_SHIFT;
export const POINTERS_PER_INDIRECT = INDIRECT_BYTES / layout.blockPointerBytes;
export const POINTER_SHIFT = Math.log2(POINTERS_PER_INDIRECT);
export const BLOCK_SHIFT_MIN = 9;
export const BLOCK_SHIFT_MAX = 20;
/** Most levels a tree may have: enough for 2^53 bytes at the smallest block size. */
export const LEVELS_MAX = 8;

/** Object types; stored on disk, never renumber. */
export const ObjectType = {
  none: 0,
  dnodes: 1,
  plain: 2,
  zap: 3,
  dataset: 4,
  keyData: 5,
  deadlist: 6,
  intentLog: 7,
  spaceMap: 8,
} as const;
export type ObjectType = (typeof ObjectType)[keyof typeof ObjectType];
const OBJECT_TYPE_MAX = 8;

export interface Dnode {
  readonly type: ObjectType;
  readonly levels: number;
  readonly checksumKind: number;
  readonly bonusType: number;
  readonly blockShift: number;
  readonly maxBlockShift: number;
  readonly size: number;
  /** Number of blocks the tree may hold data in (max block id + 1). */
  readonly blocks: number;
  readonly usedBytes: number;
  readonly createdTxg: Txg;
  readonly bp: BlockPointer;
  readonly bonus: Uint8Array;
}

export const FREE_DNODE: Dnode = {
  type: ObjectType.none,
  levels: 0,
  checksumKind: 0,
  bonusType: 0,
  blockShift: 0,
  maxBlockShift: 0,
  size: 0,
  blocks: 0,
  usedBytes: 0,
  createdTxg: txg(0),
  bp: HOLE,
  bonus: new Uint8Array(0),
};

export function encodeDnode(d: Dnode, out: Uint8Array, offset: number): void {
  assert(out.length >= offset + DNODE_BYTES);
  assert(d.bonus.length <= BONUS_BYTES_MAX, 'bonus too large');
  const slot = out.subarray(offset, offset + DNODE_BYTES);
  slot.fill(0);
  if (d.type === ObjectType.none) return;
  slot[0] = d.type;
  slot[1] = d.levels;
  slot[2] = d.checksumKind;
  slot[3] = d.bonusType;
  slot[4] = d.blockShift;
  slot[5] = d.maxBlockShift;
  new DataView(slot.buffer, slot.byteOffset, DNODE_BYTES).setUint16(8, d.bonus.length, true);
  writeU64Number(slot, 16, d.size);
  writeU64Number(slot, 24, d.blocks);
  writeU64Number(slot, 32, d.usedBytes);
  writeU64Number(slot, 40, d.createdTxg);
  slot.set(encodeBlockPointer(d.bp), 64);
  slot.set(d.bonus, 192);
}

export function decodeDnode(buf: Uint8Array, offset: number, where: Record<string, unknown>): Dnode {
  assert(buf.length >= offset + DNODE_BYTES);
  const slot = buf.subarray(offset, offset + DNODE_BYTES);
  const type = slot[0] ?? 0;
  if (type === 0) return FREE_DNODE;
  const bad = (why: string): Error => mpError('EPROTO', `corrupt dnode: ${why}`, where);
  if (type > OBJECT_TYPE_MAX) throw bad(`unknown type ${type}`);
  const levels = slot[1] ?? 0;
  const blockShift = slot[4] ?? 0;
  if (levels < 1 || levels > LEVELS_MAX) throw bad(`levels ${levels}`);
  const maxBlockShift = slot[5] ?? 0;
  if (blockShift < BLOCK_SHIFT_MIN || blockShift > BLOCK_SHIFT_MAX) throw bad(`block shift ${blockShift}`);
  if (maxBlockShift < blockShift || maxBlockShift > BLOCK_SHIFT_MAX) throw bad(`max block shift ${maxBlockShift}`);
  const bonusLen = new DataView(slot.buffer, slot.byteOffset, DNODE_BYTES).getUint16(8, true);
  if (bonusLen > BONUS_BYTES_MAX) throw bad(`bonus length ${bonusLen}`);
  const blocks = readU64Number(slot, 24);
  if (blocks > capacityBlocks(levels, blockShift)) throw bad(`${blocks} blocks exceed ${levels} levels`);
  return {
    type: type as ObjectType,
    levels,
    checksumKind: slot[2] ?? 0,
    bonusType: slot[3] ?? 0,
    blockShift,
    maxBlockShift,
    size: readU64Number(slot, 16),
    blocks,
    usedBytes: readU64Number(slot, 32),
    createdTxg: txg(readU64Number(slot, 40)),
    bp: decodeBlockPointer(slot.subarray(64, 192)),
    bonus: slot.slice(192, 192 + bonusLen),
  };
}

/** Data blocks a tree of `levels` can address. */
export function capacityBlocks(levels: number, _blockShift: number): number {
  return 2 ** (POINTER_SHIFT * (levels - 1));
}

/** The fewest levels that address `blocks` data blocks. */
export function levelsFor(blocks: number): number {
  let levels = 1;
  while (capacityBlocks(levels, 0) < blocks) levels++;
  assert(levels <= LEVELS_MAX, `object of ${blocks} blocks is too large`);
  return levels;
}
