// Model test: the ZAP against a naive sorted map, over random operation sequences with keys and
// values up to their limits, small nodes (deep trees with few entries), checkInvariants after
// every operation and reopens at random points. fast-check prints the seed and path to replay.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ErrorCode, bytesEqual, toHex } from '../lib/index.js';
import { MemObject } from './mem-object.js';
import { ZAP_KEY_BYTES_MAX, ZAP_NODE_BYTES_MIN, ZAP_VALUE_BYTES_MAX, Zap, type ZapEntry } from './zap.js';

const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;

type Op =
  | { kind: 'set' | 'add'; key: Uint8Array; value: Uint8Array }
  | { kind: 'remove' | 'get'; key: Uint8Array }
  | { kind: 'entries'; prefix: Uint8Array | undefined; after: Uint8Array | undefined; limit: number | undefined }
  | { kind: 'reopen' };

// Keys share a few stems (some near the key limit) so prefixes, long separators and equal keys
// are common; raw byte keys bring 0x00 and 0xff.
const stems = ['', 'p/', 'p/q/', 'x'.repeat(600), 'y'.repeat(ZAP_KEY_BYTES_MAX - 3)];
const keyArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.tuple(fc.constantFrom(...stems), fc.stringMatching(/^[a-d]{1,3}$/)).map(([s, t]) => new TextEncoder().encode(s + t)),
  fc.uint8Array({ minLength: 1, maxLength: 3 }),
);
const valueArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 12 }),
  fc.integer({ min: ZAP_VALUE_BYTES_MAX - 200, max: ZAP_VALUE_BYTES_MAX }).map((n) => new Uint8Array(n).fill(n & 0xff)),
);
const prefixArb = fc.option(
  fc.oneof(keyArb.map((k) => k.subarray(0, Math.max(0, k.length - 1))), fc.constantFrom(...stems).map((s) => new TextEncoder().encode(s))),
  { nil: undefined },
);
// Long keys only, from many suffixes: enough live near-limit entries for trees of 3+ levels.
const longKeyArb: fc.Arbitrary<Uint8Array> = fc
  .tuple(fc.constantFrom(stems[3]!, stems[4]!), fc.stringMatching(/^[a-h]{1,3}$/))
  .map(([s, t]) => new TextEncoder().encode(s + t));

function opsOf(key: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Op> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('set' as const), key, value: valueArb }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('add' as const), key, value: valueArb }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('remove' as const), key }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('get' as const), key }) },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('entries' as const),
        prefix: prefixArb,
        after: fc.option(key, { nil: undefined }),
        limit: fc.option(fc.integer({ min: 0, max: 20 }), { nil: undefined }),
      }),
    },
    { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
  );
}

function compare(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function startsWith(k: Uint8Array, p: Uint8Array): boolean {
  return k.length >= p.length && compare(k.subarray(0, p.length), p) === 0;
}

/** The naive model: a Map by hex key, sorted on demand. */
class Model {
  readonly map = new Map<string, { key: Uint8Array; value: Uint8Array }>();
  list(prefix: Uint8Array | undefined, after: Uint8Array | undefined, limit: number | undefined): ZapEntry[] {
    const all = [...this.map.values()].sort((a, b) => compare(a.key, b.key));
    const match = all.filter((e) => (prefix === undefined || startsWith(e.key, prefix)) && (after === undefined || compare(e.key, after) > 0));
    return match.slice(0, limit ?? match.length);
  }
}

async function apply(zap: Zap, model: Model, op: Exclude<Op, { kind: 'reopen' }>): Promise<void> {
  switch (op.kind) {
    case 'set':
      await zap.set(op.key, op.value);
      model.map.set(toHex(op.key), { key: op.key, value: op.value });
      return;
    case 'add':
      if (model.map.has(toHex(op.key))) {
        await expect(zap.add(op.key, op.value)).rejects.toThrow(withCode('EEXIST'));
      } else {
        await zap.add(op.key, op.value);
        model.map.set(toHex(op.key), { key: op.key, value: op.value });
      }
      return;
    case 'remove':
      expect(await zap.remove(op.key)).toBe(model.map.delete(toHex(op.key)));
      return;
    case 'get': {
      const got = await zap.get(op.key);
      const want = model.map.get(toHex(op.key));
      expect(got === undefined ? undefined : toHex(got)).toBe(want === undefined ? undefined : toHex(want.value));
      return;
    }
    case 'entries': {
      const got: ZapEntry[] = [];
      const opts = { ...(op.prefix && { prefix: op.prefix }), ...(op.after && { after: op.after }), ...(op.limit !== undefined && { limit: op.limit }) };
      for await (const e of zap.entries(opts)) got.push(e);
      const want = model.list(op.prefix, op.after, op.limit);
      expect(got.map((e) => toHex(e.key))).toEqual(want.map((e) => toHex(e.key)));
      for (let i = 0; i < got.length; i++) expect(bytesEqual(got[i]!.value, want[i]!.value)).toBe(true);
      return;
    }
  }
}

/** Tallest tree any run reached, so a test can prove it exercised inner-node splits and merges. */
let levelsMax = 0;

async function runModel(ops: readonly Op[]): Promise<void> {
  const obj = new MemObject();
  let zap = await Zap.create(obj, { nodeBytes: ZAP_NODE_BYTES_MIN });
  const model = new Model();
  for (const op of ops) {
    if (op.kind === 'reopen') zap = await Zap.open(obj);
    else await apply(zap, model, op);
    const report = await zap.checkInvariants();
    levelsMax = Math.max(levelsMax, report.levels);
    expect(report.entries).toBe(model.map.size);
    expect(await zap.count()).toBe(model.map.size);
  }
  for (const e of model.list(undefined, undefined, undefined)) expect(await zap.remove(e.key)).toBe(true);
  const empty = await zap.checkInvariants();
  expect(empty.nodeCount).toBe(3);
}

describe('Zap against a sorted-map model', () => {
  it('agrees on short random operation sequences', async () => {
    await fc.assert(fc.asyncProperty(fc.array(opsOf(keyArb), { maxLength: 40 }), runModel), { seed: 0x2a9, numRuns: 60 });
  });

  it('agrees on long sequences that grow deep trees of near-limit entries', async () => {
    const ops = fc.array(fc.oneof(opsOf(keyArb), opsOf(longKeyArb), opsOf(longKeyArb)), { minLength: 250, maxLength: 400 });
    levelsMax = 0;
    await fc.assert(fc.asyncProperty(ops, runModel), { seed: 0x51ed, numRuns: 3 });
    expect(levelsMax).toBeGreaterThanOrEqual(3);
  });
});
