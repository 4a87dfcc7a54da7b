// Scale and multi-group tests: 50k entries in and out (the object returns to its empty size),
// and crafted sparse objects whose tail crosses into a second free-bitmap group (half a GiB of
// logical bytes, which only a sparse ObjectAccess makes cheap).
import { describe, expect, it } from 'vitest';
import { type ErrorCode, Prng } from '../lib/index.js';
import type { ObjectAccess } from './types.js';
import { MemObject } from './mem-object.js';
import { Zap } from './zap.js';
import {
  type BitmapPage,
  type ZapHeader,
  decodeBitmapPage,
  emptyBitmapPage,
  encodeBitmapPage,
  encodeHeader,
  pageNo,
  setBit,
  summaryBytes,
  zapFormat,
} from './zap-format.js';
import { ZapNode, encodeNode } from './zap-node.js';

const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;

describe('Zap at scale', () => {
  it('inserts 50k entries, removes them in random order and shrinks back to its empty size', async () => {
    const seed = 20240601;
    const rng = new Prng(seed);
    const obj = new MemObject();
    const zap = await Zap.create(obj);
    const keys: string[] = [];
    for (let i = 0; i < 50_000; i++) keys.push(`dataset/${rng.u32().toString(36)}/${i}`);
    const started = performance.now();
    for (let i = 0; i < keys.length; i++) await zap.setNumber(keys[i]!, i);
    const insertMs = performance.now() - started;
    console.log(`zap: 50k inserts into MemObject took ${insertMs.toFixed(0)} ms (seed ${seed})`);
    const full = await zap.checkInvariants();
    expect(full.entries, `seed ${seed}`).toBe(50_000);
    const fullSize = obj.size();
    for (let i = keys.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [keys[i], keys[j]] = [keys[j]!, keys[i]!];
    }
    for (let i = 0; i < keys.length; i++) {
      expect(await zap.remove(keys[i]!), `seed ${seed} key ${keys[i]}`).toBe(true);
      if (i % 12_500 === 12_499) {
        const mid = await zap.checkInvariants();
        expect(mid.entries, `seed ${seed}`).toBe(keys.length - i - 1);
      }
    }
    const empty = await zap.checkInvariants();
    expect(empty).toMatchObject({ entries: 0, levels: 1, nodeCount: 3, freeNodes: 0 });
    expect(obj.size()).toBe(3 * zap.nodeBytes);
    expect(fullSize).toBeGreaterThan(100 * zap.nodeBytes);
  });
});

/** An ObjectAccess that stores only non-zero chunks, so huge mostly-free objects are cheap. */
class SparseObject implements ObjectAccess {
  static readonly CHUNK = 8192;
  private readonly chunks = new Map<number, Uint8Array>();
  private length = 0;

  size(): number {
    return this.length;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    for (let pos = offset; pos < offset + length && pos < this.length; ) {
      const index = Math.floor(pos / SparseObject.CHUNK);
      const within = pos - index * SparseObject.CHUNK;
      const take = Math.min(SparseObject.CHUNK - within, offset + length - pos, this.length - pos);
      const chunk = this.chunks.get(index);
      if (chunk !== undefined) out.set(chunk.subarray(within, within + take), pos - offset);
      pos += take;
    }
    return out;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    for (let pos = offset; pos < offset + data.length; ) {
      const index = Math.floor(pos / SparseObject.CHUNK);
      const within = pos - index * SparseObject.CHUNK;
      const take = Math.min(SparseObject.CHUNK - within, offset + data.length - pos);
      const chunk = this.chunks.get(index) ?? new Uint8Array(SparseObject.CHUNK);
      chunk.set(data.subarray(pos - offset, pos - offset + take), within);
      if (chunk.every((b) => b === 0)) this.chunks.delete(index);
      else this.chunks.set(index, chunk);
      pos += take;
    }
    this.length = Math.max(this.length, offset + data.length);
  }

  async truncate(size: number): Promise<void> {
    for (const index of [...this.chunks.keys()]) {
      if (index * SparseObject.CHUNK >= size) this.chunks.delete(index);
      else if ((index + 1) * SparseObject.CHUNK > size) this.chunks.get(index)!.fill(0, size - index * SparseObject.CHUNK);
    }
    this.length = size;
  }

  get storedChunks(): number {
    return this.chunks.size;
  }
}

/**
 * Crafts a map whose only tree node is an empty root leaf at the tail node `nodeCount - 1`;
 * `free(no)` says which other nodes are free (the rest are left as zeroed orphans).
 */
async function craft(nodeCount: number, free: (no: number) => boolean): Promise<SparseObject> {
  const fmt = zapFormat(8192);
  const obj = new SparseObject();
  const pages: BitmapPage[] = [];
  for (let g = 0; pageNo(fmt, g) < nodeCount; g++) pages.push(emptyBitmapPage(g, fmt));
  const summary = new Uint8Array(summaryBytes(fmt));
  let freeCount = 0;
  let firstFree = 0;
  for (let no = 2; no < nodeCount - 1; no++) {
    const g = Math.floor((no - 1) / fmt.groupNodes);
    if (no === pageNo(fmt, g) || !free(no)) continue;
    setBit(pages[g]!.bits, no - pageNo(fmt, g));
    pages[g]!.freeCount++;
    setBit(summary, g);
    freeCount++;
    if (firstFree === 0) firstFree = no;
  }
  const root = nodeCount - 1;
  const header: ZapHeader = { levels: 1, root, nodeCount, freeCount, firstFree, entryCount: 0, summaryChecksum: new Uint8Array(0) };
  await obj.write(0, encodeHeader(header, summary, fmt));
  for (const page of pages) await obj.write(pageNo(fmt, page.group) * 8192, encodeBitmapPage(page, fmt));
  await obj.write(root * 8192, encodeNode(new ZapNode(root, 0, 0, new Uint8Array(0)), fmt));
  return obj;
}

describe('Zap across free-bitmap groups', () => {
  const fmt = zapFormat(8192);
  const g = fmt.groupNodes;

  it('moves a tail root down to the lowest free node and trims a second group off the tail', async () => {
    const obj = await craft(g + 4, () => true);
    const zap = await Zap.open(obj);
    const before = await zap.checkInvariants();
    expect(before).toMatchObject({ nodeCount: g + 4, bitmapPages: 2, freeNodes: g - 1 + 1 });
    await zap.setNumber('only', 1);
    const after = await zap.checkInvariants();
    expect(after).toMatchObject({ entries: 1, nodeCount: 3, bitmapPages: 1, freeNodes: 0 });
    expect(obj.size()).toBe(3 * 8192);
    expect(await zap.getNumber('only')).toBe(1);
  });

  it('creates the next group\'s bitmap page when the tail grows into it', async () => {
    // Nodes 2..g-1 are orphans (neither free nor in the tree) so that growth starts at node g+1.
    const obj = await craft(g + 1, () => false);
    const zap = await Zap.open(obj);
    const value = new Uint8Array(1000);
    for (let i = 0; i < 12; i++) await zap.set(`k${i}`, value);
    expect(obj.size()).toBeGreaterThan((g + 2) * 8192);
    const page = decodeBitmapPage(await obj.read(pageNo(fmt, 1) * 8192, 8192), 1, fmt);
    expect(page.freeCount).toBe(0);
    for (let i = 0; i < 12; i++) expect((await zap.get(`k${i}`))!.length).toBe(1000);
    const err = await zap.checkInvariants().catch((e: unknown) => e);
    expect(err).toEqual(withCode('EPROTO'));
    expect((err as { details: { node: number } }).details.node).toBe(2);
  });
});
