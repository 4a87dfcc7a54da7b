// BlockIo: writes a block's copies (DVAs) and returns its checksummed pointer; reads a block by
// its pointer, verifying the checksum, trying each DVA in turn and rewriting earlier copies that
// failed with the good bytes (self-heal across ditto copies; each TopVdev heals its own mirror
// children underneath). Only when no copy verifies does a caller see ECKSUM/EIO, with the
// object and offset that are lost. Allocation is the caller's: BlockIo only receives DVAs.
// Called by the pool's BlockStore implementation (and later scrub).

import { type ChecksumKind, assert, checksum, checksumKindFromId, checksumMatches, hasCode, limits, mpError } from '../lib/index.js';
import { blockPointerProblem } from './blkptr.js';
import { type BlockPointer, type BlockType, type Dva, type Txg, type VdevIo, layout } from './types.js';

export interface BlockWriteMeta {
  readonly type: BlockType;
  readonly level: number;
  readonly checksumKind: number;
  readonly birth: Txg;
  readonly fill: number;
  /** Logical bytes; equals the data length until compression exists. */
  readonly lsize: number;
  /** The checksum of `data`, when the writer already knows it (else it is computed here). */
  readonly checksum?: Uint8Array;
}

/** Who is reading, so an unrecoverable error can name what is lost. */
export interface BlockReadContext {
  readonly what: string;
  readonly objset?: string | number;
  readonly object?: number;
  readonly offset?: number;
}

export interface BlockIoCounters {
  readBlocks: number;
  writtenBlocks: number;
  /** Blocks read whose good copy was written back over a bad DVA. */
  healedBlocks: number;
  /** DVA copies rewritten. */
  healedCopies: number;
  /** Heal writes that failed (the copy stays bad until scrub). */
  healErrors: number;
  /** Reads that found no good copy (ECKSUM or EIO returned). */
  unrecoverableErrors: number;
  /** DVA writes that failed while another copy of the block was written. */
  copyWriteErrors: number;
}

function isDeviceError(e: unknown): boolean {
  return hasCode(e, 'EIO') || hasCode(e, 'ENOSPC');
}

export class BlockIo {
  private readonly vdevs: readonly VdevIo[];
  readonly counters: BlockIoCounters = {
    readBlocks: 0,
    writtenBlocks: 0,
    healedBlocks: 0,
    healedCopies: 0,
    healErrors: 0,
    unrecoverableErrors: 0,
    copyWriteErrors: 0,
  };

  /** `vdevs[i]` is top-level vdev i. */
  constructor(vdevs: readonly VdevIo[]) {
    for (const [i, v] of vdevs.entries()) assert(v.index === i, `BlockIo: vdev at ${i} has index ${v.index}`);
    this.vdevs = vdevs;
  }

  /**
   * Writes `data` (a sector multiple) to every DVA and returns its pointer. Succeeds when at least
   * one copy was written (a lost copy is counted and healed by the next read or scrub); EIO when
   * none was.
   */
  async write(data: Uint8Array, dvas: readonly Dva[], meta: BlockWriteMeta): Promise<BlockPointer> {
    assert(data.length > 0 && data.length % layout.sectorBytes === 0 && data.length <= limits.diskIoBytesMax, 'BlockIo.write: bad length');
    assert(dvas.length >= 1 && dvas.length <= layout.dvasMax, 'BlockIo.write: 1..3 DVAs');
    assert(meta.lsize === data.length, 'BlockIo.write: lsize must equal the data length (no compression)');
    const bp: BlockPointer = {
      dvas: dvas.map((d) => ({ vdev: d.vdev, offset: d.offset, asize: d.asize })),
      lsize: meta.lsize,
      psize: data.length,
      type: meta.type,
      level: meta.level,
      checksumKind: meta.checksumKind,
      birth: meta.birth,
      fill: meta.fill,
      checksum: meta.checksum ?? checksum(checksumKindFromId(meta.checksumKind), data),
    };
    const problem = blockPointerProblem(bp);
    assert(problem === null, `BlockIo.write: ${problem}`);
    for (const d of dvas) assert(this.fits(d, data.length), `BlockIo.write: DVA ${d.vdev}:${d.offset} outside its vdev`);
    const results = await Promise.allSettled(bp.dvas.map((d) => this.vdev(d).write(d.offset, data)));
    const causes: unknown[] = [];
    for (const r of results) {
      if (r.status === 'fulfilled') continue;
      if (!isDeviceError(r.reason)) throw r.reason;
      causes.push((r.reason as { code: string }).code);
    }
    if (causes.length === results.length) {
      throw mpError('EIO', `no copy of a ${data.length}-byte block could be written`, { dvas: bp.dvas, causes });
    }
    this.counters.copyWriteErrors += causes.length;
    this.counters.writtenBlocks++;
    return bp;
  }

  /** Reads and verifies a block (a hole reads as lsize zeros). ECKSUM/EIO only with no good copy. */
  async read(bp: BlockPointer, context: BlockReadContext): Promise<Uint8Array> {
    if (bp.dvas.length === 0) return new Uint8Array(bp.lsize);
    const kind = checksumKindFromId(bp.checksumKind);
    const accept = (bytes: Uint8Array): boolean => checksumMatches(kind, bytes, bp.checksum);
    const failed: Dva[] = [];
    let rejected = false;
    for (const dva of bp.dvas) {
      // A pointer naming space no vdev has is a bad copy, not a reason to stop trying.
      if (!this.fits(dva, bp.psize)) {
        failed.push(dva);
        continue;
      }
      let bytes: Uint8Array;
      try {
        bytes = await this.vdev(dva).read(dva.offset, bp.psize, accept);
      } catch (e) {
        if (!hasCode(e, 'ECKSUM') && !hasCode(e, 'EIO')) throw e;
        rejected ||= hasCode(e, 'ECKSUM');
        failed.push(dva);
        continue;
      }
      await this.heal(failed, bytes);
      this.counters.readBlocks++;
      assert(bytes.length === bp.lsize);
      return bytes;
    }
    this.counters.unrecoverableErrors++;
    throw this.lost(bp, context, rejected, kind);
  }

  /**
   * Reads blocks whose first copies lie back to back on one vdev with one I/O (a sequential read
   * pays one system call per run, not per block) and verifies each against its own pointer.
   * Returns the run's bytes, or null when the blocks are not back to back or no copy of the run
   * verifies: the caller then reads them one by one, which tries every DVA, heals and names what
   * is lost (a damaged block is then counted once by the run's read and once by its own). With
   * `into` (exactly the blocks' sizes added up) the run is read into it.
   */
  async readRun(bps: readonly BlockPointer[], into?: Uint8Array): Promise<Uint8Array | null> {
    const head = bps[0]?.dvas[0];
    if (head === undefined) return null;
    let end = head.offset;
    for (const bp of bps) {
      const dva = bp.dvas[0];
      if (dva === undefined || dva.vdev !== head.vdev || dva.offset !== end || dva.asize !== bp.psize || bp.psize !== bp.lsize) return null;
      end += dva.asize;
    }
    const length = end - head.offset;
    assert(into === undefined || into.length === length, 'readRun: the buffer given is not the size of the run');
    if (length > limits.diskIoBytesMax || !this.fits(head, length)) return null;
    const accept = (bytes: Uint8Array): boolean => {
      let at = 0;
      for (const bp of bps) {
        if (!checksumMatches(checksumKindFromId(bp.checksumKind), bytes.subarray(at, at + bp.psize), bp.checksum)) return false;
        at += bp.psize;
      }
      return true;
    };
    let bytes: Uint8Array;
    try {
      bytes = await this.vdev(head).read(head.offset, length, accept, into);
    } catch (e) {
      if (hasCode(e, 'ECKSUM') || hasCode(e, 'EIO')) return null;
      throw e;
    }
    assert(bytes.length === length);
    this.counters.readBlocks += bps.length;
    return bytes;
  }

  private lost(bp: BlockPointer, context: BlockReadContext, rejected: boolean, kind: ChecksumKind): Error {
    const where =
      context.object === undefined ? context.what : `${context.what} object ${context.object} offset ${context.offset ?? 0}`;
    const details = { ...context, birth: bp.birth, level: bp.level, checksumKind: kind, dvas: bp.dvas };
    return rejected
      ? mpError('ECKSUM', `${where}: every copy of the block failed its checksum`, details)
      : mpError('EIO', `${where}: no copy of the block could be read`, details);
  }

  /** Rewrites the DVAs that failed with the verified bytes; a failed heal only counts. */
  private async heal(failed: readonly Dva[], bytes: Uint8Array): Promise<void> {
    let healed = 0;
    for (const dva of failed) {
      if (!this.fits(dva, bytes.length)) continue;
      try {
        await this.vdev(dva).write(dva.offset, bytes);
        healed++;
      } catch (e) {
        if (!isDeviceError(e)) throw e;
        this.counters.healErrors++;
      }
    }
    this.counters.healedCopies += healed;
    if (healed > 0) this.counters.healedBlocks++;
  }

  private fits(dva: Dva, length: number): boolean {
    const v = this.vdevs[dva.vdev];
    return v !== undefined && dva.offset + Math.max(length, dva.asize) <= v.asizeBytes;
  }

  private vdev(dva: Dva): VdevIo {
    const v = this.vdevs[dva.vdev];
    assert(v !== undefined, `no vdev ${dva.vdev}`);
    return v;
  }
}
