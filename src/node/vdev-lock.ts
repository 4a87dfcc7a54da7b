// The exclusive lock that lets one process at a time open a pool's vdevs. Node has no flock, so
// each vdev (by its real path) gets a lock file created with O_EXCL in the lock folder, holding
// the owner's pid. A lock whose owner is gone is stale and taken over; one whose owner lives is
// EBUSY naming the pid. Release removes the files.

import { createHash } from 'node:crypto';
import { mkdir, open, readFile, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mpError } from '../lib/index.js';

export function lockDir(): string {
  return process.env['MIRRORPOOL_LOCK_DIR'] ?? join(tmpdir(), 'mirrorpool-locks');
}

/** Whether process `pid` exists (one owned by another user counts). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function lockPath(vdev: string): Promise<{ file: string; real: string }> {
  const real = await realpath(vdev).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') throw mpError('ENOENT', `vdev ${vdev} does not exist`, { path: vdev });
    throw e;
  });
  const name = createHash('sha256').update(real).digest('hex').slice(0, 32);
  return { file: join(lockDir(), `${name}.lock`), real };
}

async function takeOne(vdev: string): Promise<string> {
  const { file, real } = await lockPath(vdev);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(file, 'wx', 0o600);
      await fh.writeFile(`${process.pid}\n${real}\n`);
      await fh.close();
      return file;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const owner = Number((await readFile(file, 'utf8').catch(() => '')).split('\n')[0]);
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && processAlive(owner)) {
      throw mpError('EBUSY', `vdev ${vdev} is in use by process ${owner}`, { path: vdev, pid: owner });
    }
    if (owner === process.pid) throw mpError('EBUSY', `vdev ${vdev} is already open in this process`, { path: vdev });
    await rm(file, { force: true }); // stale: its owner is gone
  }
  throw mpError('EBUSY', `vdev ${vdev}: could not take its lock`, { path: vdev });
}

export class VdevLock {
  private constructor(private readonly files: string[]) {}

  /** Locks every vdev or none: EBUSY (or ENOENT) and nothing held. */
  static async acquire(vdevs: readonly string[]): Promise<VdevLock> {
    await mkdir(lockDir(), { recursive: true, mode: 0o700 });
    const files: string[] = [];
    try {
      for (const v of vdevs) files.push(await takeOne(v));
    } catch (e) {
      await Promise.all(files.map((f) => rm(f, { force: true })));
      throw e;
    }
    return new VdevLock(files);
  }

  async release(): Promise<void> {
    await Promise.all(this.files.map((f) => rm(f, { force: true })));
    this.files.length = 0;
  }
}
