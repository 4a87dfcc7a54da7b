// SpaceAllocator: block placement over every top-level vdev of a pool (one MetaslabGroup each).
// Places the copies of a block on distinct vdevs where possible, rotating the starting vdev
// after it has taken a share of writes proportional to its free space (so writes stripe across
// vdevs in runs, and emptier vdevs fill faster), and falls back to another metaslab of the same
// vdev when there are fewer vdevs than copies. Called by the block layer while a txg syncs, and by
// the pool's txg sync (sync, syncDone) and import (load each group, addGroup).
//
// Invariants: every returned DVA is allocated in its group for the given txg; no two copies of one
// block share a range; the group accounting invariants (metaslab.ts) hold for every group.

import { assert, mpError } from '../lib/index.js';
import type { Dva, Txg } from './types.js';
import { layout } from './types.js';
import { type MetaslabGroup, settleAll } from './metaslab.js';

/** Bytes a vdev takes in a row before the rotor moves on, at average free space. */
export const ROTOR_RUN_BYTES = 512 * 1024;

export interface AllocateOptions {
  /**
   * Metadata: placing fewer copies than asked is acceptable (at least one). For data (default)
   * every copy must be placed, else ENOSPC and nothing stays allocated.
   */
  readonly metadata?: boolean;
}

export interface VdevSpace {
  readonly vdev: number;
  readonly allocatedBytes: number;
  readonly freeBytes: number;
  readonly deferredBytes: number;
  readonly capacityBytes: number;
}

export class SpaceAllocator {
  private readonly groups: MetaslabGroup[] = [];
  /** Position in `groups` of the vdev that takes the next first copy. */
  private rotor = 0;
  private rotorRunBytes = 0;
  /** The rotor vdev's run length, set when the rotor moves (recomputing per block would cost a scan). */
  private rotorShareBytes = ROTOR_RUN_BYTES;
  private retainTxg = 0;
  private retained: Dva[] = [];

  constructor(groups: readonly MetaslabGroup[] = []) {
    for (const g of groups) this.addGroup(g);
  }

  /** Adds a top-level vdev (its index must be new). */
  addGroup(group: MetaslabGroup): void {
    assert(!this.groups.some((g) => g.vdev === group.vdev), `vdev ${group.vdev} already has a metaslab group`);
    this.groups.push(group);
    this.groups.sort((a, b) => a.vdev - b.vdev);
  }

  group(vdev: number): MetaslabGroup {
    const g = this.groups.find((x) => x.vdev === vdev);
    assert(g !== undefined, `no metaslab group for vdev ${vdev}`);
    return g;
  }

  /**
   * Allocates `copies` (1..3) DVAs of `sizeBytes` (a sector multiple) in `txg`, on distinct vdevs
   * where possible. ENOSPC (details: sizeBytes, copies, freeBytes) when not even one copy fits, or
   * for data when not every copy fits.
   */
  allocate(sizeBytes: number, copies: number, txg: Txg, options: AllocateOptions = {}): Dva[] {
    assert(Number.isSafeInteger(sizeBytes) && sizeBytes > 0 && sizeBytes % layout.sectorBytes === 0, `bad allocation size ${sizeBytes}`);
    assert(Number.isInteger(copies) && copies >= 1 && copies <= layout.dvasMax, `bad copy count ${copies}`);
    assert(this.groups.length > 0, 'allocation with no vdevs');
    const first = this.placeFirst(sizeBytes, txg);
    const dvas: Dva[] = first === null ? [] : [first];
    if (first !== null) this.placeMore(dvas, sizeBytes, copies, txg);
    if (dvas.length === copies || (dvas.length > 0 && options.metadata === true)) return dvas;
    for (const d of dvas) this.group(d.vdev).free(d.offset, d.asize, txg, txg);
    throw mpError('ENOSPC', `no space for ${copies} cop${copies === 1 ? 'y' : 'ies'} of ${sizeBytes} bytes`, {
      sizeBytes, copies, placed: dvas.length, freeBytes: this.freeBytes(),
    });
  }

  /**
   * Frees one DVA of a block born in `birthTxg` (immediately when born in `txg`, else deferred).
   * While a checkpoint retains space (retainTxg > 0), a block born at or before it stays
   * allocated instead: it is handed to the checkpoint (takeRetained) and never reused.
   */
  free(dva: Dva, txg: Txg, birthTxg: Txg): void {
    if (this.retainTxg > 0 && birthTxg <= this.retainTxg) {
      this.group(dva.vdev).checkAllocated(dva.offset, dva.asize);
      this.retained.push(dva);
      return;
    }
    this.group(dva.vdev).free(dva.offset, dva.asize, txg, birthTxg);
  }

  /** Blocks born at or before `t` are retained when freed (0: none are). */
  retainBornUpTo(t: Txg | 0): void {
    assert(this.retained.length === 0, 'retention changes with retained frees not yet taken');
    this.retainTxg = t;
  }

  get retainingTxg(): number {
    return this.retainTxg;
  }

  /** The frees retained since the last call (the checkpoint records them in the same txg). */
  takeRetained(): Dva[] {
    const out = this.retained;
    this.retained = [];
    return out;
  }

  /** Writes txg's space map records on every vdev (volatile until the pool syncs its disks). */
  async sync(txg: Txg): Promise<void> {
    await settleAll(this.groups.map((g) => g.sync(txg)));
  }

  /** After txg's uberblock is durable (or after a txg that changed nothing and was not synced). */
  syncDone(txg: Txg): void {
    for (const g of this.groups) g.syncDone(txg);
  }

  /** Allocatable bytes of every vdev (metaslabs less their space map areas). */
  totalBytes(): number {
    return this.groups.reduce((sum, g) => sum + g.capacityBytes(), 0);
  }

  /** Not allocatable: live blocks and frees still deferred (allocated + free = total). */
  allocatedBytes(): number {
    return this.groups.reduce((sum, g) => sum + g.allocatedBytes(), 0);
  }

  /** Allocatable now. */
  freeBytes(): number {
    return this.groups.reduce((sum, g) => sum + g.freeBytes(), 0);
  }

  /** Freed but not yet allocatable (part of allocatedBytes). */
  deferredBytes(): number {
    return this.groups.reduce((sum, g) => sum + g.deferredBytes(), 0);
  }

  /** The figures of one vdev. */
  vdevSpace(vdev: number): VdevSpace {
    const g = this.group(vdev);
    return {
      vdev, allocatedBytes: g.allocatedBytes(), freeBytes: g.freeBytes(),
      deferredBytes: g.deferredBytes(), capacityBytes: g.capacityBytes(),
    };
  }

  /** The figures of every vdev, by vdev index. */
  vdevSpaces(): VdevSpace[] {
    return this.groups.map((g) => this.vdevSpace(g.vdev));
  }

  checkInvariants(): void {
    for (const [i, g] of this.groups.entries()) {
      if (i > 0) assert((this.groups[i - 1] as MetaslabGroup).vdev < g.vdev, 'allocator: groups unsorted or duplicated');
      g.checkInvariants();
    }
    assert(this.rotor >= 0 && (this.groups.length === 0 || this.rotor < this.groups.length), 'allocator: rotor out of range');
  }

  /**
   * Copies after the first: the following vdevs in rotor order first, one copy each; then any
   * vdev again, each group steering away from the metaslabs its earlier copies are in.
   */
  private placeMore(dvas: Dva[], sizeBytes: number, copies: number, txg: Txg): void {
    const n = this.groups.length;
    const start = this.indexOf((dvas[0] as Dva).vdev);
    for (let k = 1; k < n && dvas.length < copies; k++) {
      const g = this.groups[(start + k) % n] as MetaslabGroup;
      const offset = g.allocate(sizeBytes, txg);
      if (offset !== null) dvas.push({ vdev: g.vdev, offset, asize: sizeBytes });
    }
    for (let progress = true; progress && dvas.length < copies; ) {
      progress = false;
      for (let k = 1; k <= n && dvas.length < copies; k++) {
        const g = this.groups[(start + k) % n] as MetaslabGroup;
        const offset = g.allocate(sizeBytes, txg, dvas.filter((d) => d.vdev === g.vdev).map((d) => d.offset));
        if (offset === null) continue;
        dvas.push({ vdev: g.vdev, offset, asize: sizeBytes });
        progress = true;
      }
    }
  }

  private indexOf(vdev: number): number {
    return this.groups.findIndex((g) => g.vdev === vdev);
  }

  /** The first copy: the rotor's vdev until it has taken its share, then the next that fits. */
  private placeFirst(sizeBytes: number, txg: Txg): Dva | null {
    const n = this.groups.length;
    if (this.rotorRunBytes >= this.rotorShareBytes) this.advanceRotor();
    for (let k = 0; k < n; k++) {
      const g = this.groups[this.rotor] as MetaslabGroup;
      const offset = g.allocate(sizeBytes, txg);
      if (offset !== null) {
        this.rotorRunBytes += sizeBytes;
        return { vdev: g.vdev, offset, asize: sizeBytes };
      }
      this.advanceRotor();
    }
    return null;
  }

  private advanceRotor(): void {
    this.rotor = (this.rotor + 1) % this.groups.length;
    this.rotorRunBytes = 0;
    this.rotorShareBytes = this.share(this.groups[this.rotor] as MetaslabGroup);
  }

  /** A vdev's run: ROTOR_RUN_BYTES scaled by its free fraction against the pool's. */
  private share(g: MetaslabGroup): number {
    let free = 0;
    let capacity = 0;
    for (const x of this.groups) {
      free += x.freeBytes();
      capacity += x.capacityBytes();
    }
    if (free === 0 || g.capacityBytes() === 0) return ROTOR_RUN_BYTES;
    const ratio = g.freeBytes() / g.capacityBytes() / (free / capacity);
    return Math.max(layout.sectorBytes, Math.round(ROTOR_RUN_BYTES * ratio));
  }
}
