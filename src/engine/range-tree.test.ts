import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AssertionFailure, Prng } from '../lib/index.js';
import { type Range, RangeTree } from './range-tree.js';

const UNIVERSE = 256;

/** The naive model: one boolean per unit. */
class Bitmap {
  readonly bits = new Array<boolean>(UNIVERSE).fill(false);
  set(start: number, size: number, value: boolean): void {
    for (let i = start; i < start + size; i++) this.bits[i] = value;
  }
  all(start: number, size: number): boolean {
    for (let i = start; i < start + size; i++) if (!this.bits[i]) return false;
    return true;
  }
  any(start: number, size: number): boolean {
    for (let i = start; i < start + size; i++) if (this.bits[i]) return true;
    return false;
  }
  runs(): Range[] {
    const out: Range[] = [];
    for (let i = 0; i < UNIVERSE; ) {
      if (!this.bits[i]) {
        i++;
        continue;
      }
      let j = i;
      while (j < UNIVERSE && this.bits[j]) j++;
      out.push({ start: i, size: j - i });
      i = j;
    }
    return out;
  }
  /** findFree's documented first-fit rule, spelled out over the runs. */
  firstFit(cursor: number, size: number): number | null {
    const runs = this.runs();
    for (const r of runs) {
      if (r.start + r.size <= cursor) continue;
      const offset = Math.max(r.start, cursor);
      if (r.start + r.size - offset >= size) return offset;
    }
    for (const r of runs) if (r.size >= size) return r.start;
    return null;
  }
}

type Op = { kind: 'add' | 'remove' | 'query'; start: number; size: number };

const opArb: fc.Arbitrary<Op> = fc
  .record({
    kind: fc.constantFrom<Op['kind']>('add', 'add', 'remove', 'query'),
    start: fc.integer({ min: 0, max: UNIVERSE - 1 }),
    size: fc.integer({ min: 1, max: 24 }),
  })
  .map((op) => ({ ...op, size: Math.min(op.size, UNIVERSE - op.start) }));

function checkAgainstModel(tree: RangeTree, model: Bitmap, probe: Op): void {
  tree.checkInvariants();
  const runs = model.runs();
  expect(tree.ranges()).toEqual(runs);
  expect(tree.count).toBe(runs.length);
  expect(tree.sumBytes()).toBe(model.bits.filter(Boolean).length);
  expect(tree.maxRangeBytes()).toBe(Math.max(0, ...runs.map((r) => r.size)));
  expect(tree.contains(probe.start, probe.size)).toBe(model.all(probe.start, probe.size));
  expect(tree.overlaps(probe.start, probe.size)).toBe(model.any(probe.start, probe.size));
  expect(tree.findFree(probe.start, probe.size, Number.POSITIVE_INFINITY)).toBe(model.firstFit(probe.start, probe.size));
  // With a tiny search bound the answer may differ from first-fit but must still be a fitting range.
  const bounded = tree.findFree(probe.start, probe.size, 1);
  if (bounded === null) expect(model.firstFit(probe.start, probe.size)).toBeNull();
  else expect(model.all(bounded, probe.size)).toBe(true);
  const within = tree.rangesWithin(probe.start, probe.size);
  const clipped = new Bitmap();
  for (const r of within) clipped.set(r.start, r.size, true);
  const expected = model.bits.map((b, i) => b && i >= probe.start && i < probe.start + probe.size);
  expect(clipped.bits).toEqual(expected);
}

describe('RangeTree', () => {
  it('behaves like a naive bitmap under random adds, removes and queries', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => {
        const tree = new RangeTree();
        const model = new Bitmap();
        for (const op of ops) {
          if (op.kind === 'add') {
            if (model.any(op.start, op.size)) {
              expect(() => tree.add(op.start, op.size)).toThrow(AssertionFailure);
            } else {
              tree.add(op.start, op.size);
              model.set(op.start, op.size, true);
            }
          } else if (op.kind === 'remove') {
            if (!model.all(op.start, op.size)) {
              expect(() => tree.remove(op.start, op.size)).toThrow(AssertionFailure);
            } else {
              tree.remove(op.start, op.size);
              model.set(op.start, op.size, false);
            }
          }
          checkAgainstModel(tree, model, op);
        }
        const copy = tree.clone();
        copy.checkInvariants();
        expect(copy.ranges()).toEqual(tree.ranges());
      }),
      { numRuns: 300 },
    );
  });

  it('coalesces adjacent ranges into one', () => {
    const tree = new RangeTree(512);
    tree.add(1024, 512);
    tree.add(2048, 512);
    tree.add(1536, 512);
    expect(tree.ranges()).toEqual([{ start: 1024, size: 1536 }]);
    tree.remove(1536, 512);
    expect(tree.ranges()).toEqual([
      { start: 1024, size: 512 },
      { start: 2048, size: 512 },
    ]);
    tree.checkInvariants();
  });

  it('rejects unaligned, empty and negative ranges as programmer errors', () => {
    const tree = new RangeTree(512);
    expect(() => tree.add(100, 512)).toThrow(AssertionFailure);
    expect(() => tree.add(0, 0)).toThrow(AssertionFailure);
    expect(() => tree.add(-512, 512)).toThrow(AssertionFailure);
    expect(() => tree.remove(0, 512)).toThrow(AssertionFailure);
  });

  it('stays correct and fast with tens of thousands of ranges', () => {
    const seed = 20240611;
    const rng = new Prng(seed);
    const tree = new RangeTree(512);
    const n = 40_000;
    // Every other sector: n separate ranges, inserted in random order.
    const order = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (const i of order) tree.add(i * 1024, 512);
    expect(tree.count, `seed ${seed}`).toBe(n);
    expect(tree.findFree(0, 1024)).toBeNull();
    // Filling the holes merges everything into one range.
    for (const i of order) if (i < n - 1) tree.add(i * 1024 + 512, 512);
    expect(tree.count, `seed ${seed}`).toBe(1);
    expect(tree.sumBytes()).toBe((2 * n - 1) * 512);
    tree.checkInvariants();
  });

  it('finds a best fit when first-fit gives up in a fragmented tree', () => {
    const tree = new RangeTree(512);
    for (let i = 0; i < 1000; i++) tree.add(i * 1024, 512);
    tree.add(2_048_000, 4096);
    tree.add(3_072_000, 8192);
    expect(tree.findFree(0, 4096)).toBe(2_048_000);
    expect(tree.findFree(2_560_000, 4096)).toBe(3_072_000);
    expect(tree.findFree(0, 16384)).toBeNull();
  });
});
