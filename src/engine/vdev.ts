// Vdevs: the leaf layout of a Disk (four labels, allocatable space between them) and TopVdev, one
// top-level vdev — a plain disk or a local mirror — implementing VdevIo for the block layer.
// Invariants: DVA offset 0 is leaf byte 2 * labelBytes on every child; a mirror's asize is its
// smallest child's; a read returns only bytes its caller accepted, and copies that failed or were
// rejected are rewritten from the good one (self-heal); a write succeeds when at least one
// readable child took it. A child being resilvered (attach) takes every write but serves no read
// until its copy is complete; copyToChild fences the range it copies, so no write can land on the
// new child between the copy's read and its write (it would be overwritten with older bytes).
// Counters feed the pool's metrics. Created by the pool (create/import, via label.ts's readPool)
// and used by block-io.ts, label.ts and vdev-admin.ts (which adds and removes children).

import { type Disk, assert, hasCode, limits, mpError } from '../lib/index.js';
import { type Guid, type VdevIo, layout } from './types.js';

/** Children of one mirror. */
export const MIRROR_CHILDREN_MAX = 16;
/** Smallest allocatable space of a leaf: below this a vdev holds nothing useful. */
export const LEAF_ASIZE_BYTES_MIN = 1024 * 1024;

const LABEL = layout.labelBytes;

/** Where a leaf's labels and allocatable space lie, from its disk size alone. */
export interface LeafLayout {
  /** Byte offset of each label that fits the disk (index = label number; undefined = absent). */
  readonly labelOffsets: readonly (number | undefined)[];
  /** Leaf byte of DVA offset 0. */
  readonly dataStartBytes: number;
  /** Allocatable bytes between label 1 and label 2 (0 when the disk is too small). */
  readonly asizeBytes: number;
}

/**
 * The end is rounded down to a label multiple so all four labels are aligned and a reader finds
 * labels 2 and 3 from the size alone. A disk too small for four labels keeps only those at the
 * front that fit (import then reports it as truncated).
 */
export function leafLayout(diskBytes: number): LeafLayout {
  assert(Number.isSafeInteger(diskBytes) && diskBytes >= 0, 'leafLayout: bad disk size');
  const end = diskBytes - (diskBytes % LABEL);
  const whole = end >= layout.labelCount * LABEL;
  const labelOffsets = [
    end >= LABEL ? 0 : undefined,
    end >= 2 * LABEL ? LABEL : undefined,
    whole ? end - 2 * LABEL : undefined,
    whole ? end - LABEL : undefined,
  ];
  return { labelOffsets, dataStartBytes: 2 * LABEL, asizeBytes: whole ? end - layout.labelCount * LABEL : 0 };
}

export interface IoCounters {
  readBytes: number;
  writeBytes: number;
  readErrors: number;
  writeErrors: number;
  checksumErrors: number;
  /** Copies rewritten with good bytes. */
  heals: number;
}

function zeroCounters(): IoCounters {
  return { readBytes: 0, writeBytes: 0, readErrors: 0, writeErrors: 0, checksumErrors: 0, heals: 0 };
}

export interface LeafSpec {
  readonly disk: Disk;
  readonly guid: Guid;
  /** Last known path, for messages and the config. */
  readonly path: string;
}

/** Data writes one leaf has in flight before new ones wait to be merged. */
export const DISK_WRITES_IN_FLIGHT_MAX = 2;
/** Largest merged write. */
const MERGED_WRITE_BYTES_MAX = 4 * 1024 * 1024;

interface PendingWrite {
  readonly at: number;
  readonly data: Uint8Array;
  readonly done: () => void;
  readonly fail: (e: unknown) => void;
}

/** One child of a top-level vdev: a Disk with its labels. */
export class Leaf {
  readonly disk: Disk;
  readonly guid: Guid;
  readonly path: string;
  readonly layout: LeafLayout;
  /** Set when a write or sync failed: the copy may be stale, so reads try it last. */
  faulted = false;
  /** Being filled by attach: it takes writes but serves no read (its copy is incomplete). */
  resilvering = false;
  readonly counters: IoCounters = zeroCounters();
  private writesInFlight = 0;
  private waiting: PendingWrite[] = [];

  constructor(spec: LeafSpec) {
    this.disk = spec.disk;
    this.guid = spec.guid;
    this.path = spec.path;
    this.layout = leafLayout(spec.disk.size());
  }

  /** Reads [offset, offset+length) of the data area, into `into` when given (see Disk.read). */
  async readData(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const bytes = await this.disk.read(this.layout.dataStartBytes + offset, length, into);
    this.counters.readBytes += length;
    return bytes;
  }

  async writeData(offset: number, data: Uint8Array, durable = false): Promise<void> {
    const at = this.layout.dataStartBytes + offset;
    if (durable) await this.disk.writeDurable(at, data);
    else if (this.writesInFlight < DISK_WRITES_IN_FLIGHT_MAX) await this.issue([{ at, data, done: () => undefined, fail: () => undefined }]);
    else await new Promise<void>((done, fail) => this.waiting.push({ at, data, done, fail }));
    this.counters.writeBytes += data.length;
  }

  /**
   * One disk write for writes that lie back to back (the allocator places a txg's blocks in
   * runs), gathered from their buffers (Disk.writev); each resolves or fails with it. Writes that
   * arrive while DISK_WRITES_IN_FLIGHT_MAX are in flight wait and go out merged when one
   * completes: a txg sync makes far fewer system calls.
   */
  private async issue(run: readonly PendingWrite[]): Promise<void> {
    this.writesInFlight++;
    try {
      const first = run[0];
      assert(first !== undefined);
      if (run.length === 1) await this.disk.write(first.at, first.data);
      else await this.disk.writev(first.at, run.map((w) => w.data));
      for (const w of run) w.done();
    } catch (e) {
      for (const w of run) w.fail(e);
      throw e;
    } finally {
      this.writesInFlight--;
      this.drain();
    }
  }

  private drain(): void {
    if (this.waiting.length === 0 || this.writesInFlight >= DISK_WRITES_IN_FLIGHT_MAX) return;
    const all = this.waiting.sort((x, y) => x.at - y.at);
    this.waiting = [];
    let run: PendingWrite[] = [];
    let runBytes = 0;
    const flush = (): void => {
      if (run.length > 0) void this.issue(run).catch(() => undefined); // each member sees the error
      run = [];
      runBytes = 0;
    };
    for (const w of all) {
      const last = run.at(-1);
      if (last !== undefined && (last.at + last.data.length !== w.at || runBytes + w.data.length > MERGED_WRITE_BYTES_MAX)) flush();
      run.push(w);
      runBytes += w.data.length;
    }
    flush();
  }

  /** Reads `length` bytes at `offsetInLabel` of label `label`. */
  async readLabel(label: number, offsetInLabel: number, length: number): Promise<Uint8Array> {
    const bytes = await this.disk.read(this.labelByte(label, offsetInLabel, length), length);
    this.counters.readBytes += length;
    return bytes;
  }

  async writeLabel(label: number, offsetInLabel: number, data: Uint8Array): Promise<void> {
    await this.disk.write(this.labelByte(label, offsetInLabel, data.length), data);
    this.counters.writeBytes += data.length;
  }

  private labelByte(label: number, offsetInLabel: number, length: number): number {
    const base = this.layout.labelOffsets[label];
    assert(base !== undefined, `leaf ${this.guid}: label ${label} does not fit the disk`);
    assert(offsetInLabel >= 0 && offsetInLabel + length <= LABEL, 'label I/O outside the label');
    return base + offsetInLabel;
  }
}

export type VdevKind = 'disk' | 'mirror';

export interface TopVdevOptions {
  readonly index: number;
  readonly guid: Guid;
  readonly children: readonly LeafSpec[];
  /** Default: 'disk' for one child, 'mirror' for more. */
  readonly kind?: VdevKind;
  /** Allocatable bytes as the pool config records them; default (and maximum): the smallest child's. */
  readonly asizeBytes?: number;
}

export interface LeafStats extends IoCounters {
  readonly guid: Guid;
  readonly path: string;
  readonly faulted: boolean;
}

export interface VdevStats extends IoCounters {
  readonly index: number;
  readonly guid: Guid;
  readonly kind: VdevKind;
  readonly children: readonly LeafStats[];
}

/** Error codes a device may report for one I/O that a mirror survives (another copy may work). */
function isDeviceError(e: unknown): boolean {
  return hasCode(e, 'EIO') || hasCode(e, 'ENOSPC');
}

/** A byte range of the vdev with the I/O that covers it. */
interface Fence {
  readonly start: number;
  readonly end: number;
  readonly done: Promise<unknown>;
}

function overlaps(f: Fence, offset: number, length: number): boolean {
  return f.start < offset + length && offset < f.end;
}

export class TopVdev implements VdevIo {
  readonly index: number;
  readonly guid: Guid;
  readonly asizeBytes: number;
  /** Top-level view: bytes served to / taken from callers, failures no copy could absorb. */
  readonly counters: IoCounters = zeroCounters();
  private vdevKind: VdevKind;
  private readonly leaves: Leaf[];
  /** Writes in flight: a copy to a resilvering child waits for those overlapping its range. */
  private readonly writing = new Set<Fence>();
  /** The range copyToChild is copying: writes overlapping it wait. */
  private copying: Fence | null = null;

  constructor(options: TopVdevOptions) {
    const n = options.children.length;
    assert(n >= 1 && n <= MIRROR_CHILDREN_MAX, `a top-level vdev has 1..${MIRROR_CHILDREN_MAX} children, got ${n}`);
    this.vdevKind = options.kind ?? (n === 1 ? 'disk' : 'mirror');
    assert(this.vdevKind === 'mirror' || n === 1, "a 'disk' vdev has exactly one child");
    this.index = options.index;
    this.guid = options.guid;
    this.leaves = options.children.map((spec) => new Leaf(spec));
    const smallest = Math.min(...this.children.map((c) => c.layout.asizeBytes));
    if (smallest < LEAF_ASIZE_BYTES_MIN) {
      throw mpError('EINVAL', `vdev ${this.guid}: a disk needs at least ${LEAF_ASIZE_BYTES_MIN + 4 * LABEL} bytes`, {
        vdev: this.index,
        asizeBytes: smallest,
      });
    }
    const asize = options.asizeBytes ?? smallest;
    assert(asize % layout.sectorBytes === 0 && asize > 0 && asize <= smallest, `vdev ${this.guid}: asize ${asize} > ${smallest}`);
    this.asizeBytes = asize;
  }

  get kind(): VdevKind {
    return this.vdevKind;
  }

  get children(): readonly Leaf[] {
    return this.leaves;
  }

  /** EINVAL when `leaf` cannot join this vdev: it is smaller than the vdev, or the mirror is full. */
  checkCanAttach(leaf: Leaf): void {
    assert(!this.leaves.includes(leaf) && !this.leaves.some((c) => c.guid === leaf.guid), `vdev ${this.index}: child ${leaf.guid} twice`);
    if (this.leaves.length >= MIRROR_CHILDREN_MAX) {
      throw mpError('EINVAL', `vdev ${this.index} already has ${MIRROR_CHILDREN_MAX} children`, { vdev: this.index });
    }
    if (leaf.layout.asizeBytes < this.asizeBytes) {
      throw mpError('EINVAL', `${leaf.path} holds ${leaf.layout.asizeBytes} allocatable bytes; vdev ${this.index} needs ${this.asizeBytes}`, {
        vdev: this.index,
        path: leaf.path,
        asizeBytes: leaf.layout.asizeBytes,
        neededBytes: this.asizeBytes,
      });
    }
  }

  /**
   * Adds `leaf` as a resilvering child: from now on it takes every write, but serves no read
   * until finishResilver. EINVAL as checkCanAttach.
   */
  addResilveringChild(leaf: Leaf): void {
    this.checkCanAttach(leaf);
    leaf.resilvering = true;
    this.leaves.push(leaf);
    this.vdevKind = 'mirror';
  }

  /** The child's copy is complete: reads may use it. */
  finishResilver(leaf: Leaf): void {
    assert(this.leaves.includes(leaf) && leaf.resilvering, `vdev ${this.index}: ${leaf.guid} is not resilvering`);
    leaf.resilvering = false;
  }

  /** Removes a child (detach, or an attach undone); with one child left the vdev is a plain disk. */
  removeChild(leaf: Leaf): void {
    const at = this.leaves.indexOf(leaf);
    assert(at >= 0 && this.leaves.length > 1, `vdev ${this.index}: cannot remove child ${leaf.guid}`);
    this.leaves.splice(at, 1);
    if (this.leaves.length === 1) this.vdevKind = 'disk';
  }

  /** Resolves once every write in flight now has settled (before a removed child's disk closes). */
  async quiesceWrites(): Promise<void> {
    await Promise.allSettled([...this.writing].map((w) => w.done));
  }

  /**
   * Copies [offset, offset + length) from the readable children to the resilvering `child`.
   * The range is fenced first: writes that start later wait until the copy is written, and
   * writes already in flight are waited for before the read. So every write to the range either
   * lands on the child after the copy or is already in the bytes the copy reads.
   */
  async copyToChild(child: Leaf, offset: number, length: number): Promise<void> {
    assert(child.resilvering && this.leaves.includes(child), `vdev ${this.index}: copy to a child that is not resilvering`);
    assert(this.copying === null, `vdev ${this.index}: one copy at a time`);
    this.checkRange(offset, length);
    let release = (): void => undefined;
    const done = new Promise<void>((resolve) => (release = resolve));
    this.copying = { start: offset, end: offset + length, done };
    try {
      for (;;) {
        const busy = [...this.writing].filter((w) => overlaps(w, offset, length));
        if (busy.length === 0) break;
        await Promise.allSettled(busy.map((w) => w.done));
      }
      const bytes = await this.read(offset, length);
      await child.writeData(offset, bytes);
    } finally {
      this.copying = null;
      release();
    }
  }

  /**
   * Healthy children first, in order, then faulted ones: a faulted child may hold a stale copy,
   * which only an `accept` check could tell apart. Resilvering children are never read.
   */
  private readOrder(): Leaf[] {
    const readable = this.leaves.filter((c) => !c.resilvering);
    return [...readable.filter((c) => !c.faulted), ...readable.filter((c) => c.faulted)];
  }

  async read(offset: number, length: number, accept?: (bytes: Uint8Array) => boolean, into?: Uint8Array): Promise<Uint8Array> {
    this.checkRange(offset, length);
    const failed: Leaf[] = [];
    let rejected = false;
    for (const child of this.readOrder()) {
      let bytes: Uint8Array;
      try {
        bytes = await child.readData(offset, length, into);
      } catch (e) {
        if (!isDeviceError(e)) throw e;
        child.counters.readErrors++;
        failed.push(child);
        continue;
      }
      if (accept !== undefined && !accept(bytes)) {
        child.counters.checksumErrors++;
        rejected = true;
        failed.push(child);
        continue;
      }
      await this.heal(failed, offset, bytes);
      this.counters.readBytes += length;
      return bytes;
    }
    const details = { vdev: this.index, offset, length };
    if (rejected) {
      this.counters.checksumErrors++;
      throw mpError('ECKSUM', `vdev ${this.index}: no copy of [${offset}, ${offset + length}) passed its checksum`, details);
    }
    this.counters.readErrors++;
    throw mpError('EIO', `vdev ${this.index}: no copy of [${offset}, ${offset + length}) could be read`, details);
  }

  /** Rewrites the children that failed with the accepted bytes; a failed heal only counts. */
  private async heal(failed: readonly Leaf[], offset: number, bytes: Uint8Array): Promise<void> {
    for (const child of failed) {
      try {
        await child.writeData(offset, bytes);
        child.counters.heals++;
        this.counters.heals++;
      } catch (e) {
        if (!isDeviceError(e)) throw e;
        child.counters.writeErrors++;
        child.faulted = true;
      }
    }
  }

  /** write() that is durable on every child that took it when it resolves (Disk.writeDurable). */
  writeDurable(offset: number, data: Uint8Array): Promise<void> {
    return this.write(offset, data, true);
  }

  async write(offset: number, data: Uint8Array, durable = false): Promise<void> {
    this.checkRange(offset, data.length);
    while (this.copying !== null && overlaps(this.copying, offset, data.length)) await this.copying.done;
    // No await between the fence check and registering: a copy that starts later sees this write.
    const targets = [...this.leaves];
    const settled = Promise.allSettled(targets.map((c) => c.writeData(offset, data, durable)));
    const fence: Fence = { start: offset, end: offset + data.length, done: settled };
    this.writing.add(fence);
    const results = await settled.finally(() => this.writing.delete(fence));
    const causes: string[] = [];
    let readableFailures = 0;
    for (const [i, r] of results.entries()) {
      if (r.status === 'fulfilled') continue;
      if (!isDeviceError(r.reason)) throw r.reason;
      const child = targets[i];
      assert(child !== undefined);
      child.counters.writeErrors++;
      child.faulted = true;
      if (!child.resilvering) readableFailures++;
      causes.push(String((r.reason as { code: string }).code));
    }
    if (readableFailures === targets.filter((c) => !c.resilvering).length) {
      this.counters.writeErrors++;
      throw mpError('EIO', `vdev ${this.index}: no child took the write at ${offset}`, {
        vdev: this.index,
        offset,
        length: data.length,
        causes,
      });
    }
    this.counters.writeBytes += data.length;
  }

  /** Syncs every child disk; EIO when no readable child synced (a child that failed is marked faulted). */
  async sync(): Promise<void> {
    const targets = [...this.leaves];
    const results = await Promise.allSettled(targets.map((c) => c.disk.sync()));
    let failures = 0;
    for (const [i, r] of results.entries()) {
      if (r.status === 'fulfilled') continue;
      if (!isDeviceError(r.reason)) throw r.reason;
      const child = targets[i];
      assert(child !== undefined);
      child.counters.writeErrors++;
      child.faulted = true;
      if (!child.resilvering) failures++;
    }
    if (failures === targets.filter((c) => !c.resilvering).length) {
      this.counters.writeErrors++;
      throw mpError('EIO', `vdev ${this.index}: no child could sync`, { vdev: this.index });
    }
  }

  stats(): VdevStats {
    return {
      ...this.counters,
      index: this.index,
      guid: this.guid,
      kind: this.kind,
      children: this.children.map((c) => ({ ...c.counters, guid: c.guid, path: c.path, faulted: c.faulted })),
    };
  }

  private checkRange(offset: number, length: number): void {
    const ok =
      Number.isSafeInteger(offset) &&
      Number.isSafeInteger(length) &&
      offset >= 0 &&
      length > 0 &&
      offset % layout.sectorBytes === 0 &&
      length % layout.sectorBytes === 0 &&
      length <= limits.diskIoBytesMax &&
      offset + length <= this.asizeBytes;
    if (!ok) {
      throw mpError('EINVAL', `vdev ${this.index}: I/O [${offset}, +${length}) outside its ${this.asizeBytes} bytes`, {
        vdev: this.index,
        offset,
        length,
      });
    }
  }
}
