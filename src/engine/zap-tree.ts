// The ZAP's B+tree algorithms over one ZapOp: descent, insert/replace, remove, the bottom-up fix
// that splits over-full nodes and merges or shares under-full ones, and one leaf's worth of an
// ordered scan. Invariants kept (checked by zap-check.ts): every leaf at the same depth; keys in
// child i of an inner node lie in [key(i-1), key(i)); every non-root node holds between
// fillMinBytes and capacityBytes of entries; an inner root has at least one entry.
// Work is bounded by the tree height: one path plus at most one sibling per level.
// Used by zap.ts.

import { bytesEqual, mpError } from '../lib/index.js';
import { ZAP_LEVELS_MAX, corrupt, startsWith } from './zap-format.js';
import { type ZapNode, chooseSplit, childValue, encodeEntry, joinNodes } from './zap-node.js';
import type { ZapOp } from './zap-op.js';

/** Root-to-leaf path: slots[i] is the child index of nodes[i + 1] within nodes[i]. */
interface Path {
  readonly nodes: ZapNode[];
  readonly slots: number[];
  /** Smallest separator to the right of the path: every key of the next leaf is >= it. */
  readonly upper: Uint8Array | undefined;
}

async function descend(op: ZapOp, key: Uint8Array): Promise<Path> {
  let node = await op.node(op.header.root, op.header.levels - 1, undefined);
  const nodes = [node];
  const slots: number[] = [];
  let upper: Uint8Array | undefined;
  while (node.level > 0) {
    const slot = node.upperBound(key);
    if (slot < node.count) upper = node.keyAt(slot);
    node = await op.node(node.childAt(slot), node.level - 1, node.no);
    slots.push(slot);
    nodes.push(node);
  }
  return { nodes, slots, upper };
}

function leafOf(path: Path): ZapNode {
  const leaf = path.nodes[path.nodes.length - 1];
  if (leaf === undefined) throw corrupt(0, 'empty path');
  return leaf;
}

export async function lookup(op: ZapOp, key: Uint8Array): Promise<Uint8Array | undefined> {
  const leaf = leafOf(await descend(op, key));
  const i = leaf.lowerBound(key);
  return leaf.keyEquals(i, key) ? leaf.valueAt(i).slice() : undefined;
}

/** Inserts or replaces; EEXIST (nothing changed) when the key exists and `mustBeNew`. */
export async function put(op: ZapOp, key: Uint8Array, value: Uint8Array, mustBeNew: boolean): Promise<void> {
  const path = await descend(op, key);
  const leaf = leafOf(path);
  const i = leaf.lowerBound(key);
  if (leaf.keyEquals(i, key)) {
    if (mustBeNew) throw mpError('EEXIST', 'zap key exists', { keyBytes: key.length });
    if (bytesEqual(leaf.valueAt(i), value)) return;
    leaf.splice(i, 1, [encodeEntry(key, value)]);
  } else {
    leaf.splice(i, 0, [encodeEntry(key, value)]);
    op.header.entryCount++;
    op.touchHeader();
  }
  op.markDirty(leaf);
  await fixup(op, path);
  await op.commit();
}

export async function remove(op: ZapOp, key: Uint8Array): Promise<boolean> {
  const path = await descend(op, key);
  const leaf = leafOf(path);
  const i = leaf.lowerBound(key);
  if (!leaf.keyEquals(i, key)) return false;
  leaf.splice(i, 1, []);
  if (op.header.entryCount === 0) throw corrupt(0, 'entry count is zero but a key was found');
  op.header.entryCount--;
  op.touchHeader();
  op.markDirty(leaf);
  await fixup(op, path);
  await op.commit();
  return true;
}

/** Restores the fill bounds bottom-up after the leaf of `path` changed. */
async function fixup(op: ZapOp, path: Path): Promise<void> {
  const { capacityBytes, fillMinBytes } = op.fmt;
  for (let i = path.nodes.length - 1; i > 0; i--) {
    const node = path.nodes[i];
    const parent = path.nodes[i - 1];
    const slot = path.slots[i - 1];
    if (node === undefined || parent === undefined || slot === undefined) throw corrupt(0, 'bad path');
    if (node.bytes > capacityBytes) await splitChild(op, parent, slot, node);
    else if (node.bytes < fillMinBytes) await rebalanceChild(op, parent, slot, node);
    else return; // this level holds, so its parent did not change
  }
  const root = path.nodes[0];
  if (root !== undefined) await fixRoot(op, root);
}

/** Keeps the left part in `node`, puts the right part in a new node; returns it and its key. */
async function splitOff(op: ZapOp, node: ZapNode, parent: number | undefined): Promise<[ZapNode, Uint8Array]> {
  const parts = chooseSplit(node, op.fmt);
  node.replace(parts.left, node.leftChild);
  op.markDirty(node);
  const right = await op.newNode(node.level, parts.rightLeftChild, parts.right, parent);
  return [right, parts.sepKey];
}

async function splitChild(op: ZapOp, parent: ZapNode, slot: number, node: ZapNode): Promise<void> {
  const [right, sepKey] = await splitOff(op, node, parent.no);
  parent.splice(slot, 0, [encodeEntry(sepKey, childValue(right.no))]);
  op.markDirty(parent);
}

/** Merges an under-full child with a sibling, or shares their entries when one node is too small. */
async function rebalanceChild(op: ZapOp, parent: ZapNode, slot: number, node: ZapNode): Promise<void> {
  if (parent.count === 0) throw corrupt(parent.no, 'inner node without entries');
  const sep = slot > 0 ? slot - 1 : 0;
  const left = slot > 0 ? await op.node(parent.childAt(sep), node.level, parent.no) : node;
  const right = slot > 0 ? node : await op.node(parent.childAt(1), node.level, parent.no);
  const joined = joinNodes(left, parent.keyAt(sep), right);
  op.markDirty(parent);
  if (joined.bytes <= op.fmt.capacityBytes) {
    left.replace(joined.data, joined.leftChild);
    parent.splice(sep, 1, []);
    op.markDirty(left);
    op.adopt(left);
    await op.release(right);
    return;
  }
  const parts = chooseSplit(joined, op.fmt);
  left.replace(parts.left, left.leftChild);
  right.replace(parts.right, parts.rightLeftChild);
  parent.splice(sep, 1, [encodeEntry(parts.sepKey, childValue(right.no))]);
  op.markDirty(left);
  op.markDirty(right);
  op.adopt(left);
  op.adopt(right);
}

async function fixRoot(op: ZapOp, root: ZapNode): Promise<void> {
  const h = op.header;
  if (root.bytes > op.fmt.capacityBytes) {
    if (h.levels >= ZAP_LEVELS_MAX) throw mpError('ENOSPC', 'zap tree is at its height limit', { levels: h.levels });
    const [right, sepKey] = await splitOff(op, root, undefined);
    const top = await op.newNode(root.level + 1, root.no, encodeEntry(sepKey, childValue(right.no)), undefined);
    h.root = top.no;
    h.levels++;
    op.touchHeader();
  } else if (root.level > 0 && root.count === 0) {
    h.root = root.leftChild;
    h.levels--;
    op.touchHeader();
    await op.release(root);
  }
}

export interface ScanBatch {
  readonly entries: Array<{ key: Uint8Array; value: Uint8Array }>;
  /** True when no later key can match. */
  readonly done: boolean;
}

/**
 * Up to `max` entries (copies) from one leaf, in key order, starting at `from` (inclusive or not)
 * and stopping at the first key without `prefix`.
 */
export async function scan(op: ZapOp, from: Uint8Array, inclusive: boolean, prefix: Uint8Array, max: number): Promise<ScanBatch> {
  let start = from;
  let incl = inclusive;
  // The leaf after a separator always holds a key >= it (non-root leaves are never empty), so
  // at most one hop to the next leaf is needed.
  for (let hop = 0; hop < 2; hop++) {
    const path = await descend(op, start);
    const leaf = leafOf(path);
    const entries: Array<{ key: Uint8Array; value: Uint8Array }> = [];
    for (let i = incl ? leaf.lowerBound(start) : leaf.upperBound(start); i < leaf.count; i++) {
      const key = leaf.keyAt(i);
      if (!startsWith(key, prefix)) return { entries, done: true };
      if (entries.length === max) return { entries, done: false };
      entries.push({ key: key.slice(), value: leaf.valueAt(i).slice() });
    }
    if (entries.length > 0 || path.upper === undefined) return { entries, done: path.upper === undefined };
    start = path.upper;
    incl = true;
  }
  throw corrupt(op.header.root, 'a leaf after a separator holds no keys');
}
