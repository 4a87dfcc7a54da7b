// SimDisk: an in-memory Disk for crash and fault tests. It keeps two images: `current` (what reads
// see) and `durable` (what survives a crash), plus the writes made since the last sync. crash()
// keeps, drops or tears (sector by sector) each of those writes, chosen by the injected Random, and
// the disk then comes back as a rebooted device would. Faults are rules matched against each I/O:
// EIO, ENOSPC, lost writes, misdirected writes and bit flips on read; flipBit() corrupts at rest.
// With a Clock and latency set, every operation takes that long in (simulated) time.

import { assert } from './assert.js';
import type { Clock } from './clock.js';
import { type Disk, checkDiskRange, checkDiskSize, checkReadInto, writeGathered } from './disk.js';
import { mpError } from './errors.js';
import { limits } from './limits.js';
import type { Random } from './random.js';

export type DiskOp = 'read' | 'write' | 'sync';

export type DiskFaultEffect =
  | { kind: 'eio' }
  | { kind: 'enospc' }
  | { kind: 'lost' }
  | { kind: 'misdirect'; shiftBytes: number }
  | { kind: 'flip' };

export interface DiskFaultRule {
  op: DiskOp;
  effect: DiskFaultEffect;
  /** Byte range [start, end) an I/O must overlap to match; every I/O when absent. */
  range?: readonly [number, number];
  /** Chance that a matching I/O is hit (default 1). */
  probability?: number;
  /** How many I/Os the rule hits before it retires (default: no limit). */
  times?: number;
}

export type CrashMode = 'random' | 'keep' | 'drop' | 'tear';

export interface CrashReport {
  kept: number;
  dropped: number;
  torn: number;
}

export interface SimDiskOptions {
  sizeBytes: number;
  random: Random;
  clock?: Clock;
  latencyMs?: { read?: number; write?: number; sync?: number };
}

type Pending = { kind: 'write'; offset: number; data: Uint8Array } | { kind: 'resize'; bytes: number };

const VALID_EFFECTS: Record<DiskOp, readonly DiskFaultEffect['kind'][]> = {
  read: ['eio', 'flip'],
  write: ['eio', 'enospc', 'lost', 'misdirect'],
  sync: ['eio'],
};

function resized(buf: Uint8Array, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  out.set(buf.subarray(0, Math.min(bytes, buf.length)));
  return out;
}

export class SimDisk implements Disk {
  private current: Uint8Array;
  private durable: Uint8Array;
  private pending: Pending[] = [];
  private rules: DiskFaultRule[] = [];
  private generation = 0;
  private closed = false;
  private readonly random: Random;
  private readonly clock: Clock | undefined;
  private readonly latency: { read: number; write: number; sync: number };
  readonly stats = { reads: 0, writes: 0, syncs: 0, bytesRead: 0, bytesWritten: 0, faults: 0 };

  constructor(options: SimDiskOptions) {
    checkDiskSize(options.sizeBytes, limits.simDiskBytesMax);
    this.current = new Uint8Array(options.sizeBytes);
    this.durable = new Uint8Array(options.sizeBytes);
    this.random = options.random;
    this.clock = options.clock;
    this.latency = { read: 0, write: 0, sync: 0, ...options.latencyMs };
    assert(this.clock !== undefined || (this.latency.read | this.latency.write | this.latency.sync) === 0, 'latency needs a clock');
  }

  size(): number {
    return this.current.length;
  }

  /** Writes made since the last sync (what a crash now could lose). */
  unsyncedWrites(): number {
    return this.pending.length;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.checkOpen();
    checkDiskRange(offset, length, this.size());
    checkReadInto(length, into);
    await this.delay('read');
    const rule = this.match('read', offset, length);
    if (rule?.effect.kind === 'eio') throw mpError('EIO', `simulated read error at ${offset}`, { offset, length });
    const out = this.current.slice(offset, offset + length);
    if (rule?.effect.kind === 'flip' && length > 0) {
      const bit = this.random.int(length * 8);
      out[bit >>> 3] = (out[bit >>> 3] ?? 0) ^ (1 << (bit & 7));
    }
    this.stats.reads++;
    this.stats.bytesRead += length;
    if (into === undefined) return out;
    into.set(out);
    return into;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.checkOpen();
    checkDiskRange(offset, data.length, this.size());
    const copy = data.slice();
    await this.delay('write');
    const rule = this.match('write', offset, data.length);
    const details = { offset, length: data.length };
    if (rule?.effect.kind === 'eio') throw mpError('EIO', `simulated write error at ${offset}`, details);
    if (rule?.effect.kind === 'enospc') throw mpError('ENOSPC', `simulated full device at ${offset}`, details);
    this.stats.writes++;
    this.stats.bytesWritten += data.length;
    if (rule?.effect.kind === 'lost') return;
    const target = rule?.effect.kind === 'misdirect' ? offset + rule.effect.shiftBytes : offset;
    if (target < 0 || target + copy.length > this.size()) return; // misdirected off the device: gone
    this.current.set(copy, target);
    this.pending.push({ kind: 'write', offset: target, data: copy });
  }

  /** One write of the parts gathered (a simulated device has nothing to gain from a gathering write). */
  writev(offset: number, parts: readonly Uint8Array[]): Promise<void> {
    return writeGathered(this, offset, parts);
  }

  async writeDurable(offset: number, data: Uint8Array): Promise<void> {
    await this.write(offset, data);
    this.syncRange(offset, data.length);
  }

  /**
   * Makes durable every unsynced write overlapping [offset, offset+length), in order (a range
   * flush may flush more than asked; it never leaves an older overlapping write to land later).
   */
  syncRange(offset: number, length: number): void {
    this.checkOpen();
    const keep: Pending[] = [];
    for (const p of this.pending) {
      if (p.kind === 'write' && p.offset < offset + length && p.offset + p.data.length > offset) this.applyDurable(p, 'keep');
      else keep.push(p);
    }
    this.pending = keep;
  }

  async sync(): Promise<void> {
    this.checkOpen();
    const upTo = this.pending.length;
    await this.delay('sync');
    if (this.match('sync', 0, this.size())?.effect.kind === 'eio') throw mpError('EIO', 'simulated sync error');
    for (const p of this.pending.slice(0, upTo)) this.applyDurable(p, 'keep');
    this.pending = this.pending.slice(upTo);
    this.stats.syncs++;
  }

  async resize(bytes: number): Promise<void> {
    this.checkOpen();
    checkDiskSize(bytes, limits.simDiskBytesMax);
    await this.delay('write');
    this.current = resized(this.current, bytes);
    this.pending.push({ kind: 'resize', bytes });
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  /** Opens the disk again after close() (the same device, contents as they are). */
  reopen(): void {
    this.closed = false;
  }

  /**
   * Power loss. Every unsynced write is kept, dropped or torn (a random subset of its sectors
   * lands); `random` picks one of the three per write. The disk is then usable again with only
   * what survived; operations still in flight fail with EIO.
   */
  crash(mode: CrashMode = 'random'): CrashReport {
    const report: CrashReport = { kept: 0, dropped: 0, torn: 0 };
    const modes: readonly CrashMode[] = ['keep', 'drop', 'tear'];
    for (const p of this.pending) {
      const m = mode === 'random' ? modes[this.random.int(3)] : mode;
      assert(m !== undefined && m !== 'random');
      report[m === 'keep' ? 'kept' : m === 'drop' ? 'dropped' : 'torn']++;
      this.applyDurable(p, m);
    }
    this.pending = [];
    this.current = this.durable.slice();
    this.generation++;
    this.closed = false;
    return report;
  }

  /** Flips one bit at rest (in both the durable and the current image). */
  flipBit(offset: number, bit: number): void {
    assert(Number.isInteger(offset) && offset >= 0 && offset < this.size(), 'flipBit: offset out of range');
    assert(Number.isInteger(bit) && bit >= 0 && bit < 8, 'flipBit: bit out of range');
    for (const img of [this.current, this.durable]) {
      if (offset < img.length) img[offset] = (img[offset] ?? 0) ^ (1 << bit);
    }
  }

  /** Bytes as they would survive a crash that keeps nothing unsynced (for checks). */
  durableBytes(offset: number, length: number): Uint8Array {
    return this.durable.slice(offset, offset + length);
  }

  injectFault(rule: DiskFaultRule): { remove(): void } {
    if (!VALID_EFFECTS[rule.op].includes(rule.effect.kind)) {
      throw mpError('EINVAL', `fault '${rule.effect.kind}' does not apply to ${rule.op}`, { op: rule.op });
    }
    const p = rule.probability ?? 1;
    if (!(p >= 0 && p <= 1)) throw mpError('EINVAL', `fault probability must be in [0, 1], got ${p}`);
    const stored = { ...rule };
    this.rules.push(stored);
    return { remove: () => void (this.rules = this.rules.filter((r) => r !== stored)) };
  }

  clearFaults(): void {
    this.rules = [];
  }

  private match(op: DiskOp, offset: number, length: number): DiskFaultRule | undefined {
    for (const rule of this.rules) {
      if (rule.op !== op) continue;
      if (rule.range !== undefined && (offset + length <= rule.range[0] || offset >= rule.range[1])) continue;
      if (rule.probability !== undefined && !this.random.chance(rule.probability)) continue;
      if (rule.times !== undefined) {
        if (rule.times <= 0) continue;
        rule.times--;
      }
      this.stats.faults++;
      return rule;
    }
    return undefined;
  }

  private applyDurable(p: Pending, mode: 'keep' | 'drop' | 'tear'): void {
    if (mode === 'drop') return;
    if (p.kind === 'resize') {
      this.durable = resized(this.durable, p.bytes);
      return;
    }
    const s = limits.sectorBytes;
    for (let pos = 0; pos < p.data.length; pos += s) {
      if (mode === 'tear' && this.random.int(2) === 0) continue;
      if (p.offset + pos + s <= this.durable.length) this.durable.set(p.data.subarray(pos, pos + s), p.offset + pos);
    }
  }

  private checkOpen(): void {
    assert(!this.closed, 'SimDisk used after close');
  }

  private async delay(op: DiskOp): Promise<void> {
    const ms = this.latency[op];
    if (this.clock === undefined || ms === 0) return;
    const generation = this.generation;
    await this.clock.sleep(ms);
    if (generation !== this.generation) throw mpError('EIO', 'device lost power during the operation', { op });
  }
}
