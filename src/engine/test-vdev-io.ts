// TestVdevIo: a small, complete VdevIo over one Disk (or several Disks as mirror copies) for the
// space tests, without labels: DVA offset 0 is disk byte `dataStartBytes`. It follows the VdevIo
// contract of types.ts: reads try each copy until `accept` takes the bytes, rewrite the copies
// that failed (self-heal), and throw ECKSUM (some copy read but rejected) or EIO (none readable);
// writes go to every copy and fail with EIO only when no copy took them. The pool uses vdev.ts's
// TopVdev instead; this one exists so space-map/metaslab tests need nothing but lib's SimDisk.
// `beforeWrite` lets a crash test stop the world at an exact write.

import { type Disk, assert, hasCode, mpError } from '../lib/index.js';
import type { VdevIo } from './types.js';

export interface TestVdevIoOptions {
  readonly index?: number;
  /** Disk byte of DVA offset 0 (default 0). */
  readonly dataStartBytes?: number;
  /** Allocatable bytes (default: the smallest disk minus dataStartBytes). */
  readonly asizeBytes?: number;
}

export class TestVdevIo implements VdevIo {
  readonly index: number;
  readonly asizeBytes: number;
  private readonly start: number;
  readonly stats = { reads: 0, writes: 0, heals: 0, rejected: 0 };
  /** Called before each write with its DVA range; may throw to fail that write (crash tests). */
  beforeWrite: ((offset: number, length: number) => void) | undefined;

  constructor(readonly disks: readonly Disk[], options: TestVdevIoOptions = {}) {
    assert(disks.length >= 1, 'TestVdevIo needs a disk');
    this.index = options.index ?? 0;
    this.start = options.dataStartBytes ?? 0;
    const smallest = Math.min(...disks.map((d) => d.size()));
    this.asizeBytes = options.asizeBytes ?? smallest - this.start;
    assert(this.asizeBytes > 0 && this.start + this.asizeBytes <= smallest, 'TestVdevIo: bad layout');
  }

  async read(offset: number, length: number, accept?: (bytes: Uint8Array) => boolean, into?: Uint8Array): Promise<Uint8Array> {
    this.checkRange(offset, length);
    this.stats.reads++;
    const failed: Disk[] = [];
    let rejected = false;
    for (const disk of this.disks) {
      let bytes: Uint8Array;
      try {
        bytes = await disk.read(this.start + offset, length, into);
      } catch (e) {
        if (!hasCode(e, 'EIO')) throw e;
        failed.push(disk);
        continue;
      }
      if (accept !== undefined && !accept(bytes)) {
        rejected = true;
        this.stats.rejected++;
        failed.push(disk);
        continue;
      }
      await this.heal(failed, offset, bytes);
      return bytes;
    }
    const details = { vdev: this.index, offset, length };
    if (rejected) throw mpError('ECKSUM', 'no copy passed its check', details);
    throw mpError('EIO', 'no copy could be read', details);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.checkRange(offset, data.length);
    this.beforeWrite?.(offset, data.length);
    this.stats.writes++;
    let written = 0;
    for (const disk of this.disks) {
      try {
        await disk.write(this.start + offset, data);
        written++;
      } catch (e) {
        if (!hasCode(e, 'EIO') && !hasCode(e, 'ENOSPC')) throw e;
      }
    }
    if (written === 0) throw mpError('EIO', 'no copy could be written', { vdev: this.index, offset, length: data.length });
  }

  /** Syncs every copy (what the pool does before writing an uberblock). */
  async sync(): Promise<void> {
    for (const disk of this.disks) await disk.sync();
  }

  private async heal(failed: readonly Disk[], offset: number, bytes: Uint8Array): Promise<void> {
    for (const disk of failed) {
      try {
        await disk.write(this.start + offset, bytes);
        this.stats.heals++;
      } catch (e) {
        if (!hasCode(e, 'EIO') && !hasCode(e, 'ENOSPC')) throw e;
      }
    }
  }

  private checkRange(offset: number, length: number): void {
    if (!(Number.isSafeInteger(offset) && offset >= 0 && Number.isSafeInteger(length) && length > 0 && offset + length <= this.asizeBytes)) {
      throw mpError('EINVAL', `vdev I/O [${offset}, +${length}) outside [0, ${this.asizeBytes})`, { vdev: this.index, offset, length });
    }
  }
}
