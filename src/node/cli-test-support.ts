// Shared by the CLI tests: a fresh temp folder per test file (removed afterwards) with a private
// lock folder in MIRRORPOOL_LOCK_DIR for its duration, and a fresh sub-folder per test case.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';

export interface Run {
  code: number;
  out: string;
  err: string;
}

/** Registers the folder's setup and removal; `caseDir()` names a new folder for one test case. */
export function tempRoot(prefix: string): { root: () => string; caseDir: () => string } {
  let root = '';
  let savedLockDir: string | undefined;
  let caseNo = 0;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), prefix));
    savedLockDir = process.env['MIRRORPOOL_LOCK_DIR'];
    process.env['MIRRORPOOL_LOCK_DIR'] = join(root, 'locks');
  });
  afterAll(async () => {
    if (savedLockDir === undefined) delete process.env['MIRRORPOOL_LOCK_DIR'];
    else process.env['MIRRORPOOL_LOCK_DIR'] = savedLockDir;
    await rm(root, { recursive: true, force: true });
  });
  return { root: () => root, caseDir: () => join(root, `case-${++caseNo}`) };
}
