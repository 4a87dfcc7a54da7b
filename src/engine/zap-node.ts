// One B+tree node of a ZAP in memory, with its codec and the split choice. A node is its level,
// its leftmost child (inner nodes) and a packed run of entries [klen u16][vlen u16][key][value]
// in strictly increasing key order; inner-node values are u32 child node numbers. Entry bytes
// are never changed in place: every edit builds a new run, so key and value views handed out
// stay valid. Used by zap-op.ts (cache, write-back) and zap-tree.ts (the algorithms).

import { assert } from '../lib/index.js';
import {
  CHILD_BYTES,
  ENTRY_HEADER_BYTES,
  MAGIC_NODE,
  NODE_HEADER_BYTES,
  ZAP_KEY_BYTES_MAX,
  ZAP_VALUE_BYTES_MAX,
  type ZapFormat,
  checkSealed,
  corrupt,
  readU32,
  sealNode,
  writeU16,
  writeU32,
} from './zap-format.js';

// Module-local copies of the constants and byte helpers the per-entry loops (scan, binary search)
// use: under some loaders (vitest's) every use of an import is a property load on a module
// namespace, which these loops would pay per entry.
const ENTRY_HEAD = ENTRY_HEADER_BYTES;
const KEY_MAX = ZAP_KEY_BYTES_MAX;
const VALUE_MAX = ZAP_VALUE_BYTES_MAX;
const CHILD = CHILD_BYTES;

function u16(b: Uint8Array, o: number): number {
  return (b[o] ?? 0) | ((b[o + 1] ?? 0) << 8);
}

function u32(b: Uint8Array, o: number): number {
  return ((b[o] ?? 0) | ((b[o + 1] ?? 0) << 8) | ((b[o + 2] ?? 0) << 16)) + (b[o + 3] ?? 0) * 0x100_0000;
}

function cmp(a: Uint8Array, aOff: number, aLen: number, b: Uint8Array, bOff: number, bLen: number): number {
  const n = aLen < bLen ? aLen : bLen;
  for (let i = 0; i < n; i++) {
    const d = (a[aOff + i] ?? 0) - (b[bOff + i] ?? 0);
    if (d !== 0) return d;
  }
  return aLen - bLen;
}

export function encodeEntry(key: Uint8Array, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(ENTRY_HEAD + key.length + value.length);
  writeU16(out, 0, key.length);
  writeU16(out, 2, value.length);
  out.set(key, ENTRY_HEAD);
  out.set(value, ENTRY_HEAD + key.length);
  return out;
}

export function childValue(no: number): Uint8Array {
  const out = new Uint8Array(CHILD);
  writeU32(out, 0, no);
  return out;
}

/** Offsets of each entry in `data` plus the end; a string saying what is wrong otherwise. */
function scanEntries(data: Uint8Array, level: number, checkOrder: boolean): number[] | string {
  const offs: number[] = [];
  let pos = 0;
  let prev = -1;
  while (pos < data.length) {
    if (pos + ENTRY_HEAD > data.length) return `entry header cut at ${pos}`;
    const klen = u16(data, pos);
    const vlen = u16(data, pos + 2);
    if (klen < 1 || klen > KEY_MAX) return `bad key length ${klen} at ${pos}`;
    if (level === 0 ? vlen > VALUE_MAX : vlen !== CHILD) return `bad value length ${vlen} at ${pos}`;
    const end = pos + ENTRY_HEAD + klen + vlen;
    if (end > data.length) return `entry at ${pos} runs past the node`;
    if (checkOrder && prev >= 0) {
      const pk = prev + ENTRY_HEAD;
      if (cmp(data, pk, u16(data, prev), data, pos + ENTRY_HEAD, klen) >= 0) {
        return `keys out of order at ${pos}`;
      }
    }
    offs.push(pos);
    prev = pos;
    pos = end;
  }
  offs.push(pos);
  return offs;
}

/** Offsets of entries built by this module (trusted: a failure is a programmer error). */
function offsetsOf(data: Uint8Array, level: number, no: number): number[] {
  const offs = scanEntries(data, level, false);
  if (typeof offs === 'string') assert(false, `zap node ${no}: ${offs}`);
  return offs;
}

export class ZapNode {
  no: number;
  readonly level: number;
  private left: number;
  private run: Uint8Array;
  private offs: number[];

  /** `offs` (entry offsets plus the end) when the caller already scanned `data`. */
  constructor(no: number, level: number, leftChild: number, data: Uint8Array, offs?: number[]) {
    assert(level === 0 ? leftChild === 0 : leftChild > 0, 'zap node: leftmost child iff inner');
    this.no = no;
    this.level = level;
    this.left = leftChild;
    this.run = data;
    this.offs = offs ?? offsetsOf(data, level, no);
  }

  get count(): number {
    return this.offs.length - 1;
  }

  /** Entry bytes held (what the fill bounds measure). */
  get bytes(): number {
    return this.run.length;
  }

  get data(): Uint8Array {
    return this.run;
  }

  get leftChild(): number {
    return this.left;
  }

  /** Byte offset of entry i in `data` (i = count gives the end). */
  off(i: number): number {
    const o = this.offs[i];
    assert(o !== undefined, 'zap node: entry index out of range');
    return o;
  }

  keyAt(i: number): Uint8Array {
    const o = this.off(i);
    return this.run.subarray(o + ENTRY_HEAD, o + ENTRY_HEAD + u16(this.run, o));
  }

  valueAt(i: number): Uint8Array {
    const o = this.off(i);
    const start = o + ENTRY_HEAD + u16(this.run, o);
    return this.run.subarray(start, start + u16(this.run, o + 2));
  }

  /** Child i of an inner node: 0 is the leftmost, i > 0 the child of entry i - 1. */
  childAt(i: number): number {
    assert(this.level > 0, 'zap node: child of a leaf');
    if (i === 0) return this.left;
    const o = this.off(i - 1);
    return u32(this.run, o + ENTRY_HEAD + u16(this.run, o));
  }

  indexOfChild(no: number): number {
    for (let i = 0; i <= this.count; i++) if (this.childAt(i) === no) return i;
    return -1;
  }

  setChildAt(i: number, no: number): void {
    if (i === 0) {
      this.left = no;
    } else {
      this.splice(i - 1, 1, [encodeEntry(this.keyAt(i - 1), childValue(no))]);
    }
  }

  /** First index whose key is >= key (or > key when `strict`). */
  private bound(key: Uint8Array, strict: boolean): number {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const o = this.offs[mid] ?? 0;
      const c = cmp(this.run, o + ENTRY_HEAD, u16(this.run, o), key, 0, key.length);
      if (c < 0 || (strict && c === 0)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  lowerBound(key: Uint8Array): number {
    return this.bound(key, false);
  }

  upperBound(key: Uint8Array): number {
    return this.bound(key, true);
  }

  keyEquals(i: number, key: Uint8Array): boolean {
    if (i >= this.count) return false;
    const o = this.off(i);
    return cmp(this.run, o + ENTRY_HEAD, u16(this.run, o), key, 0, key.length) === 0;
  }

  /** Entry bytes of entries [from, to). */
  slice(from: number, to: number): Uint8Array {
    return this.run.subarray(this.off(from), this.off(to));
  }

  /** Replaces `remove` entries at i by already encoded entries; the result must stay ordered. */
  splice(i: number, remove: number, insert: readonly Uint8Array[]): void {
    const start = this.off(i);
    const end = this.off(i + remove);
    let added = 0;
    for (const e of insert) added += e.length;
    const next = new Uint8Array(this.run.length - (end - start) + added);
    next.set(this.run.subarray(0, start), 0);
    let pos = start;
    for (const e of insert) {
      next.set(e, pos);
      pos += e.length;
    }
    next.set(this.run.subarray(end), pos);
    const offs = this.offs.slice(0, i);
    let o = start;
    for (const e of insert) {
      offs.push(o);
      o += e.length;
    }
    const delta = added - (end - start);
    for (let k = i + remove; k < this.offs.length; k++) offs.push((this.offs[k] ?? 0) + delta);
    this.run = next;
    this.offs = offs;
    // Postcondition: order holds across the edited span (the rest was ordered and untouched).
    const from = Math.max(0, i - 1);
    const to = Math.min(this.count - 1, i + insert.length);
    for (let k = from; k < to; k++) assert(this.compareKeys(k, k + 1) < 0, "zap node: splice broke key order");
  }

  private compareKeys(a: number, b: number): number {
    const oa = this.off(a);
    const ob = this.off(b);
    return cmp(this.run, oa + ENTRY_HEAD, u16(this.run, oa), this.run, ob + ENTRY_HEAD, u16(this.run, ob));
  }

  /** Replaces the whole content (entries and leftmost child). */
  replace(data: Uint8Array, leftChild: number): void {
    assert(this.level === 0 ? leftChild === 0 : leftChild > 0, 'zap node: leftmost child iff inner');
    this.offs = offsetsOf(data, this.level, this.no);
    this.run = data;
    this.left = leftChild;
  }
}

/*
 * Tree node header: 0 magic u32 | 4 level u8 | 5 zero u8 | 6 count u16 | 8 entry bytes u32 |
 * 12 node number u32 | 16 leftmost child u32 | 20..31 zero | 32..63 checksum | 64.. entries.
 */
export function encodeNode(node: ZapNode, fmt: ZapFormat): Uint8Array {
  assert(node.bytes <= fmt.capacityBytes, `zap node ${node.no} over-full at write`);
  const buf = new Uint8Array(fmt.nodeBytes);
  writeU32(buf, 0, MAGIC_NODE);
  buf[4] = node.level;
  writeU16(buf, 6, node.count);
  writeU32(buf, 8, node.bytes);
  writeU32(buf, 12, node.no);
  writeU32(buf, 16, node.leftChild);
  buf.set(node.data, NODE_HEADER_BYTES);
  sealNode(buf);
  return buf;
}

/** EPROTO naming the node unless its keys are strictly increasing. */
export function checkNodeOrder(node: ZapNode): void {
  const offs = scanEntries(node.data, node.level, true);
  if (typeof offs === 'string') throw corrupt(node.no, offs);
}

/** Decodes tree node `no`, expected at `level`; EPROTO naming the node if it is not one. */
export function decodeNode(buf: Uint8Array, no: number, fmt: ZapFormat, level: number): ZapNode {
  checkSealed(buf, no, fmt, MAGIC_NODE, [20, 32]);
  if (buf[5] !== 0) throw corrupt(no, 'reserved byte set', { offset: 5 });
  if (readU32(buf, 12) !== no) throw corrupt(no, 'node number field is wrong', { found: readU32(buf, 12) });
  if (buf[4] !== level) throw corrupt(no, `level ${buf[4]} where ${level} was expected`);
  const bytes = readU32(buf, 8);
  if (bytes > fmt.capacityBytes) throw corrupt(no, `entry bytes ${bytes} exceed the node`);
  const data = buf.slice(NODE_HEADER_BYTES, NODE_HEADER_BYTES + bytes);
  // Lengths and bounds are checked on every read (they keep every access inside the node); key
  // order is covered by the checksum here and proven by checkNodeOrder in the full check, since
  // comparing every adjacent key pair on each read would cost about a third of a lookup.
  const offs = scanEntries(data, level, false);
  if (typeof offs === 'string') throw corrupt(no, offs);
  if (offs.length - 1 !== u16(buf, 6)) throw corrupt(no, 'entry count mismatch');
  const leftChild = readU32(buf, 16);
  if (level === 0 ? leftChild !== 0 : leftChild === 0) throw corrupt(no, 'bad leftmost child');
  // Child numbers are range-checked when followed (ZapOp.node, the checker's walk).
  return new ZapNode(no, level, leftChild, data, offs);
}

export interface SplitParts {
  readonly left: Uint8Array;
  /** First key of the right part (leaves) or the key of the entry moved up (inner nodes). */
  readonly sepKey: Uint8Array;
  /** Leftmost child of the right part (0 for leaves). */
  readonly rightLeftChild: number;
  readonly right: Uint8Array;
}

/**
 * Cuts an over-full or joined node into two parts that both hold [fillMin, capacity] bytes,
 * as even as possible (ties: the lower cut). Zap-format's bounds guarantee a cut exists.
 */
export function chooseSplit(node: ZapNode, fmt: ZapFormat): SplitParts {
  const leaf = node.level === 0;
  const total = node.bytes;
  const lo = fmt.fillMinBytes;
  const hi = fmt.capacityBytes;
  let best = -1;
  let bestSkew = Infinity;
  for (let j = leaf ? 1 : 0; j < node.count; j++) {
    const l = node.off(j);
    const r = total - node.off(leaf ? j : j + 1);
    if (l < lo || l > hi || r < lo || r > hi) continue;
    const skew = Math.abs(l - r);
    if (skew < bestSkew) {
      best = j;
      bestSkew = skew;
    }
  }
  assert(best >= 0, `zap node ${node.no}: no valid split of ${total} bytes in ${node.count} entries`);
  const sepKey = node.keyAt(best).slice();
  if (leaf) {
    return { left: node.slice(0, best), sepKey, rightLeftChild: 0, right: node.slice(best, node.count) };
  }
  return {
    left: node.slice(0, best),
    sepKey,
    rightLeftChild: node.childAt(best + 1),
    right: node.slice(best + 1, node.count),
  };
}

/** The entries of two adjacent siblings as one node (numbered like `left`), for merge or share. */
export function joinNodes(left: ZapNode, sepKey: Uint8Array, right: ZapNode): ZapNode {
  assert(left.level === right.level);
  const middle = left.level === 0 ? new Uint8Array(0) : encodeEntry(sepKey, childValue(right.leftChild));
  const data = new Uint8Array(left.bytes + middle.length + right.bytes);
  data.set(left.data, 0);
  data.set(middle, left.bytes);
  data.set(right.data, left.bytes + middle.length);
  return new ZapNode(left.no, left.level, left.leftChild, data);
}
