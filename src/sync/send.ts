// Send: the records that turn "everything in snapshot B that is not in A" into a stream (DESIGN.md
// section 3, after ZFS's send). A full stream (no from point) carries every object of B; an
// incremental one only what changed after the from point's txg, found by the engine's
// birth-pruned walk (changesSince), so its cost follows the change. The from point is an earlier
// snapshot or a bookmark of the same dataset; while its snapshot exists (a bookmark's too, found
// by guid), the walk compares each changed dnode block with the snapshot's and leaves out the
// objects that are the same there. The records go out in object order, which is what
// lets a cut-off stream resume from an object and offset (BEGIN.resumeObject/resumeOffset).
// stream-encoder.ts frames them and adds END; receive.ts applies them.

import { ChecksumKind, SpareBuffers, assert, mpError } from '../lib/index.js';
import { type BlockPointer, type ChangeEvent, type Guid, type Pool, type Txg, changesSince, objectId, parseName, txg } from '../engine/index.js';
import { type BeginRecord, RecordKind, StreamFeature, type StreamRecord, makeWriteRecord, verifiedWrite } from './stream-record.js';

/** Records made ahead of the consumer (their blocks being read). */
const SEND_READS_IN_FLIGHT = 32;
/**
 * Records made ahead of the consumer in an incremental stream, where only those with data count
 * against SEND_READS_IN_FLIGHT: the OBJECT records of a changed dnode block's unchanged objects
 * (up to 31 per changed object when the from point is a bookmark; see changesSince) would
 * otherwise leave one or two blocks being read at a time.
 */
const SEND_RECORDS_AHEAD_MAX = 1024;
/** Largest run of back-to-back data blocks read with one disk read. */
const SEND_RUN_BYTES_MAX = 1024 * 1024;
/** What an estimate's WRITE records carry instead of data (a block is at most 1 MiB). */
const ZEROS = new Uint8Array(1024 * 1024);
/**
 * Bytes of spare run buffers kept (with `reuse`): what SEND_READS_IN_FLIGHT records of the
 * largest block size hold, and one more run.
 */
const SEND_SPARE_BYTES_MAX = (SEND_READS_IN_FLIGHT + 1) * 1024 * 1024;
/**
 * The spare run buffers of every send of this process (with `reuse`): a node that sends often
 * reads each send into buffers touched before, not into fresh memory (spare-buffers.ts).
 */
const sendBuffers = new SpareBuffers(SEND_SPARE_BYTES_MAX);

export interface SendOptions {
  /** `pool/ds@snap` or `pool/ds#bookmark`: an incremental stream from this point. */
  readonly from?: string;
  /** Resume a cut-off stream at this object and byte offset (from a receiver's resume token). */
  readonly resume?: { readonly object: number; readonly offset: number };
}

/** What a send is made of: the to snapshot, the from point, and the object set to walk. */
export interface SendPlan {
  readonly toName: string;
  readonly toGuid: Guid;
  readonly toTxg: Txg;
  readonly creationMs: number;
  readonly fromGuid: Guid | 0n;
  readonly fromTxg: Txg;
  readonly resumeObject: number;
  readonly resumeOffset: number;
}

/** Checks the snapshot and from point and returns the plan (ENOENT, EINVAL on a bad pair). */
export async function planSend(pool: Pool, to: string, options: SendOptions = {}): Promise<SendPlan> {
  const n = parseName(to, ['snapshot']);
  const dataset = to.slice(0, to.indexOf('@'));
  const snaps = await pool.dsl.list({ under: dataset, types: ['snapshot'] });
  const target = snaps.find((e) => e.name === to);
  if (target === undefined) throw mpError('ENOENT', `snapshot ${to} does not exist`, { name: to });
  let fromGuid: Guid | 0n = 0n;
  let fromTxg = txg(0);
  if (options.from !== undefined) {
    const f = parseName(options.from, ['snapshot', 'bookmark']);
    if (f.pool !== n.pool || f.path.join('/') !== n.path.join('/')) {
      throw mpError('EINVAL', `the from point ${options.from} is not of ${dataset}`, { from: options.from, to });
    }
    if (f.bookmark !== undefined) {
      const mark = pool.dsl.bookmarkOf(options.from);
      fromGuid = mark.guid;
      fromTxg = mark.txg;
    } else {
      const snap = snaps.find((e) => e.name === options.from);
      if (snap === undefined) throw mpError('ENOENT', `snapshot ${options.from} does not exist`, { name: options.from });
      fromGuid = snap.guid;
      fromTxg = snap.createTxg;
    }
    if (fromTxg >= target.createTxg) throw mpError('EINVAL', `${options.from} is not older than ${to}`, { from: options.from, to });
  }
  const resume = options.resume ?? { object: 0, offset: 0 };
  if (!Number.isSafeInteger(resume.object) || resume.object < 0 || !Number.isSafeInteger(resume.offset) || resume.offset < 0) {
    throw mpError('EINVAL', 'a resume position is a non-negative object and offset', { ...resume });
  }
  return {
    toName: to, toGuid: target.guid, toTxg: target.createTxg, creationMs: target.creationMs, fromGuid, fromTxg,
    resumeObject: resume.object, resumeOffset: resume.offset,
  };
}

/** BEGIN of `plan`; `more` marks a stream another one of its package follows. */
export function beginRecord(plan: SendPlan, more = false): BeginRecord {
  return {
    kind: RecordKind.begin, features: more ? StreamFeature.package : 0, toGuid: plan.toGuid, fromGuid: plan.fromGuid, toName: plan.toName, creationMs: plan.creationMs,
    toTxg: plan.toTxg, fromTxg: plan.fromTxg, resumeObject: objectId(plan.resumeObject), resumeOffset: plan.resumeOffset,
  };
}

export interface ChangeRecordsOptions {
  /** False: WRITE records carry zero bytes of the right length (--estimate: no data is read). */
  readonly readData?: boolean;
  /**
   * The consumer is done with a record, its data included, when it asks for the next one: the
   * buffers runs of blocks are read into are then reused (SpareBuffers) instead of fresh ones
   * per run. A consumer that keeps records (or views of their data) must not set this.
   */
  readonly reuse?: boolean;
}

/** The records of `plan` after BEGIN, in object order (END is the encoder's). */
export async function* changeRecords(pool: Pool, plan: SendPlan, options: ChangeRecordsOptions = {}): AsyncGenerator<StreamRecord, void, undefined> {
  const readData = options.readData ?? true;
  // The snapshots stay open (a destroy waits) until the walk ends or the consumer stops. The
  // from snapshot, when the from point still is one, lets the walk leave out unchanged objects.
  const from = plan.fromGuid === 0n ? undefined : await snapshotWithGuid(pool, plan.toName.slice(0, plan.toName.indexOf('@')), plan.fromGuid);
  const toView = openView(pool, plan.toName);
  const fromView = from === undefined ? undefined : openView(pool, from);
  try {
    const to = await toView.root;
    // A from snapshot destroyed meanwhile only costs the shortcut.
    const fromRoot = await fromView?.root.catch(() => undefined);
    const buffers = options.reuse === true ? sendBuffers : null;
    yield* walk(pool, plan, to, fromRoot, readData, buffers);
  } finally {
    toView.release();
    fromView?.release();
    await Promise.all([toView.closed, fromView?.closed]);
  }
}

/** The name of `dataset`'s snapshot with `guid`, if it has one. */
async function snapshotWithGuid(pool: Pool, dataset: string, guid: Guid): Promise<string | undefined> {
  const snaps = await pool.dsl.list({ under: dataset, types: ['snapshot'] });
  return snaps.find((e) => e.guid === guid && e.name.startsWith(`${dataset}@`))?.name;
}

/** A snapshot held open for reading: its object set's root, until release(); `closed` after. */
function openView(pool: Pool, name: string): { root: Promise<BlockPointer>; release(): void; closed: Promise<void> } {
  let release = (): void => undefined;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let opened: (root: BlockPointer) => void = () => undefined;
  const root = new Promise<BlockPointer>((resolve) => {
    opened = resolve;
  });
  const closed = pool.dsl.withView(name, 'read', async (v) => {
    opened(v.os.rootPointer());
    await released;
  });
  // A failure reaches the caller through `root`; `closed` only says the view is gone.
  return { root: Promise.race([root, closed.then(() => Promise.reject(new Error('snapshot view ended early')))]), release, closed: closed.catch(() => undefined) };
}

/**
 * The records of the walk in order, with up to SEND_READS_IN_FLIGHT of them being made at once
 * (in an incremental stream: of those that read data, up to SEND_RECORDS_AHEAD_MAX records in
 * all): the disk reads the next blocks while the consumer encodes and sends the previous ones. Data
 * blocks that follow each other both in one object and on disk are read as runs (one disk read of
 * up to SEND_RUN_BYTES_MAX; see readRun), into `buffers` when given: a run's buffer goes back once
 * the consumer has asked for the record after its last one.
 */
async function* walk(pool: Pool, plan: SendPlan, root: BlockPointer, fromRoot: BlockPointer | undefined, readData: boolean, buffers: SpareBuffers | null): AsyncGenerator<StreamRecord, void, undefined> {
  let size = 0;
  let blockBytes = 0;
  const ahead: Promise<StreamRecord | null>[] = [];
  // Records in `ahead` that read data (an incremental stream counts only those; a full one all).
  const reading: boolean[] = [];
  let readingCount = 0;
  const push = (made: Promise<StreamRecord | null>, reads: boolean): void => {
    // A read that fails after the consumer stopped must not surface as an unhandled rejection.
    made.catch(() => undefined);
    ahead.push(made);
    reading.push(reads);
    if (reads) readingCount++;
  };
  const full = (): boolean => (plan.fromTxg === 0 ? ahead.length : readingCount) >= SEND_READS_IN_FLIGHT || ahead.length >= SEND_RECORDS_AHEAD_MAX;
  const next = (): Promise<StreamRecord | null> | undefined => {
    if (reading.shift() === true) readingCount--;
    return ahead.shift();
  };
  let run: DataEvent[] = [];
  // The run buffer each record made from one holds a share of (buffers only).
  const leases = new Map<StreamRecord, RunLease>();
  const flush = (): void => {
    if (run.length === 0) return;
    for (const made of readRun(pool, run, { size, blockBytes }, buffers, leases)) push(made, true);
    run = [];
  };
  /** The consumer asked for the record after `record`: it is done with it. */
  const done = (record: StreamRecord): void => {
    const lease = leases.get(record);
    if (lease === undefined) return;
    leases.delete(record);
    lease.release();
  };
  for await (const e of changesSince(pool.store, root, plan.fromTxg, { fromObject: plan.resumeObject, ...(fromRoot === undefined ? {} : { from: fromRoot }) })) {
    if (readData && e.kind === 'data' && whole(plan, e, { size, blockBytes })) {
      const last = run.at(-1);
      if (last !== undefined && (last.object !== e.object || last.blockId + 1 !== e.blockId || !followsOnDisk(last.bp, e.bp) || (run.length + 1) * blockBytes > SEND_RUN_BYTES_MAX)) flush();
      run.push(e);
    } else {
      flush();
      push(recordOf(pool, e, readData, plan, { size, blockBytes }), readData && e.kind === 'data');
    }
    if (e.kind === 'object') {
      size = e.dnode.size;
      blockBytes = 2 ** e.dnode.blockShift;
    }
    while (ahead.length > 0 && full()) {
      const record = await next();
      if (record !== null && record !== undefined) {
        yield record;
        done(record);
      }
    }
  }
  flush();
  while (ahead.length > 0) {
    const record = await next();
    if (record !== null && record !== undefined) {
      yield record;
      done(record);
    }
  }
}

type DataEvent = Extract<ChangeEvent, { kind: 'data' }>;

/** Whether the first copy of `next` starts on disk where the first copy of `prev` ends. */
function followsOnDisk(prev: BlockPointer, next: BlockPointer): boolean {
  const a = prev.dvas[0];
  const b = next.dvas[0];
  return a !== undefined && b !== undefined && a.vdev === b.vdev && a.offset + a.asize === b.offset;
}

/** A data block sent whole (not cut by the object's end, not skipped by a resume): runs take it. */
function whole(plan: SendPlan, e: DataEvent, object: { size: number; blockBytes: number }): boolean {
  const offset = e.blockId * object.blockBytes;
  return object.blockBytes > 0 && offset + object.blockBytes <= object.size && !skipped(plan, e.object, offset) && e.bp.lsize === object.blockBytes;
}

/** A run buffer shared by the records read into it; back to `buffers` when the last one is done. */
interface RunLease {
  release(): void;
}

/**
 * The WRITE records of `run` (whole blocks of one object, consecutive ids), one promise each:
 * one disk read when the blocks lie back to back, else a read per block. Their data are views
 * into the buffer read. Without `buffers` the records own it; with them it is taken from
 * `buffers` (a run of one block too: an incremental send of scattered changes is mostly such
 * runs), each record made from it is entered in `leases`, and it goes back once every one of
 * them was released (a run that could not be read at once gives it back at once).
 */
function readRun(
  pool: Pool, run: readonly DataEvent[], object: { size: number; blockBytes: number }, buffers: SpareBuffers | null, leases: Map<StreamRecord, RunLease>,
): Promise<StreamRecord>[] {
  const first = run[0];
  assert(first !== undefined);
  const ctx = { what: 'send', object: first.object, offset: first.blockId * object.blockBytes };
  const into = buffers !== null ? buffers.take(run.length * object.blockBytes) : undefined;
  const bytes = run.length === 1 && into === undefined ? Promise.resolve(null) : pool.store.readRun(run.map((e) => e.bp), ctx, into);
  let holders = run.length;
  const lease: RunLease = {
    release: () => {
      if (--holders === 0 && into !== undefined) buffers?.give(into);
    },
  };
  if (into !== undefined) {
    void bytes.then((all) => {
      if (all === null) buffers?.give(into);
    }, () => buffers?.give(into));
  }
  return run.map(async (e, i) => {
    const all = await bytes;
    const data = all !== null ? all.subarray(i * object.blockBytes, (i + 1) * object.blockBytes) : await readBlock(pool, e.bp, e.object);
    assert(data.length === object.blockBytes);
    const record = writeRecord(e, e.blockId * object.blockBytes, data);
    if (all !== null && into !== undefined) leases.set(record, lease);
    return record;
  });
}

/**
 * The WRITE of a whole block as read: the block pointer's fletcher-4, which the read just
 * verified against these bytes, is the record's checksum, and the record is marked verified so
 * that encoding does not hash the data again; other kinds compute it.
 */
function writeRecord(e: DataEvent, offset: number, data: Uint8Array): StreamRecord {
  if (e.bp.checksumKind === ChecksumKind.fletcher4 && e.bp.lsize === data.length) {
    return verifiedWrite({ kind: RecordKind.write, object: objectId(e.object), offset, data, checksum: e.bp.checksum });
  }
  return makeWriteRecord(objectId(e.object), offset, data);
}

async function recordOf(pool: Pool, e: ChangeEvent, readData: boolean, plan: SendPlan, object: { size: number; blockBytes: number }): Promise<StreamRecord | null> {
  switch (e.kind) {
    case 'object': {
      const d = e.dnode;
      return {
        kind: RecordKind.object, object: objectId(e.object), objectType: d.type, blockBytes: 2 ** d.blockShift, maxBlockBytes: 2 ** d.maxBlockShift,
        checksumKind: d.checksumKind, bonus: d.bonus, size: d.size,
      };
    }
    case 'freeObjects':
      return { kind: RecordKind.freeObjects, first: objectId(e.first), count: e.count };
    case 'free': {
      const offset = e.firstBlock * object.blockBytes;
      const end = Math.min(object.size, (e.firstBlock + e.blocks) * object.blockBytes);
      if (end <= offset || skipped(plan, e.object, offset)) return null;
      return { kind: RecordKind.free, object: objectId(e.object), offset, length: end - offset };
    }
    case 'data': {
      const offset = e.blockId * object.blockBytes;
      const length = Math.min(object.blockBytes, object.size - offset);
      if (length <= 0 || skipped(plan, e.object, offset)) return null;
      if (!readData) return makeWriteRecord(objectId(e.object), offset, ZEROS.subarray(0, length));
      return writeRecord(e, offset, (await readBlock(pool, e.bp, e.object)).subarray(0, length));
    }
  }
}

/** A resumed stream skips what the receiver has: the resume object's bytes before its offset. */
function skipped(plan: SendPlan, object: number, offset: number): boolean {
  return object === plan.resumeObject && offset < plan.resumeOffset;
}

/** A block read for sending: not kept in the cache (a send reads each block once). */
function readBlock(pool: Pool, bp: BlockPointer, object: number): Promise<Uint8Array> {
  return pool.store.readOwned(bp, { what: 'send', object });
}

