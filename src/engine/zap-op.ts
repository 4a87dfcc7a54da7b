// One ZAP operation's view of the object: the header read at its start, the nodes and bitmap
// pages it loaded (its only cache: nothing survives the operation, so bytes changed underneath
// between operations are always seen), node allocation and freeing, and the write-back.
// Invariants: nothing is written before commit(), so an operation that throws (EINVAL, EEXIST,
// EPROTO, ENOSPC) leaves the object untouched; commit() writes exactly the changed nodes in
// ascending node order, zeroes freed nodes, then truncates free nodes off the tail. Allocation is
// lowest-first from the free bitmap, so the same operations give the same bytes everywhere.
// Used by zap-tree.ts and zap.ts.

import { assert, mpError } from '../lib/index.js';
import type { ObjectAccess } from './types.js';
import {
  type BitmapPage,
  type ZapFormat,
  type ZapHeader,
  clearBit,
  corrupt,
  decodeBitmapPage,
  checkSummary,
  decodeHeaderHead,
  emptyBitmapPage,
  encodeBitmapPage,
  encodeHeader,
  encodeHeaderHead,
  HEADER_HEAD_BYTES,
  summaryBytes,
  getBit,
  groupOf,
  isPageNo,
  lowestSetBit,
  pageNo,
  setBit,
} from './zap-format.js';
import { ZapNode, decodeNode, encodeNode } from './zap-node.js';

export class ZapOp {
  private headerDirty = false;
  /** The summary bitmap, read on first need; dirty when an allocation or free changed it. */
  private summaryBits: Uint8Array | undefined;
  private summaryDirty = false;
  private readonly nodes = new Map<number, ZapNode>();
  private readonly dirtyNodes = new Set<number>();
  private readonly pages = new Map<number, BitmapPage>();
  private readonly dirtyPages = new Set<number>();
  /** Nodes freed by this operation and still inside the object: written as zeros. */
  private readonly zeroed = new Set<number>();
  /** Parent of each loaded non-root node, so commit() can move a node and fix its pointer. */
  private readonly parents = new Map<number, number>();

  private constructor(
    readonly obj: ObjectAccess,
    readonly fmt: ZapFormat,
    readonly header: ZapHeader,
  ) {}

  static async begin(obj: ObjectAccess, fmt: ZapFormat): Promise<ZapOp> {
    const head = await obj.read(0, HEADER_HEAD_BYTES);
    return new ZapOp(obj, fmt, decodeHeaderHead(head, fmt, obj.size()));
  }

  private async summary(): Promise<Uint8Array> {
    if (this.summaryBits === undefined) {
      const bits = await this.obj.read(HEADER_HEAD_BYTES, summaryBytes(this.fmt));
      checkSummary(bits, this.header, this.fmt);
      this.summaryBits = bits;
    }
    return this.summaryBits;
  }

  private markSummary(group: number, hasFree: boolean): void {
    assert(this.summaryBits !== undefined);
    if (getBit(this.summaryBits, group) === hasFree) return;
    if (hasFree) setBit(this.summaryBits, group);
    else clearBit(this.summaryBits, group);
    this.summaryDirty = true;
  }

  touchHeader(): void {
    this.headerDirty = true;
  }

  /** Loads tree node `no`, which must sit at `level`; `parent` is undefined for the root. */
  async node(no: number, level: number, parent: number | undefined): Promise<ZapNode> {
    if (parent !== undefined) this.parents.set(no, parent);
    const cached = this.nodes.get(no);
    if (cached !== undefined) {
      if (cached.level !== level) throw corrupt(no, `reached at level ${level}, holds level ${cached.level}`);
      return cached;
    }
    const n = this.header.nodeCount;
    if (no < 2 || no >= n || isPageNo(this.fmt, no)) throw corrupt(no, 'pointer to a node that is not a tree node');
    if (this.zeroed.has(no)) throw corrupt(no, 'pointer to a node freed by this operation');
    const buf = await this.obj.read(no * this.fmt.nodeBytes, this.fmt.nodeBytes);
    const node = decodeNode(buf, no, this.fmt, level);
    this.nodes.set(no, node);
    return node;
  }

  markDirty(node: ZapNode): void {
    assert(this.nodes.get(node.no) === node, `zap node ${node.no} is not loaded`);
    this.dirtyNodes.add(node.no);
  }

  /** Records `node` as the parent of every loaded child of it (after entries moved between nodes). */
  adopt(node: ZapNode): void {
    if (node.level === 0) return;
    for (let i = 0; i <= node.count; i++) {
      const child = node.childAt(i);
      if (this.nodes.has(child)) this.parents.set(child, node.no);
    }
  }

  async newNode(level: number, leftChild: number, data: Uint8Array, parent: number | undefined): Promise<ZapNode> {
    const no = await this.allocNo();
    if (this.nodes.has(no)) throw corrupt(no, 'the free bitmap hands out a node in use');
    const node = new ZapNode(no, level, leftChild, data);
    this.nodes.set(no, node);
    this.dirtyNodes.add(no);
    if (parent !== undefined) this.parents.set(no, parent);
    this.adopt(node);
    return node;
  }

  async release(node: ZapNode): Promise<void> {
    assert(this.nodes.get(node.no) === node);
    this.nodes.delete(node.no);
    this.dirtyNodes.delete(node.no);
    this.parents.delete(node.no);
    await this.freeNo(node.no);
  }

  private async page(group: number): Promise<BitmapPage> {
    const cached = this.pages.get(group);
    if (cached !== undefined) return cached;
    const no = pageNo(this.fmt, group);
    if (no >= this.header.nodeCount) throw corrupt(0, `summary names bitmap group ${group} past the end`);
    const page = decodeBitmapPage(await this.obj.read(no * this.fmt.nodeBytes, this.fmt.nodeBytes), group, this.fmt);
    this.pages.set(group, page);
    return page;
  }

  /** Takes the lowest free node and finds the next one (the only search of the bitmap). */
  private async allocNo(): Promise<number> {
    const h = this.header;
    if (h.freeCount === 0) return this.grow();
    const no = h.firstFree;
    const group = groupOf(this.fmt, no);
    const page = await this.page(group);
    const bit = no - pageNo(this.fmt, group);
    if (!getBit(page.bits, bit)) throw corrupt(pageNo(this.fmt, group), `lowest free node ${no} is not marked free`);
    clearBit(page.bits, bit);
    page.freeCount--;
    h.freeCount--;
    this.dirtyPages.add(group);
    this.headerDirty = true;
    this.zeroed.delete(no);
    if (page.freeCount === 0) {
      await this.summary();
      this.markSummary(group, false);
    }
    h.firstFree = h.freeCount === 0 ? 0 : await this.nextFree(group, bit);
    return no;
  }

  /** The lowest free node after bit `bit` of `group` (there is one). */
  private async nextFree(group: number, bit: number): Promise<number> {
    let g = group;
    let i = lowestSetBit((await this.page(g)).bits, bit + 1);
    if (i < 0) {
      g = lowestSetBit(await this.summary());
      i = g < 0 ? -1 : lowestSetBit((await this.page(g)).bits);
    }
    if (i < 1) throw corrupt(0, 'free count set but no free node found');
    return pageNo(this.fmt, g) + i;
  }

  /** Appends a node at the tail (and the bitmap page of a new group when the tail reaches one). */
  private grow(): number {
    const h = this.header;
    let no = h.nodeCount;
    const newGroup = isPageNo(this.fmt, no);
    if (newGroup) no++;
    if (no + 1 > this.fmt.nodesMax) {
      throw mpError('ENOSPC', `zap object is at its limit of ${this.fmt.nodesMax} nodes`, { nodes: h.nodeCount });
    }
    if (newGroup) {
      const group = groupOf(this.fmt, no - 1);
      this.pages.set(group, emptyBitmapPage(group, this.fmt));
      this.dirtyPages.add(group);
    }
    h.nodeCount = no + 1;
    this.headerDirty = true;
    return no;
  }

  private async freeNo(no: number): Promise<void> {
    const h = this.header;
    assert(no >= 2 && no < h.nodeCount && !isPageNo(this.fmt, no));
    const group = groupOf(this.fmt, no);
    const page = await this.page(group);
    const bit = no - pageNo(this.fmt, group);
    if (getBit(page.bits, bit)) throw corrupt(no, 'node in use is marked free');
    setBit(page.bits, bit);
    page.freeCount++;
    await this.summary();
    this.markSummary(group, true);
    h.freeCount++;
    if (h.firstFree === 0 || no < h.firstFree) h.firstFree = no;
    this.dirtyPages.add(group);
    this.headerDirty = true;
    this.zeroed.add(no);
    await this.trimTail();
  }

  /** Drops free nodes, and bitmap pages left alone, off the end of the object. */
  private async trimTail(): Promise<void> {
    const h = this.header;
    for (;;) {
      const last = h.nodeCount - 1;
      if (last < 2) throw corrupt(0, 'the free bitmap marks the whole tree free');
      const group = groupOf(this.fmt, last);
      if (isPageNo(this.fmt, last)) {
        const page = await this.page(group);
        if (page.freeCount !== 0) throw corrupt(last, 'a bitmap page past its group\'s last node counts free nodes');
        this.pages.delete(group);
        this.dirtyPages.delete(group);
        h.nodeCount--;
        continue;
      }
      const page = await this.page(group);
      const bit = last - pageNo(this.fmt, group);
      if (!getBit(page.bits, bit)) return;
      clearBit(page.bits, bit);
      page.freeCount--;
      if (page.freeCount === 0) this.markSummary(group, false);
      h.freeCount--;
      h.nodeCount--;
      this.dirtyPages.add(group);
      this.zeroed.delete(last);
      // Trimming runs down from the tail, so reaching the lowest free node means none is left.
      if (last === h.firstFree) {
        if (h.freeCount !== 0) throw corrupt(0, 'free nodes below the lowest free node');
        h.firstFree = 0;
      }
    }
  }

  /**
   * Moves dirty nodes down to lower free slots when the move costs no extra write (the pointer
   * to them lives in a node or header that is written anyway), so a shrinking map compacts.
   */
  private async relocate(): Promise<void> {
    const order = [...this.dirtyNodes]
      .map((no) => this.nodes.get(no))
      .filter((n): n is ZapNode => n !== undefined)
      .sort((a, b) => b.level - a.level || a.no - b.no);
    for (const node of order) {
      if (this.header.freeCount === 0) return;
      const isRoot = node.no === this.header.root;
      const parentNo = this.parents.get(node.no);
      if (isRoot ? !this.headerDirty : parentNo === undefined || !this.dirtyNodes.has(parentNo)) continue;
      if (this.header.firstFree >= node.no) continue;
      await this.move(node, isRoot ? undefined : parentNo);
    }
  }

  private async move(node: ZapNode, parentNo: number | undefined): Promise<void> {
    const old = node.no;
    const fresh = await this.allocNo();
    assert(fresh < old);
    node.no = fresh;
    this.nodes.delete(old);
    this.nodes.set(fresh, node);
    this.dirtyNodes.delete(old);
    this.dirtyNodes.add(fresh);
    if (parentNo === undefined) {
      this.header.root = fresh;
    } else {
      const parent = this.nodes.get(parentNo);
      assert(parent !== undefined);
      const i = parent.indexOfChild(old);
      assert(i >= 0, `zap node ${parentNo} does not point at ${old}`);
      parent.setChildAt(i, fresh);
      this.parents.delete(old);
      this.parents.set(fresh, parentNo);
    }
    this.adopt(node);
    await this.freeNo(old);
  }

  /** Writes what changed, in ascending node order, then truncates the tail. */
  async commit(): Promise<void> {
    await this.relocate();
    const fmt = this.fmt;
    const n = this.header.nodeCount;
    const writes: Array<[number, Uint8Array]> = [];
    for (const group of this.dirtyPages) {
      const page = this.pages.get(group);
      assert(page !== undefined);
      writes.push([pageNo(fmt, group), encodeBitmapPage(page, fmt)]);
    }
    for (const no of this.dirtyNodes) {
      const node = this.nodes.get(no);
      assert(node !== undefined && !this.zeroed.has(no));
      writes.push([no, encodeNode(node, fmt)]);
    }
    for (const no of this.zeroed) writes.push([no, new Uint8Array(fmt.nodeBytes)]);
    if (this.summaryDirty && this.summaryBits !== undefined) writes.push([0, encodeHeader(this.header, this.summaryBits, fmt)]);
    else if (this.headerDirty) writes.push([0, encodeHeaderHead(this.header, fmt)]);
    writes.sort((a, b) => a[0] - b[0]);
    for (const [no, buf] of writes) {
      assert(no < n, `zap write of node ${no} past the end ${n}`);
      await this.obj.write(no * fmt.nodeBytes, buf);
    }
    if (this.obj.size() > n * fmt.nodeBytes) await this.obj.truncate(n * fmt.nodeBytes);
    assert(this.obj.size() === n * fmt.nodeBytes, 'zap object size disagrees with its node count');
  }
}
