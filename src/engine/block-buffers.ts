// Reused buffers for whole dirty data blocks. On the VMs this runs on, touching fresh memory costs
// far more than copying into memory touched before, and a sequential write (a receive above all)
// otherwise takes a fresh buffer for every block it dirties. dmu.write takes its whole-block
// buffers here; ObjectSet.syncTxg gives back the data blocks of a txg once that txg is on disk.
//
// Ownership, the one rule that keeps this safe: a buffer is given back only when nothing can
// still reference it. Dirty blocks of user data (written once, never cached: the block cache
// keeps only blocks with ditto copies) are referenced by their txg layer, by the sync writing
// them (over by then), and by readers given a view of them (viewBlock). Such views mark the
// buffer as shared and a shared buffer is never given back; it is left to the garbage collector.
// take() hands out a buffer whose old bytes the caller overwrites whole before anyone reads it.
//
// A dirty block filled whole from bytes whose fletcher-4 the writer already knows (a received
// WRITE, verified on arrival) carries that checksum to its sync, which then need not compute it
// again (tree.ts). Whoever changes a dirty block in place calls changed() first, which drops it.

import { assert } from '../lib/index.js';

/**
 * Bytes of spare buffers kept; more are dropped. The largest dirty limit the project runs with
 * (the benches' 256 MiB; the default is 64 MiB): a txg that syncs while the next one fills can
 * hold most of it, and a bound of one dirtySyncBytes dropped three buffers of four in a 1 GiB
 * receive (each then paid for fresh memory again).
 */
export const BLOCK_BUFFERS_SPARE_BYTES_MAX = 256 * 1024 * 1024;

class BlockBuffers {
  private readonly spare = new Map<number, Uint8Array[]>();
  private spareBytes = 0;
  /** Buffers readers were given views of: never reused. */
  private readonly shared = new WeakSet<ArrayBuffer>();
  /** The fletcher-4 of a dirty block's bytes, where its writer knew it (see the header). */
  private readonly fletcher4s = new WeakMap<Uint8Array, Uint8Array>();

  /** A buffer of `bytes` whose contents are garbage: the caller overwrites all of it. */
  take(bytes: number): Uint8Array | null {
    const list = this.spare.get(bytes);
    const buf = list?.pop();
    if (buf === undefined) return null;
    this.spareBytes -= bytes;
    assert(buf.length === bytes && buf.byteOffset === 0 && buf.buffer.byteLength === bytes);
    this.fletcher4s.delete(buf);
    return buf;
  }

  /** `block` was just filled with bytes whose fletcher-4 is `digest`. */
  setFletcher4(block: Uint8Array, digest: Uint8Array): void {
    this.fletcher4s.set(block, digest);
  }

  /** The fletcher-4 setFletcher4 recorded for `block`, unless it changed since. */
  fletcher4Of(block: Uint8Array): Uint8Array | undefined {
    return this.fletcher4s.get(block);
  }

  /** `block` is about to change in place: a checksum recorded for it no longer holds. */
  changed(block: Uint8Array): void {
    this.fletcher4s.delete(block);
  }

  /** Marks `buf` as seen by a reader: give() will ignore it. */
  markShared(buf: Uint8Array): void {
    this.shared.add(buf.buffer as ArrayBuffer);
  }

  /**
   * Gives back a dirty data block nothing references any more (see the header). Views into a
   * larger buffer, shared buffers and buffers past the spare bound are ignored.
   */
  give(buf: Uint8Array): void {
    const bytes = buf.length;
    if (buf.byteOffset !== 0 || buf.buffer.byteLength !== bytes || this.shared.has(buf.buffer as ArrayBuffer)) return;
    if (this.spareBytes + bytes > BLOCK_BUFFERS_SPARE_BYTES_MAX) return;
    let list = this.spare.get(bytes);
    if (list === undefined) {
      list = [];
      this.spare.set(bytes, list);
    }
    assert(!list.includes(buf), 'BlockBuffers: a buffer given back twice');
    list.push(buf);
    this.spareBytes += bytes;
  }
}

/** The process's reused dirty-block buffers (plain memory: sharing them across pools is harmless). */
export const blockBuffers = new BlockBuffers();
