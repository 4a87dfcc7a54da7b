// The ZAP's on-disk vocabulary: limits, magics, the format derived from the node size, the header
// node (node 0), the free-bitmap pages, node sealing (fletcher-4 over the whole node) and the bit
// and byte helpers the other zap-*.ts files share. The byte layout is documented in zap.ts.
// Invariants: every encoder is a pure function of its input (no clock, no randomness), so two
// nodes fed the same operations write identical bytes; every decoder refuses bytes that do not
// follow the format with EPROTO naming the node. Called by zap-node.ts, zap-op.ts, zap-check.ts.

import { type MirrorpoolError, assert, Fletcher4, fletcher4, mpError, readU64Number, writeU64Number } from '../lib/index.js';

/** Longest key, in bytes (keys are 1..ZAP_KEY_BYTES_MAX bytes). */
export const ZAP_KEY_BYTES_MAX = 1024;
/** Longest value, in bytes (values are 0..ZAP_VALUE_BYTES_MAX bytes). */
export const ZAP_VALUE_BYTES_MAX = 1024;
export const ZAP_NODE_BYTES_DEFAULT = 16 * 1024;
/** Smallest node: the fill bounds (zapFormat) need room for two largest leaf entries twice over. */
export const ZAP_NODE_BYTES_MIN = 8 * 1024;
/** Largest node: entry offsets within a node must fit 16 bits. */
export const ZAP_NODE_BYTES_MAX = 64 * 1024;
export const ZAP_VERSION = 1;
/** Node numbers are u32 and node 0 is the header. */
export const ZAP_NODES_MAX = 0xffff_ffff;
/** Tree height bound: fan-out is at least 2, so 2^32 nodes never need more. */
export const ZAP_LEVELS_MAX = 32;

export const NODE_HEADER_BYTES = 64;
/** The part of the header node (node 0) that every operation reads. */
export const HEADER_HEAD_BYTES = 128;
export const ENTRY_HEADER_BYTES = 4;
export const CHILD_BYTES = 4;
const CHECKSUM_OFFSET = 32;
const CHECKSUM_END = 64;

export const MAGIC_HEADER = 0x485a504d; // "MPZH"
export const MAGIC_NODE = 0x4e5a504d; // "MPZN"
export const MAGIC_BITMAP = 0x425a504d; // "MPZB"

export const LEAF_ENTRY_BYTES_MAX = ENTRY_HEADER_BYTES + ZAP_KEY_BYTES_MAX + ZAP_VALUE_BYTES_MAX;
export const INNER_ENTRY_BYTES_MAX = ENTRY_HEADER_BYTES + ZAP_KEY_BYTES_MAX + CHILD_BYTES;

/** Everything that follows from the node size. */
export interface ZapFormat {
  readonly nodeBytes: number;
  readonly nodeShift: number;
  /** Bytes of entries a node can hold. */
  readonly capacityBytes: number;
  /** Fewest entry bytes a non-root tree node may hold (a quarter of the capacity). */
  readonly fillMinBytes: number;
  /** Nodes one bitmap page covers (the page itself included). */
  readonly groupNodes: number;
  readonly nodesMax: number;
}

export function isValidNodeBytes(n: number): boolean {
  return Number.isSafeInteger(n) && n >= ZAP_NODE_BYTES_MIN && n <= ZAP_NODE_BYTES_MAX && (n & (n - 1)) === 0;
}

export function zapFormat(nodeBytes: number): ZapFormat {
  assert(isValidNodeBytes(nodeBytes), `bad zap node size ${nodeBytes}`);
  const capacityBytes = nodeBytes - NODE_HEADER_BYTES;
  const fillMinBytes = Math.floor(capacityBytes / 4);
  // Why these hold, with S the entry bytes of an over-full or joined node and E the largest entry:
  // an over-full node has S <= C + E, a joined pair S < T + C + E. Cutting at the entry boundary
  // nearest S/2 leaves both halves within E/2 of S/2 (leaves), or removes the entry spanning S/2
  // (inner nodes); these bounds keep both halves inside [T, C].
  const c = capacityBytes;
  const t = fillMinBytes;
  const e = LEAF_ENTRY_BYTES_MAX;
  const ei = INNER_ENTRY_BYTES_MAX;
  assert(c >= 2 * e && 2 * t <= c - e && t <= c / 2 - ei && t + e <= c && t + ei <= c, 'zap fill bounds');
  const groupNodes = capacityBytes * 8;
  const groupsMax = (nodeBytes - HEADER_HEAD_BYTES) * 8;
  return {
    nodeBytes,
    nodeShift: Math.log2(nodeBytes),
    capacityBytes,
    fillMinBytes,
    groupNodes,
    nodesMax: Math.min(ZAP_NODES_MAX, 1 + groupsMax * groupNodes),
  };
}

// --- free-bitmap geometry: group g covers nodes [1 + g*G, 1 + (g+1)*G), its page is the first ---

export function pageNo(fmt: ZapFormat, group: number): number {
  return 1 + group * fmt.groupNodes;
}

export function groupOf(fmt: ZapFormat, no: number): number {
  assert(no >= 1);
  return Math.floor((no - 1) / fmt.groupNodes);
}

export function isPageNo(fmt: ZapFormat, no: number): boolean {
  return no >= 1 && (no - 1) % fmt.groupNodes === 0;
}

// --- little-endian fields ----------------------------------------------------------------------

export function readU16(b: Uint8Array, o: number): number {
  return (b[o] ?? 0) | ((b[o + 1] ?? 0) << 8);
}

export function writeU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}

export function readU32(b: Uint8Array, o: number): number {
  return ((b[o] ?? 0) | ((b[o + 1] ?? 0) << 8) | ((b[o + 2] ?? 0) << 16)) + (b[o + 3] ?? 0) * 0x100_0000;
}

export function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

/** Bytewise order of a[aOff, aOff+aLen) against b[bOff, bOff+bLen); a prefix sorts first. */
export function compareRange(a: Uint8Array, aOff: number, aLen: number, b: Uint8Array, bOff: number, bLen: number): number {
  const n = aLen < bLen ? aLen : bLen;
  for (let i = 0; i < n; i++) {
    const d = (a[aOff + i] ?? 0) - (b[bOff + i] ?? 0);
    if (d !== 0) return d;
  }
  return aLen - bLen;
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return compareRange(a, 0, a.length, b, 0, b.length);
}

export function startsWith(key: Uint8Array, prefix: Uint8Array): boolean {
  return key.length >= prefix.length && compareRange(key, 0, prefix.length, prefix, 0, prefix.length) === 0;
}

export function isAllZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

// --- bitmaps -----------------------------------------------------------------------------------

export function getBit(bits: Uint8Array, i: number): boolean {
  return (((bits[i >>> 3] ?? 0) >>> (i & 7)) & 1) === 1;
}

export function setBit(bits: Uint8Array, i: number): void {
  assert(i >>> 3 < bits.length);
  bits[i >>> 3] = (bits[i >>> 3] ?? 0) | (1 << (i & 7));
}

export function clearBit(bits: Uint8Array, i: number): void {
  assert(i >>> 3 < bits.length);
  bits[i >>> 3] = (bits[i >>> 3] ?? 0) & ~(1 << (i & 7));
}

/** Index of the lowest set bit at or after `from`, or -1. */
export function lowestSetBit(bits: Uint8Array, from = 0): number {
  let byte = from >>> 3;
  let v = (bits[byte] ?? 0) & (0xff << (from & 7));
  for (;;) {
    if (v !== 0) return byte * 8 + (31 - Math.clz32(v & -v));
    byte++;
    if (byte >= bits.length) return -1;
    v = bits[byte] ?? 0;
  }
}

export function countBits(bits: Uint8Array): number {
  let n = 0;
  for (let byte = 0; byte < bits.length; byte++) {
    let v = bits[byte] ?? 0;
    while (v !== 0) {
      v &= v - 1;
      n++;
    }
  }
  return n;
}

// --- sealing: fletcher-4 of the whole node with the checksum field as zeros ---------------------

const ZERO_CHECKSUM = new Uint8Array(CHECKSUM_END - CHECKSUM_OFFSET);

export function sealNode(buf: Uint8Array): void {
  buf.fill(0, CHECKSUM_OFFSET, CHECKSUM_END);
  const f = new Fletcher4();
  f.update(buf);
  buf.set(f.digest(), CHECKSUM_OFFSET);
}

export function nodeChecksumOk(buf: Uint8Array): boolean {
  const f = new Fletcher4();
  f.update(buf.subarray(0, CHECKSUM_OFFSET));
  f.update(ZERO_CHECKSUM);
  f.update(buf.subarray(CHECKSUM_END));
  const d = f.digest();
  for (let i = 0; i < d.length; i++) if (d[i] !== buf[CHECKSUM_OFFSET + i]) return false;
  return true;
}

/** The EPROTO for bytes of node `no` that do not follow the format. */
export function corrupt(no: number, why: string, details: Record<string, unknown> = {}): MirrorpoolError {
  return mpError('EPROTO', `zap node ${no}: ${why}`, { node: no, ...details });
}

/** Checks the parts every node kind shares: length, magic, checksum, reserved bytes zero. */
export function checkSealed(buf: Uint8Array, no: number, fmt: ZapFormat, magic: number, reserved: [number, number]): void {
  if (buf.length !== fmt.nodeBytes) throw corrupt(no, `read ${buf.length} bytes, expected ${fmt.nodeBytes}`);
  if (readU32(buf, 0) !== magic) throw corrupt(no, 'bad magic', { magic: readU32(buf, 0) });
  if (!nodeChecksumOk(buf)) throw corrupt(no, 'checksum mismatch');
  for (let i = reserved[0]; i < reserved[1]; i++) if (buf[i] !== 0) throw corrupt(no, 'reserved byte set', { offset: i });
}

// --- header node (node 0) ----------------------------------------------------------------------
// The head [0, 128) carries its own checksum so that an operation that allocates nothing reads
// and verifies 128 bytes, not the node; the summary bitmap [128, N) is checked against the
// summary checksum in the head only when an operation allocates or frees.

const SUMMARY_CHECKSUM_OFFSET = 64;
const FIRST_FREE_OFFSET = 96;

export interface ZapHeader {
  /** Tree height: 1 when the root is a leaf. */
  levels: number;
  root: number;
  /** Nodes in the object (its size is nodeCount * nodeBytes). */
  nodeCount: number;
  freeCount: number;
  /** Lowest free node, 0 when none is free: lets an operation decide to move a node without reads. */
  firstFree: number;
  entryCount: number;
  /** Fletcher-4 of the summary bitmap as last written. */
  summaryChecksum: Uint8Array;
}

/** Bytes of the summary bitmap (bit g set iff bitmap group g holds a free node). */
export function summaryBytes(fmt: ZapFormat): number {
  return fmt.nodeBytes - HEADER_HEAD_BYTES;
}

function headChecksum(head: Uint8Array): Uint8Array {
  const f = new Fletcher4();
  f.update(head.subarray(0, CHECKSUM_OFFSET));
  f.update(head.subarray(CHECKSUM_END, HEADER_HEAD_BYTES));
  return f.digest();
}

export function encodeHeaderHead(h: ZapHeader, fmt: ZapFormat): Uint8Array {
  const buf = new Uint8Array(HEADER_HEAD_BYTES);
  writeU32(buf, 0, MAGIC_HEADER);
  writeU16(buf, 4, ZAP_VERSION);
  buf[6] = fmt.nodeShift;
  buf[7] = h.levels;
  writeU16(buf, 8, ZAP_KEY_BYTES_MAX);
  writeU16(buf, 10, ZAP_VALUE_BYTES_MAX);
  writeU32(buf, 12, h.root);
  writeU32(buf, 16, h.nodeCount);
  writeU32(buf, 20, h.freeCount);
  writeU64Number(buf, 24, h.entryCount);
  buf.set(h.summaryChecksum, SUMMARY_CHECKSUM_OFFSET);
  writeU32(buf, FIRST_FREE_OFFSET, h.firstFree);
  buf.set(headChecksum(buf), CHECKSUM_OFFSET);
  return buf;
}

/** Reads the node size out of a header's head; EPROTO if it is not a ZAP header. */
export function peekNodeBytes(head: Uint8Array): number {
  if (readU32(head, 0) !== MAGIC_HEADER) throw corrupt(0, 'not a zap object (bad header magic)');
  const version = readU16(head, 4);
  if (version !== ZAP_VERSION) throw corrupt(0, `unknown zap version ${version}`, { version });
  const shift = head[6] ?? 0;
  const nodeBytes = shift < 31 ? 2 ** shift : 0;
  if (!isValidNodeBytes(nodeBytes)) throw corrupt(0, `bad node size shift ${shift}`, { shift });
  return nodeBytes;
}

export function decodeHeaderHead(head: Uint8Array, fmt: ZapFormat, objectBytes: number): ZapHeader {
  if (head.length !== HEADER_HEAD_BYTES) throw corrupt(0, `header read ${head.length} bytes`);
  if (peekNodeBytes(head) !== fmt.nodeBytes) throw corrupt(0, 'node size changed');
  const sum = headChecksum(head);
  for (let i = 0; i < sum.length; i++) if (sum[i] !== head[CHECKSUM_OFFSET + i]) throw corrupt(0, 'header checksum mismatch');
  for (let i = FIRST_FREE_OFFSET + 4; i < HEADER_HEAD_BYTES; i++) {
    if (head[i] !== 0) throw corrupt(0, 'reserved byte set', { offset: i });
  }
  if (readU16(head, 8) !== ZAP_KEY_BYTES_MAX || readU16(head, 10) !== ZAP_VALUE_BYTES_MAX) {
    throw corrupt(0, 'unsupported key or value limits', { keyMax: readU16(head, 8), valueMax: readU16(head, 10) });
  }
  const h: ZapHeader = {
    levels: head[7] ?? 0,
    root: readU32(head, 12),
    nodeCount: readU32(head, 16),
    freeCount: readU32(head, 20),
    firstFree: readU32(head, FIRST_FREE_OFFSET),
    entryCount: readU64Number(head, 24),
    summaryChecksum: head.slice(SUMMARY_CHECKSUM_OFFSET, SUMMARY_CHECKSUM_OFFSET + 32),
  };
  if (h.nodeCount < 3 || h.nodeCount > fmt.nodesMax || h.nodeCount * fmt.nodeBytes !== objectBytes) {
    throw corrupt(0, 'node count does not match the object size', { nodeCount: h.nodeCount, objectBytes });
  }
  if (h.levels < 1 || h.levels > ZAP_LEVELS_MAX) throw corrupt(0, `bad tree height ${h.levels}`);
  if (h.root < 2 || h.root >= h.nodeCount || isPageNo(fmt, h.root)) throw corrupt(0, `bad root ${h.root}`);
  if (h.freeCount >= h.nodeCount) throw corrupt(0, `bad free count ${h.freeCount}`);
  const firstOk = h.freeCount === 0 ? h.firstFree === 0 : h.firstFree >= 2 && h.firstFree < h.nodeCount - 1 && !isPageNo(fmt, h.firstFree);
  if (!firstOk) throw corrupt(0, `bad lowest free node ${h.firstFree}`);
  return h;
}

/** Verifies the summary bitmap read from [128, N) against the head's checksum. */
export function checkSummary(summary: Uint8Array, h: ZapHeader, fmt: ZapFormat): void {
  if (summary.length !== summaryBytes(fmt)) throw corrupt(0, `summary read ${summary.length} bytes`);
  const sum = fletcher4(summary);
  for (let i = 0; i < sum.length; i++) if (sum[i] !== h.summaryChecksum[i]) throw corrupt(0, 'summary checksum mismatch');
}

/** The whole header node, after setting h.summaryChecksum from `summary`. */
export function encodeHeader(h: ZapHeader, summary: Uint8Array, fmt: ZapFormat): Uint8Array {
  assert(summary.length === summaryBytes(fmt));
  h.summaryChecksum = fletcher4(summary);
  const buf = new Uint8Array(fmt.nodeBytes);
  buf.set(encodeHeaderHead(h, fmt), 0);
  buf.set(summary, HEADER_HEAD_BYTES);
  return buf;
}

// --- free-bitmap pages -------------------------------------------------------------------------

export interface BitmapPage {
  readonly group: number;
  freeCount: number;
  /** Bit i set iff node pageNo(group) + i is free; bit 0 (the page itself) is never set. */
  readonly bits: Uint8Array;
}

export function emptyBitmapPage(group: number, fmt: ZapFormat): BitmapPage {
  return { group, freeCount: 0, bits: new Uint8Array(fmt.capacityBytes) };
}

export function encodeBitmapPage(page: BitmapPage, fmt: ZapFormat): Uint8Array {
  const buf = new Uint8Array(fmt.nodeBytes);
  writeU32(buf, 0, MAGIC_BITMAP);
  writeU32(buf, 4, page.group);
  writeU32(buf, 8, page.freeCount);
  writeU32(buf, 12, pageNo(fmt, page.group));
  buf.set(page.bits, NODE_HEADER_BYTES);
  sealNode(buf);
  return buf;
}

export function decodeBitmapPage(buf: Uint8Array, group: number, fmt: ZapFormat): BitmapPage {
  const no = pageNo(fmt, group);
  checkSealed(buf, no, fmt, MAGIC_BITMAP, [16, CHECKSUM_OFFSET]);
  if (readU32(buf, 4) !== group || readU32(buf, 12) !== no) throw corrupt(no, 'bitmap page in the wrong place');
  const page: BitmapPage = { group, freeCount: readU32(buf, 8), bits: buf.slice(NODE_HEADER_BYTES) };
  if (getBit(page.bits, 0)) throw corrupt(no, 'bitmap page marks itself free');
  return page;
}
