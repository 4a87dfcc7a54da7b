// An object set: a meta-dnode whose data is an array of dnodes, plus the dirty state of the open
// and the syncing txg. Reads look through the layers newest first (open txg, syncing txg) and
// then the synced tree; writes only ever touch the layer of their own txg. syncTxg(t) writes
// layer t copy-on-write (data, indirect blocks, dnode blocks, the objset block) and returns the
// new root pointer; the previous tree stays readable until its space is reused, which the
// allocator defers past the txgs that could still be imported.
// Callers: the DMU operations (dmu.ts) and the pool (MOS) and datasets.

import { assert, mpError } from '../lib/index.js';
import { type BlockStore, bpAllocatedBytes } from './block-store.js';
import {
  DNODE_BLOCK_BYTES,
  DNODE_BYTES,
  DNODES_PER_BLOCK,
  type Dnode,
  FREE_DNODE,
  ObjectType,
  capacityBlocks,
  decodeDnode,
  encodeDnode,
  levelsFor,
} from './dnode.js';
import { DNODE_SHIFT, type ObjsetPhys, ObjsetType, decodeObjsetPhys, encodeObjsetPhys } from './objset-phys.js';
import { blockBuffers } from './block-buffers.js';
import { ReadAhead } from './read-ahead.js';
import { lookupBlock, syncTree } from './tree.js';
import { type BlockPointer, BlockType, HOLE, type ObjectId, type Txg, isHole, objectId } from './types.js';

export { ObjsetType, decodeObjsetPhys, type ObjsetPhys } from './objset-phys.js';

/** Synced dnodes kept decoded; beyond this the oldest are dropped and re-read when needed. */
const DNODE_CACHE_MAX = 65_536;
/** Objects of a dataset whose trees one txg sync writes at once (see syncTxg). */
const OBJECTS_SYNCING_MAX = 16;
/** The first object number handed out; 0 is never an object. */
export const FIRST_OBJECT = 1;

/** The logical state of an object in a txg, without its tree (which only sync knows). */
export interface ObjectHeader {
  readonly type: ObjectType;
  readonly blockShift: number;
  readonly maxBlockShift: number;
  readonly size: number;
  readonly blocks: number;
  readonly bonus: Uint8Array;
  readonly bonusType: number;
  readonly checksumKind: number;
  readonly createdTxg: Txg;
}

/** One object's changes in one txg. */
export interface ObjectDirty {
  header: ObjectHeader;
  /** The object was freed (and maybe created again) in this txg: nothing older shows through. */
  replaced: boolean;
  readonly blocks: Map<number, Uint8Array>;
  readonly freed: [number, number][];
}

interface TxgLayer {
  readonly txg: Txg;
  readonly objects: Map<ObjectId, ObjectDirty>;
  dirtyBytes: number;
  nextObject: number;
}

export const FREE_HEADER: ObjectHeader = headerOf(FREE_DNODE);

export function headerOf(d: Dnode): ObjectHeader {
  return {
    type: d.type,
    blockShift: d.blockShift,
    maxBlockShift: d.maxBlockShift,
    size: d.size,
    blocks: d.blocks,
    bonus: d.bonus,
    bonusType: d.bonusType,
    checksumKind: d.checksumKind,
    createdTxg: d.createdTxg,
  };
}

function emptyMeta(checksumKind: number): Dnode {
  return { ...FREE_DNODE, type: ObjectType.dnodes, levels: 1, blockShift: DNODE_SHIFT, maxBlockShift: DNODE_SHIFT, checksumKind };
}

export class ObjectSet {
  readonly what: string;
  readonly store: BlockStore;
  private phys: ObjsetPhys;
  private root: BlockPointer;
  private readonly dnodes = new Map<ObjectId, Dnode>();
  private readonly locks = new Map<ObjectId, Promise<void>>();
  /** Newest first: at most the open txg and the syncing txg. */
  private layers: TxgLayer[] = [];
  private readonly readAhead: ReadAhead = new ReadAhead(this);
  /** MOS only: no number below this is free. */
  private lowestFree = FIRST_OBJECT;
  private taking = false;

  private constructor(store: BlockStore, what: string, phys: ObjsetPhys, root: BlockPointer) {
    this.store = store;
    this.what = what;
    this.phys = phys;
    this.root = root;
  }

  /** A new, empty object set; it reaches disk with its first sync. */
  static create(store: BlockStore, what: string, type: ObjsetType, checksumKind: number): ObjectSet {
    return new ObjectSet(store, what, { type, nextObject: FIRST_OBJECT, meta: emptyMeta(checksumKind) }, HOLE);
  }

  static async open(store: BlockStore, what: string, root: BlockPointer): Promise<ObjectSet> {
    const ctx = { what };
    if (isHole(root) || root.type !== BlockType.objset) {
      throw mpError('EPROTO', `${what}: root pointer is not an object set`, { what });
    }
    return new ObjectSet(store, what, decodeObjsetPhys(await store.read(root, ctx), ctx), root);
  }

  get type(): ObjsetType {
    return this.phys.type;
  }

  /** The root pointer as of the last sync (HOLE before the first). */
  rootPointer(): BlockPointer {
    return this.root;
  }

  /** Bytes of dirty data blocks held for `t` (all txgs when absent). */
  dirtyBytes(t?: Txg): number {
    return this.layers.filter((l) => t === undefined || l.txg === t).reduce((s, l) => s + l.dirtyBytes, 0);
  }

  /** Whether txg `t` changed anything here (an untouched object set is not rewritten). */
  hasDirty(t: Txg): boolean {
    return this.layers.some((l) => l.txg === t);
  }

  /** Whether any txg not yet synced changed anything here. */
  hasUnsynced(): boolean {
    return this.layers.length > 0;
  }

  /** Whether `obj` has changes not yet synced. */
  isDirty(obj: ObjectId): boolean {
    return this.layers.some((l) => l.objects.has(obj));
  }

  /** Runs `fn` with the object's mutation lock: changes to one object never interleave. */
  async locked<T>(obj: ObjectId, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(obj) ?? Promise.resolve();
    let release = (): void => undefined;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const chained = previous.then(() => mine);
    this.locks.set(obj, chained);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(obj) === chained) this.locks.delete(obj);
    }
  }

  /** The object's state as the newest txg sees it; FREE_HEADER when it does not exist. */
  async header(obj: ObjectId): Promise<ObjectHeader> {
    for (const layer of this.layers) {
      const od = layer.objects.get(obj);
      if (od !== undefined) return od.header;
    }
    return headerOf(await this.syncedDnode(obj));
  }

  /** The next object number `allocate` would hand out in the newest txg. */
  nextObject(): number {
    return this.layers[0]?.nextObject ?? this.phys.nextObject;
  }

  /**
   * Takes an object number in txg `t`. A dataset hands out a cursor (never a scan: the cluster
   * needs the same numbers on every node, whatever was freed); the MOS takes its lowest free
   * number, so its dnode array shrinks back when datasets and snapshots go. Both are
   * deterministic. The MOS changes only in syncing context, one creation at a time.
   */
  async takeObjectNumber(t: Txg): Promise<ObjectId> {
    if (this.phys.type !== ObjsetType.mos) {
      const layer = this.layer(t);
      const id = objectId(layer.nextObject);
      layer.nextObject++;
      return id;
    }
    assert(!this.taking, 'MOS objects are created one at a time');
    this.taking = true;
    try {
      let n = this.lowestFree;
      while ((await this.header(objectId(n))).type !== ObjectType.none) n++;
      this.lowestFree = n + 1;
      this.bumpObjectNumber(t, objectId(n));
      return objectId(n);
    } finally {
      this.taking = false;
    }
  }

  /** Notes that `obj` was freed (the MOS may hand its number out again). */
  noteFreed(obj: ObjectId): void {
    this.lowestFree = Math.min(this.lowestFree, obj);
  }

  /** Makes sure the cursor is past `obj` (after claiming a given number). */
  bumpObjectNumber(t: Txg, obj: ObjectId): void {
    const layer = this.layer(t);
    layer.nextObject = Math.max(layer.nextObject, obj + 1);
  }

  /**
   * The dirty record of `obj` in txg `t`, created from the current header on first touch.
   * Call only after awaiting `header(obj)` in the same synchronous run, so the copy is current.
   */
  dirty(t: Txg, obj: ObjectId, current: ObjectHeader): ObjectDirty {
    const layer = this.layer(t);
    let od = layer.objects.get(obj);
    if (od === undefined) {
      od = { header: current, replaced: false, blocks: new Map(), freed: [] };
      layer.objects.set(obj, od);
    }
    return od;
  }

  /** Accounts a newly dirtied block of `bytes` in txg `t` (for backpressure). */
  addDirtyBytes(t: Txg, bytes: number): void {
    this.layer(t).dirtyBytes += bytes;
  }

  /**
   * Block `blockId` of `obj` as txg `upTo` sees it (layers newer than `upTo` are skipped), resized
   * to `1 << blockShift` bytes. A fresh buffer the caller owns.
   */
  async readBlock(obj: ObjectId, blockId: number, blockShift: number, upTo?: Txg): Promise<Uint8Array> {
    const found = await this.findBlock(obj, blockId, blockShift, upTo, true);
    return found.shared ? owned(found.block, 1 << blockShift) : fitted(found.block, 1 << blockShift);
  }

  /**
   * readBlock without the copy: the buffer may be a dirty block or a cached one, so the caller
   * must never modify it and must copy what it needs before its next await (a writer may change
   * a dirty block in between). A plain read needs no copy of its own, and at 128 KiB per block
   * the copy cost as much as the checksum.
   */
  async viewBlock(obj: ObjectId, blockId: number, blockShift: number, upTo?: Txg): Promise<Uint8Array> {
    const found = await this.findBlock(obj, blockId, blockShift, upTo, false);
    if (found.shared) blockBuffers.markShared(found.block);
    return fitted(found.block, 1 << blockShift);
  }

  /**
   * The block as readBlock/viewBlock see it. `forChange`: the caller is about to modify a copy,
   * so a block read from disk is not cached (its next version is dirty, the old one is freed by
   * the next sync) and is handed over as is, which spares readBlock's copy.
   */
  private async findBlock(
    obj: ObjectId,
    blockId: number,
    blockShift: number,
    upTo: Txg | undefined,
    forChange: boolean,
  ): Promise<{ block: Uint8Array; shared: boolean }> {
    const zeros = { block: new Uint8Array(0), shared: false };
    for (const layer of this.layers) {
      if (upTo !== undefined && layer.txg > upTo) continue;
      const od = layer.objects.get(obj);
      if (od === undefined) continue;
      const block = od.blocks.get(blockId);
      if (block !== undefined) return { block, shared: true };
      if (od.replaced || od.freed.some(([s, e]) => blockId >= s && blockId < e)) return zeros;
    }
    const d = await this.syncedDnode(obj);
    if (d.type === ObjectType.none) return zeros;
    const ctx = { what: this.what, object: obj, offset: blockId * (1 << d.blockShift) };
    const bp = await lookupBlock(this.store, d, blockId, ctx);
    if (isHole(bp)) return zeros;
    if (forChange) return { block: await this.store.readOwned(bp, ctx), shared: false };
    return { block: await this.store.read(bp, ctx), shared: true };
  }

  /**
   * Blocks [first, end) of `obj` with one disk read into a fresh buffer the caller owns, or null
   * when that is not possible (unsynced changes, a hole, a cached block, blocks not stored back to
   * back): the caller then reads block by block. Sequential readers get read-ahead (read-ahead.ts).
   */
  async readSpan(obj: ObjectId, first: number, end: number, blockShift: number): Promise<Uint8Array | null> {
    if (this.isDirty(obj)) return null;
    const d = await this.syncedDnode(obj);
    if (d.type === ObjectType.none || d.blockShift !== blockShift || end > d.blocks || this.isDirty(obj)) return null;
    return this.readAhead.read(obj, d, first, end);
  }

  /** Waits for read-ahead still in flight (the pool calls it before closing its disks). */
  quiesce(): Promise<void> {
    return this.readAhead.quiesce();
  }

  /** The dnode of `obj` as of the last sync. */
  async syncedDnode(obj: ObjectId): Promise<Dnode> {
    const cached = this.dnodes.get(obj);
    if (cached !== undefined) return cached;
    const blockId = Math.floor(obj / DNODES_PER_BLOCK);
    if (blockId >= this.phys.meta.blocks) return FREE_DNODE;
    const ctx = { what: this.what, object: 0, offset: blockId * DNODE_BLOCK_BYTES };
    const bp = await lookupBlock(this.store, this.phys.meta, blockId, ctx);
    if (isHole(bp)) return FREE_DNODE;
    const block = await this.store.read(bp, ctx);
    const d = decodeDnode(block, (obj % DNODES_PER_BLOCK) * DNODE_BYTES, { what: this.what, object: obj });
    this.cacheDnode(obj, d);
    return d;
  }

  /**
   * Writes txg `t` to disk copy-on-write and returns the new root pointer (unchanged when the
   * txg changed nothing). Layer `t` must be the oldest layer and no longer open.
   */
  async syncTxg(t: Txg): Promise<BlockPointer> {
    const layer = this.layers.at(-1);
    if (layer === undefined || layer.txg !== t) return this.root;
    assert(layer.txg === t, 'syncTxg: txgs sync oldest first');
    const synced = new Map<ObjectId, Dnode>();
    const ids = [...layer.objects.keys()].sort((a, b) => a - b);
    // A dataset's objects sync OBJECTS_SYNCING_MAX at a time: each waits for its own reads (the
    // old indirect blocks) and writes, and a txg of many small changes in many objects (a
    // receive of scattered changes) otherwise paid every round trip one after another. The MOS
    // syncs one object at a time, in order.
    const inFlight = this.phys.type === ObjsetType.mos ? 1 : OBJECTS_SYNCING_MAX;
    for (let first = 0; first < ids.length; first += inFlight) {
      const batch = ids.slice(first, first + inFlight);
      const done = await Promise.allSettled(batch.map((obj) => {
        const od = layer.objects.get(obj);
        assert(od !== undefined);
        return this.syncObject(t, obj, od);
      }));
      // Every write of the batch has settled; the first failure in object order is reported.
      for (const [i, obj] of batch.entries()) {
        const r = done[i];
        assert(r !== undefined);
        if (r.status === 'rejected') throw r.reason;
        synced.set(obj, r.value);
      }
    }
    const meta = await this.syncMeta(t, synced);
    const phys: ObjsetPhys = { type: this.phys.type, nextObject: layer.nextObject, meta };
    const root = await this.store.write(
      encodeObjsetPhys(phys),
      { type: BlockType.objset, level: 0, checksumKind: meta.checksumKind, fill: 1, copies: 2 },
      t,
    );
    if (!isHole(this.root)) this.store.free(this.root, t);
    // Switch to the new tree in one synchronous step.
    this.phys = phys;
    this.root = root;
    for (const [obj, d] of synced) this.cacheDnode(obj, d);
    this.layers.pop();
    // The txg's user data blocks are on disk and its layer is gone: their buffers are reused
    // (unless a reader was given a view of one; block-buffers.ts).
    for (const od of layer.objects.values()) {
      if (dataTypeOf(od.header.type) !== BlockType.data) continue;
      for (const block of od.blocks.values()) blockBuffers.give(block);
    }
    return root;
  }

  private async syncObject(t: Txg, obj: ObjectId, od: ObjectDirty): Promise<Dnode> {
    const ctx = { what: this.what, object: obj };
    let base = await this.syncedDnode(obj);
    let usedBytes = base.usedBytes;
    if ((od.replaced || od.header.type === ObjectType.none) && base.type !== ObjectType.none) {
      const all: [number, number][] = [[0, Number.MAX_SAFE_INTEGER]];
      const meta = { txg: t, dataType: dataTypeOf(base.type), checksumKind: base.checksumKind, ctx };
      const gone = await syncTree(this.store, base, base.levels, { blocks: new Map(), freed: all }, meta);
      usedBytes += gone.usedDelta;
      assert(usedBytes === 0, `object ${obj}: freeing the tree left ${usedBytes} bytes`);
      base = { ...FREE_DNODE, bp: gone.root.bp };
    }
    const h = od.header;
    if (h.type === ObjectType.none) return FREE_DNODE;
    const start = base.type === ObjectType.none ? { bp: base.bp, levels: 1 } : base;
    const levels = Math.max(start.levels, levelsFor(Math.max(1, h.blocks)));
    const meta = { txg: t, dataType: dataTypeOf(h.type), checksumKind: h.checksumKind, ctx };
    const { root, usedDelta } = await syncTree(this.store, start, levels, { blocks: od.blocks, freed: od.freed }, meta);
    return { ...h, levels: root.levels, bp: root.bp, usedBytes: usedBytes + usedDelta };
  }

  private async syncMeta(t: Txg, synced: ReadonlyMap<ObjectId, Dnode>): Promise<Dnode> {
    const meta = this.phys.meta;
    const blocks = new Map<number, Uint8Array>();
    for (const [obj, d] of synced) {
      const blockId = Math.floor(obj / DNODES_PER_BLOCK);
      let block = blocks.get(blockId);
      if (block === undefined) {
        block = await this.readMetaBlock(blockId);
        blocks.set(blockId, block);
      }
      encodeDnode(d, block, (obj % DNODES_PER_BLOCK) * DNODE_BYTES);
    }
    const count = Math.max(meta.blocks, ...[...blocks.keys()].map((b) => b + 1));
    const levels = Math.max(meta.levels, levelsFor(Math.max(1, count)));
    const ctx = { what: this.what, object: 0 };
    const syncMeta = { txg: t, dataType: BlockType.dnodes, checksumKind: meta.checksumKind, ctx };
    // A dnode block with only free dnodes becomes a hole: freeing objects gives its space back.
    const freed: [number, number][] = [];
    for (const [blockId, block] of blocks) {
      if (allFree(block)) {
        blocks.delete(blockId);
        freed.push([blockId, blockId + 1]);
      }
    }
    const { root, usedDelta } = await syncTree(this.store, meta, levels, { blocks, freed }, syncMeta);
    const top = await this.shrinkMeta(t, root);
    return {
      ...meta,
      blocks: Math.min(count, capacityBlocks(top.levels, 0)),
      levels: top.levels,
      bp: top.bp,
      usedBytes: meta.usedBytes + usedDelta - top.releasedBytes,
    };
  }

  /**
   * Drops top levels of the dnode array whose only non-hole child is the first: once the objects
   * that made the array grow are freed, its tree is as small as it was before they came.
   */
  private async shrinkMeta(t: Txg, root: { bp: BlockPointer; levels: number }): Promise<{ bp: BlockPointer; levels: number; releasedBytes: number }> {
    let { bp, levels } = root;
    let releasedBytes = 0;
    while (levels > 1 && !isHole(bp)) {
      const kids = await this.store.readPointers(bp, { what: this.what, object: 0 });
      const first = kids[0];
      if (first === undefined || kids.some((k, i) => i > 0 && !isHole(k))) break;
      releasedBytes += bpAllocatedBytes(bp);
      this.store.free(bp, t);
      bp = first;
      levels--;
    }
    return { bp, levels, releasedBytes };
  }

  private async readMetaBlock(blockId: number): Promise<Uint8Array> {
    if (blockId >= this.phys.meta.blocks) return new Uint8Array(DNODE_BLOCK_BYTES);
    const ctx = { what: this.what, object: 0, offset: blockId * DNODE_BLOCK_BYTES };
    const bp = await lookupBlock(this.store, this.phys.meta, blockId, ctx);
    if (isHole(bp)) return new Uint8Array(DNODE_BLOCK_BYTES);
    return owned(await this.store.read(bp, ctx), DNODE_BLOCK_BYTES);
  }

  private layer(t: Txg): TxgLayer {
    const newest = this.layers[0];
    if (newest !== undefined && newest.txg === t) return newest;
    assert(newest === undefined || newest.txg < t, `txg ${t} is older than the open txg ${newest?.txg}`);
    assert(this.layers.length < 2, 'more than one open and one syncing txg');
    const layer: TxgLayer = { txg: t, objects: new Map(), dirtyBytes: 0, nextObject: this.nextObject() };
    this.layers.unshift(layer);
    return layer;
  }

  private cacheDnode(obj: ObjectId, d: Dnode): void {
    this.dnodes.delete(obj);
    this.dnodes.set(obj, d);
    if (this.dnodes.size > DNODE_CACHE_MAX) {
      const oldest = this.dnodes.keys().next();
      if (oldest.done !== true) this.dnodes.delete(oldest.value);
    }
  }

  /** Meta-dnode figures, for status and debug output. */
  summary(): { nextObject: number; dnodeBlocks: number; metaUsedBytes: number; root: BlockPointer; txgs: Txg[] } {
    return {
      nextObject: this.phys.nextObject,
      dnodeBlocks: this.phys.meta.blocks,
      metaUsedBytes: this.phys.meta.usedBytes,
      root: this.root,
      txgs: this.layers.map((l) => l.txg),
    };
  }
}

function allFree(block: Uint8Array): boolean {
  for (let at = 0; at < block.length; at += DNODE_BYTES) if (block[at] !== ObjectType.none) return false;
  return true;
}

function dataTypeOf(type: ObjectType): BlockType {
  // Only user data is kept once; every other type is metadata and gets its ditto copy.
  if (type === ObjectType.zap) return BlockType.zap;
  if (type === ObjectType.dnodes) return BlockType.dnodes;
  if (type === ObjectType.deadlist) return BlockType.deadlist;
  return BlockType.data;
}

/** fitted, always into a fresh buffer the caller owns (cached and dirty blocks are shared). */
function owned(block: Uint8Array, bytes: number): Uint8Array {
  return block.length === bytes ? block.slice() : fitted(block, bytes);
}

/**
 * `block` zero-padded or cut to `bytes` (a block read at an older, smaller block size); `block`
 * itself when it already fits.
 */
function fitted(block: Uint8Array, bytes: number): Uint8Array {
  if (block.length === bytes) return block;
  const out = new Uint8Array(bytes);
  out.set(block.subarray(0, Math.min(bytes, block.length)));
  return out;
}

