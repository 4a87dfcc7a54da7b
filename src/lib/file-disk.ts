// FileDisk: a Disk on a real file or block device, with positional reads and writes and
// fdatasync. Short reads and writes are retried until complete; the OS's EIO and ENOSPC become
// coded errors. Used by the daemon, the CLI and the real-file crash tests.
//
// Flushing ahead: the OS keeps written pages in its cache until something flushes them, so
// without help a txg's writes would all reach the device in its sync's fdatasync, the device idle
// while the pool wrote and the pool waiting while the device works. Every FLUSH_AHEAD_BYTES
// written, FileDisk starts an fdatasync in the background (one at a time); sync() waits for it
// and then flushes as before. Linux reports a writeback error to one flush of an open file only,
// so an error the background flush meets is kept and thrown by the next sync(): dropping it would
// let that sync() succeed over writes the device lost.
//
// Small writes run on the calling thread: a write into the page cache is a copy, and handing it to
// libuv's thread pool costs more than the copy (on the project's 2-core VM, 128 KiB took 13-15 µs
// as a direct pwrite and 45-55 µs of wall time through the pool, most of it waking the pool's
// thread). A txg sync of scattered changes is mostly such writes. Writes larger than
// INLINE_WRITE_BYTES_MAX (merged runs, up to 4 MiB) still go to the pool, where their copy runs
// beside the caller's work. A write into the page cache waits for the device only when the OS
// throttles a writer that has dirtied too much, which flushing ahead makes rare. Reads stay on the
// pool: one that misses the page cache waits for the device, and the caller must not stall
// meanwhile. fdatasync and writeDurable wait for the device, so they stay on the pool too.

import { constants, writeSync, writevSync } from 'node:fs';
import { open, stat, readFile, realpath, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { assert } from './assert.js';
import { skipBytes } from './bytes.js';
import { type Disk, checkDiskRange, checkDiskSize, checkReadInto } from './disk.js';
import { mpError, MirrorpoolError } from './errors.js';

export interface FileDiskOptions {
  /** Create a new file of this size; EEXIST if the path exists. */
  createBytes?: number;
}

function mapOsError(e: unknown, what: string, details: Record<string, unknown>): unknown {
  if (e instanceof MirrorpoolError) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'EIO':
      return mpError('EIO', `${what}: device I/O error`, details, e);
    case 'ENOSPC':
    case 'EDQUOT':
      return mpError('ENOSPC', `${what}: no space left on device`, details, e);
    case 'ENOENT':
      return mpError('ENOENT', `${what}: no such file`, details, e);
    case 'EEXIST':
      return mpError('EEXIST', `${what}: file exists`, details, e);
    case 'EACCES':
    case 'EPERM':
      return mpError('EAUTH', `${what}: permission denied`, details, e);
    case 'EISDIR':
      return mpError('EINVAL', `${what}: is a directory`, details, e);
    default:
      return e;
  }
}

async function blockDeviceBytes(path: string): Promise<number> {
  const name = basename(await realpath(path));
  const sectors = Number((await readFile(`/sys/class/block/${name}/size`, 'utf8')).trim());
  assert(Number.isSafeInteger(sectors), `block device ${name}: unreadable size`);
  return sectors * 512;
}

/**
 * Bytes written after which a flush starts in the background (see the header). Measured on a
 * 1 GiB receive from a file: the txg syncs spent 0.40-0.48 s in fdatasync instead of 1.0 s, and
 * the receive took 3.4-3.8 s instead of 4.0-4.5 s (4 and 16 MiB did no better).
 */
export const FLUSH_AHEAD_BYTES = 8 * 1024 * 1024;

/** Writes up to this size run on the calling thread (see the header). */
export const INLINE_WRITE_BYTES_MAX = 256 * 1024;

/** Buffers one writev system call takes (Linux's IOV_MAX). */
const IOV_MAX = 1024;

export class FileDisk implements Disk {
  readonly path: string;
  private readonly fh: FileHandle;
  private bytes: number;
  private readonly blockDevice: boolean;
  private closed = false;
  /** The O_DSYNC handle of writeDurable, opened on first use. */
  private dsync: FileHandle | undefined;
  /** Bytes written since the last flush began. */
  private unflushedBytes = 0;
  /** The flush running in the background, if any (see the header). */
  private flushingAhead: Promise<void> | null = null;
  /** The first error a background flush met, for the next sync() to throw. */
  private flushAheadError: Error | null = null;

  private constructor(path: string, fh: FileHandle, bytes: number, blockDevice: boolean) {
    this.path = path;
    this.fh = fh;
    this.bytes = bytes;
    this.blockDevice = blockDevice;
  }

  static async open(path: string, options: FileDiskOptions = {}): Promise<FileDisk> {
    const details = { path };
    try {
      if (options.createBytes !== undefined) {
        checkDiskSize(options.createBytes);
        const fh = await open(path, 'wx+');
        await fh.truncate(options.createBytes);
        await fh.sync();
        return new FileDisk(path, fh, options.createBytes, false);
      }
      const st = await stat(path);
      if (!st.isFile() && !st.isBlockDevice()) throw mpError('EINVAL', `${path} is not a file or block device`, details);
      const bytes = st.isBlockDevice() ? await blockDeviceBytes(path) : st.size;
      const fh = await open(path, 'r+');
      // A trailing partial sector is not addressable.
      return new FileDisk(path, fh, bytes - (bytes % 512), st.isBlockDevice());
    } catch (e) {
      throw mapOsError(e, `open ${path}`, details);
    }
  }

  size(): number {
    return this.bytes;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    assert(!this.closed, 'FileDisk used after close');
    checkDiskRange(offset, length, this.bytes);
    checkReadInto(length, into);
    const buf = into ?? new Uint8Array(length);
    let done = 0;
    try {
      while (done < length) {
        const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) {
          throw mpError('EIO', `${this.path}: unexpected end of file at ${offset + done}`, { path: this.path, offset });
        }
        done += bytesRead;
      }
    } catch (e) {
      throw mapOsError(e, `read ${this.path}`, { path: this.path, offset, length });
    }
    return buf;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    assert(!this.closed, 'FileDisk used after close');
    checkDiskRange(offset, data.length, this.bytes);
    try {
      if (data.length <= INLINE_WRITE_BYTES_MAX) writeAllInline(this.fh, offset, data);
      else await writeAll(this.fh, offset, data);
    } catch (e) {
      throw mapOsError(e, `write ${this.path}`, { path: this.path, offset, length: data.length });
    }
    this.wrote(data.length);
  }

  /** One gathering write of the parts (as many as the system takes per call; short writes go on). */
  async writev(offset: number, parts: readonly Uint8Array[]): Promise<void> {
    assert(!this.closed, 'FileDisk used after close');
    let length = 0;
    for (const p of parts) length += p.length;
    checkDiskRange(offset, length, this.bytes);
    let done = 0;
    let rest = parts.filter((p) => p.length > 0);
    const inline = length <= INLINE_WRITE_BYTES_MAX;
    try {
      while (rest.length > 0) {
        const batch = rest.slice(0, IOV_MAX);
        const bytesWritten = inline ? writevSync(this.fh.fd, batch, offset + done) : (await this.fh.writev(batch, offset + done)).bytesWritten;
        assert(bytesWritten > 0, 'writev made no progress');
        done += bytesWritten;
        rest = skipBytes(rest, bytesWritten);
      }
    } catch (e) {
      throw mapOsError(e, `write ${this.path}`, { path: this.path, offset, length });
    }
    this.wrote(length);
  }

  /** Writes through a second handle opened with O_DSYNC: only this range is flushed. */
  async writeDurable(offset: number, data: Uint8Array): Promise<void> {
    assert(!this.closed, 'FileDisk used after close');
    checkDiskRange(offset, data.length, this.bytes);
    try {
      this.dsync ??= await open(this.path, constants.O_RDWR | constants.O_DSYNC);
      await writeAll(this.dsync, offset, data);
    } catch (e) {
      throw mapOsError(e, `write ${this.path}`, { path: this.path, offset, length: data.length });
    }
  }

  async sync(): Promise<void> {
    assert(!this.closed, 'FileDisk used after close');
    this.unflushedBytes = 0;
    try {
      await this.flushingAhead;
      await this.fh.datasync();
      const ahead = this.flushAheadError;
      this.flushAheadError = null;
      if (ahead !== null) throw ahead;
    } catch (e) {
      throw mapOsError(e, `sync ${this.path}`, { path: this.path });
    }
  }

  /** Counts `bytes` written; starts a background flush every FLUSH_AHEAD_BYTES (see the header). */
  private wrote(bytes: number): void {
    this.unflushedBytes += bytes;
    if (this.unflushedBytes < FLUSH_AHEAD_BYTES || this.flushingAhead !== null) return;
    this.unflushedBytes = 0;
    this.flushingAhead = this.fh.datasync().then(
      () => {
        this.flushingAhead = null;
      },
      (e: unknown) => {
        this.flushingAhead = null;
        this.flushAheadError ??= e instanceof Error ? e : new Error(String(e));
      },
    );
  }

  async resize(bytes: number): Promise<void> {
    assert(!this.closed, 'FileDisk used after close');
    checkDiskSize(bytes);
    if (this.blockDevice) throw mpError('ENOTSUP', `${this.path}: a block device cannot be resized`, { path: this.path });
    try {
      await this.fh.truncate(bytes);
    } catch (e) {
      throw mapOsError(e, `resize ${this.path}`, { path: this.path, bytes });
    }
    this.bytes = bytes;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flushingAhead;
    await this.dsync?.close();
    await this.fh.close();
  }
}

/** writeAll on the calling thread (see INLINE_WRITE_BYTES_MAX). */
function writeAllInline(fh: FileHandle, offset: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) {
    const bytesWritten = writeSync(fh.fd, data, done, data.length - done, offset + done);
    assert(bytesWritten > 0, 'write made no progress');
    done += bytesWritten;
  }
}

/** Writes all of `data` at `offset`, retrying short writes. */
async function writeAll(fh: FileHandle, offset: number, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, offset + done);
    assert(bytesWritten > 0, 'write made no progress');
    done += bytesWritten;
  }
}
