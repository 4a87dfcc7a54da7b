// Keyed objects: every dataset's object 1 is its key directory, a ZAP from key (1..1024 bytes of
// UTF-8) to object number; each keyed object holds its bytes and, in its bonus, the txg of its
// last change. A synchronous change (`sync`, or the dataset's sync=always) goes through the
// dataset's intent log (zil.ts) and returns once its record is durable. put/get/write/read/truncate/ls/rm work on a head, the read-only ones on a snapshot
// too. Key directory operations on one object set run one at a time (a ZAP operation is several
// node writes); new objects take the object set's cursor, so the same operations in the same
// order give the same object numbers and the same directory on any pool.
// Callers: node (CLI, daemon) and the cluster, with a DatasetView from dsl.ts.

import { mpError, readU64Number, writeU64Number } from '../lib/index.js';
import * as dmu from './dmu.js';
import { ObjectType } from './dnode.js';
import type { DatasetView } from './dsl.js';
import type { ObjectSet } from './objset.js';
import { type Zil, type ZilRecord, ZilOp } from './zil.js';
import type { TxHandle } from './txg.js';
import { type ObjectId, type Txg, objectId, txg } from './types.js';
import { ZAP_KEY_BYTES_MAX, Zap, zapNumber } from './zap.js';

export const KEY_DIRECTORY = objectId(1);
export const KEY_BYTES_MAX = ZAP_KEY_BYTES_MAX;
/** Bytes written per transaction by put and write: big inputs span several txgs. */
export const KEYED_TX_BYTES_MAX = 8 * 1024 * 1024;
const KEY_BONUS_BYTES = 8;

export interface KeyInfo {
  readonly key: string;
  readonly object: ObjectId;
  readonly size: number;
  readonly modifyTxg: Txg;
}

export type Assign = () => Promise<TxHandle>;
export type Bytes = Uint8Array | AsyncIterable<Uint8Array>;

const utf8 = new TextEncoder();
const directoryLocks = new WeakMap<ObjectSet, Promise<void>>();

/** Creates the key directory of a new dataset's object set. */
export async function createKeyDirectory(os: ObjectSet, tx: dmu.Tx, checksumKind: number): Promise<void> {
  await dmu.claimObject(os, tx, KEY_DIRECTORY, { type: ObjectType.zap, blockBytes: 8192, checksumKind });
  await Zap.create(await dmu.objectAccess(os, tx, KEY_DIRECTORY), { nodeBytes: 8192 });
}

export function checkKey(key: string): void {
  if (typeof key !== 'string' || /\p{Cs}/u.test(key)) throw mpError('EINVAL', 'a key must be a valid UTF-8 string', {});
  const bytes = utf8.encode(key).length;
  if (bytes === 0 || bytes > KEY_BYTES_MAX) {
    throw mpError('EINVAL', `a key must be 1..${KEY_BYTES_MAX} bytes of UTF-8, got ${bytes}`, { bytes });
  }
}

/** Runs `fn` holding the key directory of `os`. */
async function withDirectory<T>(os: ObjectSet, tx: dmu.Tx | null, fn: (dir: Zap) => Promise<T>): Promise<T> {
  const previous = directoryLocks.get(os) ?? Promise.resolve();
  let release = (): void => undefined;
  const mine = new Promise<void>((resolve) => (release = resolve));
  const chained = previous.then(() => mine);
  directoryLocks.set(os, chained);
  await previous;
  try {
    return await fn(await Zap.open(await dmu.objectAccess(os, tx, KEY_DIRECTORY)));
  } finally {
    release();
    if (directoryLocks.get(os) === chained) directoryLocks.delete(os);
  }
}

function writable(view: DatasetView): void {
  if (!view.writable) throw mpError('EROFS', `${view.name} is read-only`, { dataset: view.name });
}

async function lookup(view: DatasetView, key: string): Promise<ObjectId> {
  checkKey(key);
  const cached = lookups.get(view.os)?.get(key);
  if (cached !== undefined) return cached;
  const obj = await withDirectory(view.os, null, async (dir) => {
    const found = await dir.getNumber(key);
    if (found !== undefined) remember(view.os, key, objectId(found));
    return found;
  });
  if (obj === undefined) throw mpError('ENOENT', `no key '${key}' in ${view.name}`, { dataset: view.name, key });
  return objectId(obj);
}

/**
 * Keys looked up recently, per object set: a key's object changes only through this module's
 * directory operations, which keep the entry current (set after the directory gained the key,
 * deleted as it loses it), all under the directory lock.
 */
const lookups = new WeakMap<ObjectSet, Map<string, ObjectId>>();
const LOOKUPS_MAX = 4096;

function remember(os: ObjectSet, key: string, obj: ObjectId): void {
  let m = lookups.get(os);
  if (m === undefined) lookups.set(os, (m = new Map<string, ObjectId>()));
  if (m.size >= LOOKUPS_MAX) m.clear();
  m.set(key, obj);
}

async function touch(os: ObjectSet, tx: dmu.Tx, obj: ObjectId): Promise<void> {
  const bonus = new Uint8Array(KEY_BONUS_BYTES);
  writeU64Number(bonus, 0, tx.txg);
  await dmu.setBonus(os, tx, obj, bonus);
}

/** Runs `fn` in a transaction of its own. */
async function inTx<T>(assign: Assign, fn: (tx: TxHandle) => Promise<T>): Promise<T> {
  const tx = await assign();
  try {
    return await fn(tx);
  } finally {
    tx.commit();
  }
}

export interface WriteOptions {
  /** Durable on return, through the dataset's intent log (always under sync=always, never under sync=disabled). */
  readonly sync?: boolean;
}

/** The intent log a change goes through, or null when it is not logged. */
async function journalOf(view: DatasetView, options: WriteOptions): Promise<Zil | null> {
  if (view.sync === 'always' || (view.sync === 'standard' && options.sync === true)) {
    await view.settleUnlogged();
    return view.intentLog();
  }
  return null;
}

/**
 * Runs `change` in a transaction of its own; with an intent log, the change and its record are
 * made in one turn of the log order. Returns the record's seq (-1 when not logged).
 */
async function step<T>(view: DatasetView, assign: Assign, zil: Zil | null, change: (tx: TxHandle) => Promise<T>, record: (tx: TxHandle, result: T) => ZilRecord): Promise<{ result: T; seq: number }> {
  return inTx(assign, async (tx) => {
    if (zil === null) {
      const result = await change(tx);
      view.noteUnlogged(tx);
      return { result, seq: -1 };
    }
    return zil.ordered(async () => {
      const result = await change(tx);
      return { result, record: record(tx, result) };
    });
  });
}

/** Waits for `seq` to be durable when the change was logged. */
async function commit(zil: Zil | null, seq: number): Promise<void> {
  if (zil !== null && seq >= 0) await zil.commit(seq);
}

/** Writes `data` at `offset` in pieces, a transaction (and a log record) each; returns the last seq. */
async function writeBytes(view: DatasetView, assign: Assign, zil: Zil | null, key: string, obj: ObjectId, offset: number, data: Bytes): Promise<{ bytes: number; seq: number }> {
  let at = offset;
  let seq = -1;
  const pieceMax = zil === null ? KEYED_TX_BYTES_MAX : zil.dataBytesMax;
  const pieces = data instanceof Uint8Array ? [data] : data;
  for await (const piece of pieces) {
    for (let i = 0; i < piece.length; i += pieceMax) {
      const part = piece.subarray(i, i + pieceMax);
      const where = at;
      ({ seq } = await step(
        view,
        assign,
        zil,
        async (tx) => {
          await dmu.write(view.os, tx, obj, where, part);
          await touch(view.os, tx, obj);
        },
        (tx) => ({ op: ZilOp.write, txg: tx.txg, key, arg: where, data: part }),
      ));
      at += part.length;
    }
  }
  return { bytes: at - offset, seq };
}

/** Creates `key` (at object number `object` when given) or empties it; returns its object. */
async function createOrEmpty(view: DatasetView, tx: dmu.Tx, key: string, object: number | undefined, replaying: boolean): Promise<ObjectId> {
  return withDirectory(view.os, tx, async (dir) => {
    const existing = await dir.getNumber(key);
    if (existing !== undefined && (object === undefined || replaying)) {
      if (replaying && existing !== object) throw mpError('EPROTO', `intent log replay: key '${key}' is object ${existing}, the log says ${object}`, { key });
      await dmu.truncate(view.os, tx, objectId(existing), 0);
      await touch(view.os, tx, objectId(existing));
      return objectId(existing);
    }
    if (existing !== undefined) throw mpError('EEXIST', `key '${key}' exists in ${view.name}`, { dataset: view.name, key });
    const create = { type: ObjectType.keyData, blockBytes: view.recordBytes, checksumKind: view.checksumKind, bonus: new Uint8Array(KEY_BONUS_BYTES) };
    let created: ObjectId;
    if (object === undefined) {
      created = await dmu.createObject(view.os, tx, create);
    } else {
      created = objectId(object);
      await dmu.claimObject(view.os, tx, created, create);
    }
    await touch(view.os, tx, created);
    await dir.set(key, zapNumber(created));
    remember(view.os, key, created);
    return created;
  });
}

/**
 * Replaces the bytes under `key` (creating the key; at object number `options.object` when
 * given, EEXIST if taken). Returns the object number. Inputs past KEYED_TX_BYTES_MAX land over
 * several txgs: a crash in between leaves the key with a prefix of the new bytes (unless the
 * put was synchronous and returned).
 */
export async function putKey(view: DatasetView, assign: Assign, key: string, data: Bytes, options: { object?: number } & WriteOptions = {}): Promise<ObjectId> {
  writable(view);
  checkKey(key);
  const zil = await journalOf(view, options);
  const { result: obj, seq: putSeq } = await step(
    view,
    assign,
    zil,
    (tx) => createOrEmpty(view, tx, key, options.object, false),
    (tx, created) => ({ op: ZilOp.put, txg: tx.txg, key, arg: created, data: new Uint8Array(0) }),
  );
  const { seq } = await writeBytes(view, assign, zil, key, obj, 0, data);
  await commit(zil, Math.max(putSeq, seq));
  return obj;
}

/** Writes `data` into the existing key at `offset`, extending it if needed. ENOENT. */
export async function writeKey(view: DatasetView, assign: Assign, key: string, offset: number, data: Bytes, options: WriteOptions = {}): Promise<number> {
  writable(view);
  const obj = await lookup(view, key);
  const zil = await journalOf(view, options);
  const { bytes, seq } = await writeBytes(view, assign, zil, key, obj, offset, data);
  await commit(zil, seq);
  return bytes;
}

export async function truncateKey(view: DatasetView, assign: Assign, key: string, size: number, options: WriteOptions = {}): Promise<void> {
  writable(view);
  const obj = await lookup(view, key);
  const zil = await journalOf(view, options);
  const { seq } = await step(
    view,
    assign,
    zil,
    async (tx) => {
      await dmu.truncate(view.os, tx, obj, size);
      await touch(view.os, tx, obj);
    },
    (tx) => ({ op: ZilOp.truncate, txg: tx.txg, key, arg: size, data: new Uint8Array(0) }),
  );
  await commit(zil, seq);
}

async function removeIn(view: DatasetView, tx: dmu.Tx, key: string, missingOk: boolean): Promise<void> {
  await withDirectory(view.os, tx, async (dir) => {
    const obj = await dir.getNumber(key);
    if (obj === undefined) {
      if (missingOk) return;
      throw mpError('ENOENT', `no key '${key}' in ${view.name}`, { dataset: view.name, key });
    }
    lookups.get(view.os)?.delete(key);
    await dir.remove(key);
    await dmu.freeObject(view.os, tx, objectId(obj));
  });
}

export async function removeKey(view: DatasetView, assign: Assign, key: string, options: WriteOptions = {}): Promise<void> {
  writable(view);
  checkKey(key);
  const zil = await journalOf(view, options);
  const { seq } = await step(
    view,
    assign,
    zil,
    (tx) => removeIn(view, tx, key, false),
    (tx) => ({ op: ZilOp.remove, txg: tx.txg, key, arg: 0, data: new Uint8Array(0) }),
  );
  await commit(zil, seq);
}

/**
 * Applies intent log records to `view` in `tx` (import): every change exactly as recorded, so
 * replaying the same records on the same state gives the same state.
 */
export async function replayRecords(view: DatasetView, tx: dmu.Tx, records: readonly ZilRecord[]): Promise<void> {
  const objectOf = async (key: string): Promise<ObjectId> => {
    const obj = await withDirectory(view.os, tx, (dir) => dir.getNumber(key));
    if (obj === undefined) throw mpError('EPROTO', `intent log replay: no key '${key}' in ${view.name}`, { key });
    return objectId(obj);
  };
  for (const r of records) {
    if (r.op === ZilOp.put) {
      await createOrEmpty(view, tx, r.key, r.arg, true);
    } else if (r.op === ZilOp.write) {
      const obj = await objectOf(r.key);
      await dmu.write(view.os, tx, obj, r.arg, r.data);
      await touch(view.os, tx, obj);
    } else if (r.op === ZilOp.truncate) {
      const obj = await objectOf(r.key);
      await dmu.truncate(view.os, tx, obj, r.arg);
      await touch(view.os, tx, obj);
    } else {
      await removeIn(view, tx, r.key, true);
    }
  }
}

export async function keyInfo(view: DatasetView, key: string): Promise<KeyInfo> {
  const obj = await lookup(view, key);
  return infoOf(view.os, key, obj);
}

async function infoOf(os: ObjectSet, key: string, obj: ObjectId): Promise<KeyInfo> {
  const h = await os.header(obj);
  const modifyTxg = h.bonus.length >= KEY_BONUS_BYTES ? readU64Number(h.bonus, 0) : h.createdTxg;
  return { key, object: obj, size: h.size, modifyTxg: txg(modifyTxg) };
}

/** Bytes [offset, offset+length) of the key, cut at its end. */
export async function readKey(view: DatasetView, key: string, offset: number, length: number): Promise<Uint8Array> {
  const obj = await lookup(view, key);
  return dmu.read(view.os, obj, offset, length);
}

/** Keys in byte order, from `prefix`, after `after`, at most `limit`. */
export async function listKeys(view: DatasetView, options: { prefix?: string; after?: string; limit?: number } = {}): Promise<KeyInfo[]> {
  const found = await withDirectory(view.os, null, async (dir) => {
    const out: { key: string; obj: ObjectId }[] = [];
    const iter = dir.entries({
      ...(options.prefix === undefined || options.prefix === '' ? {} : { prefix: options.prefix }),
      ...(options.after === undefined ? {} : { after: options.after }),
      ...(options.limit === undefined ? {} : { limit: options.limit }),
    });
    for await (const e of iter) out.push({ key: new TextDecoder().decode(e.key), obj: objectId(readU64Number(e.value, 0)) });
    return out;
  });
  const infos: KeyInfo[] = [];
  for (const { key, obj } of found) infos.push(await infoOf(view.os, key, obj));
  return infos;
}
