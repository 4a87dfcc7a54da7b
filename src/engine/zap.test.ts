import { describe, expect, it } from 'vitest';
import { type ErrorCode, bytesEqual, concatBytes, sha256, toHex } from '../lib/index.js';
import { MemObject } from './mem-object.js';
import { sealNode, zapFormat } from './zap-format.js';
import { ZapNode, encodeEntry, encodeNode } from './zap-node.js';
import { ZAP_KEY_BYTES_MAX, ZAP_VALUE_BYTES_MAX, Zap, type ZapEntry, zapKeyText, zapNumber, zapU64 } from './zap.js';

/** Matches a MirrorpoolError with `code` (typed as Error so toThrow takes it). */
const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;

const text = new TextEncoder();
const bytes = (s: string): Uint8Array => text.encode(s);
const NODE = 16 * 1024;

async function collect(it: AsyncIterable<ZapEntry>): Promise<string[]> {
  const out: string[] = [];
  for await (const e of it) out.push(zapKeyText(e.key));
  return out;
}

async function filled(count: number, nodeBytes = NODE): Promise<{ obj: MemObject; zap: Zap }> {
  const obj = new MemObject();
  const zap = await Zap.create(obj, { nodeBytes });
  for (let i = 0; i < count; i++) await zap.setNumber(`k${String(i).padStart(6, '0')}`, i);
  return { obj, zap };
}

describe('Zap basics', () => {
  it('starts empty, stores, replaces and removes entries', async () => {
    const obj = new MemObject();
    const zap = await Zap.create(obj);
    expect(await zap.count()).toBe(0);
    expect(await zap.get('a')).toBeUndefined();
    await zap.set('a', bytes('one'));
    await zap.set(new Uint8Array([0x62]), bytes('two'));
    expect(zapKeyText((await zap.get(bytes('a')))!)).toBe('one');
    expect(await zap.has('b')).toBe(true);
    await zap.set('a', bytes('uno'));
    expect(zapKeyText((await zap.get('a'))!)).toBe('uno');
    expect(await zap.count()).toBe(2);
    expect(await zap.remove('a')).toBe(true);
    expect(await zap.remove('a')).toBe(false);
    expect(await zap.count()).toBe(1);
    await zap.checkInvariants();
  });

  it('refuses to add a key that exists, with EEXIST and no change', async () => {
    const { obj, zap } = await filled(10);
    const before = obj.bytes();
    await expect(zap.add('k000003', bytes('x'))).rejects.toThrow(withCode('EEXIST'));
    expect(bytesEqual(obj.bytes(), before)).toBe(true);
    await zap.add('new', bytes('x'));
    expect(await zap.count()).toBe(11);
  });

  it('stores u64 and number values as 8 little-endian bytes', async () => {
    const zap = await Zap.create(new MemObject());
    await zap.setU64('guid', 0xffff_ffff_ffff_fffen);
    await zap.addNumber('obj', 2 ** 53 - 1);
    expect(await zap.getU64('guid')).toBe(0xffff_ffff_ffff_fffen);
    expect(await zap.getNumber('obj')).toBe(2 ** 53 - 1);
    expect(await zap.getNumber('absent')).toBeUndefined();
    expect(bytesEqual(zapNumber(1), zapU64(1n))).toBe(true);
    await zap.set('short', bytes('abc'));
    await expect(zap.getU64('short')).rejects.toThrow(withCode('EPROTO'));
    await expect(zap.getNumber('guid')).rejects.toThrow(withCode('EPROTO'));
    await expect(zap.setNumber('n', -1)).rejects.toThrow(withCode('EINVAL'));
    await expect(zap.setU64('n', 1n << 64n)).rejects.toThrow(withCode('EINVAL'));
  });

  it('accepts keys and values exactly at the limits', async () => {
    const zap = await Zap.create(new MemObject());
    const key = new Uint8Array(ZAP_KEY_BYTES_MAX).fill(0xff);
    const value = new Uint8Array(ZAP_VALUE_BYTES_MAX).fill(7);
    await zap.set(key, value);
    await zap.set('é'.repeat(ZAP_KEY_BYTES_MAX / 2), new Uint8Array(0));
    expect(bytesEqual((await zap.get(key))!, value)).toBe(true);
    expect((await zap.get('é'.repeat(ZAP_KEY_BYTES_MAX / 2)))!.length).toBe(0);
  });

  it('reopens a map with its content', async () => {
    const { obj } = await filled(3000);
    const zap = await Zap.open(obj);
    expect(await zap.count()).toBe(3000);
    expect(await zap.getNumber('k002999')).toBe(2999);
    const report = await zap.checkInvariants();
    expect(report.levels).toBe(2);
    expect(report.entries).toBe(3000);
    expect(await zap.info()).toEqual({ entries: 3000, levels: 2, nodeCount: report.nodeCount, freeNodes: 0, nodeBytes: NODE });
    expect(obj.size()).toBe(report.nodeCount * NODE);
  });

  it('runs calls that were not awaited one at a time, in call order', async () => {
    const zap = await Zap.create(new MemObject());
    const calls: Array<Promise<unknown>> = [];
    for (let i = 0; i < 200; i++) calls.push(zap.setNumber(`k${i % 50}`, i));
    calls.push(zap.add('k0', new Uint8Array(0)).catch((e: unknown) => e));
    await Promise.all(calls);
    expect(await zap.count()).toBe(50);
    expect(await zap.getNumber('k7')).toBe(157);
    await zap.checkInvariants();
  });
});

describe('Zap listing', () => {
  it('lists in bytewise key order with prefix, after and limit', async () => {
    const zap = await Zap.create(new MemObject(), { nodeBytes: 8192 });
    const names = ['b', 'a/2', 'a/10', 'a', 'a/1', 'ab', 'c', 'a0'];
    for (const n of names) await zap.set(n, bytes(n));
    expect(await collect(zap.entries())).toEqual(['a', 'a/1', 'a/10', 'a/2', 'a0', 'ab', 'b', 'c']);
    expect(await collect(zap.entries({ prefix: 'a/' }))).toEqual(['a/1', 'a/10', 'a/2']);
    expect(await collect(zap.entries({ prefix: 'a/', after: 'a/1' }))).toEqual(['a/10', 'a/2']);
    expect(await collect(zap.entries({ prefix: 'a/', after: 'a' }))).toEqual(['a/1', 'a/10', 'a/2']);
    expect(await collect(zap.entries({ prefix: 'a/', after: 'a/9' }))).toEqual([]);
    expect(await collect(zap.entries({ after: 'a0', limit: 2 }))).toEqual(['ab', 'b']);
    expect(await collect(zap.entries({ prefix: 'zz' }))).toEqual([]);
    expect(await collect(zap.entries({ limit: 0 }))).toEqual([]);
  });

  it('pages through a large map with after, across leaves', async () => {
    const { zap } = await filled(5000, 8192);
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await collect(zap.entries({ prefix: 'k00', limit: 333, ...(after === undefined ? {} : { after }) }));
      if (page.length === 0) break;
      seen.push(...page);
      after = page[page.length - 1];
    }
    expect(seen.length).toBe(5000);
    expect(seen).toEqual([...seen].sort());
  });

  it('yields each untouched entry once, in order, while the map changes under the iterator', async () => {
    const { zap } = await filled(2000, 8192);
    const key = (n: number): string => `k${String(n).padStart(6, '0')}`;
    const touched = new Set<string>();
    const seen: string[] = [];
    for await (const e of zap.entries()) {
      const k = zapKeyText(e.key);
      seen.push(k);
      const n = Number(k.slice(1));
      if (n % 3 === 0) {
        touched.add(key(n + 1));
        await zap.remove(key(n + 1));
      }
      if (n % 5 === 0) {
        touched.add(`${key(n)}x`);
        await zap.set(`${key(n)}x`, new Uint8Array(100));
      }
    }
    for (let i = 1; i < seen.length; i++) expect(seen[i - 1]! < seen[i]!).toBe(true);
    const untouched = Array.from({ length: 2000 }, (_, i) => key(i)).filter((k) => !touched.has(k));
    expect(seen.filter((k) => !touched.has(k))).toEqual(untouched);
    expect(await zap.count()).toBe(2000 - 667 + 400);
    await zap.checkInvariants();
  });
});

describe('Zap bad input', () => {
  const cases: Array<[string, (z: Zap) => Promise<unknown>]> = [
    ['an empty string key', (z) => z.set('', new Uint8Array(1))],
    ['an empty byte key', (z) => z.set(new Uint8Array(0), new Uint8Array(1))],
    ['a key one byte too long', (z) => z.set(new Uint8Array(ZAP_KEY_BYTES_MAX + 1), new Uint8Array(1))],
    ['a string key too long in UTF-8', (z) => z.set('é'.repeat(ZAP_KEY_BYTES_MAX / 2 + 1), new Uint8Array(1))],
    ['a key with a lone surrogate', (z) => z.set('a\ud800b', new Uint8Array(1))],
    ['a value one byte too long', (z) => z.set('k', new Uint8Array(ZAP_VALUE_BYTES_MAX + 1))],
    ['a value that is not bytes', (z) => z.set('k', 'text' as unknown as Uint8Array)],
    ['a too long key to add', (z) => z.add(new Uint8Array(ZAP_KEY_BYTES_MAX + 1), new Uint8Array(1))],
    ['a too long key to remove', (z) => z.remove(new Uint8Array(ZAP_KEY_BYTES_MAX + 1))],
    ['an empty key to get', (z) => z.get('')],
    ['a negative limit', async (z) => z.entries({ limit: -1 }).next()],
    ['a too long prefix', async (z) => z.entries({ prefix: new Uint8Array(ZAP_KEY_BYTES_MAX + 1) }).next()],
  ];
  for (const [name, call] of cases) {
    it(`refuses ${name} with EINVAL and leaves the object unchanged`, async () => {
      const { obj, zap } = await filled(20);
      const before = obj.bytes();
      await expect(Promise.resolve().then(() => call(zap))).rejects.toThrow(withCode('EINVAL'));
      expect(bytesEqual(obj.bytes(), before)).toBe(true);
    });
  }

  it('refuses to create in a non-empty object or with a bad node size', async () => {
    await expect(Zap.create(new MemObject(new Uint8Array(10)))).rejects.toThrow(withCode('EINVAL'));
    for (const nodeBytes of [4096, 12288, 128 * 1024, 1.5]) {
      await expect(Zap.create(new MemObject(), { nodeBytes })).rejects.toThrow(withCode('EINVAL'));
    }
  });

  it('refuses to open an empty, zeroed, random or resized object with EPROTO', async () => {
    await expect(Zap.open(new MemObject())).rejects.toThrow(withCode('EPROTO'));
    await expect(Zap.open(new MemObject(new Uint8Array(3 * NODE)))).rejects.toThrow(withCode('EPROTO'));
    const random = new Uint8Array(3 * NODE);
    for (let i = 0; i < random.length; i++) random[i] = (i * 2654435761) >>> 24;
    await expect(Zap.open(new MemObject(random))).rejects.toThrow(withCode('EPROTO'));
    const { obj } = await filled(5);
    await obj.truncate(obj.size() + NODE);
    await expect(Zap.open(obj)).rejects.toThrow(withCode('EPROTO'));
  });

  it('refuses an unknown version with EPROTO', async () => {
    const { obj } = await filled(5);
    await obj.write(4, new Uint8Array([2, 0]));
    await expect(Zap.open(obj)).rejects.toThrow(withCode('EPROTO'));
  });
});

describe('Zap corruption', () => {
  async function flipped(node: number, offset: number): Promise<{ obj: MemObject; zap: Zap }> {
    const { obj, zap } = await filled(3000);
    const b = await obj.read(node * NODE + offset, 1);
    await obj.write(node * NODE + offset, new Uint8Array([b[0]! ^ 0x10]));
    return { obj, zap };
  }

  it('names the tree node whose bytes were flipped, in entries and in the unused tail', async () => {
    const { zap: probe } = await filled(3000);
    const report = await probe.checkInvariants();
    expect(report.levels).toBe(2);
    for (const offset of [100, 1000, NODE - 1, 4]) {
      // Node 2 is the first leaf (it held the root leaf before the first split).
      const { zap } = await flipped(2, offset);
      const err = await zap.get('k000000').catch((e: unknown) => e);
      expect(err).toEqual(withCode('EPROTO'));
      expect((err as { details: { node: number } }).details.node).toBe(2);
      await expect(zap.checkInvariants()).rejects.toThrow(withCode('EPROTO'));
    }
  });

  it('fails an open, a read or a check on a flipped header, summary or bitmap page', async () => {
    const head = await flipped(0, 13);
    await expect(Zap.open(head.obj)).rejects.toThrow(withCode('EPROTO'));
    const summary = await flipped(0, 500);
    await expect(summary.zap.checkInvariants()).rejects.toThrow(withCode('EPROTO'));
    const page = await flipped(1, 200);
    await expect(page.zap.checkInvariants()).rejects.toThrow(withCode('EPROTO'));
  });

  it('finds, in the full check, well-sealed nodes with keys out of order or a dirty tail', async () => {
    const fmt = zapFormat(NODE);
    const misordered = new MemObject();
    const zap = await Zap.create(misordered);
    await zap.set('a', bytes('1'));
    const run = concatBytes([encodeEntry(bytes('b'), bytes('2')), encodeEntry(bytes('a'), bytes('1'))]);
    await misordered.write(2 * NODE, encodeNode(new ZapNode(2, 0, 0, run), fmt));
    const err = await zap.checkInvariants().catch((e: unknown) => e);
    expect(err).toEqual(withCode('EPROTO'));
    expect((err as { details: { node: number } }).details.node).toBe(2);

    const dirty = new MemObject();
    const other = await Zap.create(dirty);
    await other.set('a', bytes('1'));
    const leaf = await dirty.read(2 * NODE, NODE);
    leaf[NODE - 1] = 1;
    sealNode(leaf);
    await dirty.write(2 * NODE, leaf);
    expect(zapKeyText((await other.get('a'))!)).toBe('1');
    await expect(other.checkInvariants()).rejects.toThrow(withCode('EPROTO'));
  });

  it('leaves the object unchanged when an update meets a corrupt node', async () => {
    const { obj, zap } = await flipped(2, 300);
    const before = obj.bytes();
    await expect(zap.set('k000000', bytes('x'))).rejects.toThrow(withCode('EPROTO'));
    await expect(zap.remove('k000001')).rejects.toThrow(withCode('EPROTO'));
    expect(bytesEqual(obj.bytes(), before)).toBe(true);
  });
});

describe('Zap write-back and bounded work', () => {
  it('rewrites only the changed leaf when a value is replaced, and nothing for an equal value', async () => {
    const { obj, zap } = await filled(5000);
    const before = { ...obj.stats };
    await zap.setNumber('k001234', 7);
    expect(obj.stats.writes - before.writes).toBe(1);
    expect(obj.stats.writtenBytes - before.writtenBytes).toBe(NODE);
    await zap.setNumber('k001234', 7);
    expect(obj.stats.writes - before.writes).toBe(1);
  });

  it('reads the header head and one node per level for a lookup', async () => {
    const { obj, zap } = await filled(5000);
    const { levels } = await zap.checkInvariants();
    const before = { ...obj.stats };
    await zap.get('k000777');
    expect(obj.stats.reads - before.reads).toBe(1 + levels);
    expect(obj.stats.readBytes - before.readBytes).toBeLessThan((levels + 1) * NODE);
  });

  it('reuses freed nodes before growing the object', async () => {
    const { obj, zap } = await filled(6000, 8192);
    for (let i = 1000; i < 3000; i++) await zap.remove(`k${String(i).padStart(6, '0')}`);
    const holes = await zap.checkInvariants();
    expect(holes.freeNodes).toBeGreaterThan(0);
    const size = obj.size();
    for (let i = 1000; i < 1400; i++) await zap.setNumber(`k${String(i).padStart(6, '0')}`, i);
    const after = await zap.checkInvariants();
    expect(after.freeNodes).toBeLessThan(holes.freeNodes);
    expect(obj.size()).toBe(size);
  });
});

describe('Zap determinism', () => {
  async function run(ops: ReadonlyArray<[string, number]>): Promise<MemObject> {
    const obj = new MemObject();
    const zap = await Zap.create(obj, { nodeBytes: 8192 });
    for (const [k, v] of ops) {
      if (v < 0) await zap.remove(k);
      else await zap.set(k, new Uint8Array(v % 700).fill(v & 0xff));
    }
    return obj;
  }

  function ops(seed: number, count: number): Array<[string, number]> {
    const out: Array<[string, number]> = [];
    let x = seed;
    for (let i = 0; i < count; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      out.push([`key/${(x >>> 8) % 900}`, (x & 0xf) < 4 ? -1 : x >>> 20]);
    }
    return out;
  }

  it('writes byte-identical objects for the same operations', async () => {
    const a = await run(ops(1, 3000));
    const b = await run(ops(1, 3000));
    expect(a.size()).toBeGreaterThan(4 * 8192);
    expect(bytesEqual(a.bytes(), b.bytes())).toBe(true);
  });

  it('keeps the recorded bytes for a fixed operation sequence (format golden vector)', async () => {
    const obj = await run(ops(7, 2000));
    expect({ size: obj.size(), sha256: toHex(sha256(obj.bytes())) }).toEqual({
      size: 401408,
      sha256: 'd0e8cb0ab73b71bf60ac74e7861ba1b1655bdcb9a875c85b557eb1005b7c03c5',
    });
  });

  it('holds the same content whatever the insertion order', async () => {
    const keys = Array.from({ length: 2000 }, (_, i) => `n${(i * 7919) % 2000}`);
    const a = await Zap.create(new MemObject());
    const b = await Zap.create(new MemObject());
    for (const k of keys) await a.set(k, bytes(k));
    for (const k of [...keys].reverse()) await b.set(k, bytes(k));
    const la: string[] = [];
    const lb: string[] = [];
    for await (const e of a.entries()) la.push(`${zapKeyText(e.key)}=${zapKeyText(e.value)}`);
    for await (const e of b.entries()) lb.push(`${zapKeyText(e.key)}=${zapKeyText(e.value)}`);
    expect(la).toEqual(lb);
    expect(la.length).toBe(2000);
  });
});
