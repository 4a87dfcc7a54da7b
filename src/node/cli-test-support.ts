// Shared by the CLI tests: a fresh temp folder per test file (removed afterwards) with a private
// lock folder in MIRRORPOOL_LOCK_DIR for its duration, and a fresh sub-folder per test case.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { mkdir } from 'node:fs/promises';
import { afterAll, beforeAll, expect, vi } from 'vitest';
import { main } from './cli.js';

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

/** Runs main() with `--home home` and `args`, capturing what it prints. */
export async function runCli(home: string, args: readonly string[]): Promise<Run> {
  let out = '';
  let err = '';
  const code = await main(['--home', home, ...args], {
    out: { write: (s) => void (out += s) },
    err: { write: (s) => void (err += s) },
  });
  return { code, out, err };
}

export interface BytesRun extends Run {
  /** What the command wrote to the process's stdout (bytes of get, read and send). */
  bytes: Buffer;
}

/** Runs main() with `stdin` as the process's stdin and the process's stdout captured. */
export async function runMain(args: string[], stdin: readonly Uint8Array[]): Promise<BytesRun> {
  let out = '';
  let err = '';
  const bytes: Buffer[] = [];
  const input = vi.spyOn(process, 'stdin', 'get').mockReturnValue(Readable.from(stdin) as unknown as typeof process.stdin);
  const write = (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
    bytes.push(Buffer.from(chunk));
    const done = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
    done?.();
    return true;
  };
  const output = vi.spyOn(process.stdout, 'write').mockImplementation(write);
  try {
    const code = await main(args, { out: { write: (s) => void (out += s) }, err: { write: (s) => void (err += s) } });
    return { code, out, err, bytes: Buffer.concat(bytes) };
  } finally {
    output.mockRestore();
    input.mockRestore();
  }
}

export type Cli = (...args: string[]) => Promise<Run>;

/**
 * A fresh case folder of `temp` with a `vdevs` folder and a home: `cli` runs a command there, `ok`
 * one that must succeed.
 */
export async function cliWorkspace(temp: { caseDir: () => string }): Promise<{ dir: string; cli: Cli; ok: Cli }> {
  const base = temp.caseDir();
  const dir = join(base, 'vdevs');
  await mkdir(dir, { recursive: true });
  const home = join(base, 'home');
  const cli: Cli = (...args) => runCli(home, args);
  const ok: Cli = async (...args) => {
    const r = await cli(...args);
    expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0);
    return r;
  };
  return { dir, cli, ok };
}

/** The command failed with exit `status` and printed error `code` first. */
export function expectError(r: Run, status: number, code: string): void {
  expect(r.code, r.err).toBe(status);
  expect(r.err).toMatch(new RegExp(`^mirrorpool: ${code}: `));
}
