// The ZAP's full structural check: reads every node of the object and proves the tree ordered,
// balanced and within its fill bounds, the entry count right, every node canonical (re-encoding
// gives the same bytes), and the free bitmap consistent: each node is exactly one of header,
// bitmap page, reachable tree node or free (all zeros), and the tail node is never free.
// Violations are EPROTO naming the node. Called by Zap.checkInvariants (tests, simulator, scrub).

import { bytesEqual } from '../lib/index.js';
import type { ObjectAccess } from './types.js';
import {
  type ZapFormat,
  type ZapHeader,
  HEADER_HEAD_BYTES,
  checkSummary,
  compareBytes,
  corrupt,
  countBits,
  decodeBitmapPage,
  getBit,
  isAllZero,
  pageNo,
  summaryBytes,
} from './zap-format.js';
import { checkNodeOrder, decodeNode, encodeNode } from './zap-node.js';
import { ZapOp } from './zap-op.js';

export interface ZapReport {
  readonly entries: number;
  readonly levels: number;
  readonly nodeCount: number;
  readonly treeNodes: number;
  readonly freeNodes: number;
  readonly bitmapPages: number;
}

const ROLE_NONE = 0;
const ROLE_HEADER = 1;
const ROLE_PAGE = 2;
const ROLE_TREE = 3;
const ROLE_FREE = 4;

interface Ctx {
  readonly obj: ObjectAccess;
  readonly fmt: ZapFormat;
  readonly header: ZapHeader;
  readonly summary: Uint8Array;
  readonly roles: Uint8Array;
  entries: number;
  treeNodes: number;
}

function claim(ctx: Ctx, no: number, role: number): void {
  if (no >= ctx.roles.length) throw corrupt(no, 'node number past the end');
  if (ctx.roles[no] !== ROLE_NONE) throw corrupt(no, `node has two roles (${ctx.roles[no]} and ${role})`);
  ctx.roles[no] = role;
}

async function readNode(ctx: Ctx, no: number): Promise<Uint8Array> {
  return ctx.obj.read(no * ctx.fmt.nodeBytes, ctx.fmt.nodeBytes);
}

/** Checks the subtree at `no`; every key in it must lie in [lo, hi). */
async function walk(ctx: Ctx, no: number, level: number, lo: Uint8Array | undefined, hi: Uint8Array | undefined): Promise<void> {
  claim(ctx, no, ROLE_TREE);
  ctx.treeNodes++;
  const buf = await readNode(ctx, no);
  const node = decodeNode(buf, no, ctx.fmt, level);
  checkNodeOrder(node);
  if (!bytesEqual(encodeNode(node, ctx.fmt), buf)) throw corrupt(no, 'node bytes are not canonical');
  const isRoot = no === ctx.header.root;
  if (!isRoot && node.bytes < ctx.fmt.fillMinBytes) throw corrupt(no, `under-full: ${node.bytes} bytes`);
  if (node.count > 0) {
    if (lo !== undefined && compareBytes(node.keyAt(0), lo) < 0) throw corrupt(no, 'key below its lower bound');
    if (hi !== undefined && compareBytes(node.keyAt(node.count - 1), hi) >= 0) throw corrupt(no, 'key above its upper bound');
  }
  if (level === 0) {
    ctx.entries += node.count;
    return;
  }
  if (node.count === 0) throw corrupt(no, 'inner node without entries');
  for (let i = 0; i <= node.count; i++) {
    const childLo = i === 0 ? lo : node.keyAt(i - 1);
    const childHi = i === node.count ? hi : node.keyAt(i);
    await walk(ctx, node.childAt(i), level - 1, childLo, childHi);
  }
}

async function checkBitmap(ctx: Ctx): Promise<number> {
  const { fmt, header } = ctx;
  let pages = 0;
  let free = 0;
  for (let group = 0; pageNo(fmt, group) < header.nodeCount; group++) {
    const no = pageNo(fmt, group);
    claim(ctx, no, ROLE_PAGE);
    pages++;
    const page = decodeBitmapPage(await readNode(ctx, no), group, fmt);
    const bits = countBits(page.bits);
    if (bits !== page.freeCount) throw corrupt(no, `free count ${page.freeCount} but ${bits} bits set`);
    if (getBit(ctx.summary, group) !== bits > 0) throw corrupt(0, `summary bit of group ${group} is wrong`);
    for (let bit = 1; bit < fmt.groupNodes; bit++) {
      if (!getBit(page.bits, bit)) continue;
      claim(ctx, no + bit, ROLE_FREE);
      if (!isAllZero(await readNode(ctx, no + bit))) throw corrupt(no + bit, 'free node is not zeroed');
    }
    free += bits;
  }
  for (let group = pages; group < ctx.summary.length * 8; group++) {
    if (getBit(ctx.summary, group)) throw corrupt(0, `summary marks absent group ${group}`);
  }
  if (free !== header.freeCount) throw corrupt(0, `free count ${header.freeCount} but ${free} nodes are free`);
  const lowest = ctx.roles.indexOf(ROLE_FREE);
  if (header.firstFree !== Math.max(0, lowest)) throw corrupt(0, `lowest free node is ${lowest}, header says ${header.firstFree}`);
  return pages;
}

export async function checkZap(obj: ObjectAccess, fmt: ZapFormat): Promise<ZapReport> {
  const op = await ZapOp.begin(obj, fmt);
  const header = op.header;
  const summary = await obj.read(HEADER_HEAD_BYTES, summaryBytes(fmt));
  checkSummary(summary, header, fmt);
  const ctx: Ctx = { obj, fmt, header, summary, roles: new Uint8Array(header.nodeCount), entries: 0, treeNodes: 0 };
  claim(ctx, 0, ROLE_HEADER);
  const pages = await checkBitmap(ctx);
  await walk(ctx, header.root, header.levels - 1, undefined, undefined);
  if (ctx.entries !== header.entryCount) throw corrupt(0, `entry count ${header.entryCount} but ${ctx.entries} found`);
  const orphan = ctx.roles.indexOf(ROLE_NONE);
  if (orphan >= 0) throw corrupt(orphan, 'node is neither tree, bitmap nor free');
  const tail = ctx.roles[header.nodeCount - 1];
  if (tail !== ROLE_TREE) throw corrupt(header.nodeCount - 1, 'the last node is not a tree node (tail not trimmed)');
  return {
    entries: ctx.entries,
    levels: header.levels,
    nodeCount: header.nodeCount,
    treeNodes: ctx.treeNodes,
    freeNodes: header.freeCount,
    bitmapPages: pages,
  };
}
