// Send: the records that turn "everything in snapshot B that is not in A" into a stream (DESIGN.md
// section 3, after ZFS's send). A full stream (no from point) carries every object of B; an
// incremental one only what changed after the from point's txg, found by the engine's
// birth-pruned walk (changesSince), so its cost follows the change. The from point is an earlier
// snapshot or a bookmark of the same dataset. The records go out in object order, which is what
// lets a cut-off stream resume from an object and offset (BEGIN.resumeObject/resumeOffset).
// stream-encoder.ts frames them and adds END; receive.ts applies them.

import { mpError } from '../lib/index.js';
import { type BlockPointer, type ChangeEvent, type Guid, type Pool, type Txg, changesSince, objectId, parseName, txg } from '../engine/index.js';
import { type BeginRecord, RecordKind, StreamFeature, type StreamRecord, makeWriteRecord } from './stream-record.js';

/** Data blocks read ahead of the consumer. */
const SEND_READS_IN_FLIGHT = 16;
/** What an estimate's WRITE records carry instead of data (a block is at most 1 MiB). */
const ZEROS = new Uint8Array(1024 * 1024);

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

/**
 * The records of `plan` after BEGIN, in object order (END is the encoder's). With `readData`
 * false, WRITE records carry zero bytes of the right length (for --estimate: no data is read).
 */
export async function* changeRecords(pool: Pool, plan: SendPlan, options: { readData?: boolean } = {}): AsyncGenerator<StreamRecord, void, undefined> {
  const readData = options.readData ?? true;
  // The snapshot stays open (a destroy waits) until the walk ends or the consumer stops.
  let release = (): void => undefined;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let opened: (root: BlockPointer) => void = () => undefined;
  const root = new Promise<BlockPointer>((resolve) => {
    opened = resolve;
  });
  const view = pool.dsl.withView(plan.toName, 'read', async (v) => {
    opened(v.os.rootPointer());
    await released;
  });
  try {
    yield* walk(pool, plan, await Promise.race([root, view.then(() => Promise.reject(new Error('snapshot view ended early')))]), readData);
  } finally {
    release();
    await view;
  }
}

/**
 * The records of the walk in order, with up to SEND_READS_IN_FLIGHT of them being made at once:
 * the disk reads the next blocks while the consumer encodes and sends the previous ones.
 */
async function* walk(pool: Pool, plan: SendPlan, root: BlockPointer, readData: boolean): AsyncGenerator<StreamRecord, void, undefined> {
  let size = 0;
  let blockBytes = 0;
  const ahead: Promise<StreamRecord | null>[] = [];
  for await (const e of changesSince(pool.store, root, plan.fromTxg, { fromObject: plan.resumeObject })) {
    const made = recordOf(pool, e, readData, plan, { size, blockBytes });
    // A read that fails after the consumer stopped must not surface as an unhandled rejection.
    made.catch(() => undefined);
    ahead.push(made);
    if (e.kind === 'object') {
      size = e.dnode.size;
      blockBytes = 2 ** e.dnode.blockShift;
    }
    if (ahead.length >= SEND_READS_IN_FLIGHT) {
      const record = await ahead.shift();
      if (record !== null && record !== undefined) yield record;
    }
  }
  while (ahead.length > 0) {
    const record = await ahead.shift();
    if (record !== null && record !== undefined) yield record;
  }
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
      const data = readData ? (await readBlock(pool, e.bp, e.object)).subarray(0, length) : ZEROS.subarray(0, length);
      return makeWriteRecord(objectId(e.object), offset, data);
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

