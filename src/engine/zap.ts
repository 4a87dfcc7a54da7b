// The ZAP: a persistent ordered map from byte-string keys to byte values, kept as a B+tree in the
// bytes of one object and reached only through ObjectAccess. It serves directories, properties,
// snapshot names, the pool directory and each dataset's key directory (prefix listing, paging).
// Callers: the DMU-level code that owns the object (dataset, dsl and key-directory modules).
//
// Invariants: keys are 1..1024 bytes compared bytewise, values 0..1024 bytes; bad arguments are
// EINVAL and change nothing. The same operations applied to an empty map give byte-identical
// objects on every machine (no clock, randomness or hash order; lowest-first allocation). Every
// operation reads the header's first 128 bytes and one root-to-leaf path (plus a sibling per
// level when it rebalances, and bitmap pages when it allocates or frees) and keeps no cache past
// its end; it writes only the nodes it changed, after all its reads, so an operation that fails
// leaves the object as it was. Operations on one Zap run one at a time, in call order; only
// entries() and checkInvariants() read the whole map.
//
// Byte layout (little-endian). The object is nodeCount nodes of N bytes (N = 2^shift, 8..64 KiB,
// 16 KiB by default); node k sits at k*N. Bytes 32..63 of every node hold the fletcher-4 of the
// whole node computed with those 32 bytes as zeros (the header differs, see below). Bytes not
// named below are zero.
//   node 0, header:  0 magic "MPZH" | 4 version u16 (1) | 6 shift u8 | 7 levels u8 (1 = root is a
//                    leaf) | 8 key max u16 (1024) | 10 value max u16 (1024) | 12 root u32 |
//                    16 nodeCount u32 | 20 free nodes u32 | 24 entries u64 | 32 checksum, here
//                    of the head only: bytes [0,32) and [64,128) | 64 fletcher-4 of [128, N) |
//                    96 lowest free node u32 (0 = none) | 128.. summary bitmap: bit g set iff
//                    bitmap group g has a free node.
//   bitmap page:     node 1 + g*G for group g, G = (N - 64) * 8 nodes per group, present while
//                    the object reaches it: 0 magic "MPZB" | 4 group u32 | 8 free nodes u32 |
//                    12 node number u32 | 32 checksum | 64.. bit i set iff node 1 + g*G + i is
//                    free (bit 0, the page itself, never).
//   tree node:       0 magic "MPZN" | 4 level u8 (0 = leaf) | 6 entry count u16 | 8 entry bytes
//                    u32 | 12 node number u32 | 16 leftmost child u32 (0 in leaves) | 32 checksum
//                    | 64.. entries in increasing key order, each [key length u16][value length
//                    u16][key][value]; in inner nodes the value is the u32 child holding keys
//                    >= that key (the leftmost child holds the keys below the first).
//   free node:       all zeros. The tail node is never free (free tails are truncated away).
// Non-root tree nodes hold between a quarter of and all of their N - 64 entry bytes; an inner
// root has at least one entry. Freed nodes are reused lowest-first; dirty nodes whose parent is
// rewritten anyway move down to lower free slots, so a map that shrinks compacts.

import { assert, mpError, readU64, readU64Number, writeU64, writeU64Number } from '../lib/index.js';
import type { ObjectAccess } from './types.js';
import { type ZapReport, checkZap } from './zap-check.js';
import {
  HEADER_HEAD_BYTES,
  ZAP_KEY_BYTES_MAX,
  ZAP_NODE_BYTES_DEFAULT,
  ZAP_NODE_BYTES_MAX,
  ZAP_NODE_BYTES_MIN,
  ZAP_VALUE_BYTES_MAX,
  type ZapFormat,
  compareBytes,
  emptyBitmapPage,
  encodeBitmapPage,
  encodeHeader,
  isValidNodeBytes,
  peekNodeBytes,
  startsWith,
  summaryBytes,
  zapFormat,
} from './zap-format.js';
import { ZapNode, encodeNode } from './zap-node.js';
import { ZapOp } from './zap-op.js';
import { lookup, put, remove, scan } from './zap-tree.js';

export { ZAP_KEY_BYTES_MAX, ZAP_VALUE_BYTES_MAX, ZAP_NODE_BYTES_DEFAULT, ZAP_NODE_BYTES_MIN, ZAP_NODE_BYTES_MAX };
export type { ZapReport };

/** A key: a string (stored as its UTF-8 bytes) or raw bytes. */
export type ZapKey = string | Uint8Array;

export interface ZapEntry {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

export interface ZapInfo {
  readonly entries: number;
  /** Tree height (1 = the root is a leaf). */
  readonly levels: number;
  /** Nodes in the object: its size is nodeCount * nodeBytes. */
  readonly nodeCount: number;
  readonly freeNodes: number;
  readonly nodeBytes: number;
}

export interface ZapCreateOptions {
  /** Node size: a power of two in [ZAP_NODE_BYTES_MIN, ZAP_NODE_BYTES_MAX]. */
  readonly nodeBytes?: number;
}

export interface ZapEntriesOptions {
  /** Only keys starting with these bytes. */
  readonly prefix?: ZapKey;
  /** Only keys strictly after this one (resume a listing where a page ended). */
  readonly after?: ZapKey;
  /** At most this many entries. */
  readonly limit?: number;
}

const utf8 = new TextEncoder();
const LONE_SURROGATE = /\p{Cs}/u;

function keyBytes(key: ZapKey, what: string, allowEmpty = false): Uint8Array {
  let bytes: Uint8Array;
  if (typeof key === 'string') {
    if (LONE_SURROGATE.test(key)) throw mpError('EINVAL', `zap ${what} is not valid Unicode`, {});
    bytes = utf8.encode(key);
  } else if (key instanceof Uint8Array) {
    bytes = key.slice();
  } else {
    throw mpError('EINVAL', `zap ${what} must be a string or Uint8Array`, {});
  }
  if ((bytes.length === 0 && !allowEmpty) || bytes.length > ZAP_KEY_BYTES_MAX) {
    throw mpError('EINVAL', `zap ${what} must be 1..${ZAP_KEY_BYTES_MAX} bytes`, { bytes: bytes.length });
  }
  return bytes;
}

function valueBytes(value: Uint8Array): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length > ZAP_VALUE_BYTES_MAX) {
    throw mpError('EINVAL', `zap value must be a Uint8Array of at most ${ZAP_VALUE_BYTES_MAX} bytes`, {});
  }
  return value.slice();
}

/** The 8-byte little-endian form of a u64 value. EINVAL if out of range. */
export function zapU64(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  writeU64(out, 0, value);
  return out;
}

/** The 8-byte form of a non-negative safe integer. EINVAL otherwise. */
export function zapNumber(value: number): Uint8Array {
  const out = new Uint8Array(8);
  writeU64Number(out, 0, value);
  return out;
}

function asU64(value: Uint8Array): bigint {
  if (value.length !== 8) throw mpError('EPROTO', `zap value of ${value.length} bytes is not a u64`, {});
  return readU64(value, 0);
}

/** A key as text (keys stored from strings); EPROTO if it is not UTF-8. */
export function zapKeyText(key: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(key);
  } catch (e) {
    if (e instanceof TypeError) throw mpError('EPROTO', 'zap key is not UTF-8', { bytes: key.length });
    throw e;
  }
}

export class Zap {
  /** Tail of the queue that runs operations one at a time. */
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly obj: ObjectAccess,
    private readonly fmt: ZapFormat,
  ) {}

  get nodeBytes(): number {
    return this.fmt.nodeBytes;
  }

  /** Formats an empty map into an empty object. EINVAL if the object is not empty or options are bad. */
  static async create(obj: ObjectAccess, options: ZapCreateOptions = {}): Promise<Zap> {
    const nodeBytes = options.nodeBytes ?? ZAP_NODE_BYTES_DEFAULT;
    if (!isValidNodeBytes(nodeBytes)) {
      throw mpError('EINVAL', `zap node size must be a power of two in [${ZAP_NODE_BYTES_MIN}, ${ZAP_NODE_BYTES_MAX}]`, { nodeBytes });
    }
    if (obj.size() !== 0) throw mpError('EINVAL', 'zap create needs an empty object', { size: obj.size() });
    const fmt = zapFormat(nodeBytes);
    const header = { levels: 1, root: 2, nodeCount: 3, freeCount: 0, firstFree: 0, entryCount: 0, summaryChecksum: new Uint8Array(0) };
    await obj.write(0, encodeHeader(header, new Uint8Array(summaryBytes(fmt)), fmt));
    await obj.write(fmt.nodeBytes, encodeBitmapPage(emptyBitmapPage(0, fmt), fmt));
    await obj.write(2 * fmt.nodeBytes, encodeNode(new ZapNode(2, 0, 0, new Uint8Array(0)), fmt));
    assert(obj.size() === 3 * fmt.nodeBytes);
    return new Zap(obj, fmt);
  }

  /** Opens a formatted object: EPROTO if its header or root node does not follow the format. */
  static async open(obj: ObjectAccess): Promise<Zap> {
    const fmt = zapFormat(peekNodeBytes(await obj.read(0, HEADER_HEAD_BYTES)));
    const op = await ZapOp.begin(obj, fmt);
    await op.node(op.header.root, op.header.levels - 1, undefined);
    return new Zap(obj, fmt);
  }

  /** Runs `fn` after every operation queued before it. */
  private queue<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** Queues one operation over a fresh ZapOp (a fresh header read, an empty node cache). */
  private run<T>(fn: (op: ZapOp) => Promise<T>): Promise<T> {
    return this.queue(async () => fn(await ZapOp.begin(this.obj, this.fmt)));
  }

  async get(key: ZapKey): Promise<Uint8Array | undefined> {
    const k = keyBytes(key, 'key');
    return this.run((op) => lookup(op, k));
  }

  async has(key: ZapKey): Promise<boolean> {
    return (await this.get(key)) !== undefined;
  }

  /** Inserts or replaces. */
  async set(key: ZapKey, value: Uint8Array): Promise<void> {
    const k = keyBytes(key, 'key');
    const v = valueBytes(value);
    return this.run((op) => put(op, k, v, false));
  }

  /** Inserts; EEXIST (nothing changed) if the key is present. */
  async add(key: ZapKey, value: Uint8Array): Promise<void> {
    const k = keyBytes(key, 'key');
    const v = valueBytes(value);
    return this.run((op) => put(op, k, v, true));
  }

  /** Removes the key; false if it was absent. */
  async remove(key: ZapKey): Promise<boolean> {
    const k = keyBytes(key, 'key');
    return this.run((op) => remove(op, k));
  }

  async count(): Promise<number> {
    return this.run((op) => Promise.resolve(op.header.entryCount));
  }

  /** Sizes from the header alone (cheap): for metrics and for sizing a transaction's holds. */
  async info(): Promise<ZapInfo> {
    return this.run((op) => {
      const h = op.header;
      return Promise.resolve({ entries: h.entryCount, levels: h.levels, nodeCount: h.nodeCount, freeNodes: h.freeCount, nodeBytes: this.fmt.nodeBytes });
    });
  }

  async getU64(key: ZapKey): Promise<bigint | undefined> {
    const v = await this.get(key);
    return v === undefined ? undefined : asU64(v);
  }

  async setU64(key: ZapKey, value: bigint): Promise<void> {
    return this.set(key, zapU64(value));
  }

  async addU64(key: ZapKey, value: bigint): Promise<void> {
    return this.add(key, zapU64(value));
  }

  /** A u64 value as a number; EPROTO if it is not 8 bytes or exceeds 2^53. */
  async getNumber(key: ZapKey): Promise<number | undefined> {
    const v = await this.get(key);
    if (v === undefined) return undefined;
    asU64(v);
    return readU64Number(v, 0);
  }

  async setNumber(key: ZapKey, value: number): Promise<void> {
    return this.set(key, zapNumber(value));
  }

  async addNumber(key: ZapKey, value: number): Promise<void> {
    return this.add(key, zapNumber(value));
  }

  /**
   * Entries in key order (copies). Each step reads one leaf as one queued operation and the next
   * resumes strictly after the last key yielded, so the map may change while a caller iterates:
   * entries present throughout are yielded exactly once, in order; entries added or removed
   * meanwhile may or may not be. Arguments are checked at the call (EINVAL).
   */
  entries(options: ZapEntriesOptions = {}): AsyncGenerator<ZapEntry, void, undefined> {
    const prefix = options.prefix === undefined ? new Uint8Array(0) : keyBytes(options.prefix, 'prefix', true);
    const after = options.after === undefined ? undefined : keyBytes(options.after, 'after key');
    const limit = options.limit ?? Number.MAX_SAFE_INTEGER;
    if (!Number.isSafeInteger(limit) || limit < 0) throw mpError('EINVAL', 'zap entries limit must be a non-negative integer', { limit });
    return this.iterate(prefix, after, limit);
  }

  private async *iterate(prefix: Uint8Array, after: Uint8Array | undefined, limit: number): AsyncGenerator<ZapEntry, void, undefined> {
    let from = prefix;
    let inclusive = true;
    if (after !== undefined && compareBytes(after, prefix) >= 0) {
      from = after;
      inclusive = false;
    }
    let left = limit;
    while (left > 0) {
      const [start, incl, max] = [from, inclusive, left];
      const batch = await this.run((op) => scan(op, start, incl, prefix, max));
      for (const e of batch.entries) {
        assert(startsWith(e.key, prefix));
        yield e;
      }
      left -= batch.entries.length;
      const last = batch.entries[batch.entries.length - 1];
      if (batch.done || last === undefined) return;
      from = last.key;
      inclusive = false;
    }
  }

  /** Reads the whole object and checks every invariant; EPROTO naming the node on a violation. */
  async checkInvariants(): Promise<ZapReport> {
    return this.queue(() => checkZap(this.obj, this.fmt));
  }
}
