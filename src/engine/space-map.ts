// SpaceMap: the durable record of which sectors of ONE metaslab are allocated, kept crash-safe in a
// fixed reserved area at the metaslab's start (byte layout: space-map-format.ts). Owned by a
// Metaslab (metaslab.ts), which calls appendTxg once per syncing txg that changed it.
//
// Protocol:
// - Two slots, A and B. The live slot holds a condensed map (the state at its base txg) and an
//   append log: one record per txg, each followed by a zero "terminator" sector written in the
//   same I/O, so a log always ends on a sector that cannot parse as a record.
// - Records are volatile until the pool syncs its disks, which happens before the uberblock of
//   that txg is written. load(ubTxg) therefore ignores records with txg > ubTxg. Such stale
//   records must never be revived by a later load with a higher ubTxg, so the first appendTxg
//   after a load always rewrites the log tail (and erases the other slot's header, see below),
//   even when the metaslab did not change.
// - Condense: when a record would not fit (the log is as large as the map, so "log long relative
//   to the map" is the same test), the full state goes into the OTHER slot with base txg = the
//   syncing txg and generation + 1, and a handoff record goes into the old slot's log. Load picks,
//   among slots whose header verifies, the highest base txg <= ubTxg: a condense whose uberblock
//   never landed is ignored and the old slot is still whole. If the old slot's log shows a handoff
//   at txg <= ubTxg, the newer slot is sought on every copy, and failing that it is EPROTO rather
//   than a silently older answer.
// - Reads take the first copy and ask the others (VdevIo accept) only when bytes are damaged: an
//   accept that rejects counts a checksum error, so erased headers and log terminators (all zero)
//   are recognised without one.
// - Invariant: the log position p satisfies p <= logSectors - 1, so there is always room for the
//   handoff record (or terminator) at p.
// - Frees younger than TXG_DEFER txgs are remembered (recentFrees) and survive a condense in the
//   map's two "freed" states, so load can hand them back as deferred, not yet allocatable.
// - A slot header whose map checksum is zero names an all-free map (mapIsFree): such a map is
//   neither written by format nor read by load, so a big vdev's untouched metaslabs cost a header
//   and the start of a log each.

import { type SpareBuffers, assert, bytesEqual, fletcher4, mpError } from '../lib/index.js';
import type { Txg, VdevIo } from './types.js';
import { type Range, RangeTree } from './range-tree.js';
import {
  MapState, RECORD_FLAG_HANDOFF, RECORD_HEADER_BYTES, SECTOR_BYTES, type SpaceMapLayout, type SpaceMapState, TXG_DEFER,
  applyChanges, decodeRecordHeader, decodeRecordPayload, encodeRecord, encodeSlotHeader, recordBodyIntact,
  recordHeaderIntact, setMapRun, spaceMapLayout,
} from './space-map-format.js';
import { FREE_MAP_CHECKSUM, LogReader, allZero, findNewerSlot, loadReads, loadSpan, pickSlot, readAccepted, readMap, readSlotHeader } from './space-map-load.js';

export { TXG_DEFER };

export interface SpaceMapOptions {
  /** Log area per slot (a sector multiple >= 2 sectors); tests shrink it to force condensing. */
  readonly logBytes?: number;
  /** Reserved areas up to this size load with one read of all of it (LOAD_WHOLE_AREA_BYTES_MAX; tests lower it). */
  readonly loadWholeAreaBytesMax?: number;
}

export interface SpaceMapLoad {
  readonly spaceMap: SpaceMap;
  /** Allocated ranges as of ubTxg (absolute offsets), excluding deferred frees. */
  readonly allocated: RangeTree;
  /** Ranges freed in the last TXG_DEFER txgs <= ubTxg, by the txg that freed them. */
  readonly deferred: Map<Txg, RangeTree>;
}

export class SpaceMap {
  private active: 0 | 1;
  private generation: number;
  private baseTxg: number;
  /** Sectors of the active log in use (records; the terminator sits at this position). */
  private logSectors = 0;
  /** Txg of the last record (or the base txg when the log is empty). */
  private lastTxg: number;
  /** Every appendTxg must be for a later txg (the last append's, or the txg loaded). */
  private txgFloor: number;
  /** Set by load: the next appendTxg rewrites the log tail and erases the other slot's header. */
  private repairPending = false;
  private broken = false;

  private constructor(
    private readonly io: VdevIo,
    readonly msStart: number,
    readonly layout: SpaceMapLayout,
    private readonly state: SpaceMapState,
    slot: { active: 0 | 1; generation: number; baseTxg: number },
  ) {
    this.active = slot.active;
    this.generation = slot.generation;
    this.baseTxg = slot.baseTxg;
    this.lastTxg = slot.baseTxg;
    this.txgFloor = slot.baseTxg;
  }

  /** The reserved bytes at the start of a metaslab of `msBytes` (never allocatable). */
  static reservedBytes(msBytes: number, options: SpaceMapOptions = {}): number {
    return spaceMapLayout(msBytes, options.logBytes).reservedBytes;
  }

  /**
   * Writes an empty space map (slot A, generation 1, base txg 0; slot B erased). Volatile until the
   * pool syncs. Its map is not written: a header whose map checksum is zero names an all-free map,
   * which a load never reads (mapIsFree), so only the header and the log's terminator go to disk.
   */
  static async format(io: VdevIo, msStart: number, msBytes: number, options: SpaceMapOptions = {}): Promise<SpaceMap> {
    const l = spaceMapLayout(msBytes, options.logBytes);
    checkPlacement(io, msStart, l);
    await io.write(msStart, encodeSlotHeader(l, { generation: 1, baseTxg: 0, mapChecksum: FREE_MAP_CHECKSUM }));
    await io.write(msStart + SECTOR_BYTES + l.mapBytes, new Uint8Array(SECTOR_BYTES));
    await io.write(msStart + l.slotBytes, new Uint8Array(SECTOR_BYTES));
    const state = { allocated: new RangeTree(SECTOR_BYTES), recentFrees: new Map<number, RangeTree>() };
    return new SpaceMap(io, msStart, l, state, { active: 0, generation: 1, baseTxg: 0 });
  }

  /**
   * Reads the space map as of uberblock txg `ubTxg`. EPROTO when no slot is usable or the bytes
   * break the format, ECKSUM when a committed part fails its checksum on every copy, EIO when it
   * cannot be read; details name the metaslab. `buffers` lends the buffer the reserved area is
   * read into, given back when the load ends (the loads of one import take turns with a few).
   */
  static async load(io: VdevIo, msStart: number, msBytes: number, ubTxg: Txg, options: SpaceMapOptions = {}, buffers?: SpareBuffers): Promise<SpaceMapLoad> {
    const l = spaceMapLayout(msBytes, options.logBytes);
    checkPlacement(io, msStart, l);
    const span = await loadSpan(io, msStart, l, ubTxg, options.loadWholeAreaBytesMax);
    const area = buffers?.take(span.bytes);
    try {
      return await SpaceMap.loadFrom(await loadReads(io, span, area), io, msStart, l, ubTxg);
    } finally {
      // Nothing the load returns refers to the area: every range and header is a copy.
      if (area !== undefined) buffers?.give(area);
    }
  }

  private static async loadFrom(reads: VdevIo, io: VdevIo, msStart: number, l: SpaceMapLayout, ubTxg: Txg): Promise<SpaceMapLoad> {
    const where = { vdev: io.index, metaslabStart: msStart, ubTxg };
    const headers = [await readSlotHeader(reads, msStart, l, 0, where), await readSlotHeader(reads, msStart, l, 1, where)];
    let active = pickSlot(headers, ubTxg, where);
    // A handoff at txg <= ubTxg names a newer slot the first copy did not show: look for it on every copy.
    for (let hops = 0; ; hops++) {
      const header = headers[active];
      assert(header !== null && header !== undefined);
      const at = { ...where, slot: active };
      const state = await readMap(reads, msStart, l, active, header, at);
      const sm = new SpaceMap(io, msStart, l, state, { active, generation: header.generation, baseTxg: header.baseTxg });
      const handoffTxg = await sm.replayLog(reads, ubTxg, at);
      if (handoffTxg === null) return sm.finishLoad(ubTxg);
      const newer = hops === 0 ? await findNewerSlot(reads, msStart, l, 1 - active, header.generation + 1, handoffTxg, where) : null;
      if (newer === null) {
        throw mpError('EPROTO', 'space map slot was condensed into the other slot, which is unreadable', { ...at, txg: handoffTxg });
      }
      active = (1 - active) as 0 | 1;
      headers[active] = newer;
    }
  }

  /**
   * The first write after a load erases the other slot's header and rewrites the log tail: a copy
   * that a crash left diverging (a stale condensed slot, a record of a txg whose uberblock never
   * landed) may sit on a mirror child the load did not read, and must never be picked later.
   */
  private finishLoad(ubTxg: Txg): SpaceMapLoad {
    this.txgFloor = ubTxg;
    this.repairPending = true;
    const deferred = new Map<Txg, RangeTree>();
    for (const [t, tree] of this.state.recentFrees) {
      if (t <= ubTxg - TXG_DEFER) this.state.recentFrees.delete(t);
      else deferred.set(t as Txg, tree.clone());
    }
    return { spaceMap: this, allocated: this.state.allocated.clone(), deferred };
  }

  /** Allocated ranges as the space map holds them (after the last appended txg; frees excluded). */
  get allocated(): Omit<RangeTree, 'add' | 'remove' | 'clear'> {
    return this.state.allocated;
  }

  get reservedBytes(): number {
    return this.layout.reservedBytes;
  }

  /** True when the next sync must write even without changes (a load left a tail to erase). */
  get needsWrite(): boolean {
    return this.repairPending;
  }

  /** For tests and status: where the live log stands. */
  describe(): { activeSlot: 0 | 1; generation: number; baseTxg: number; lastTxg: number; logUsedBytes: number; logBytes: number } {
    return {
      activeSlot: this.active, generation: this.generation, baseTxg: this.baseTxg, lastTxg: this.lastTxg,
      logUsedBytes: this.logSectors * SECTOR_BYTES, logBytes: this.layout.logBytes,
    };
  }

  /**
   * Records txg's allocations and frees (ascending, disjoint, absolute; allocs never overlap a
   * free younger than TXG_DEFER txgs): one log record, or a condense when it would not fit or
   * `condense` is set. Writes nothing when there is nothing to record or repair.
   */
  async appendTxg(txg: Txg, allocs: readonly Range[], frees: readonly Range[], options: { condense?: boolean } = {}): Promise<{ condensed: boolean }> {
    if (this.broken) throw mpError('EIO', 'space map unusable after a failed write', { metaslabStart: this.msStart });
    assert(txg > this.txgFloor, `space map: txg ${txg} is not after ${this.txgFloor}`);
    this.txgFloor = txg;
    const changed = allocs.length + frees.length > 0;
    if (!changed && !this.needsWrite && options.condense !== true) return { condensed: false };
    const error = applyChanges(this.state, txg, allocs, frees);
    assert(error === null, `space map: ${error}`);
    try {
      const record = changed ? encodeRecord(this.msStart, txg, this.generation, 0, { allocs, frees }) : null;
      const fits = record === null || this.logSectors + record.length / SECTOR_BYTES + 1 <= this.layout.logBytes / SECTOR_BYTES;
      if (options.condense === true || !fits) {
        await this.condense(txg);
        return { condensed: true };
      }
      if (this.repairPending) await this.io.write(this.slotOffset(1 - this.active), new Uint8Array(SECTOR_BYTES));
      const bytes = new Uint8Array((record?.length ?? 0) + SECTOR_BYTES);
      if (record !== null) bytes.set(record, 0);
      await this.io.write(this.logOffset(this.active) + this.logSectors * SECTOR_BYTES, bytes);
      this.repairPending = false;
      if (record !== null) {
        this.logSectors += record.length / SECTOR_BYTES;
        this.lastTxg = txg;
      }
      return { condensed: false };
    } catch (e) {
      this.broken = true;
      throw e;
    }
  }

  /** Writes the whole state (already including txg's changes) into the other slot and hands off. */
  private async condense(txg: number): Promise<void> {
    const l = this.layout;
    const map = new Uint8Array(l.mapBytes);
    const paint = (tree: RangeTree | undefined, value: number): void => {
      for (const r of tree ?? []) setMapRun(map, (r.start - this.msStart) / SECTOR_BYTES, r.size / SECTOR_BYTES, value);
    };
    paint(this.state.allocated, MapState.allocated);
    paint(this.state.recentFrees.get(txg - 1), MapState.freedPrev);
    paint(this.state.recentFrees.get(txg), MapState.freedBase);
    const target = (1 - this.active) as 0 | 1;
    const generation = this.generation + 1;
    const slot = new Uint8Array(SECTOR_BYTES + l.mapBytes + SECTOR_BYTES);
    slot.set(encodeSlotHeader(l, { generation, baseTxg: txg, mapChecksum: fletcher4(map) }), 0);
    slot.set(map, SECTOR_BYTES);
    await this.io.write(this.slotOffset(target), slot);
    const handoff = encodeRecord(this.msStart, txg, this.generation, RECORD_FLAG_HANDOFF, { allocs: [], frees: [] });
    assert(handoff.length === SECTOR_BYTES && this.logSectors < l.logBytes / SECTOR_BYTES, 'space map: no room for handoff');
    await this.io.write(this.logOffset(this.active) + this.logSectors * SECTOR_BYTES, handoff);
    this.active = target;
    this.generation = generation;
    this.baseTxg = txg;
    this.lastTxg = txg;
    this.logSectors = 0;
    this.repairPending = false;
  }

  /**
   * Applies the active log's records with txg <= ubTxg; sets logSectors and lastTxg. Returns the
   * txg of a handoff record within ubTxg (the log moved to the other slot), else null. `reads`
   * are the load's (loadReads).
   */
  private async replayLog(reads: VdevIo, ubTxg: number, where: Record<string, unknown>): Promise<number | null> {
    const logSectorsMax = this.layout.logBytes / SECTOR_BYTES;
    const reader = new LogReader(reads, this.logOffset(this.active), logSectorsMax, where);
    const isHead = (b: Uint8Array): boolean => recordHeaderIntact(b, this.generation);
    for (;;) {
      const p = this.logSectors;
      const at = { ...where, logSector: p };
      let head = await reader.read(p, 1);
      // The sector after the last record is its zero terminator or a record written later: a
      // sector is written whole, so anything else there is damage, worth a look at other copies.
      if (allZero(head)) return null;
      if (!isHead(head)) {
        const other = await readAccepted(reads, reader.offsetOf(p), SECTOR_BYTES, isHead, at);
        if (other === null) return null;
        head = other;
      }
      const h = decodeRecordHeader(head, at);
      if (h.txg > ubTxg || h.txg <= this.lastTxg) return null; // a txg whose uberblock never landed
      if (h.flags === RECORD_FLAG_HANDOFF) return h.txg;
      if (p + h.sectors >= logSectorsMax) throw mpError('EPROTO', 'space map record overruns the log', { ...at, ...h });
      let record = await reader.read(p, h.sectors);
      if (!isHead(record) || !recordBodyIntact(record)) {
        const expected = head;
        const good = await readAccepted(reads, reader.offsetOf(p), h.sectors * SECTOR_BYTES,
          (b) => isHead(b) && recordBodyIntact(b) && bytesEqual(b.subarray(0, RECORD_HEADER_BYTES), expected.subarray(0, RECORD_HEADER_BYTES)), at);
        if (good === null) throw mpError('ECKSUM', 'committed space map record fails its checksum on every copy', { ...at, txg: h.txg });
        record = good;
      }
      const changes = decodeRecordPayload(this.layout, this.msStart, h, record, at);
      const error = applyChanges(this.state, h.txg, changes.allocs, changes.frees);
      if (error !== null) throw mpError('EPROTO', `space map record contradicts the map: ${error}`, { ...at, txg: h.txg });
      this.logSectors = p + h.sectors;
      this.lastTxg = h.txg;
    }
  }

  private slotOffset(slot: number): number {
    return this.msStart + slot * this.layout.slotBytes;
  }

  private logOffset(slot: number): number {
    return this.slotOffset(slot) + SECTOR_BYTES + this.layout.mapBytes;
  }
}

function checkPlacement(io: VdevIo, msStart: number, l: SpaceMapLayout): void {
  assert(Number.isSafeInteger(msStart) && msStart >= 0 && msStart % SECTOR_BYTES === 0, `space map: bad metaslab start ${msStart}`);
  assert(msStart + l.msBytes <= io.asizeBytes, 'space map: metaslab past the end of the vdev');
  assert(l.reservedBytes < l.msBytes, `space map: metaslab of ${l.msBytes} bytes too small for its space map`);
}
