// A durable log: records appended in order, each with a sequence number; `waitDurable(seq)`
// resolves once every record up to seq is on stable storage. Many writers share one write and
// one fsync (group commit): records appended while a flush is in flight go out together in the
// next. The intent log of every dataset is one (zil.ts); the cluster's replication log is another.
//
// Where the bytes go: extents of raw pool space (1 MiB by default), allocated in syncing context
// and listed in the log's MOS object before the writer may use them, so a crash never loses an
// acknowledged record and import never needs to claim space. Inside extents, log blocks follow
// each other (log-format.ts); the end of the log is the first block that does not verify, so no
// end pointer is ever written. Each txg allocates extents ahead of the writer at its pace; the
// writer waits for a txg only when it runs out. A new extent is filled with zeros in the txg that
// allocates it (plain writes that the txg's sync makes durable), so on a file vdev the log's
// durable writes overwrite space the file system has already allocated: a write into a hole of a
// sparse file makes every O_DSYNC write commit the file system's journal too, at about twice the
// cost of the write itself.
//
// Truncating a prefix is in memory at once and on disk at the next txg: syncState() (called by
// the pool every txg) takes the extents holding only dead records off the front and records the
// new start. Those the writer needs as spares go to the back of the log with a new generation
// (recycled: listed again like a new extent, usable once that txg is durable, and already
// written, so no zero fill); the rest are freed.
// MOS object (type intentLog): bonus = guid u64 | last generation u64 | base seq u64 (first
// record of the first extent) | first live seq u64; data = the extent table.

import { type Random, MirrorpoolError, assert, mpError, readU64, readU64Number, writeU64, writeU64Number } from '../lib/index.js';
import * as dmu from './dmu.js';
import { ObjectType } from './dnode.js';
import { type LogExtent, type LogRecord, LOG_BLOCK_HEADER_BYTES, blockBytesFor, blockBytesOf, decodeExtents, decodeLogBlock, encodeExtents, encodeLogBlockInto, recordBytes } from './log-format.js';
import type { ObjectSet } from './objset.js';
import { type Dva, type ObjectId, type Txg } from './types.js';

export const LOG_EXTENT_BYTES_DEFAULT = 1024 * 1024;
/** Extents kept allocated ahead of the writer: at least, and at most (see txgSynced). */
const SPARE_EXTENTS_MIN = 2;
const SPARE_EXTENTS_MAX = 256;
/** ...but never more than this share of the pool's free space. */
const SPARE_FREE_SHIFT = 5;
/** Largest record: a log block must always fit in an extent. */
export const LOG_RECORD_BYTES_MAX = 128 * 1024;
const BONUS_BYTES = 32;
/** Zeros written per call when filling a new extent; shared and never changed. */
const ZERO_FILL_BYTES = 1024 * 1024;
let zeros: Uint8Array | null = null;

export interface LogVdev {
  /** Durable when it resolves, flushing nothing else (a txg's data is not waited for). */
  writeDurable(offset: number, data: Uint8Array): Promise<void>;
  /** Volatile until the pool syncs the txg (syncing context only: the zero fill of new extents). */
  write(offset: number, data: Uint8Array): Promise<void>;
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** What a log needs from its pool. */
export interface LogHost {
  readonly mos: ObjectSet;
  readonly vdevs: readonly LogVdev[];
  readonly random: Random;
  /** Runs `run` in syncing context; resolves once its txg is durable. */
  syncTask(run: (tx: dmu.Tx) => Promise<void>): Promise<void>;
  /** Allocates `bytes` of raw space in txg `t` (syncing context). ENOSPC. */
  allocate(bytes: number, t: Txg): Dva;
  /** Free bytes of the pool (the log keeps its spare extents to a small share of them). */
  freeBytes(): number;
  /** Frees raw space allocated in txg `birth` (syncing context). */
  free(dva: Dva, t: Txg, birth: Txg): void;
}

interface Extent extends LogExtent {
  /** Seq of its first record, once known (written or found by the scan). */
  firstSeq?: number;
  /** The txg that listed it with its current generation (allocated or recycled it). */
  listedTxg: Txg;
  /** Its listing txg is durable: it may hold records. */
  usable: boolean;
}

export class DurableLog {
  readonly obj: ObjectId;
  private readonly host: LogHost;
  private readonly guid: bigint;
  private readonly extentBytes: number;
  private lastGen: bigint;
  private extents: Extent[];
  private baseSeq: number;
  private firstSeq: number;
  /** Writer position: extent index and byte offset in it. */
  private cur = 0;
  private pos = 0;
  private nextSeq: number;
  private durableSeq: number;
  private queue: LogRecord[] = [];
  private flushing: Promise<void> | null = null;
  private growing: Promise<void> | null = null;
  private waiters: { seq: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  private failure: Error | null = null;
  private dirtyState = false;
  /** Extents the writer moved into since the last durable txg, and the spare target it sets. */
  private consumed = 0;
  private spareTarget = SPARE_EXTENTS_MIN;
  /** The flush loop encodes every block here (one flush at a time, so one buffer). */
  private blockBuffer: Uint8Array | null = null;
  readonly stats = { flushes: 0, records: 0, bytes: 0 };

  private constructor(host: LogHost, obj: ObjectId, guid: bigint, lastGen: bigint, extents: Extent[], baseSeq: number, firstSeq: number, extentBytes: number) {
    this.host = host;
    this.obj = obj;
    this.guid = guid;
    this.lastGen = lastGen;
    this.extents = extents;
    this.baseSeq = baseSeq;
    this.firstSeq = firstSeq;
    this.extentBytes = extentBytes;
    this.nextSeq = baseSeq;
    this.durableSeq = baseSeq - 1;
  }

  /** Creates an empty log object (syncing context); it gets extents when first written. */
  static async create(host: LogHost, tx: dmu.Tx): Promise<ObjectId> {
    const bonus = new Uint8Array(BONUS_BYTES);
    let g = 0n;
    while (g === 0n) g = host.random.u64();
    writeU64(bonus, 0, g);
    writeU64Number(bonus, 16, 1);
    writeU64Number(bonus, 24, 1);
    return dmu.createObject(host.mos, tx, { type: ObjectType.intentLog, blockBytes: 16 * 1024, checksumKind: 1, bonus });
  }

  /**
   * Opens the log in `obj` and finds its end by reading its blocks; returns it with the live
   * records (seq >= first live seq) in order.
   */
  static async open(host: LogHost, obj: ObjectId, options: { extentBytes?: number } = {}): Promise<{ log: DurableLog; records: LogRecord[] }> {
    const where = { object: obj };
    const bonus = await dmu.bonus(host.mos, obj);
    if (bonus.length < BONUS_BYTES) throw mpError('EPROTO', 'log object bonus is too short', where);
    const info = await dmu.objectInfo(host.mos, obj);
    const table = await dmu.read(host.mos, obj, 0, info.size);
    const extents: Extent[] = decodeExtents(table, where).map((e) => ({ ...e, listedTxg: e.txg, usable: true }));
    for (const e of extents) {
      if (host.vdevs[e.vdev] === undefined) throw mpError('EPROTO', `log extent on missing vdev ${e.vdev}`, where);
    }
    const log = new DurableLog(host, obj, readU64(bonus, 0), readU64(bonus, 8), extents, readU64Number(bonus, 16), readU64Number(bonus, 24), options.extentBytes ?? LOG_EXTENT_BYTES_DEFAULT);
    const records = await log.scan();
    return { log, records: records.filter((r) => r.seq >= log.firstSeq) };
  }

  /** Reads the blocks from the first extent on; sets the writer just past the last valid one. */
  private async scan(): Promise<LogRecord[]> {
    const out: LogRecord[] = [];
    let seq = this.baseSeq;
    for await (const b of this.blocks()) {
      out.push(...b.records);
      seq = b.nextSeq;
      this.cur = b.extent;
      this.pos = b.end;
    }
    this.nextSeq = seq;
    this.durableSeq = seq - 1;
    return out;
  }

  /**
   * The valid blocks in order: within an extent one after another; the next extent continues
   * the log only if its first block carries the next seq (the writer moves on when a block no
   * longer fits, leaving the rest of the extent unused).
   */
  private async *blocks(): AsyncGenerator<{ extent: number; end: number; records: LogRecord[]; nextSeq: number }, void, undefined> {
    let seq = this.baseSeq;
    const extents = [...this.extents];
    for (let i = 0; i < extents.length; i++) {
      const e = extents[i];
      assert(e !== undefined);
      const bytes = await this.vdev(e).read(e.offset, e.bytes);
      let at = 0;
      for (;;) {
        const block = decodeLogBlock(bytes, at, { guid: this.guid, gen: e.gen, seq });
        if (block === null) break;
        if (at === 0) e.firstSeq = seq;
        seq += block.records.length;
        at += block.bytes;
        yield { extent: i, end: at, records: block.records, nextSeq: seq };
      }
      if (at === 0) return;
    }
  }

  /** The durable records from `fromSeq` on (and at least the first live one), read from disk. */
  async *iterate(fromSeq: number): AsyncGenerator<LogRecord, void, undefined> {
    const from = Math.max(fromSeq, this.firstSeq);
    for await (const b of this.blocks()) {
      for (const r of b.records) if (r.seq >= from && r.seq <= this.durableSeq) yield r;
    }
  }

  private vdev(e: LogExtent): LogVdev {
    const v = this.host.vdevs[e.vdev];
    assert(v !== undefined, 'log extent vdev exists');
    return v;
  }

  /**
   * Appends a record (in order, synchronously); returns its seq. Durable after waitDurable(seq).
   * The log keeps `data` until the record is written: the caller must not change it.
   */
  append(data: Uint8Array): number {
    if (this.failure !== null) throw this.failure;
    if (data.length > this.recordBytesMax) {
      throw mpError('EINVAL', `a log record holds at most ${this.recordBytesMax} bytes, got ${data.length}`, { bytes: data.length });
    }
    const seq = this.nextSeq++;
    this.queue.push({ seq, data });
    return seq;
  }

  /** Resolves once every record up to `seq` is durable; fails if the log could not be written. */
  waitDurable(seq: number): Promise<void> {
    if (seq <= this.durableSeq) return Promise.resolve();
    if (this.failure !== null) return Promise.reject(this.failure);
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
    this.kick();
    return p;
  }

  /** Largest record this log takes: a block of one record always fits half an extent. */
  get recordBytesMax(): number {
    return Math.min(LOG_RECORD_BYTES_MAX, this.extentBytes / 2 - LOG_BLOCK_HEADER_BYTES - 4 - 512);
  }

  /** The next seq append will hand out. */
  get endSeq(): number {
    return this.nextSeq;
  }

  /** Records before `seq` are no longer needed; their space returns at a later txg. */
  truncate(seq: number): void {
    const upTo = Math.min(seq, this.durableSeq + 1);
    if (upTo > this.firstSeq) {
      this.firstSeq = upTo;
      this.dirtyState = true;
    }
  }

  get liveFrom(): number {
    return this.firstSeq;
  }

  private kick(): void {
    if (this.flushing !== null) return;
    this.flushing = this.flushLoop().finally(() => {
      this.flushing = null;
      if (this.queue.length > 0 && this.waiters.length > 0 && this.failure === null) this.kick();
    });
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.takeBatch();
        await this.ensureRoom(blockBytesFor(batch.map((r) => r.data.length)));
        const e = this.extents[this.cur];
        assert(e !== undefined);
        // Reused: the previous block's write has resolved, so the disk no longer reads it.
        this.blockBuffer ??= new Uint8Array(this.extentBytes / 2);
        const out = encodeLogBlockInto(this.blockBuffer, this.guid, e.gen, batch);
        if (this.pos === 0) e.firstSeq = batch[0]?.seq ?? this.nextSeq;
        await this.vdev(e).writeDurable(e.offset + this.pos, out);
        this.pos += out.length;
        this.durableSeq = batch.at(-1)?.seq ?? this.durableSeq;
        this.stats.flushes++;
        this.stats.records += batch.length;
        this.stats.bytes += out.length;
        this.wake();
      }
    } catch (e) {
      this.failure = e instanceof Error ? e : new Error(String(e));
      for (const w of this.waiters) w.reject(this.failure);
      this.waiters = [];
    }
  }

  /** The queued records that fit one block in one extent, in order. */
  private takeBatch(): LogRecord[] {
    // blockBytesFor as a running sum: a batch of many writers' records is taken in one pass.
    let raw = LOG_BLOCK_HEADER_BYTES;
    let count = 0;
    for (const r of this.queue) {
      const next = raw + recordBytes(r.data.length);
      if (count > 0 && blockBytesOf(next) > this.extentBytes / 2) break;
      raw = next;
      count++;
    }
    return this.queue.splice(0, count);
  }

  private fits(bytes: number): boolean {
    const e = this.extents[this.cur];
    return e !== undefined && this.pos + bytes <= e.bytes;
  }

  /** Moves the writer to an extent with room for `bytes`, allocating more when needed. */
  private async ensureRoom(bytes: number): Promise<void> {
    if (this.fits(bytes)) return;
    const moving = this.extents[this.cur] !== undefined && this.pos > 0;
    // Only extents whose txg is durable may hold records: the MOS must list them first. The
    // index is taken again after each wait: a txg may have taken dead extents off the front.
    const next = (): number => (moving ? this.cur + 1 : this.cur);
    while (this.extents[next()]?.usable !== true) await this.grow();
    const target = next();
    if (target !== this.cur) {
      this.cur = target;
      this.pos = 0;
      this.consumed++;
      this.growAhead();
    }
    assert(this.fits(bytes), 'a log block fits an empty extent');
  }

  /**
   * Starts growing, without waiting, once fewer extents than half the spare target lie ahead of
   * the writer: a burst then finds its extents listed by the time it reaches them, instead of
   * stopping every writer for a whole txg sync.
   */
  private growAhead(): void {
    if (this.growing !== null || this.extents.length - 1 - this.cur >= Math.ceil(this.spareTarget / 2)) return;
    this.grow().catch((e: unknown) => {
      // The writer grows again when it runs out, and fails then.
      if (!(e instanceof MirrorpoolError)) throw e;
    });
  }

  /**
   * The writer ran out of usable extents: allocates some in the next txg and waits for it to be
   * durable (the costly path; syncState allocates ahead at the pace the log is written).
   */
  private grow(): Promise<void> {
    let grownIn: Txg | null = null;
    this.growing ??= this.host
      .syncTask(async (tx) => {
        grownIn = tx.txg;
        // Running out means the writer outpaces the txgs: keep twice as much ahead from now on.
        await this.allocateExtents(tx, this.spareTarget);
        this.spareTarget = Math.min(SPARE_EXTENTS_MAX, 2 * this.spareTarget);
        await this.writeState(tx);
      })
      .then(() => {
        // Only up to that txg: a later txg may be allocating (and zero filling) more already.
        assert(grownIn !== null, 'the growth task ran');
        const durable = grownIn;
        for (const e of this.extents) if (e.listedTxg <= durable) e.usable = true;
      })
      .finally(() => {
        this.growing = null;
      });
    return this.growing;
  }

  /** Syncing context: allocates up to `count` extents (at least one) and fills them with zeros. */
  private async allocateExtents(tx: dmu.Tx, count: number): Promise<void> {
    const affordable = Math.floor((this.host.freeBytes() >> SPARE_FREE_SHIFT) / this.extentBytes);
    const added: Extent[] = [];
    for (let i = 0; i < Math.max(1, Math.min(count, affordable)); i++) {
      const dva = this.host.allocate(this.extentBytes, tx.txg);
      this.lastGen++;
      added.push({ vdev: dva.vdev, offset: dva.offset, bytes: this.extentBytes, gen: this.lastGen, txg: tx.txg, listedTxg: tx.txg, usable: false });
    }
    this.extents.push(...added);
    // One write at a time: writes queued behind each other would be merged into a fresh buffer.
    for (const e of added) await this.zeroFill(e);
  }

  /**
   * Writes zeros over a new extent, durable with the txg that allocates it (before the extent
   * is usable). A crash first leaves zeros in space no durable state uses: harmless.
   */
  private async zeroFill(e: Extent): Promise<void> {
    assert(!e.usable && e.firstSeq === undefined, 'only an unused extent is zero filled');
    zeros ??= new Uint8Array(ZERO_FILL_BYTES);
    for (let at = 0; at < e.bytes; at += zeros.length) {
      await this.vdev(e).write(e.offset + at, zeros.subarray(0, Math.min(zeros.length, e.bytes - at)));
    }
  }

  /**
   * Txg `t` is durable: extents it allocated may now hold records. The spare target follows
   * the pace of the writer: twice the extents it filled since the last durable txg.
   */
  txgSynced(t: Txg): void {
    for (const e of this.extents) if (e.listedTxg <= t) e.usable = true;
    this.spareTarget = Math.min(SPARE_EXTENTS_MAX, Math.max(SPARE_EXTENTS_MIN, 2 * this.consumed, this.spareTarget - 1));
    this.consumed = 0;
  }

  private wake(): void {
    const ready = this.waiters.filter((w) => w.seq <= this.durableSeq);
    this.waiters = this.waiters.filter((w) => w.seq > this.durableSeq);
    for (const w of ready) w.resolve();
  }

  /**
   * Syncing context, every txg: takes the dead extents off the front, recycles as many as the
   * spare target still lacks and frees the rest, allocates (and zero fills) what is still
   * missing, and records the new table and start. A recycled extent keeps its birth txg (its
   * space is freed as born then) and takes a new generation, so no block it held verifies again.
   */
  async syncState(tx: dmu.Tx): Promise<void> {
    const writing = this.extents.length > 0;
    const dead = this.takeDeadPrefix();
    let spare = this.extents.length - 1 - this.cur;
    for (const e of dead) {
      if (writing && spare < this.spareTarget) {
        this.lastGen++;
        this.extents.push({ vdev: e.vdev, offset: e.offset, bytes: e.bytes, gen: this.lastGen, txg: e.txg, listedTxg: tx.txg, usable: false });
        spare++;
      } else {
        this.host.free({ vdev: e.vdev, offset: e.offset, asize: e.bytes }, tx.txg, e.txg);
      }
    }
    if (writing && spare < this.spareTarget) {
      await this.allocateExtents(tx, this.spareTarget - spare);
      this.dirtyState = true;
    }
    if (dead.length === 0 && !this.dirtyState) return;
    await this.writeState(tx);
    this.dirtyState = false;
  }

  /**
   * Takes off the front the extents before the writer's that hold only records before the first
   * live one (the next extent starts at or before it), and moves the log's base to what is left.
   */
  private takeDeadPrefix(): Extent[] {
    let drop = 0;
    for (let i = 0; i < this.cur; i++) {
      const next = this.extents[i + 1]?.firstSeq;
      if (next === undefined || next > this.firstSeq) break;
      drop = i + 1;
    }
    const dead = this.extents.slice(0, drop);
    this.extents = this.extents.slice(drop);
    this.cur -= drop;
    this.baseSeq = this.extents[0]?.firstSeq ?? this.baseSeq;
    assert(this.cur >= 0, 'the writer keeps its extent');
    return dead;
  }

  private async writeState(tx: dmu.Tx): Promise<void> {
    const table = encodeExtents(this.extents);
    await dmu.truncate(this.host.mos, tx, this.obj, 0);
    if (table.length > 0) await dmu.write(this.host.mos, tx, this.obj, 0, table);
    const bonus = new Uint8Array(BONUS_BYTES);
    writeU64(bonus, 0, this.guid);
    writeU64(bonus, 8, this.lastGen);
    writeU64Number(bonus, 16, this.baseSeq);
    writeU64Number(bonus, 24, this.firstSeq);
    await dmu.setBonus(this.host.mos, tx, this.obj, bonus);
  }

  /** Syncing context: frees every extent and the object. The log must be idle. */
  async destroy(tx: dmu.Tx): Promise<void> {
    assert(this.flushing === null && this.queue.length === 0, 'a destroyed log is idle');
    for (const e of this.extents) this.host.free({ vdev: e.vdev, offset: e.offset, asize: e.bytes }, tx.txg, e.txg);
    this.extents = [];
    await dmu.freeObject(this.host.mos, tx, this.obj);
  }

  /** Waits for a flush or growth in flight (before the pool closes its disks). */
  async quiesce(): Promise<void> {
    await Promise.allSettled([this.flushing, this.growing]);
  }

  /** Raw space the log holds: the pool's invariant check counts it as live. */
  extentRanges(): Dva[] {
    return this.extents.map((e) => ({ vdev: e.vdev, offset: e.offset, asize: e.bytes }));
  }
}

/** The raw space held by the log in `obj`, read from its table (for the pool's invariant check). */
export async function logExtentRanges(mos: ObjectSet, obj: ObjectId): Promise<Dva[]> {
  const info = await dmu.objectInfo(mos, obj);
  const table = await dmu.read(mos, obj, 0, info.size);
  return decodeExtents(table, { object: obj }).map((e) => ({ vdev: e.vdev, offset: e.offset, asize: e.bytes }));
}


/**
 * Syncing context: empties the log in `obj` without freeing its extents (a pool rewound to its
 * checkpoint drops every record). The log takes a new guid, so no block written under the old
 * one verifies again — neither in its extents nor in space it held after the checkpoint — and
 * its next record goes to the start of its first extent.
 */
export async function resetLogObject(mos: ObjectSet, tx: dmu.Tx, obj: ObjectId, random: Random): Promise<void> {
  const bonus = await dmu.bonus(mos, obj);
  if (bonus.length < BONUS_BYTES) throw mpError('EPROTO', 'log object bonus is too short', { object: obj });
  const next = bonus.slice(0, BONUS_BYTES);
  let g = 0n;
  while (g === 0n || g === readU64(bonus, 0)) g = random.u64();
  writeU64(next, 0, g);
  writeU64Number(next, 24, readU64Number(bonus, 16));
  await dmu.setBonus(mos, tx, obj, next);
}
