// The data commands of the CLI: `put`, `get`, `write`, `read`, `truncate`, `ls`, `rm` on the keyed
// objects of a dataset (contract: shared/CLI.md; what exists: docs/cli.md). Each opens the pool
// the dataset lives in (or uses the resident pool, in a daemon: see withPool), takes a view of
// the dataset (a snapshot for get/read/ls) and makes keyed calls. Bytes stream in fixed chunks
// both ways, so memory stays bounded whatever the size: input (a file, or stdin for `-`) is cut
// into CHUNK_BYTES pieces for putKey/writeKey, which commit each piece in its own transaction
// under the pool's dirty-data backpressure; output is read with readKey a chunk at a time and
// each chunk is flushed before the next is read. `get -o FILE` writes a temporary sibling, fsyncs
// it and renames it over FILE, so FILE is the old or the whole new content. Bytes come from
// io.stdin and go to io.stdout (the process's streams unless the caller of main() gives its own,
// as the daemon does for a remote client); text (`ls`) goes to io.out. A daemon runs commands side
// by side, writes to one dataset included (the engine orders their transactions by txg).
// Key, name and state errors come from the engine (exit 1); offsets and sizes that do not parse
// are bad usage (exit 2). Registered on the program by buildProgram in cli.ts; withInput,
// withStdout and withFileAtomic are shared with cli-stream.ts and remote.ts.

import { type Command, Option } from 'commander';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { type DatasetView, dmu, keyed } from '../engine/index.js';
import { mpError } from '../lib/index.js';
import { type CliIo, arg, home, poolOf } from './cli-common.js';
import { KeyListWriter, keyRowOf } from './dataset-report.js';
import { withPool } from './pool-open.js';

/** Piece of input handed to the engine, and of output read per readKey call. */
const CHUNK_BYTES = 1024 * 1024;
/** Keys read from the directory (and printed) per page of `ls`. */
const LIST_PAGE_KEYS = 1024;
const UNIT_POWERS: Readonly<Record<string, number>> = { '': 0, K: 1, M: 2, G: 3, T: 4, P: 5, E: 6 };

export type ChunkWriter = (chunk: Uint8Array) => Promise<void>;

/**
 * An exact byte count or offset: `4096`, `0`, or with a binary unit `64K`, `1.5M`, `2GiB` whose
 * result is a whole number, up to the largest object. EINVAL otherwise (bad usage through arg()).
 */
function parseBytes(text: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)([kmgtpe]?)(?:i?b)?$/i.exec(text.trim());
  const power = UNIT_POWERS[(m?.[2] ?? '').toUpperCase()];
  const n = m === null || power === undefined ? NaN : Number(m[1]) * 1024 ** power;
  if (!Number.isSafeInteger(n) || n < 0 || n > dmu.OBJECT_BYTES_MAX) {
    throw mpError('EINVAL', `'${text}' is not a byte count from 0 to ${dmu.OBJECT_BYTES_MAX} (examples: 0, 4096, 64K, 1.5M)`, { value: text });
  }
  return n;
}

/** A local file error as a coded error naming the file; anything unknown comes back as it was. */
export function fsError(e: unknown, path: string): Error {
  switch ((e as NodeJS.ErrnoException | undefined)?.code) {
    case 'ENOENT':
      return mpError('ENOENT', `${path}: no such file or folder`, { path }, e);
    case 'EACCES':
    case 'EPERM':
      return mpError('EAUTH', `${path}: permission denied`, { path }, e);
    case 'EISDIR':
      return mpError('EINVAL', `${path}: is a folder`, { path }, e);
    case 'ENOSPC':
    case 'EDQUOT':
      return mpError('ENOSPC', `${path}: no space left on device`, { path }, e);
    case 'EIO':
      return mpError('EIO', `${path}: I/O error`, { path }, e);
    case 'EPIPE':
      return mpError('ECANCELED', `${path}: the reader went away`, { path }, e);
    default:
      return e instanceof Error ? e : new Error(String(e));
  }
}

/** Cuts a stream of any piece sizes into CHUNK_BYTES pieces (the last may be shorter). */
async function* rechunk(source: AsyncIterable<Uint8Array>, what: string): AsyncGenerator<Uint8Array> {
  let buf = new Uint8Array(CHUNK_BYTES);
  let filled = 0;
  const iter = source[Symbol.asyncIterator]();
  for (;;) {
    let next: IteratorResult<Uint8Array>;
    try {
      next = await iter.next();
    } catch (e) {
      throw fsError(e, what);
    }
    if (next.done === true) break;
    for (let at = 0; at < next.value.length; ) {
      const n = Math.min(next.value.length - at, CHUNK_BYTES - filled);
      buf.set(next.value.subarray(at, at + n), filled);
      filled += n;
      at += n;
      if (filled === CHUNK_BYTES) {
        yield buf;
        buf = new Uint8Array(CHUNK_BYTES);
        filled = 0;
      }
    }
  }
  if (filled > 0) yield buf.subarray(0, filled);
}

/** Reads an open file from its start in CHUNK_BYTES pieces. */
async function* fileChunks(fh: FileHandle, path: string): AsyncGenerator<Uint8Array> {
  for (;;) {
    const buf = new Uint8Array(CHUNK_BYTES);
    let filled = 0;
    while (filled < CHUNK_BYTES) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await fh.read(buf, filled, CHUNK_BYTES - filled, null));
      } catch (e) {
        throw fsError(e, path);
      }
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    if (filled > 0) yield buf.subarray(0, filled);
    if (filled < CHUNK_BYTES) return;
  }
}

/**
 * Runs `fn` with the bytes of `file` (io.stdin, by default the process's, when absent or `-`).
 * The file is opened before the pool is, so a missing file or a folder fails before the key is
 * touched; it is closed afterwards whatever happened. A read error midway leaves the key with the
 * bytes written so far.
 */
export async function withInput<T>(file: string | undefined, io: CliIo, fn: (chunks: AsyncIterable<Uint8Array>) => Promise<T>): Promise<T> {
  if (file === undefined || file === '-') return fn(rechunk(io.stdin ?? process.stdin, 'stdin'));
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    throw fsError(e, file);
  }
  try {
    // A folder opens fine and fails only on read, by then the key would be emptied.
    if ((await fh.stat()).isDirectory()) throw mpError('EINVAL', `${file}: is a folder`, { path: file });
    return await fn(fileChunks(fh, file));
  } finally {
    await fh.close();
  }
}

/**
 * Runs `fn` with a writer to io.stdout when the caller gave one (its errors pass through as they
 * are), else to the process's stdout, where each write resolves once its chunk is flushed and a
 * reader that went away (EPIPE) is ECANCELED instead of an unhandled stream error.
 */
export async function withStdout<T>(io: CliIo, fn: (write: ChunkWriter) => Promise<T>): Promise<T> {
  const sink = io.stdout;
  if (sink !== undefined) return fn((chunk) => sink.write(chunk));
  const out = process.stdout;
  let broken: unknown = null;
  const onError = (e: unknown): void => {
    broken ??= e;
  };
  out.on('error', onError);
  try {
    return await fn(async (chunk) => {
      if (broken !== null) throw fsError(broken, 'stdout');
      await new Promise<void>((resolve, reject) => {
        out.write(chunk, (e) => (e === null || e === undefined ? resolve() : reject(fsError(e, 'stdout'))));
      });
    });
  } finally {
    out.off('error', onError);
  }
}

/** Runs `fn` with a writer to a temporary sibling of `path`, then fsyncs it and renames it over `path`. */
export async function withFileAtomic<T>(path: string, fn: (write: ChunkWriter) => Promise<T>): Promise<T> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  let fh: FileHandle;
  try {
    fh = await open(tmp, 'w');
  } catch (e) {
    throw fsError(e, path);
  }
  let result: T;
  try {
    result = await fn(async (chunk) => {
      for (let at = 0; at < chunk.length; ) at += (await fh.write(chunk, at, chunk.length - at)).bytesWritten;
    });
    await fh.sync();
  } catch (e) {
    await fh.close();
    await rm(tmp, { force: true });
    throw fsError(e, path);
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw fsError(e, path);
  }
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return result;
}

/** Opens the pool of `name`, takes a view of the dataset or snapshot, and runs `fn` on it. */
function withView<T>(homeDir: string, name: string, mode: 'read' | 'write', fn: (view: DatasetView, assign: keyed.Assign) => Promise<T>): Promise<T> {
  return withPool(homeDir, poolOf(name), (pool) => pool.dsl.withView(name, mode, (view) => fn(view, () => pool.assign())));
}

/** Copies bytes [offset, offset+length) of a key, cut at its end, to `write` a chunk at a time. */
async function copyOut(view: DatasetView, key: string, range: { offset: number; length: number }, write: ChunkWriter): Promise<void> {
  const end = Math.min((await keyed.keyInfo(view, key)).size, range.offset + range.length);
  for (let at = range.offset; at < end; at += CHUNK_BYTES) {
    const chunk = await keyed.readKey(view, key, at, Math.min(CHUNK_BYTES, end - at));
    await write(chunk);
  }
}

/** The --sync flag as the keyed functions take it. */
const syncOf = (cmd: Command): { sync: boolean } => ({ sync: cmd.opts<{ sync: boolean }>().sync });

const byteOption = (flags: string, what: string): Option => new Option(flags, what).argParser(arg(parseBytes)).makeOptionMandatory();

function addPutGet(program: Command, io: CliIo): void {
  program
    .command('put')
    .description('store a file (or stdin) under a key, replacing what the key held')
    .option('--sync', 'durable before it returns, through the dataset intent log (sync=standard)', false)
    .argument('<pool/ds>', 'dataset name')
    .argument('<key>', 'key: 1 to 1024 bytes of UTF-8')
    .argument('[file]', 'file to store, or - for stdin (default: stdin)')
    .action(async (name: string, key: string, file: string | undefined, _o: unknown, cmd: Command) => {
      await withInput(file, io, (chunks) => withView(home(cmd), name, 'write', (view, assign) => keyed.putKey(view, assign, key, chunks, syncOf(cmd))));
    });

  program
    .command('get')
    .description('the bytes of a key, from a dataset or a snapshot (pool/ds@snap), to stdout or a file')
    .option('-o, --output <file>', 'write to this file (replaced whole, atomically) instead of stdout')
    .argument('<pool/ds[@snap]>', 'dataset or snapshot name')
    .argument('<key>', 'key')
    .action(async (name: string, key: string, _o: unknown, cmd: Command) => {
      const output = cmd.opts<{ output?: string }>().output;
      const all = { offset: 0, length: dmu.OBJECT_BYTES_MAX };
      const sink = (fn: (write: ChunkWriter) => Promise<void>): Promise<void> =>
        output === undefined || output === '-' ? withStdout(io, fn) : withFileAtomic(output, fn);
      await withView(home(cmd), name, 'read', async (view) => {
        await keyed.keyInfo(view, key); // ENOENT before an output file is made
        await sink((write) => copyOut(view, key, all, write));
      });
    });
}

function addWriteRead(program: Command, io: CliIo): void {
  program
    .command('write')
    .description('write a file (or stdin) into an existing key at an offset, extending it if needed')
    .option('--sync', 'durable before it returns, through the dataset intent log (sync=standard)', false)
    .addOption(byteOption('--offset <n>', 'byte offset to write at'))
    .argument('<pool/ds>', 'dataset name')
    .argument('<key>', 'key')
    .argument('[file]', 'file to write, or - for stdin (default: stdin)')
    .action(async (name: string, key: string, file: string | undefined, _o: unknown, cmd: Command) => {
      const offset = cmd.opts<{ offset: number }>().offset;
      await withInput(file, io, (chunks) => withView(home(cmd), name, 'write', (view, assign) => keyed.writeKey(view, assign, key, offset, chunks, syncOf(cmd))));
    });

  program
    .command('read')
    .description('bytes [offset, offset+length) of a key, cut at its end, to stdout')
    .addOption(byteOption('--offset <n>', 'first byte'))
    .addOption(byteOption('--length <n>', 'number of bytes'))
    .argument('<pool/ds[@snap]>', 'dataset or snapshot name')
    .argument('<key>', 'key')
    .action(async (name: string, key: string, _o: unknown, cmd: Command) => {
      const range = cmd.opts<{ offset: number; length: number }>();
      await withView(home(cmd), name, 'read', (view) => withStdout(io, (write) => copyOut(view, key, range, write)));
    });
}

function addTruncateListRemove(program: Command, io: CliIo): void {
  program
    .command('truncate')
    .description('cut a key to a size, or extend it with zeros')
    .option('--sync', 'durable before it returns, through the dataset intent log (sync=standard)', false)
    .addOption(byteOption('--size <n>', 'new size in bytes'))
    .argument('<pool/ds>', 'dataset name')
    .argument('<key>', 'key')
    .action(async (name: string, key: string, _o: unknown, cmd: Command) => {
      const size = cmd.opts<{ size: number }>().size;
      await withView(home(cmd), name, 'write', (view, assign) => keyed.truncateKey(view, assign, key, size, syncOf(cmd)));
    });

  program
    .command('ls')
    .description('keys of a dataset or snapshot in byte order, with size and the txg of their last change')
    .option('--json', 'print JSON', false)
    .argument('<pool/ds[@snap]>', 'dataset or snapshot name')
    .argument('[prefix]', 'only keys that start with this')
    .action(async (name: string, prefix: string | undefined, _o: unknown, cmd: Command) => {
      const writer = new KeyListWriter((s) => io.out.write(s), cmd.opts<{ json: boolean }>().json);
      await withView(home(cmd), name, 'read', async (view) => {
        let after: string | undefined;
        for (;;) {
          const page = await keyed.listKeys(view, {
            ...(prefix === undefined ? {} : { prefix }),
            ...(after === undefined ? {} : { after }),
            limit: LIST_PAGE_KEYS,
          });
          writer.page(page.map(keyRowOf));
          after = page.at(-1)?.key;
          if (page.length < LIST_PAGE_KEYS) break;
        }
      });
      writer.end();
    });

  program
    .command('rm')
    .description('remove a key and its bytes')
    .option('--sync', 'durable before it returns, through the dataset intent log (sync=standard)', false)
    .argument('<pool/ds>', 'dataset name')
    .argument('<key>', 'key')
    .action(async (name: string, key: string, _o: unknown, cmd: Command) => {
      await withView(home(cmd), name, 'write', (view, assign) => keyed.removeKey(view, assign, key, syncOf(cmd)));
    });
}

/** Adds the data commands (put, get, write, read, truncate, ls, rm) to the program. */
export function addDataCommands(program: Command, io: CliIo): void {
  addPutGet(program, io);
  addWriteRead(program, io);
  addTruncateListRemove(program, io);
}
