// What every CLI command group shares: the input and output streams (CliIo: text sinks, and the
// binary stdin/stdout that default to the process's, so a daemon can run a command for a remote
// client in-process), how bad usage is raised (a
// CommanderError, which main() prints as EINVAL with exit 2), option value parsers that turn an
// EINVAL into bad usage, --home, JSON output, the pool a dataset name lives in, and the loop over
// cached pools of the list commands. Operating errors stay MirrorpoolError (exit 1).
// Used by cli-pool.ts, cli-dataset.ts and cli-data.ts.

import { type Command, CommanderError, InvalidArgumentError } from 'commander';
import { type Dsl, type Pool, parseName } from '../engine/index.js';
import { MirrorpoolError, hasCode, mpError } from '../lib/index.js';
import { type CachedPool, PoolCache } from './pool-cache.js';
import { type OpenLeaf, withPool } from './pool-open.js';

/** Where a command reads and writes. */
export interface CliIo {
  /** Text output (tables, JSON, help). */
  readonly out: { write(s: string): void };
  /** Error and progress text. */
  readonly err: { write(s: string): void };
  /** The bytes of `put -`, `write -` and `recv` (default: process.stdin). */
  readonly stdin?: AsyncIterable<Uint8Array>;
  /**
   * The bytes of `get`, `read` and `send` (default: process.stdout, each chunk flushed before the
   * next). A write resolves when the sink has taken the chunk, which it must copy to keep it
   * afterwards; a rejection ends the command with that error (ECANCELED when the reader went away).
   */
  readonly stdout?: { write(chunk: Uint8Array): Promise<void> };
}

/** Bad usage: main() prints it as EINVAL and exits 2. */
export function usage(message: string): CommanderError {
  return new CommanderError(2, 'mirrorpool.usage', message);
}

/** Wraps a parser that throws EINVAL into one commander reports as bad usage. */
export function arg<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (e) {
      if (hasCode(e, 'EINVAL')) throw new InvalidArgumentError(e.message);
      throw e;
    }
  };
}

export const collect = (value: string, previous: string[]): string[] => [...previous, value];
export const home = (cmd: Command): string => cmd.optsWithGlobals<{ home: string }>().home;
export const json = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;

/**
 * The pool a dataset, snapshot or bookmark name belongs to. The name is checked by the engine's
 * parser, so a bad name is EINVAL (exit 1) before any pool is opened.
 */
export function poolOf(name: string): string {
  return parseName(name, ['dataset', 'snapshot', 'bookmark']).pool;
}

/** Opens the pool `name` lives in for the duration of `fn` (see withPool), and hands it the DSL. */
export function withDsl<T>(homeDir: string, name: string, fn: (dsl: Dsl, pool: Pool) => Promise<T>): Promise<T> {
  return withPool(homeDir, poolOf(name), (pool) => fn(pool.dsl, pool));
}

/** Writes every failure but the last to stderr and throws the last one (exit 1). */
export function failWith(failures: readonly MirrorpoolError[], io: CliIo): void {
  const last = failures.at(-1);
  if (last === undefined) return;
  for (const f of failures.slice(0, -1)) io.err.write(`mirrorpool: ${f.code}: ${f.message}\n`);
  throw last;
}

export interface PoolFailure {
  readonly entry: CachedPool;
  readonly error: MirrorpoolError;
}

/**
 * Runs `fn` on each cached pool by name (or only on the one named, whose failure is thrown).
 * Failures of the whole-cache walk are collected, prefixed with the pool's name, so one pool
 * that cannot be opened does not hide the others.
 */
export async function eachPool<T>(
  homeDir: string,
  only: string | undefined,
  fn: (pool: Pool, entry: CachedPool, leaves: readonly OpenLeaf[]) => T | Promise<T>,
): Promise<{ results: T[]; failures: PoolFailure[] }> {
  const cache = new PoolCache(homeDir);
  const entries = only === undefined ? (await cache.list()).sort((a, b) => a.name.localeCompare(b.name)) : [await cache.get(only)];
  const results: T[] = [];
  const failures: PoolFailure[] = [];
  for (const entry of entries) {
    try {
      results.push(await withPool(homeDir, entry.name, async (pool, e, leaves) => fn(pool, e, leaves)));
    } catch (e) {
      if (!(e instanceof MirrorpoolError) || only !== undefined) throw e;
      failures.push({ entry, error: mpError(e.code, `pool ${entry.name}: ${e.message}`, e.details, e) });
    }
  }
  return { results, failures };
}
