// Receive: applies a stream's records to a dataset (DESIGN.md section 3). Everything is written
// to a temporary dataset — a clone of the target's from snapshot for an incremental stream, a new
// dataset for a full one — and only after END has verified the whole stream does one txg make it
// the target, with a snapshot carrying the sender's guid and creation time (Dsl.receiveEnd). On
// any error the temporary dataset is destroyed and the target is exactly as it was; a crash
// leaves only the temporary dataset, which the next import destroys (Dsl.dropAbandonedReceives)
// unless it holds a resume token.
//
// An incremental stream needs the target's newest snapshot to be the stream's from point (by
// guid) and the target unchanged since: otherwise ESTALE ("the target diverged"), or with
// `force` the target is first rolled back to the snapshot with that guid (later snapshots go).
// Objects are created at the sender's object numbers, so both sides stay logically equal.

import { MirrorpoolError, bytesEqual, hasCode, mpError } from '../lib/index.js';
import { type DatasetView, type Pool, type TxHandle, ObjectType, dmu, notReserved, objectId, parseName } from '../engine/index.js';
import { decodeResumeToken, encodeResumeToken } from './resume-token.js';
import { type BeginRecord, RecordKind, type StreamRecord } from './stream-record.js';

export interface ReceiveOptions {
  /** Roll the target back to the stream's from snapshot first (`recv -F`). */
  readonly force?: boolean;
  /**
   * Keep what arrived when the stream stops early (`recv -s`): the error then carries a resume
   * token (details.token) for `send -t`.
   */
  readonly resumable?: boolean;
  /** Called after each record with the records and data bytes applied so far. */
  readonly progress?: (p: ReceiveProgress) => void;
}

export interface ReceiveProgress {
  records: number;
  dataBytes: number;
}

export interface ReceiveResult {
  /** The snapshot the stream created on the target. */
  readonly snapshot: string;
  readonly records: number;
  readonly dataBytes: number;
}

/** Object types a dataset's object set holds (anything else in a stream is EPROTO). */
const DATASET_OBJECT_TYPES: ReadonlySet<number> = new Set([ObjectType.plain, ObjectType.zap, ObjectType.keyData]);
/**
 * Records applied per transaction, and the WRITE bytes they may hold. A batch is applied while the
 * records after it arrive, and the last one only after END: a small batch leaves less of the
 * stream's work waiting at the end and returns its gathering buffers sooner (the 10 MiB push of
 * the stream bench spent 35-36 ms from its first byte to the last record applied with batches of
 * 1-2 MiB, 39-47 ms with 8 MiB).
 */
const RECORDS_PER_TX = 256;
const BATCH_BYTES_MAX = 2 * 1024 * 1024;

/** What a caller that owns the records' buffers learns while they are applied (stream.ts). */
export interface ReceiveHooks {
  /**
   * Called after each batch is applied: every record taken from `records` so far has then been
   * applied, and the data of its WRITE (copied into the dataset's dirty blocks) is no longer
   * referenced, so the buffers it was decoded from may be reused.
   */
  readonly applied?: () => void;
}

/**
 * Receives the records of one stream (BEGIN first, END last, as the decoder checked them) into
 * dataset `target` of `pool`.
 */
export async function receiveRecords(pool: Pool, target: string, records: AsyncIterable<StreamRecord>, options: ReceiveOptions = {}, hooks: ReceiveHooks = {}): Promise<ReceiveResult> {
  parseName(target, ['dataset']);
  notReserved(target);
  const it = records[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true || first.value.kind !== RecordKind.begin) throw mpError('EPROTO', 'stream does not start with BEGIN', {});
  const begin = first.value;
  const snapName = begin.toName.slice(begin.toName.indexOf('@') + 1);
  const resumed = begin.resumeObject > 0 || begin.resumeOffset > 0;
  if (resumed) checkResume(pool, target, begin);
  // The temporary dataset is made in a txg of its own while the first batch arrives: nothing is
  // applied before it exists, and a failure to make it is the receive's error at once, however
  // slowly the stream comes (there is then nothing to abort or suspend).
  let beginFailure: { readonly error: Error } | undefined;
  let beginSettled = resumed;
  const begun = resumed
    ? Promise.resolve()
    : prepareTarget(pool, target, begin, options.force === true)
      .then((from) => pool.dsl.receiveBegin(target, from))
      .catch((e: unknown) => void (beginFailure = { error: e instanceof Error ? e : new Error(String(e)) }))
      .finally(() => (beginSettled = true));
  const beginFailed = new Promise<never>((_, reject) => {
    void begun.then(() => beginFailure !== undefined && reject(beginFailure.error));
  });
  beginFailed.catch(() => undefined);
  const whenBegun = async (): Promise<void> => {
    await begun;
    if (beginFailure !== undefined) throw beginFailure.error;
  };
  const nextRecord = (): Promise<IteratorResult<StreamRecord>> => (beginSettled ? it.next() : Promise.race([it.next(), beginFailed]));
  const temp = `${target}%recv`;
  const progress: ReceiveProgress = { records: 1, dataBytes: 0 };
  // How far the applied records reach, in stream order: where a resumed stream starts (object
  // 0 never exists, so object 1 offset 0 is the very start, and still marks a resumed stream).
  const at = { object: Math.max(1, begin.resumeObject), offset: begin.resumeOffset };
  const applyBatch = (batch: readonly StreamRecord[]): Promise<void> =>
    pool.dsl.withView(temp, 'write', async (view) => {
      const tx = await pool.assign();
      try {
        for (const r of batch) {
          await apply(view, tx, r);
          advance(at, r);
          if (r.kind === RecordKind.write) progress.dataBytes += r.data.length;
          options.progress?.(progress);
        }
      } finally {
        tx.commit();
      }
    });
  try {
    for (let ended = false; !ended; ) {
      // Records are gathered before a transaction opens: a stalled sender must never hold a txg.
      const batch: StreamRecord[] = [];
      let bytes = 0;
      // A resumable receive keeps what arrived before the stream broke: the batch so far goes in.
      let broken = null as Error | null;
      while (!ended && broken === null && batch.length < RECORDS_PER_TX && bytes < BATCH_BYTES_MAX) {
        const next = await nextRecord().catch((e: unknown) => {
          if (beginFailure !== undefined || options.resumable !== true) throw e;
          broken = e instanceof Error ? e : new Error(String(e));
          return null;
        });
        if (next === null) break;
        if (next.done === true) {
          const cut = mpError('EPROTO', 'stream ends before END', { records: progress.records });
          if (options.resumable !== true) throw cut;
          broken = cut;
          break;
        }
        const r = next.value;
        progress.records++;
        if (r.kind === RecordKind.end) {
          if (r.toGuid !== begin.toGuid) throw mpError('EPROTO', 'END names another snapshot than BEGIN', {});
          // The source must end here (the decoder refuses bytes after END).
          if ((await it.next()).done !== true) throw mpError('EPROTO', 'records after END', {});
          ended = true;
        } else {
          batch.push(r);
          if (r.kind === RecordKind.write) bytes += r.data.length;
        }
      }
      await whenBegun();
      if (batch.length > 0) await applyBatch(batch);
      hooks.applied?.();
      if (broken !== null) throw broken;
    }
    await pool.dsl.receiveEnd(target, { name: snapName, guid: begin.toGuid, creationMs: begin.creationMs });
  } catch (e) {
    await begun;
    if (beginFailure !== undefined) throw beginFailure.error;
    if (options.resumable === true) throw await suspend(pool, target, begin, at, e);
    await pool.dsl.receiveAbort(target).catch(() => undefined);
    throw e;
  }
  return { snapshot: `${target}@${snapName}`, records: progress.records, dataBytes: progress.dataBytes };
}

/** Moves the position past record `r` (records come in object order, offsets ascending). */
function advance(at: { object: number; offset: number }, r: StreamRecord): void {
  if (r.kind === RecordKind.object) {
    at.object = r.object;
    at.offset = 0;
  } else if (r.kind === RecordKind.write && r.object === at.object) {
    at.offset = r.offset + r.data.length;
  } else if (r.kind === RecordKind.free && r.object === at.object) {
    at.offset = Math.min(Number.MAX_SAFE_INTEGER, r.offset + r.length);
  }
}

/**
 * Makes what was applied durable and leaves a resume token with it; returns the error to throw
 * (the original code, the token in details.token). If even that fails, the receive is aborted.
 */
async function suspend(pool: Pool, target: string, begin: BeginRecord, at: { object: number; offset: number }, e: unknown): Promise<unknown> {
  const token = encodeResumeToken({ toGuid: begin.toGuid, toName: begin.toName, fromGuid: begin.fromGuid, object: at.object, offset: at.offset });
  try {
    await pool.sync();
    await pool.dsl.receiveSuspend(target, token);
  } catch {
    await pool.dsl.receiveAbort(target).catch(() => undefined);
    return e;
  }
  if (!(e instanceof MirrorpoolError)) return e;
  return mpError(e.code, `${e.message}; the receive can resume with token ${token}`, { ...e.details, token }, e);
}

/** A resumed stream continues the stopped receive its token came from (ENOENT, ESTALE otherwise). */
function checkResume(pool: Pool, target: string, begin: BeginRecord): void {
  const text = pool.dsl.receiveResumeToken(target);
  if (text === undefined) throw mpError('ENOENT', `no stopped receive into ${target} to resume`, { name: target });
  const t = decodeResumeToken(text);
  if (t.toGuid !== begin.toGuid || t.fromGuid !== begin.fromGuid || t.object !== begin.resumeObject || t.offset !== begin.resumeOffset) {
    throw mpError('ESTALE', `the resumed stream does not continue the stopped receive into ${target} (send with its token)`, { name: target });
  }
}

/**
 * Checks the target against BEGIN; returns the from snapshot to clone (null for a full stream).
 * With `force`, rolls the target back to the from snapshot first.
 */
async function prepareTarget(pool: Pool, target: string, begin: BeginRecord, force: boolean): Promise<string | null> {
  const exists = await pool.dsl.list({ under: target, types: ['filesystem'] }).then(
    (heads) => heads.some((e) => e.name === target),
    (e: unknown) => {
      if (hasCode(e, 'ENOENT')) return false;
      throw e;
    },
  );
  const snapName = begin.toName.slice(begin.toName.indexOf('@') + 1);
  if (begin.fromGuid === 0n) {
    if (exists) throw mpError('EEXIST', `${target} exists: a full stream creates its dataset (receive into a new name)`, { name: target });
    return null;
  }
  if (!exists) throw mpError('ENOENT', `${target} does not exist: an incremental stream needs it`, { name: target });
  const snaps = (await pool.dsl.list({ under: target, types: ['snapshot'] })).filter((e) => e.name.startsWith(`${target}@`));
  if (snaps.some((s) => s.guid === begin.toGuid)) throw mpError('EEXIST', `${target} already has the stream's snapshot (guid ${begin.toGuid})`, { name: target });
  if (snaps.some((s) => s.name === `${target}@${snapName}`)) throw mpError('EEXIST', `snapshot ${target}@${snapName} exists`, { name: target });
  const fromSnap = snaps.find((s) => s.guid === begin.fromGuid);
  if (fromSnap === undefined) {
    throw mpError('ESTALE', `${target} has no snapshot with the stream's from guid ${begin.fromGuid}: send from a snapshot both sides have`, { name: target });
  }
  const newest = snaps.reduce((a, b) => (b.createTxg > a.createTxg ? b : a));
  // Changes still in memory count: `written` follows the synced state.
  await pool.sync();
  const written = (await pool.dsl.properties(target)).find((p) => p.property === 'written')?.value;
  const modified = written !== undefined && written !== '0';
  if (newest.name !== fromSnap.name || modified) {
    const why = newest.name !== fromSnap.name ? `its newest snapshot is ${newest.name}, not ${fromSnap.name}` : `it was modified since ${fromSnap.name}`;
    if (!force) throw mpError('ESTALE', `${target} diverged from the stream: ${why} (receive with force to roll it back)`, { name: target });
    await pool.dsl.rollback(fromSnap.name, { recursive: true });
  }
  return fromSnap.name;
}

async function apply(view: DatasetView, tx: TxHandle, r: StreamRecord): Promise<void> {
  const os = view.os;
  switch (r.kind) {
    case RecordKind.begin:
      throw mpError('EPROTO', 'a second BEGIN', {});
    case RecordKind.snapshot:
      throw mpError('ENOTSUP', 'streams with intermediate snapshots are not received yet', { name: r.name });
    case RecordKind.object: {
      if (!DATASET_OBJECT_TYPES.has(r.objectType)) throw mpError('EPROTO', `OBJECT ${r.object} has type ${r.objectType}, which a dataset does not hold`, { object: r.object });
      const header = await os.header(r.object);
      // An incremental stream carries every object of a changed dnode block, most of them as
      // they were (send.ts): one the target already has exactly is left alone, not rewritten.
      if (header.type === r.objectType && 2 ** header.maxBlockShift === r.maxBlockBytes && header.size === r.size && bytesEqual(header.bonus, r.bonus)) return;
      const create = { type: r.objectType as ObjectType, blockBytes: r.maxBlockBytes, checksumKind: r.checksumKind, bonus: r.bonus };
      if (header.type !== ObjectType.none && (header.type !== r.objectType || 2 ** header.maxBlockShift !== r.maxBlockBytes)) {
        await dmu.freeObject(os, tx, r.object);
      }
      if (header.type === ObjectType.none || header.type !== r.objectType || 2 ** header.maxBlockShift !== r.maxBlockBytes) {
        await dmu.claimObject(os, tx, r.object, create);
      } else {
        await dmu.setBonus(os, tx, r.object, r.bonus);
      }
      await dmu.truncate(os, tx, r.object, r.size);
      return;
    }
    case RecordKind.freeObjects: {
      const end = Math.min(r.first + r.count, os.nextObject());
      for (let obj = r.first; obj < end; obj++) {
        if ((await os.header(objectId(obj))).type !== ObjectType.none) await dmu.freeObject(os, tx, objectId(obj));
      }
      return;
    }
    case RecordKind.write:
      await existing(view, r.object, 'WRITE');
      // The checksum was verified against the data on arrival: a whole block's sync reuses it.
      await dmu.write(os, tx, r.object, r.offset, r.data, r.checksum);
      return;
    case RecordKind.free: {
      const size = await existing(view, r.object, 'FREE');
      if (r.offset < size) await dmu.freeRange(os, tx, r.object, r.offset, Math.min(r.length, size - r.offset));
      return;
    }
    case RecordKind.end:
      return;
  }
}

/** The object's size; EPROTO when the stream never created it. */
async function existing(view: DatasetView, object: number, what: string): Promise<number> {
  const h = await view.os.header(objectId(object));
  if (h.type === ObjectType.none) throw mpError('EPROTO', `${what} for object ${object}, which does not exist`, { object });
  return h.size;
}

