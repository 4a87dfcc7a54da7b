// RangeTree: an in-memory set of disjoint, coalesced [start, end) ranges of safe integers, the
// building block of space accounting (free space of a metaslab, one txg's allocations, deferred
// frees). Used by space-map.ts and metaslab.ts.
//
// Invariants (checkInvariants): ranges are sorted, non-empty, disjoint and never adjacent (adding
// a range that touches a neighbour merges with it); every start and size is a multiple of
// `alignBytes`; a second index orders the same ranges by (size, start) so that "the smallest range
// of at least n bytes" and "the largest range" are one binary search away.
//
// Two sorted arrays (starts, ends) with binary search keep every lookup O(log n); inserting or
// removing a range moves array tails (a memmove), which stays fast for tens of thousands of ranges
// and keeps the code simple. Adding an overlapping range or removing one that is not wholly
// present is a programmer error (assert): the callers own exact accounting.

import { assert } from '../lib/index.js';

export interface Range {
  readonly start: number;
  /** Bytes, > 0. */
  readonly size: number;
}

/**
 * How many ranges findFree examines on each side of its cursor before it gives up on first-fit and
 * takes the best fit from the size index: bounds the cost of an allocation in a fragmented tree.
 */
export const FIND_FREE_SEARCH_RANGES_MAX = 128;

/** First index i in a sorted array with a[i] > x (a.length when none). */
function upperBound(a: readonly number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((a[mid] as number) <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class RangeTree {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  /** The size index: parallel arrays sorted by (size, start). */
  private readonly sizeKeys: number[] = [];
  private readonly sizeStarts: number[] = [];
  private totalBytes = 0;

  /** `alignBytes`: every start and size must be a multiple of it (1 = any integer). */
  constructor(readonly alignBytes = 1) {
    assert(Number.isSafeInteger(alignBytes) && alignBytes >= 1, `RangeTree: bad alignment ${alignBytes}`);
  }

  /** Number of (coalesced) ranges. */
  get count(): number {
    return this.starts.length;
  }

  /** Total bytes covered. */
  sumBytes(): number {
    return this.totalBytes;
  }

  /** Bytes of the largest range (0 when empty). */
  maxRangeBytes(): number {
    const n = this.sizeKeys.length;
    return n === 0 ? 0 : (this.sizeKeys[n - 1] as number);
  }

  /** Adds [start, start+size); asserts it overlaps nothing already present. */
  add(start: number, size: number): void {
    this.checkRange(start, size);
    const end = start + size;
    const i = upperBound(this.starts, start);
    const prevEnd = i > 0 ? (this.ends[i - 1] as number) : -1;
    const nextStart = i < this.starts.length ? (this.starts[i] as number) : Number.POSITIVE_INFINITY;
    assert(prevEnd <= start && nextStart >= end, `RangeTree.add: [${start}, ${end}) overlaps an existing range`);
    const mergePrev = prevEnd === start;
    const mergeNext = nextStart === end;
    if (mergePrev && mergeNext) {
      const pStart = this.starts[i - 1] as number;
      const nEnd = this.ends[i] as number;
      this.unindex(pStart, start - pStart);
      this.unindex(end, nEnd - end);
      this.ends[i - 1] = nEnd;
      this.starts.splice(i, 1);
      this.ends.splice(i, 1);
      this.index(pStart, nEnd - pStart);
    } else if (mergePrev) {
      const pStart = this.starts[i - 1] as number;
      this.unindex(pStart, start - pStart);
      this.ends[i - 1] = end;
      this.index(pStart, end - pStart);
    } else if (mergeNext) {
      const nEnd = this.ends[i] as number;
      this.unindex(end, nEnd - end);
      this.starts[i] = start;
      this.index(start, nEnd - start);
    } else {
      this.starts.splice(i, 0, start);
      this.ends.splice(i, 0, end);
      this.index(start, size);
    }
    this.totalBytes += size;
  }

  /** Removes [start, start+size); asserts the whole range is present. */
  remove(start: number, size: number): void {
    this.checkRange(start, size);
    const end = start + size;
    const i = upperBound(this.starts, start) - 1;
    assert(i >= 0 && (this.ends[i] as number) >= end, `RangeTree.remove: [${start}, ${end}) is not wholly present`);
    const rStart = this.starts[i] as number;
    const rEnd = this.ends[i] as number;
    this.unindex(rStart, rEnd - rStart);
    const keepLeft = rStart < start;
    const keepRight = end < rEnd;
    if (keepLeft && keepRight) {
      this.ends[i] = start;
      this.starts.splice(i + 1, 0, end);
      this.ends.splice(i + 1, 0, rEnd);
    } else if (keepLeft) {
      this.ends[i] = start;
    } else if (keepRight) {
      this.starts[i] = end;
    } else {
      this.starts.splice(i, 1);
      this.ends.splice(i, 1);
    }
    if (keepLeft) this.index(rStart, start - rStart);
    if (keepRight) this.index(end, rEnd - end);
    this.totalBytes -= size;
  }

  /** True when every byte of [start, start+size) is present. */
  contains(start: number, size: number): boolean {
    this.checkRange(start, size);
    const i = upperBound(this.starts, start) - 1;
    return i >= 0 && (this.ends[i] as number) >= start + size;
  }

  /** True when any byte of [start, start+size) is present. */
  overlaps(start: number, size: number): boolean {
    this.checkRange(start, size);
    const i = upperBound(this.starts, start);
    if (i > 0 && (this.ends[i - 1] as number) > start) return true;
    return i < this.starts.length && (this.starts[i] as number) < start + size;
  }

  /**
   * Where `size` bytes fit, for an allocator with a cursor: the first range ending after `cursor`
   * that has `size` bytes from max(its start, cursor); failing that, the first range from the
   * beginning with `size` bytes; failing that (after `searchRangesMax` ranges on each side), the
   * smallest range that fits. null when no range has `size` bytes. Does not change the tree.
   */
  findFree(cursor: number, size: number, searchRangesMax = FIND_FREE_SEARCH_RANGES_MAX): number | null {
    this.checkRange(cursor, size);
    if (this.maxRangeBytes() < size) return null;
    const n = this.starts.length;
    let i = upperBound(this.starts, cursor);
    if (i > 0 && (this.ends[i - 1] as number) > cursor) i--;
    for (let j = i, seen = 0; j < n && seen < searchRangesMax; j++, seen++) {
      const offset = Math.max(this.starts[j] as number, cursor);
      if ((this.ends[j] as number) - offset >= size) return offset;
    }
    for (let j = 0; j <= i && j < n && j < searchRangesMax; j++) {
      const start = this.starts[j] as number;
      if ((this.ends[j] as number) - start >= size) return start;
    }
    const k = this.sizeLowerBound(size, -1);
    assert(k < this.sizeKeys.length, 'RangeTree.findFree: size index out of step');
    return this.sizeStarts[k] as number;
  }

  /** The ranges in ascending order (a snapshot: safe to modify the tree while using it). */
  ranges(): Range[] {
    return this.starts.map((start, i) => ({ start, size: (this.ends[i] as number) - start }));
  }

  *[Symbol.iterator](): Iterator<Range> {
    yield* this.ranges();
  }

  /** The ranges of this tree that overlap [start, start+size), clipped to it, in order. */
  rangesWithin(start: number, size: number): Range[] {
    this.checkRange(start, size);
    const end = start + size;
    const out: Range[] = [];
    let i = upperBound(this.starts, start);
    if (i > 0 && (this.ends[i - 1] as number) > start) i--;
    for (; i < this.starts.length && (this.starts[i] as number) < end; i++) {
      const s = Math.max(this.starts[i] as number, start);
      const e = Math.min(this.ends[i] as number, end);
      out.push({ start: s, size: e - s });
    }
    return out;
  }

  clone(): RangeTree {
    const copy = new RangeTree(this.alignBytes);
    copy.starts.push(...this.starts);
    copy.ends.push(...this.ends);
    copy.sizeKeys.push(...this.sizeKeys);
    copy.sizeStarts.push(...this.sizeStarts);
    copy.totalBytes = this.totalBytes;
    return copy;
  }

  clear(): void {
    this.starts.length = 0;
    this.ends.length = 0;
    this.sizeKeys.length = 0;
    this.sizeStarts.length = 0;
    this.totalBytes = 0;
  }

  /** Asserts the structural invariants (sorted, disjoint, coalesced, aligned, index in step). */
  checkInvariants(): void {
    const n = this.starts.length;
    assert(this.ends.length === n && this.sizeKeys.length === n && this.sizeStarts.length === n, 'RangeTree: arrays out of step');
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const s = this.starts[i] as number;
      const e = this.ends[i] as number;
      assert(s < e && s % this.alignBytes === 0 && e % this.alignBytes === 0, `RangeTree: bad range [${s}, ${e})`);
      if (i > 0) assert((this.ends[i - 1] as number) < s, `RangeTree: ranges ${i - 1} and ${i} touch or overlap`);
      const k = this.sizeLowerBound(e - s, s);
      assert(this.sizeKeys[k] === e - s && this.sizeStarts[k] === s, `RangeTree: range [${s}, ${e}) missing from size index`);
      sum += e - s;
    }
    for (let k = 1; k < n; k++) {
      const a = this.sizeKeys[k - 1] as number;
      const b = this.sizeKeys[k] as number;
      assert(a < b || (a === b && (this.sizeStarts[k - 1] as number) < (this.sizeStarts[k] as number)), 'RangeTree: size index unsorted');
    }
    assert(sum === this.totalBytes, `RangeTree: sum ${sum} != ${this.totalBytes}`);
  }

  private checkRange(start: number, size: number): void {
    assert(Number.isSafeInteger(start) && start >= 0, `RangeTree: bad start ${start}`);
    assert(Number.isSafeInteger(size) && size > 0 && Number.isSafeInteger(start + size), `RangeTree: bad size ${size}`);
    assert(start % this.alignBytes === 0 && size % this.alignBytes === 0, `RangeTree: [${start}, +${size}) not ${this.alignBytes}-aligned`);
  }

  /** First index k in the size index with (sizeKeys[k], sizeStarts[k]) >= (size, start). */
  private sizeLowerBound(size: number, start: number): number {
    let lo = 0;
    let hi = this.sizeKeys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const ks = this.sizeKeys[mid] as number;
      if (ks < size || (ks === size && (this.sizeStarts[mid] as number) < start)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private index(start: number, size: number): void {
    const k = this.sizeLowerBound(size, start);
    this.sizeKeys.splice(k, 0, size);
    this.sizeStarts.splice(k, 0, start);
  }

  private unindex(start: number, size: number): void {
    const k = this.sizeLowerBound(size, start);
    assert(this.sizeKeys[k] === size && this.sizeStarts[k] === start, `RangeTree: [${start}, +${size}) not in size index`);
    this.sizeKeys.splice(k, 1);
    this.sizeStarts.splice(k, 1);
  }
}
