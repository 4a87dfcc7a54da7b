// The object set block's byte layout (1024 bytes, little-endian): 0 magic u64 ("MPOBJSET"),
// 8 version u32, 12 type u32 (ObjsetType), 16 next object number u64, 64 the meta-dnode (512).
// Decode checks everything and throws EPROTO naming the object set. Used by objset.ts and
// traverse.ts.

import { mpError, readU64Number, writeU64Number } from '../lib/index.js';
import type { ReadContext } from './block-store.js';
import { DNODE_BLOCK_BYTES, type Dnode, ObjectType, decodeDnode, encodeDnode } from './dnode.js';

export const ObjsetType = { mos: 1, dataset: 2 } as const;
export type ObjsetType = (typeof ObjsetType)[keyof typeof ObjsetType];

const OBJSET_BYTES = 1024;
const OBJSET_MAGIC = 0x5445_534a_424f_504dn; // "MPOBJSET" little-endian
const OBJSET_VERSION = 1;
/** The meta-dnode's block shift: its data blocks are dnode blocks. */
export const DNODE_SHIFT = Math.log2(DNODE_BLOCK_BYTES);

export interface ObjsetPhys {
  readonly type: ObjsetType;
  readonly nextObject: number;
  readonly meta: Dnode;
}

export function encodeObjsetPhys(p: ObjsetPhys): Uint8Array {
  const out = new Uint8Array(OBJSET_BYTES);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, OBJSET_MAGIC, true);
  v.setUint32(8, OBJSET_VERSION, true);
  v.setUint32(12, p.type, true);
  writeU64Number(out, 16, p.nextObject);
  encodeDnode(p.meta, out, 64);
  return out;
}

export function decodeObjsetPhys(bytes: Uint8Array, ctx: ReadContext): ObjsetPhys {
  const bad = (why: string): Error => mpError('EPROTO', `corrupt object set (${ctx.what}): ${why}`, { ...ctx });
  if (bytes.length < OBJSET_BYTES) throw bad('short block');
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getBigUint64(0, true) !== OBJSET_MAGIC) throw bad('bad magic');
  if (v.getUint32(8, true) !== OBJSET_VERSION) throw bad(`unsupported version ${v.getUint32(8, true)}`);
  const type = v.getUint32(12, true);
  if (type !== ObjsetType.mos && type !== ObjsetType.dataset) throw bad(`unknown type ${type}`);
  const meta = decodeDnode(bytes, 64, { ...ctx, object: 0 });
  if (meta.type !== ObjectType.dnodes || meta.blockShift !== DNODE_SHIFT) throw bad('meta-dnode is not a dnode array');
  return { type, nextObject: readU64Number(bytes, 16), meta };
}
