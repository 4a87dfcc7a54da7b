// Metaslabs: the allocatable space of one top-level vdev, cut into power-of-two slices. A Metaslab
// keeps its free space in memory (RangeTree), its durable state in a SpaceMap, and per-txg pending
// allocations and frees until the txg syncs; a MetaslabGroup holds all metaslabs of one vdev and
// chooses where an allocation goes. Called by allocator.ts (SpaceAllocator) for allocation, and
// by the pool's txg sync (sync, then syncDone once the uberblock is durable).
//
// Invariants (checkInvariants): within each metaslab the reserved space-map area, the free tree,
// the allocated tree and the deferred trees partition the metaslab exactly; the allocated tree is
// the space map's allocated set plus the pending allocations; pending frees lie in allocated.
//
// Frees: a block born in the txg that frees it was never written to a space map and is free at
// once. Any other free is written to the space map in its txg T and becomes allocatable only at
// syncDone(T + TXG_DEFER): until then an older uberblock that still references the block may be
// the one imported after a crash. load() rebuilds the same deferral from the space map.

import { MirrorpoolError, SpareBuffers, assert, mpError } from '../lib/index.js';
import type { Txg, VdevIo } from './types.js';
import { type Range, RangeTree } from './range-tree.js';
import { SpaceMap, type SpaceMapOptions, TXG_DEFER } from './space-map.js';
import { SECTOR_BYTES } from './space-map-format.js';

export { TXG_DEFER };

/** Smallest metaslab: 256 KiB. */
export const METASLAB_SHIFT_MIN = 18;
/** Largest metaslab: 1 GiB (its space map is then 2 x ~1 MiB). */
export const METASLAB_SHIFT_MAX = 30;
/** The metaslab size is the smallest power of two giving at most this many metaslabs. */
export const METASLABS_PER_VDEV_TARGET = 200;
/** A trailing partial slice smaller than this is left unused. */
export const LAST_METASLAB_BYTES_MIN = 128 * 1024;
/** Space map writes one group issues at once during sync. */
export const SYNC_WRITES_IN_FLIGHT_MAX = 16;
/** Metaslabs of one vdev whose space maps load at once on import. */
const METASLAB_LOADS_IN_FLIGHT = 16;

/** The metaslab shift for a vdev of `asizeBytes` (stored in the pool config, passed back to load). */
export function chooseMetaslabShift(asizeBytes: number, shiftMin = METASLAB_SHIFT_MIN): number {
  assert(Number.isSafeInteger(asizeBytes) && asizeBytes > 0, `bad vdev size ${asizeBytes}`);
  let shift = Math.max(shiftMin, METASLAB_SHIFT_MIN);
  while (shift < METASLAB_SHIFT_MAX && asizeBytes / 2 ** shift > METASLABS_PER_VDEV_TARGET) shift++;
  return shift;
}

/** Byte ranges [start, size) of the usable metaslabs of a vdev. */
export function metaslabSlices(asizeBytes: number, shift: number): Range[] {
  assert(Number.isInteger(shift) && shift >= METASLAB_SHIFT_MIN && shift <= METASLAB_SHIFT_MAX, `bad metaslab shift ${shift}`);
  const msBytes = 2 ** shift;
  const out: Range[] = [];
  for (let start = 0; start < asizeBytes; start += msBytes) {
    const size = Math.min(msBytes, asizeBytes - start);
    if (size === msBytes || size >= LAST_METASLAB_BYTES_MIN) out.push({ start, size });
  }
  return out;
}

/** Waits for every promise (no write left running after a failure), then throws the first error. */
export async function settleAll(promises: readonly Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

function treeAt(map: Map<number, RangeTree>, txg: number): RangeTree {
  let tree = map.get(txg);
  if (tree === undefined) map.set(txg, (tree = new RangeTree(SECTOR_BYTES)));
  return tree;
}

export interface MetaslabSnapshot {
  readonly free: Range[];
  /** Allocated, including this txg's pending allocations and blocks with pending frees. */
  readonly allocated: Range[];
  /** Synced frees not yet allocatable, by the txg that freed them. */
  readonly deferred: Map<number, Range[]>;
}

export class Metaslab {
  private readonly freeTree = new RangeTree(SECTOR_BYTES);
  private readonly pendingAllocs = new Map<number, RangeTree>();
  private readonly pendingFrees = new Map<number, RangeTree>();
  private cursor: number;

  private constructor(
    readonly index: number,
    readonly start: number,
    readonly sizeBytes: number,
    private readonly spaceMap: SpaceMap,
    private readonly allocated: RangeTree,
    private readonly deferred: Map<number, RangeTree>,
  ) {
    this.cursor = start + spaceMap.reservedBytes;
    // Free = everything after the reserved area that is neither allocated nor deferred.
    const taken = [...allocated.ranges(), ...[...deferred.values()].flatMap((t) => t.ranges())].sort((a, b) => a.start - b.start);
    let at = this.cursor;
    for (const r of taken) {
      if (r.start > at) this.freeTree.add(at, r.start - at);
      at = r.start + r.size;
    }
    if (start + sizeBytes > at) this.freeTree.add(at, start + sizeBytes - at);
  }

  static async format(io: VdevIo, index: number, slice: Range, options: SpaceMapOptions): Promise<Metaslab> {
    const sm = await SpaceMap.format(io, slice.start, slice.size, options);
    return new Metaslab(index, slice.start, slice.size, sm, new RangeTree(SECTOR_BYTES), new Map());
  }

  /** EPROTO, ECKSUM or EIO (details name the vdev and metaslab) when the space map cannot be read. */
  static async load(io: VdevIo, index: number, slice: Range, ubTxg: Txg, options: SpaceMapOptions, buffers?: SpareBuffers): Promise<Metaslab> {
    try {
      const loaded = await SpaceMap.load(io, slice.start, slice.size, ubTxg, options, buffers);
      return new Metaslab(index, slice.start, slice.size, loaded.spaceMap, loaded.allocated, loaded.deferred);
    } catch (e) {
      if (!(e instanceof MirrorpoolError)) throw e;
      throw mpError(e.code, `metaslab ${index} of vdev ${io.index}: ${e.message}`, { ...e.details, metaslab: index }, e);
    }
  }

  get reservedBytes(): number {
    return this.spaceMap.reservedBytes;
  }

  freeBytes(): number {
    return this.freeTree.sumBytes();
  }

  /** Bytes not allocatable: live blocks (pending frees included) and frees still deferred. */
  allocatedBytes(): number {
    return this.allocated.sumBytes() + this.deferredBytes();
  }

  deferredBytes(): number {
    return [...this.deferred.values()].reduce((sum, tree) => sum + tree.sumBytes(), 0);
  }

  /** Largest contiguous allocatable run. */
  maxFreeRunBytes(): number {
    return this.freeTree.maxRangeBytes();
  }

  /** For tests and status. */
  spaceMapInfo(): ReturnType<SpaceMap['describe']> {
    return this.spaceMap.describe();
  }

  /** A copy of the accounting, for checks and diagnostics. */
  snapshot(): MetaslabSnapshot {
    const deferred = new Map<number, Range[]>();
    for (const [t, tree] of this.deferred) deferred.set(t, tree.ranges());
    return { free: this.freeTree.ranges(), allocated: this.allocated.ranges(), deferred };
  }

  /** True while some txg before `txg` still has allocations or frees waiting for its sync. */
  hasPendingBefore(txg: number): boolean {
    for (const t of [...this.pendingAllocs.keys(), ...this.pendingFrees.keys()]) if (t < txg) return true;
    return false;
  }

  /** First fit from the cursor (so one txg's allocations run back to back); null when nothing fits. */
  allocate(sizeBytes: number, txg: number): number | null {
    const offset = this.freeTree.findFree(this.cursor, sizeBytes);
    if (offset === null) return null;
    this.freeTree.remove(offset, sizeBytes);
    this.allocated.add(offset, sizeBytes);
    treeAt(this.pendingAllocs, txg).add(offset, sizeBytes);
    this.cursor = offset + sizeBytes;
    return offset;
  }

  free(offset: number, sizeBytes: number, txg: number, birthTxg: number): void {
    assert(birthTxg <= txg, `free in txg ${txg} of a block born in txg ${birthTxg}`);
    const end = offset + sizeBytes;
    assert(offset >= this.start + this.reservedBytes && end <= this.start + this.sizeBytes, `free of [${offset}, ${end}) outside metaslab ${this.index}`);
    for (const tree of this.pendingFrees.values()) assert(!tree.overlaps(offset, sizeBytes), `double free of [${offset}, ${end})`);
    assert(this.allocated.contains(offset, sizeBytes), `free of [${offset}, ${end}) which is not allocated`);
    const sameTxg = this.pendingAllocs.get(txg);
    if (birthTxg === txg) {
      assert(sameTxg?.contains(offset, sizeBytes) === true, `free of [${offset}, ${end}) born in txg ${txg} but not allocated in it`);
      sameTxg.remove(offset, sizeBytes);
      if (sameTxg.count === 0) this.pendingAllocs.delete(txg);
      this.allocated.remove(offset, sizeBytes);
      this.freeTree.add(offset, sizeBytes);
      return;
    }
    assert(sameTxg?.overlaps(offset, sizeBytes) !== true, `free of [${offset}, ${end}) allocated in txg ${txg} with birth ${birthTxg}`);
    treeAt(this.pendingFrees, txg).add(offset, sizeBytes);
  }

  /** Allocated and not pending a free. */
  isAllocated(offset: number, sizeBytes: number): boolean {
    if (!this.allocated.contains(offset, sizeBytes)) return false;
    for (const tree of this.pendingFrees.values()) if (tree.overlaps(offset, sizeBytes)) return false;
    return true;
  }

  /** Does sync(txg) have anything to write? */
  needsSync(txg: number): boolean {
    return this.pendingAllocs.has(txg) || this.pendingFrees.has(txg) || this.spaceMap.needsWrite;
  }

  /** Writes txg's record (or a condense). Frees of txg leave `allocated` for the deferred trees. */
  async sync(txg: Txg): Promise<void> {
    const allocs = this.pendingAllocs.get(txg)?.ranges() ?? [];
    const frees = this.pendingFrees.get(txg);
    this.pendingAllocs.delete(txg);
    this.pendingFrees.delete(txg);
    for (const r of frees ?? []) this.allocated.remove(r.start, r.size);
    if (frees !== undefined) this.deferred.set(txg, frees);
    await this.spaceMap.appendTxg(txg, allocs, frees?.ranges() ?? []);
  }

  /** After txg's uberblock is durable: frees of txg - TXG_DEFER and older become allocatable. */
  syncDone(txg: number): void {
    for (const [t, tree] of this.deferred) {
      if (t > txg - TXG_DEFER) continue;
      for (const r of tree) this.freeTree.add(r.start, r.size);
      this.deferred.delete(t);
    }
  }

  checkInvariants(): void {
    const trees = [this.freeTree, this.allocated, ...this.deferred.values(), ...this.pendingAllocs.values(), ...this.pendingFrees.values()];
    for (const tree of trees) tree.checkInvariants();
    const deferred = [...this.deferred.values()].flatMap((tree) => tree.ranges());
    const parts = [{ start: this.start, size: this.reservedBytes }, ...this.freeTree.ranges(), ...this.allocated.ranges(), ...deferred];
    parts.sort((a, b) => a.start - b.start);
    let at = this.start;
    for (const r of parts) {
      assert(r.start === at, `metaslab ${this.index}: ${r.start < at ? 'overlap' : 'hole'} at ${Math.min(at, r.start)}`);
      at = r.start + r.size;
    }
    assert(at === this.start + this.sizeBytes, `metaslab ${this.index}: accounting ends at ${at}`);
    let pendingBytes = 0;
    for (const tree of this.pendingAllocs.values()) {
      for (const r of tree) {
        assert(this.allocated.contains(r.start, r.size) && !this.spaceMap.allocated.overlaps(r.start, r.size), `metaslab ${this.index}: bad pending alloc`);
      }
      pendingBytes += tree.sumBytes();
    }
    for (const r of this.spaceMap.allocated) assert(this.allocated.contains(r.start, r.size), `metaslab ${this.index}: synced allocation lost`);
    assert(this.allocated.sumBytes() === this.spaceMap.allocated.sumBytes() + pendingBytes, `metaslab ${this.index}: allocated out of step with its space map`);
    const pendingFrees = [...this.pendingFrees.values()].flatMap((tree) => tree.ranges());
    assert(pendingFrees.every((r) => this.allocated.contains(r.start, r.size)), `metaslab ${this.index}: pending free not allocated`);
  }
}

export class MetaslabGroup {
  private current = 0;
  private dittoCurrent = 0;
  /** The last txg whose sync started: allocations and frees go to later txgs. */
  private syncedTxg: number;
  private doneTxg: number;

  private constructor(
    readonly io: VdevIo,
    readonly metaslabShift: number,
    readonly metaslabs: readonly Metaslab[],
    txg: number,
  ) {
    assert(metaslabs.length > 0, `vdev ${io.index} too small for a metaslab`);
    this.syncedTxg = txg;
    this.doneTxg = txg;
  }

  /** The metaslab shift for a vdev of `asizeBytes` (see chooseMetaslabShift). */
  static chooseShift(asizeBytes: number): number {
    return chooseMetaslabShift(asizeBytes);
  }

  /** Index of the top-level vdev. */
  get vdev(): number {
    return this.io.index;
  }

  /**
   * Cuts the vdev into metaslabs of 2^metaslabShift bytes (default: chooseMetaslabShift) and writes
   * their empty space maps (volatile until the pool syncs). The pool stores the shift in its config.
   */
  static async format(io: VdevIo, metaslabShift?: number, options: SpaceMapOptions = {}): Promise<MetaslabGroup> {
    const shift = metaslabShift ?? chooseMetaslabShift(io.asizeBytes);
    const slices = metaslabSlices(io.asizeBytes, shift);
    const metaslabs: Metaslab[] = [];
    for (const [i, slice] of slices.entries()) metaslabs.push(await Metaslab.format(io, i, slice, options));
    return new MetaslabGroup(io, shift, metaslabs, 0);
  }

  /** Reads every metaslab's space map as of uberblock txg `ubTxg` (EPROTO/ECKSUM/EIO name the metaslab). */
  static async load(io: VdevIo, metaslabShift: number, ubTxg: Txg, options: SpaceMapOptions = {}): Promise<MetaslabGroup> {
    if (!Number.isInteger(metaslabShift) || metaslabShift < METASLAB_SHIFT_MIN || metaslabShift > METASLAB_SHIFT_MAX) {
      throw mpError('EPROTO', `metaslab shift ${metaslabShift} outside [${METASLAB_SHIFT_MIN}, ${METASLAB_SHIFT_MAX}]`, { vdev: io.index, metaslabShift });
    }
    // Each load is a few small dependent reads: METASLAB_LOADS_IN_FLIGHT of them overlap (192
    // metaslabs of a 3 GiB vdev: 118-138 ms one by one, 83-95 ms so). The first failure in
    // metaslab order is the one reported, whatever order the reads finish in.
    // The loads read into buffers they take turns with: fresh memory for each would cost more
    // than the read (a 1 TiB vdev's space maps are 2 GiB).
    const slices = metaslabSlices(io.asizeBytes, metaslabShift);
    const buffers = new SpareBuffers(METASLAB_LOADS_IN_FLIGHT * SpaceMap.reservedBytes(2 ** metaslabShift, options));
    const metaslabs: Metaslab[] = [];
    for (let first = 0; first < slices.length; first += METASLAB_LOADS_IN_FLIGHT) {
      const batch = slices.slice(first, first + METASLAB_LOADS_IN_FLIGHT);
      const loads = await Promise.allSettled(batch.map((slice, i) => Metaslab.load(io, first + i, slice, ubTxg, options, buffers)));
      for (const load of loads) {
        if (load.status === 'rejected') throw load.reason;
        metaslabs.push(load.value);
      }
    }
    return new MetaslabGroup(io, metaslabShift, metaslabs, ubTxg);
  }

  /**
   * Allocates `sizeBytes` (a sector multiple) in `txg`; null when no metaslab has a contiguous run.
   * Stays in the current metaslab while it has room, else moves to the one with the most free
   * space. `avoidOffsets` (other copies of the same block) steers to a different metaslab when one fits.
   */
  allocate(sizeBytes: number, txg: Txg, avoidOffsets: readonly number[] = []): number | null {
    assert(Number.isSafeInteger(sizeBytes) && sizeBytes > 0 && sizeBytes % SECTOR_BYTES === 0, `bad allocation size ${sizeBytes}`);
    assert(txg > this.syncedTxg, `allocation in txg ${txg}, which has already synced (${this.syncedTxg})`);
    const fits = (ms: Metaslab | undefined): ms is Metaslab => ms !== undefined && ms.maxFreeRunBytes() >= sizeBytes;
    if (avoidOffsets.length > 0) {
      const avoid = new Set(avoidOffsets.map((o) => this.metaslabIndexOf(o)));
      let ms = this.metaslabs[this.dittoCurrent];
      if (!fits(ms) || avoid.has(ms.index)) ms = this.roomiest(sizeBytes, avoid);
      if (ms !== undefined) {
        this.dittoCurrent = ms.index;
        return ms.allocate(sizeBytes, txg);
      }
    }
    let ms = this.metaslabs[this.current];
    if (!fits(ms)) ms = this.roomiest(sizeBytes, new Set());
    if (ms === undefined) return null;
    this.current = ms.index;
    return ms.allocate(sizeBytes, txg);
  }

  /** Frees a block allocated by this group (see Metaslab.free for when it becomes allocatable). */
  free(offset: number, sizeBytes: number, txg: Txg, birthTxg: Txg): void {
    assert(Number.isSafeInteger(sizeBytes) && sizeBytes > 0 && sizeBytes % SECTOR_BYTES === 0, `bad free size ${sizeBytes}`);
    assert(txg > this.syncedTxg, `free in txg ${txg}, which has already synced (${this.syncedTxg})`);
    const ms = this.metaslabs[this.metaslabIndexOf(offset)];
    assert(ms !== undefined, `free at ${offset} outside vdev ${this.vdev}'s metaslabs`);
    ms.free(offset, sizeBytes, txg, birthTxg);
  }

  /**
   * The allocated ranges (pending frees included) less `kept`, each within one metaslab. EPROTO
   * when something in `kept` is not allocated.
   */
  allocatedExcept(kept: readonly { offset: number; asize: number }[]): Range[] {
    const trees = this.metaslabs.map((ms) => {
      const tree = new RangeTree(SECTOR_BYTES);
      for (const r of ms.snapshot().allocated) tree.add(r.start, r.size);
      return tree;
    });
    for (const k of kept) {
      const tree = trees[this.metaslabIndexOf(k.offset)];
      if (tree === undefined || !tree.contains(k.offset, k.asize)) {
        throw mpError('EPROTO', `[${k.offset}, ${k.offset + k.asize}) on vdev ${this.vdev} is kept but not allocated`, { vdev: this.vdev, offset: k.offset, asize: k.asize });
      }
      tree.remove(k.offset, k.asize);
    }
    return trees.flatMap((t) => t.ranges());
  }

  /** Asserts that [offset, offset + sizeBytes) is allocated and not being freed (a retained free). */
  checkAllocated(offset: number, sizeBytes: number): void {
    const ms = this.metaslabs[this.metaslabIndexOf(offset)];
    assert(ms !== undefined && ms.isAllocated(offset, sizeBytes), `retained free of [${offset}, ${offset + sizeBytes}) on vdev ${this.vdev}, which is not allocated`);
  }

  /** Writes txg's space map records of every metaslab that changed (volatile until the pool syncs). */
  async sync(txg: Txg): Promise<void> {
    assert(txg > this.syncedTxg && this.doneTxg === this.syncedTxg, `sync of txg ${txg} out of order (synced ${this.syncedTxg}, done ${this.doneTxg})`);
    this.syncedTxg = txg;
    this.assertNothingPendingBefore(txg);
    const dirty = this.metaslabs.filter((ms) => ms.needsSync(txg));
    for (let i = 0; i < dirty.length; i += SYNC_WRITES_IN_FLIGHT_MAX) {
      await settleAll(dirty.slice(i, i + SYNC_WRITES_IN_FLIGHT_MAX).map((ms) => ms.sync(txg)));
    }
  }

  /**
   * Called once txg's uberblock is durable, or after a txg that changed nothing and was not
   * synced: releases frees that are now TXG_DEFER txgs old.
   */
  syncDone(txg: Txg): void {
    assert(txg >= this.syncedTxg && txg > this.doneTxg, `syncDone of txg ${txg} out of order (synced ${this.syncedTxg}, done ${this.doneTxg})`);
    if (txg > this.syncedTxg) {
      this.assertNothingPendingBefore(txg + 1);
      this.syncedTxg = txg;
    }
    this.doneTxg = txg;
    for (const ms of this.metaslabs) ms.syncDone(txg);
  }

  /** Live blocks and deferred frees: everything not allocatable. */
  allocatedBytes(): number {
    return this.metaslabs.reduce((sum, ms) => sum + ms.allocatedBytes(), 0);
  }

  /** Allocatable now. */
  freeBytes(): number {
    return this.metaslabs.reduce((sum, ms) => sum + ms.freeBytes(), 0);
  }

  deferredBytes(): number {
    return this.metaslabs.reduce((sum, ms) => sum + ms.deferredBytes(), 0);
  }

  /** Bytes that could ever be allocated: the metaslabs less their space map areas. */
  capacityBytes(): number {
    return this.metaslabs.reduce((sum, ms) => sum + ms.sizeBytes - ms.reservedBytes, 0);
  }

  /** The whole vdev's accounting (concatenated metaslab snapshots). */
  snapshot(): MetaslabSnapshot {
    const out: MetaslabSnapshot = { free: [], allocated: [], deferred: new Map() };
    for (const ms of this.metaslabs) {
      const s = ms.snapshot();
      out.free.push(...s.free);
      out.allocated.push(...s.allocated);
      for (const [t, r] of s.deferred) out.deferred.set(t, [...(out.deferred.get(t) ?? []), ...r]);
    }
    return out;
  }

  checkInvariants(): void {
    let at = 0;
    for (const [i, ms] of this.metaslabs.entries()) {
      assert(ms.index === i && ms.start === at, `vdev ${this.vdev}: metaslab ${i} misplaced`);
      ms.checkInvariants();
      at += ms.sizeBytes;
    }
    assert(at <= this.io.asizeBytes && this.io.asizeBytes - at < 2 ** this.metaslabShift, `vdev ${this.vdev}: metaslabs do not tile the vdev`);
    assert(this.allocatedBytes() + this.freeBytes() === this.capacityBytes(), `vdev ${this.vdev}: space does not add up`);
  }

  private assertNothingPendingBefore(txg: number): void {
    for (const ms of this.metaslabs) assert(!ms.hasPendingBefore(txg), `metaslab ${ms.index}: changes of a txg before ${txg} were never synced`);
  }

  private metaslabIndexOf(offset: number): number {
    return Math.floor(offset / 2 ** this.metaslabShift);
  }

  /** The metaslab with the most free bytes that has a run of sizeBytes (lowest index on ties). */
  private roomiest(sizeBytes: number, avoid: ReadonlySet<number>): Metaslab | undefined {
    let best: Metaslab | undefined;
    for (const ms of this.metaslabs) {
      if (avoid.has(ms.index) || ms.maxFreeRunBytes() < sizeBytes) continue;
      if (best === undefined || ms.freeBytes() > best.freeBytes()) best = ms;
    }
    return best;
  }
}
