// Span reads and read-ahead for one object set: a read of whole synced blocks stored back to back
// is served by one disk I/O into the buffer handed to the caller, and a reader that continues its
// previous span gets the next spans read in the background (ZFS's zfetch, reduced to one stream
// per object), so the disk copies the next span while this thread verifies the current one.
// Invariants: a span read ahead is handed out only if the object has no unsynced change and its
// synced dnode is the one the span was read through (a sync makes a new dnode); `aheadBytes` is
// the size of the spans held, bounded by READ_AHEAD_BYTES_MAX; every read-ahead I/O is tracked
// until it settles, so the pool can wait for it before closing its disks (quiesce).
// Called by ObjectSet (objset.ts) for DMU reads.

import { MirrorpoolError } from '../lib/index.js';
import type { BlockStore } from './block-store.js';
import type { Dnode } from './dnode.js';
import { lookupBlock } from './tree.js';
import { type BlockPointer, type ObjectId, isHole } from './types.js';

/** Spans read ahead of a sequential reader: two keep the disk busy while one is verified. */
export const READ_AHEAD_SPANS = 2;
/** Bytes of read-ahead one object set holds at most; past this readers get none. */
export const READ_AHEAD_BYTES_MAX = 16 * 1024 * 1024;
/** Objects whose read position is remembered; the least recent is forgotten. */
const READ_STREAMS_MAX = 64;

/** What ReadAhead needs to know of its object set. */
export interface SpanSource {
  readonly what: string;
  readonly store: BlockStore;
  isDirty(obj: ObjectId): boolean;
  syncedDnode(obj: ObjectId): Promise<Dnode>;
}

/** A span read ahead: blocks [first, end) as `dnode` (the synced dnode then) has them. */
interface AheadSpan {
  readonly first: number;
  readonly end: number;
  readonly dnode: Dnode;
  readonly bytes: number;
  readonly data: Promise<Uint8Array | null>;
}

interface ReadStream {
  /** The block a sequential reader asks for next. */
  readonly next: number;
  readonly ahead: AheadSpan[];
}

export class ReadAhead {
  private readonly streams = new Map<ObjectId, ReadStream>();
  private aheadBytes = 0;
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly source: SpanSource) {}

  /**
   * Blocks [first, end) of `obj` as synced dnode `d` has them, one disk read into a fresh buffer
   * the caller owns; null when a block is a hole, cached or not right after the previous one.
   * The caller checked that `obj` has no unsynced change and that `d` holds the blocks.
   */
  async read(obj: ObjectId, d: Dnode, first: number, end: number): Promise<Uint8Array | null> {
    const stream = this.streams.get(obj);
    this.streams.delete(obj);
    const sequential = stream !== undefined && stream.next === first;
    if (!sequential && stream !== undefined) this.drop(stream.ahead);
    const ahead = sequential ? stream.ahead : [];
    let data: Uint8Array | null = null;
    const mine = ahead[0];
    if (mine !== undefined && mine.first === first && mine.end === end) {
      ahead.shift();
      this.aheadBytes -= mine.bytes;
      const got = await mine.data;
      // Still current only if the object did not change while the span was read.
      if (got !== null && mine.dnode === (await this.source.syncedDnode(obj)) && !this.source.isDirty(obj)) data = got;
    } else {
      this.drop(ahead);
    }
    data ??= await this.readNow(obj, d, first, end);
    const next: ReadStream = { next: end, ahead };
    if (sequential) this.topUp(obj, d, next, end - first);
    // A concurrent reader of the same object may have set a stream meanwhile: one stream wins.
    const other = this.streams.get(obj);
    if (other !== undefined) this.drop(other.ahead);
    this.streams.set(obj, next);
    if (this.streams.size > READ_STREAMS_MAX) {
      const oldest = this.streams.entries().next();
      if (oldest.done !== true) {
        this.streams.delete(oldest.value[0]);
        this.drop(oldest.value[1].ahead);
      }
    }
    return data;
  }

  /** Waits for read-ahead I/O still in flight (before the pool closes its disks). */
  async quiesce(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private async readNow(obj: ObjectId, d: Dnode, first: number, end: number): Promise<Uint8Array | null> {
    const ctx = { what: this.source.what, object: obj, offset: first * 2 ** d.blockShift };
    const bps: BlockPointer[] = [];
    for (let id = first; id < end; id++) {
      const bp = await lookupBlock(this.source.store, d, id, ctx);
      if (isHole(bp)) return null;
      bps.push(bp);
    }
    return this.source.store.readRun(bps, ctx);
  }

  /** Starts spans after the last one held until READ_AHEAD_SPANS are, within READ_AHEAD_BYTES_MAX. */
  private topUp(obj: ObjectId, d: Dnode, stream: ReadStream, spanBlocks: number): void {
    const bytes = spanBlocks * 2 ** d.blockShift;
    let from = stream.ahead.at(-1)?.end ?? stream.next;
    while (stream.ahead.length < READ_AHEAD_SPANS && from + spanBlocks <= d.blocks && this.aheadBytes + bytes <= READ_AHEAD_BYTES_MAX) {
      const data = this.readNow(obj, d, from, from + spanBlocks).catch((e: unknown) => {
        // A failed read-ahead is dropped: the reader's own read retries and reports the error.
        if (!(e instanceof MirrorpoolError)) throw e;
        return null;
      });
      const tracked: Promise<unknown> = data.finally(() => this.inFlight.delete(tracked));
      this.inFlight.add(tracked);
      stream.ahead.push({ first: from, end: from + spanBlocks, dnode: d, bytes, data });
      this.aheadBytes += bytes;
      from += spanBlocks;
    }
  }

  private drop(ahead: AheadSpan[]): void {
    for (const a of ahead) this.aheadBytes -= a.bytes;
    ahead.length = 0;
  }
}
