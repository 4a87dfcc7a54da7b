// FileDisk: a Disk on a real file or block device, with positional reads and writes and
// fdatasync. Short reads and writes are retried until complete; the OS's EIO and ENOSPC become
// coded errors. Used by the daemon, the CLI and the real-file crash tests.

import { constants } from 'node:fs';
import { open, stat, readFile, realpath, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { assert } from './assert.js';
import { skipBytes } from './bytes.js';
import { type Disk, checkDiskRange, checkDiskSize } from './disk.js';
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

  async read(offset: number, length: number): Promise<Uint8Array> {
    assert(!this.closed, 'FileDisk used after close');
    checkDiskRange(offset, length, this.bytes);
    const buf = new Uint8Array(length);
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
      await writeAll(this.fh, offset, data);
    } catch (e) {
      throw mapOsError(e, `write ${this.path}`, { path: this.path, offset, length: data.length });
    }
  }

  /** One gathering write of the parts (as many as the system takes per call; short writes go on). */
  async writev(offset: number, parts: readonly Uint8Array[]): Promise<void> {
    assert(!this.closed, 'FileDisk used after close');
    let length = 0;
    for (const p of parts) length += p.length;
    checkDiskRange(offset, length, this.bytes);
    let done = 0;
    let rest = parts.filter((p) => p.length > 0);
    try {
      while (rest.length > 0) {
        const { bytesWritten } = await this.fh.writev(rest.slice(0, IOV_MAX), offset + done);
        assert(bytesWritten > 0, 'writev made no progress');
        done += bytesWritten;
        rest = skipBytes(rest, bytesWritten);
      }
    } catch (e) {
      throw mapOsError(e, `write ${this.path}`, { path: this.path, offset, length });
    }
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
    try {
      await this.fh.datasync();
    } catch (e) {
      throw mapOsError(e, `sync ${this.path}`, { path: this.path });
    }
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
    await this.dsync?.close();
    await this.fh.close();
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
