// A power switch for simulated machines: PowerCutDisk wraps a SimDisk and counts each write and
// sync on a PowerSwitch shared by every disk of the machine; from the chosen count on, every I/O
// fails with EIO, as after a power cut. A test then crashes the SimDisks (which keep, drop or tear
// unsynced writes) and imports again, so it can cut power at every I/O boundary of a workload.
// Used only by tests.

import { type Disk, writeGathered } from './disk.js';
import { mpError } from './errors.js';
import type { SimDisk } from './sim-disk.js';

/** Shared by the disks of one machine: counts I/Os and cuts power at the chosen one. */
export class PowerSwitch {
  ops = 0;
  cutAt = Number.POSITIVE_INFINITY;

  get off(): boolean {
    return this.ops >= this.cutAt;
  }

  tick(): void {
    if (this.off) throw mpError('EIO', 'power is off');
    this.ops++;
  }
}

export class PowerCutDisk implements Disk {
  constructor(
    readonly inner: SimDisk,
    private readonly power: PowerSwitch,
  ) {}

  size(): number {
    return this.inner.size();
  }

  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    if (this.power.off) return Promise.reject(mpError('EIO', 'power is off'));
    return this.inner.read(offset, length, into);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.power.tick();
    await this.inner.write(offset, data);
  }

  /** Through write(), so a subclass that changes writes sees these too. */
  writev(offset: number, parts: readonly Uint8Array[]): Promise<void> {
    return writeGathered(this, offset, parts);
  }

  /** Two steps, so a power cut can fall between the write and its flush (a torn log block). */
  async writeDurable(offset: number, data: Uint8Array): Promise<void> {
    this.power.tick();
    await this.inner.write(offset, data);
    this.power.tick();
    this.inner.syncRange(offset, data.length);
  }

  async sync(): Promise<void> {
    this.power.tick();
    await this.inner.sync();
  }

  async resize(bytes: number): Promise<void> {
    this.power.tick();
    await this.inner.resize(bytes);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
