// The pool checkpoint (DESIGN.md section 2, after OpenZFS's pool checkpoint): a saved uberblock
// the whole pool can be rewound to at import. Owned by the pool (pool.ts), which calls it from
// its txg sync; all changes happen in syncing context.
//
// On disk, in the MOS directory:
//   `checkpoint`          the checkpointed uberblock (encodeRecord below) while one exists;
//   `checkpoint_sm:<v>`   per top-level vdev, a MOS object (type spaceMap) listing the space the
//                         checkpoint holds on vdev v: entries of 16 bytes (offset u64, asize u64),
//                         appended in txg order; bonus = total bytes u64.
// While the checkpoint exists, a free of a block born at or before its txg does not free: the
// allocator keeps the block allocated and hands it here, and it is appended to its vdev's list in
// the same txg (so the space maps and the lists agree at every uberblock). Nothing in a list is
// ever reused. Discarding removes `checkpoint` first; the lists then shrink from their ends in
// bounded chunks, one txg each, freeing what they list, until none is left. A crash anywhere
// leaves either the txg before a step or the one after it.
//
// Invariant (checked by the pool): with a checkpoint, the lists hold exactly the blocks the
// checkpointed state reaches and the current one does not; while discarding, the lists' space is
// allocated and reached by nothing.

import { type Clock, assert, mpError, readU64Number, writeU64Number } from '../lib/index.js';
import { decodeBlockPointer, encodeBlockPointer } from './blkptr.js';
import * as dmu from './dmu.js';
import { ObjectType } from './dnode.js';
import type { ObjectSet } from './objset.js';
import { type BlockPointer, type Dva, type ObjectId, type Txg, layout, objectId, txg } from './types.js';
import { Zap, zapKeyText } from './zap.js';

export const CHECKPOINT_KEY = 'checkpoint';
const SM_KEY_PREFIX = 'checkpoint_sm:';
/** Bytes of one list entry (offset, asize). */
export const CHECKPOINT_ENTRY_BYTES = 16;
/** Memory one discard step may use for the entries it handles (like zfs_spa_discard_memory_limit). */
export const DISCARD_MEMORY_BYTES_DEFAULT = 16 * 1024 * 1024;
/**
 * What one entry costs in memory during a step: its 16 bytes read, the decoded range, and its
 * share of the metaslab's pending-free tree (measured by the checkpoint bench).
 */
export const DISCARD_ENTRY_MEMORY_BYTES = 128;
const RECORD_VERSION = 1;
const RECORD_BP_AT = 32;
const RECORD_BYTES = RECORD_BP_AT + layout.blockPointerBytes;
const SM_BONUS_BYTES = 8;
const SM_BLOCK_BYTES = 128 * 1024;

export interface CheckpointRecord {
  /** Txg of the checkpointed uberblock. */
  readonly txg: Txg;
  /** That uberblock's timestamp. */
  readonly timestampMs: number;
  /** When the checkpoint was taken (wall clock). */
  readonly createdMs: number;
  /** Root of the checkpointed MOS. */
  readonly rootBp: BlockPointer;
}

export type CheckpointState = 'none' | 'active' | 'discarding';

export interface CheckpointStatus {
  readonly state: CheckpointState;
  readonly txg: Txg | null;
  readonly createdMs: number | null;
  /** Space the checkpoint holds (or, while discarding, still has to give back). */
  readonly heldBytes: number;
  /** While discarding: what the discard started with. */
  readonly discardStartBytes: number | null;
}

interface VdevList {
  readonly obj: ObjectId;
  entries: number;
  bytes: number;
}

/** The entries one discard step frees, by vdev: the tail of each list. */
export type DiscardChunk = Map<number, Dva[]>;

export function encodeRecord(r: CheckpointRecord): Uint8Array {
  const b = new Uint8Array(RECORD_BYTES);
  new DataView(b.buffer).setUint32(0, RECORD_VERSION, true);
  writeU64Number(b, 8, r.txg);
  writeU64Number(b, 16, r.timestampMs);
  writeU64Number(b, 24, r.createdMs);
  b.set(encodeBlockPointer(r.rootBp), RECORD_BP_AT);
  return b;
}

export function decodeRecord(b: Uint8Array): CheckpointRecord {
  if (b.length !== RECORD_BYTES) throw mpError('EPROTO', `checkpoint record is ${b.length} bytes, expected ${RECORD_BYTES}`, { bytes: b.length });
  const version = new DataView(b.buffer, b.byteOffset, b.length).getUint32(0, true);
  if (version !== RECORD_VERSION) throw mpError('EPROTO', `checkpoint record version ${version} is not ${RECORD_VERSION}`, { version });
  const t = readU64Number(b, 8);
  if (t < 1) throw mpError('EPROTO', 'checkpoint record names txg 0', {});
  return { txg: txg(t), timestampMs: readU64Number(b, 16), createdMs: readU64Number(b, 24), rootBp: decodeBlockPointer(b.subarray(RECORD_BP_AT)) };
}

function encodeEntries(dvas: readonly Dva[]): Uint8Array {
  const out = new Uint8Array(dvas.length * CHECKPOINT_ENTRY_BYTES);
  dvas.forEach((d, i) => {
    writeU64Number(out, i * CHECKPOINT_ENTRY_BYTES, d.offset);
    writeU64Number(out, i * CHECKPOINT_ENTRY_BYTES + 8, d.asize);
  });
  return out;
}

function decodeEntries(vdev: number, bytes: Uint8Array): Dva[] {
  const out: Dva[] = [];
  for (let at = 0; at + CHECKPOINT_ENTRY_BYTES <= bytes.length; at += CHECKPOINT_ENTRY_BYTES) {
    const offset = readU64Number(bytes, at);
    const asize = readU64Number(bytes, at + 8);
    if (asize === 0) throw mpError('EPROTO', `checkpoint space list of vdev ${vdev} has an empty entry`, { vdev, at });
    out.push({ vdev, offset, asize });
  }
  return out;
}

export class Checkpoint {
  private rec: CheckpointRecord | null;
  private readonly lists: Map<number, VdevList>;
  private discardStartBytes: number | null = null;

  private constructor(
    private readonly mos: ObjectSet,
    private readonly directory: ObjectId,
    rec: CheckpointRecord | null,
    lists: Map<number, VdevList>,
  ) {
    this.rec = rec;
    this.lists = lists;
    if (rec === null && lists.size > 0) this.discardStartBytes = this.heldBytes();
  }

  /** A pool without a checkpoint. */
  static empty(mos: ObjectSet, directory: ObjectId): Checkpoint {
    return new Checkpoint(mos, directory, null, new Map());
  }

  /** Reads the checkpoint state from the MOS directory (EPROTO when it does not decode). */
  static async load(mos: ObjectSet, directory: ObjectId): Promise<Checkpoint> {
    const dir = await Zap.open(await dmu.objectAccess(mos, null, directory));
    const raw = await dir.get(CHECKPOINT_KEY);
    const rec = raw === undefined ? null : decodeRecord(raw);
    const lists = new Map<number, VdevList>();
    for await (const e of dir.entries({ prefix: SM_KEY_PREFIX })) {
      const key = zapKeyText(e.key);
      const vdev = Number(key.slice(SM_KEY_PREFIX.length));
      if (!Number.isSafeInteger(vdev) || vdev < 0 || e.value.length !== 8) throw mpError('EPROTO', `bad checkpoint directory entry ${key}`, { key });
      const obj = objectId(readU64Number(e.value, 0));
      const info = await dmu.objectInfo(mos, obj);
      const bonus = await dmu.bonus(mos, obj);
      if (info.type !== ObjectType.spaceMap || bonus.length < SM_BONUS_BYTES || info.size % CHECKPOINT_ENTRY_BYTES !== 0) {
        throw mpError('EPROTO', `checkpoint space list of vdev ${vdev} is malformed`, { vdev, object: obj });
      }
      lists.set(vdev, { obj, entries: info.size / CHECKPOINT_ENTRY_BYTES, bytes: readU64Number(bonus, 0) });
    }
    return new Checkpoint(mos, directory, rec, lists);
  }

  get record(): CheckpointRecord | null {
    return this.rec;
  }

  get state(): CheckpointState {
    if (this.rec !== null) return 'active';
    return this.lists.size > 0 ? 'discarding' : 'none';
  }

  heldBytes(): number {
    let sum = 0;
    for (const l of this.lists.values()) sum += l.bytes;
    return sum;
  }

  status(): CheckpointStatus {
    return {
      state: this.state,
      txg: this.rec?.txg ?? null,
      createdMs: this.rec?.createdMs ?? null,
      heldBytes: this.heldBytes(),
      discardStartBytes: this.state === 'discarding' ? this.discardStartBytes : null,
    };
  }

  /** Syncing context: records `ub` as the checkpoint. EEXIST / EBUSY when one exists or is discarding. */
  async create(tx: dmu.Tx, ub: { txg: Txg; timestampMs: number; rootBp: BlockPointer }, clock: Clock): Promise<CheckpointRecord> {
    this.checkNone();
    const rec: CheckpointRecord = { txg: ub.txg, timestampMs: ub.timestampMs, createdMs: clock.wallMs(), rootBp: ub.rootBp };
    const dir = await Zap.open(await dmu.objectAccess(this.mos, tx, this.directory));
    await dir.set(CHECKPOINT_KEY, encodeRecord(rec));
    this.rec = rec;
    return rec;
  }

  /** EEXIST while a checkpoint exists, EBUSY while one is discarded. */
  checkNone(): void {
    if (this.state === 'active') throw mpError('EEXIST', `the pool already has a checkpoint (txg ${this.rec?.txg})`, { checkpointTxg: this.rec?.txg });
    if (this.state === 'discarding') {
      throw mpError('EBUSY', 'the previous checkpoint is still being discarded', { remainingBytes: this.heldBytes() });
    }
  }

  /** ENOENT without a checkpoint, EBUSY while one is discarded. */
  checkActive(): void {
    if (this.state === 'discarding') throw mpError('EBUSY', 'the checkpoint is already being discarded', { remainingBytes: this.heldBytes() });
    if (this.rec === null) throw mpError('ENOENT', 'the pool has no checkpoint', {});
  }

  /** Syncing context: appends retained frees to their vdevs' lists. */
  async retain(tx: dmu.Tx, dvas: readonly Dva[]): Promise<void> {
    if (dvas.length === 0) return;
    assert(this.rec !== null, 'space retained with no checkpoint');
    const byVdev = new Map<number, Dva[]>();
    for (const d of dvas) byVdev.set(d.vdev, [...(byVdev.get(d.vdev) ?? []), d]);
    for (const [vdev, list] of [...byVdev].sort((a, b) => a[0] - b[0])) {
      const l = await this.listOf(tx, vdev);
      await dmu.write(this.mos, tx, l.obj, l.entries * CHECKPOINT_ENTRY_BYTES, encodeEntries(list));
      l.entries += list.length;
      l.bytes += list.reduce((s, d) => s + d.asize, 0);
      await this.writeBonus(tx, l);
    }
  }

  /** Syncing context: removes the checkpointed uberblock; the lists remain for the discard. */
  async beginDiscard(tx: dmu.Tx): Promise<void> {
    this.checkActive();
    const dir = await Zap.open(await dmu.objectAccess(this.mos, tx, this.directory));
    await dir.remove(CHECKPOINT_KEY);
    this.rec = null;
    this.discardStartBytes = this.heldBytes();
    await this.dropEmptyLists(tx, dir);
  }

  /**
   * Open context: the next discard chunk, at most `maxEntries` entries in all, from the ends of
   * the lists (reading only those entries).
   */
  async nextChunk(maxEntries: number): Promise<DiscardChunk> {
    assert(this.state === 'discarding' && maxEntries >= 1, 'discard chunk without a discard');
    const chunk: DiscardChunk = new Map();
    let budget = maxEntries;
    for (const [vdev, l] of [...this.lists].sort((a, b) => a[0] - b[0])) {
      if (budget === 0) break;
      const n = Math.min(budget, l.entries);
      const bytes = await dmu.read(this.mos, l.obj, (l.entries - n) * CHECKPOINT_ENTRY_BYTES, n * CHECKPOINT_ENTRY_BYTES);
      chunk.set(vdev, decodeEntries(vdev, bytes));
      budget -= n;
    }
    return chunk;
  }

  /**
   * Syncing context: frees a chunk from nextChunk and cuts it off its lists; a list left empty
   * goes, and with the last one the discard is complete. `free` releases one range in this txg.
   */
  async discardStep(tx: dmu.Tx, chunk: DiscardChunk, free: (dva: Dva) => void): Promise<void> {
    for (const [vdev, dvas] of chunk) {
      const l = this.lists.get(vdev);
      assert(l !== undefined && dvas.length <= l.entries, `discard chunk of vdev ${vdev} does not match its list`);
      for (const d of dvas) free(d);
      l.entries -= dvas.length;
      l.bytes -= dvas.reduce((s, d) => s + d.asize, 0);
      await dmu.truncate(this.mos, tx, l.obj, l.entries * CHECKPOINT_ENTRY_BYTES);
      await this.writeBonus(tx, l);
    }
    await this.dropEmptyLists(tx, await Zap.open(await dmu.objectAccess(this.mos, tx, this.directory)));
  }

  /** Every entry of every list (for the pool's invariant check). */
  async allEntries(): Promise<Dva[]> {
    const out: Dva[] = [];
    for (const [vdev, l] of this.lists) out.push(...decodeEntries(vdev, await dmu.read(this.mos, l.obj, 0, l.entries * CHECKPOINT_ENTRY_BYTES)));
    return out;
  }

  private async dropEmptyLists(tx: dmu.Tx, dir: Zap): Promise<void> {
    for (const [vdev, l] of [...this.lists]) {
      if (l.entries > 0) continue;
      assert(l.bytes === 0, `checkpoint list of vdev ${vdev} is empty but holds ${l.bytes} bytes`);
      await dmu.freeObject(this.mos, tx, l.obj);
      await dir.remove(`${SM_KEY_PREFIX}${vdev}`);
      this.lists.delete(vdev);
    }
    if (this.lists.size === 0) this.discardStartBytes = null;
  }

  private async listOf(tx: dmu.Tx, vdev: number): Promise<VdevList> {
    const have = this.lists.get(vdev);
    if (have !== undefined) return have;
    const obj = await dmu.createObject(this.mos, tx, {
      type: ObjectType.spaceMap, blockBytes: SM_BLOCK_BYTES, checksumKind: 1, bonus: new Uint8Array(SM_BONUS_BYTES),
    });
    const dir = await Zap.open(await dmu.objectAccess(this.mos, tx, this.directory));
    const value = new Uint8Array(8);
    writeU64Number(value, 0, obj);
    await dir.set(`${SM_KEY_PREFIX}${vdev}`, value);
    const l: VdevList = { obj, entries: 0, bytes: 0 };
    this.lists.set(vdev, l);
    return l;
  }

  private async writeBonus(tx: dmu.Tx, l: VdevList): Promise<void> {
    const bonus = new Uint8Array(SM_BONUS_BYTES);
    writeU64Number(bonus, 0, l.bytes);
    await dmu.setBonus(this.mos, tx, l.obj, bonus);
  }
}
