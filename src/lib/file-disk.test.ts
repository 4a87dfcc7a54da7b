import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { diskContract } from './disk.contract.js';
import type { ErrorCode } from './errors.js';
import { FLUSH_AHEAD_BYTES, FileDisk, INLINE_WRITE_BYTES_MAX } from './file-disk.js';
import { limits } from './limits.js';

/** Matches a MirrorpoolError with `code` (typed as Error so toThrow takes it). */
const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;

const SECTOR = limits.sectorBytes;

diskContract('FileDisk', async (sizeBytes) => {
  const dir = await mkdtemp(join(tmpdir(), 'mirrorpool-file-disk-'));
  const disk = await FileDisk.open(join(dir, 'disk.img'), { createBytes: sizeBytes });
  return {
    disk,
    async cleanup() {
      await disk.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

/**
 * A block device whose writes fail when the OS writes them back: a loop device over a sparse file
 * of `bytes` on a tmpfs of `roomBytes`. Writes land in the page cache and succeed; the writeback
 * of what does not fit meets ENOSPC under the loop device, and the next flush of the device
 * reports EIO, once. Needs root (mount, losetup).
 */
async function deviceFailingWriteback(dir: string, bytes: number, roomBytes: number): Promise<{ path: string; remove(): void }> {
  const mnt = join(dir, 'tmpfs');
  await mkdir(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${roomBytes}`, 'tmpfs', mnt]);
  let loop = '';
  try {
    await writeFile(join(mnt, 'backing'), '');
    await truncate(join(mnt, 'backing'), bytes);
    loop = execFileSync('losetup', ['-f', '--show', join(mnt, 'backing')], { encoding: 'utf8' }).trim();
  } catch (e) {
    execFileSync('umount', [mnt]);
    throw e;
  }
  return {
    path: loop,
    remove() {
      execFileSync('losetup', ['-d', loop]);
      execFileSync('umount', [mnt]);
    },
  };
}

describe('FileDisk', () => {
  let dir = '';

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mirrorpool-file-disk-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a file of the asked size', async () => {
    const path = join(dir, 'new.img');
    const disk = await FileDisk.open(path, { createBytes: 8 * SECTOR });
    expect(disk.path).toBe(path);
    expect(disk.size()).toBe(8 * SECTOR);
    expect((await stat(path)).size).toBe(8 * SECTOR);
    await disk.close();
  });

  it('fails to open a missing path with ENOENT', async () => {
    await expect(FileDisk.open(join(dir, 'missing.img'))).rejects.toEqual(withCode('ENOENT'));
  });

  it('refuses to create over an existing path with EEXIST and leaves it alone', async () => {
    const path = join(dir, 'taken.img');
    await writeFile(path, new Uint8Array(SECTOR).fill(7));
    await expect(FileDisk.open(path, { createBytes: 4 * SECTOR })).rejects.toEqual(withCode('EEXIST'));
    expect((await stat(path)).size).toBe(SECTOR);
  });

  it('refuses to create a file of a bad size with EINVAL', async () => {
    const path = join(dir, 'bad.img');
    for (const bytes of [-SECTOR, SECTOR + 1, NaN]) {
      await expect(FileDisk.open(path, { createBytes: bytes }), String(bytes)).rejects.toEqual(withCode('EINVAL'));
    }
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses to open a directory with EINVAL', async () => {
    const sub = join(dir, 'sub');
    await mkdir(sub);
    await expect(FileDisk.open(sub)).rejects.toEqual(withCode('EINVAL'));
  });

  it('sees the data again when reopened after close', async () => {
    const path = join(dir, 'reopen.img');
    const data = new Uint8Array(2 * SECTOR).map((_, i) => (i * 7) & 0xff);
    const first = await FileDisk.open(path, { createBytes: 16 * SECTOR });
    await first.write(3 * SECTOR, data);
    await first.sync();
    await first.close();
    const second = await FileDisk.open(path);
    expect(second.size()).toBe(16 * SECTOR);
    expect([...(await second.read(3 * SECTOR, 2 * SECTOR))]).toEqual([...data]);
    await second.close();
  });

  it('keeps a resize across reopen', async () => {
    const path = join(dir, 'resize.img');
    const first = await FileDisk.open(path, { createBytes: 4 * SECTOR });
    await first.resize(10 * SECTOR);
    await first.sync();
    await first.close();
    const second = await FileDisk.open(path);
    expect(second.size()).toBe(10 * SECTOR);
    await second.close();
  });

  it('writes more than it flushes ahead, syncs and reads it all back', async () => {
    const path = join(dir, 'ahead.img');
    const disk = await FileDisk.open(path, { createBytes: 3 * FLUSH_AHEAD_BYTES });
    const chunk = new Uint8Array(FLUSH_AHEAD_BYTES / 4);
    for (let i = 0; i < 10; i++) await disk.writev(i * chunk.length, [chunk.fill(i + 1).subarray(0, 512), chunk.subarray(512)]);
    await disk.sync();
    await disk.close();
    const again = await FileDisk.open(path);
    for (let i = 0; i < 10; i++) expect((await again.read(i * chunk.length, chunk.length)).every((b) => b === i + 1)).toBe(true);
    await again.close();
  });

  it('writes on either side of the inline bound, one buffer or several, and reads them back', async () => {
    const path = join(dir, 'bound.img');
    const disk = await FileDisk.open(path, { createBytes: 8 * INLINE_WRITE_BYTES_MAX });
    const sizes = [SECTOR, INLINE_WRITE_BYTES_MAX, INLINE_WRITE_BYTES_MAX + SECTOR];
    const wrote: [number, Uint8Array][] = [];
    let at = 0;
    for (const [i, size] of sizes.entries()) {
      const one = new Uint8Array(size).map((_, j) => (i * 31 + j) & 0xff);
      const several = new Uint8Array(size).map((_, j) => (i * 17 + j * 3) & 0xff);
      await disk.write(at, one);
      wrote.push([at, one]);
      at += size;
      await disk.writev(at, [several.subarray(0, SECTOR), several.subarray(SECTOR)]);
      wrote.push([at, several]);
      at += size;
    }
    await disk.sync();
    await disk.close();
    const again = await FileDisk.open(path);
    for (const [offset, bytes] of wrote) expect(Buffer.compare(await again.read(offset, bytes.length), bytes)).toBe(0);
    await again.close();
  });

  it.skipIf(process.getuid?.() !== 0)('fails a write that finds no room with ENOSPC, on either side of the inline bound (root: tmpfs)', async () => {
    const mnt = join(dir, 'tmpfs');
    await mkdir(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${4 * INLINE_WRITE_BYTES_MAX}`, 'tmpfs', mnt]);
    let disk: FileDisk | undefined;
    try {
      disk = await FileDisk.open(join(mnt, 'disk.img'), { createBytes: 64 * INLINE_WRITE_BYTES_MAX });
      for (const size of [INLINE_WRITE_BYTES_MAX, 4 * INLINE_WRITE_BYTES_MAX]) {
        const chunk = new Uint8Array(size).fill(9);
        let failed: unknown;
        for (let at = 0; at < disk.size() && failed === undefined; at += size) await disk.write(at, chunk).catch((e: unknown) => (failed = e));
        expect(failed).toEqual(withCode('ENOSPC'));
        await expect(disk.writev(disk.size() - size, [chunk.subarray(0, SECTOR), chunk.subarray(SECTOR)])).rejects.toEqual(withCode('ENOSPC'));
      }
    } finally {
      await disk?.close();
      execFileSync('umount', [mnt]);
    }
  });

  it.skipIf(process.getuid?.() !== 0)('throws from sync() a write-back error that a background flush met (root: loop device)', async () => {
    // The writes that start a background flush do not fit under the device: that flush meets the
    // error, and the OS reports it to no later flush. sync() must still fail.
    const device = await deviceFailingWriteback(dir, 4 * FLUSH_AHEAD_BYTES, FLUSH_AHEAD_BYTES / 4);
    let disk: FileDisk | undefined;
    try {
      disk = await FileDisk.open(device.path);
      const chunk = new Uint8Array(1024 * 1024).fill(7);
      for (let at = 0; at < FLUSH_AHEAD_BYTES; at += chunk.length) await disk.write(at, chunk);
      await expect(disk.sync()).rejects.toEqual(withCode('EIO'));
      await disk.sync(); // reported once, as the OS does
    } finally {
      await disk?.close();
      device.remove();
    }
  });

  it('does not address a trailing partial sector of an existing file', async () => {
    const path = join(dir, 'ragged.img');
    await writeFile(path, new Uint8Array(3 * SECTOR + 100));
    const disk = await FileDisk.open(path);
    expect(disk.size()).toBe(3 * SECTOR);
    await expect(disk.read(3 * SECTOR, SECTOR)).rejects.toEqual(withCode('EINVAL'));
    await disk.close();
  });
});
