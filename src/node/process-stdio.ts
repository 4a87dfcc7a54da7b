// The process's own standard input and output as file descriptors, for `send` and `recv` run
// in a pipe: StdinChunks reads fd 0 into a small set of reused buffers that the consumer hands
// back (fresh memory costs far more than a copy on the VMs this runs on), StdoutParts writes a
// frame's parts to fd 1 with one gathering write and no copy. Each falls back to
// process.stdin/process.stdout when the descriptor turns out to be non-blocking, and both are
// used only while process.stdin/stdout are the process's own (ownStdin/ownStdout): an embedder
// or a test that replaced them gets its replacement read and written.
// Called by cli-stream.ts.

import { readSync, writevSync } from 'node:fs';
import { SpareBuffers, assert, concatBytes, limits, skipBytes } from '../lib/index.js';
import { fsError } from './cli-data.js';

/** The process's own stdin getter, captured before anyone (an embedder, a test) replaces it. */
// eslint-disable-next-line @typescript-eslint/unbound-method -- compared, never called
const PROCESS_STDIN_GETTER = Object.getOwnPropertyDescriptor(process, 'stdin')?.get;

/**
 * True while process.stdin is the process's own: recv may then read file descriptor 0 itself.
 * When process.stdin was replaced, recv reads what replaced it.
 */
export function ownStdin(): boolean {
  return PROCESS_STDIN_GETTER !== undefined && Object.getOwnPropertyDescriptor(process, 'stdin')?.get === PROCESS_STDIN_GETTER;
}

/** True unless process.stdout.write was replaced: send may then write file descriptor 1 itself. */
export function ownStdout(): boolean {
  return !Object.hasOwn(process.stdout, 'write');
}

/**
 * The bytes of file descriptor `fd` (the process's stdin) as chunks of reused buffers, read ahead
 * of the consumer by up to limits.streamReadAheadChunks. Ownership: a chunk the iterator returned
 * belongs to the consumer until it calls recycle(chunk), once, after which the reader refills it;
 * the consumer never touches a chunk again after recycling it, and chunks never recycled are
 * simply garbage. When the descriptor is non-blocking (EAGAIN: something put it in libuv's hands),
 * the rest is read through process.stdin instead, copied into the same buffers.
 */
export class StdinChunks implements AsyncIterable<Uint8Array> {
  private readonly spare = new SpareBuffers(limits.streamReadSpareChunksMax * limits.streamReadChunkBytes, limits.streamReadChunkBytes);
  /** Buffers handed to the consumer and not yet recycled. */
  private readonly lent = new Set<ArrayBuffer>();
  private readonly ahead: Promise<Uint8Array | null>[] = [];
  private last: Promise<unknown> = Promise.resolve();
  private eof = false;
  private fallback: AsyncIterator<Uint8Array> | null = null;
  private leftover: Uint8Array = new Uint8Array(0);

  constructor(private readonly fd: number) {}

  /** Hands back a chunk this reader returned; its buffer is refilled by a later read. */
  recycle(chunk: Uint8Array): void {
    const buffer = chunk.buffer as ArrayBuffer;
    assert(this.lent.delete(buffer), 'StdinChunks: recycled a chunk that is not lent out');
    this.spare.give(chunk);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array, void, undefined> {
    for (;;) {
      while (!this.eof && this.ahead.length < limits.streamReadAheadChunks) {
        // One read at a time, in order: each fill starts when the one before it is done.
        const p = this.last.then(() => this.fill());
        p.catch(() => undefined); // surfaced when awaited below
        this.ahead.push(p);
        this.last = p;
      }
      const next = this.ahead.shift();
      if (next === undefined) return;
      const chunk = await next;
      if (chunk === null) continue;
      this.lent.add(chunk.buffer as ArrayBuffer);
      yield chunk;
    }
  }

  /** Fills one buffer (fewer bytes only at the end of input); null when nothing was left. */
  private async fill(): Promise<Uint8Array | null> {
    const buf = this.spare.take(limits.streamReadChunkBytes);
    let filled = 0;
    while (filled < buf.length && !this.eof) {
      const n = await this.readInto(buf, filled);
      if (n === 0) this.eof = true;
      filled += n;
    }
    return filled === 0 ? null : buf.subarray(0, filled);
  }

  /**
   * A read on this thread: handing each read (at most a pipe's capacity, 64 KiB) to the thread
   * pool cost more than the read. It blocks only while the writer has produced nothing; between
   * reads the event loop runs (I/O callbacks included), so disk writes keep completing.
   */
  private async readInto(buf: Uint8Array, at: number): Promise<number> {
    if (this.fallback !== null) return this.readFallback(buf, at);
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      return readSync(this.fd, buf, at, buf.length - at, null);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw fsError(e, 'stdin');
      this.fallback = process.stdin[Symbol.asyncIterator]();
      return this.readFallback(buf, at);
    }
  }

  private async readFallback(buf: Uint8Array, at: number): Promise<number> {
    assert(this.fallback !== null);
    while (this.leftover.length === 0) {
      const next = await this.fallback.next().catch((e: unknown) => Promise.reject(fsError(e, 'stdin')));
      if (next.done === true) return 0;
      this.leftover = next.value;
    }
    const n = Math.min(this.leftover.length, buf.length - at);
    buf.set(this.leftover.subarray(0, n), at);
    this.leftover = this.leftover.subarray(n);
    return n;
  }
}

/**
 * Frames to file descriptor `fd` (the process's stdout), each written from its parts with one
 * gathering write and no copy, on this thread: a blocking pipe or file then paces the sender the
 * way `cat` is paced, with no thread-pool round trip per write. Once the descriptor turns out to
 * be non-blocking (EAGAIN: the CLI's process.stdout put the pipe in libuv's hands), the rest goes
 * through process.stdout, corked per frame and not awaited frame by frame: libuv then refills the
 * pipe as soon as the reader drains it, up to limits.streamWriteQueuedBytesMax queued. What goes
 * that way is copied first: the sender reuses its read buffers once the next frame is asked for
 * (sendStreamParts), and process.stdout keeps what it is given until it is written. finish()
 * resolves once everything is with the OS.
 */
export class StdoutParts {
  private viaStream = false;
  private failure: Error | null = null;
  /** Frames handed to process.stdout and not yet written, oldest first, with their bytes. */
  private readonly queue: { readonly written: Promise<void>; readonly bytes: number }[] = [];
  private queuedBytes = 0;

  constructor(private readonly fd: number) {
    // libuv made a pipe on stdout non-blocking when process.stdout was created; handing the
    // descriptor back to blocking mode (what Node itself does for stdio on some platforms) lets
    // each write wait in the kernel for the reader instead of bouncing through the event loop.
    const handle = (process.stdout as unknown as { _handle?: { setBlocking?: (on: boolean) => number } })._handle;
    if (fd === 1 && typeof handle?.setBlocking === 'function') handle.setBlocking(true);
  }

  /** Writes the parts back to back; returns their byte count. A reader that left is ECANCELED. */
  async write(parts: readonly Uint8Array[]): Promise<number> {
    if (this.failure !== null) throw this.failure;
    let total = 0;
    for (const p of parts) total += p.length;
    let rest = parts.filter((p) => p.length > 0);
    while (rest.length > 0 && !this.viaStream) {
      let n: number;
      try {
        n = writevSync(this.fd, rest);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw fsError(e, 'stdout');
        this.toStream();
        break;
      }
      rest = skipBytes(rest, n);
    }
    if (rest.length > 0) await this.enqueue([concatBytes(rest)]);
    return total;
  }

  /** Resolves once every queued byte is written; the first write error otherwise. */
  async finish(): Promise<void> {
    await Promise.all(this.queue.map((q) => q.written));
    this.queue.length = 0;
    if (this.failure !== null) throw this.failure;
  }

  private toStream(): void {
    this.viaStream = true;
    // A reader that went away is an 'error' event besides the write callback's error.
    process.stdout.on('error', (e) => {
      this.failure ??= fsError(e, 'stdout');
    });
  }

  private async enqueue(parts: readonly Uint8Array[]): Promise<void> {
    const out = process.stdout;
    let bytes = 0;
    const written = new Promise<void>((resolve) => {
      out.cork();
      parts.forEach((p, i) => {
        bytes += p.length;
        if (i < parts.length - 1) {
          out.write(p);
          return;
        }
        out.write(p, (e) => {
          if (e !== null && e !== undefined) this.failure ??= fsError(e, 'stdout');
          resolve();
        });
      });
      out.uncork();
    });
    this.queue.push({ written, bytes });
    this.queuedBytes += bytes;
    while (this.queuedBytes > limits.streamWriteQueuedBytesMax) {
      const oldest = this.queue.shift();
      assert(oldest !== undefined);
      await oldest.written;
      this.queuedBytes -= oldest.bytes;
    }
    if (this.failure !== null) throw this.failure;
  }
}
