// Vdev administration of a live pool: add a top-level vdev, attach a child to a vdev (a plain
// disk becomes a mirror), detach a child, give the pool a new guid. Called by Pool's addVdev,
// attach, detach and reguid (pool.ts); one change runs at a time per pool.
//
// Crash safety. Each change ends in one sync task of some txg t that writes the new config
// (txg t) to the labels, lets the pool use the change only once they are durable, and records t
// in the pool directory so t writes an uberblock. What the new config needs is durable before
// any label names it, and what the old config needs stays intact until the labels no longer do:
// - add: the new disks' labels are cleared and their empty space maps written and synced first;
//   the vdev takes allocations from txg t on, whose uberblock comes after the labels. A joining
//   disk's own labels are made durable before any other label names it.
// - attach: the new child's labels are cleared; it joins the vdev resilvering (it takes every
//   write, serves no read), gets a copy of every range that may hold live data (space map areas,
//   allocated and deferred ranges), is synced, and only then is named by the labels and read.
//   Block writes made meanwhile reach it because it is a child; intent-log blocks are written
//   outside syncing context, so TopVdev.copyToChild fences each chunk it copies: a write to the
//   chunk waits for the copy, and the copy waits for writes already in flight before it reads.
// - detach: the labels stop naming the child first; it leaves the vdev (and stops taking writes)
//   once they are durable, so a crash that keeps the old config finds a complete copy on it.
//   Its labels are cleared afterwards.
// - reguid: every label is first rewritten with the current config; then the new guid goes to the
//   even labels, into txg t's uberblock, and last to the odd labels. Import accepts an uberblock
//   whose guid a label of the same leaf carries (label.ts), so some label always names the guid of
//   the newest durable uberblock.
// A crash before the labels leaves the old pool; after them the new one (the added or attached
// disks must then be given to import). Attach, detach and reguid are refused while a checkpoint
// exists (its state must stay importable as it was); add is allowed.

import { type Random, assert, hasCode, limits, mpError } from '../lib/index.js';
import type { SpaceAllocator } from './allocator.js';
import { TOP_VDEVS_MAX } from './blkptr.js';
import type { Tx } from './dmu.js';
import { type LeafConfig, type PoolConfig, type VdevConfig, clearLabels, encodeConfigArea, vdevConfigOf, writeLabels } from './label.js';
import { MetaslabGroup } from './metaslab.js';
import type { LeafInput } from './pool.js';
import type { Range } from './range-tree.js';
import { type Guid, type Txg, newGuid } from './types.js';
import { Leaf, MIRROR_CHILDREN_MAX, TopVdev } from './vdev.js';

/** Bytes attach copies per fenced chunk: writes to the chunk wait at most one such copy. */
export const ATTACH_COPY_CHUNK_BYTES = 1024 * 1024;
/** Pool directory key recording the txg of the last config change (it makes the txg write an uberblock). */
export const CONFIG_TXG_KEY = 'config_txg';

/** What vdev administration needs of its pool. */
export interface VdevAdminHost {
  readonly name: string;
  readonly random: Random;
  /** The pool's top-level vdevs: shared with the block layer and the logs, so grown in place. */
  readonly vdevs: TopVdev[];
  readonly allocator: SpaceAllocator;
  config(): PoolConfig;
  /** Makes `config` the pool's; its poolGuid goes into every later uberblock. */
  setConfig(config: PoolConfig): void;
  checkpointHeld(): boolean;
  /** Runs `run` in syncing context; resolves once its txg is durable. */
  syncTask(run: (tx: Tx) => Promise<void>): Promise<void>;
  /** Syncing context: records tx's txg in the pool directory (the MOS changes, so the txg writes an uberblock). */
  recordConfigTxg(tx: Tx): Promise<void>;
}

/** A leaf of the pool named by its path (as the config records it) or its guid (a bigint, or decimal text). */
export type LeafName = string | Guid;

export class VdevAdmin {
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly host: VdevAdminHost) {}

  /** Adds a top-level vdev: one leaf is a plain disk, several a mirror. EINVAL for bad leaves. */
  addVdev(leaves: readonly LeafInput[]): Promise<void> {
    return this.serial(() => this.add(leaves));
  }

  /**
   * Attaches `leaf` to the vdev of `existing`: it gets a copy of everything the vdev holds, then
   * reads may use it. EBUSY with a checkpoint; ENOENT for an unknown leaf; EINVAL when the new
   * disk is too small, already in the pool, or the mirror is full; EIO when copying to it failed
   * (it is then not attached).
   */
  attach(existing: LeafName, leaf: LeafInput): Promise<void> {
    return this.serial(() => this.attachLeaf(existing, leaf));
  }

  /** Detaches a mirror child (closing its disk). EBUSY with a checkpoint or when no healthy child would remain; EINVAL for a vdev's only child. */
  detach(which: LeafName): Promise<void> {
    return this.serial(() => this.detachLeaf(which));
  }

  /**
   * Writes the current config to every label, at a new txg that writes an uberblock. Import
   * calls it when it passed over a newer config some disk carries (a change whose uberblock never
   * landed): that config's txg is then below the labels' and it is never picked again, whatever
   * uberblocks come later.
   */
  relabel(): Promise<void> {
    return this.serial(() =>
      this.host.syncTask(async (tx) => {
        const next: PoolConfig = { ...this.host.config(), txg: tx.txg };
        await writeLabels(this.host.vdevs, next);
        this.host.setConfig(next);
        await this.host.recordConfigTxg(tx);
      }),
    );
  }

  /** Gives the pool a new random guid; resolves with it. EBUSY with a checkpoint. */
  reguid(): Promise<Guid> {
    return this.serial(() => this.newGuid());
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    // The next change waits for this one whatever its outcome; its error is the caller's.
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async add(inputs: readonly LeafInput[]): Promise<void> {
    const { vdevs } = this.host;
    if (inputs.length === 0 || inputs.length > MIRROR_CHILDREN_MAX) {
      throw mpError('EINVAL', `a vdev takes 1 to ${MIRROR_CHILDREN_MAX} disks, got ${inputs.length}`, { disks: inputs.length });
    }
    if (vdevs.length >= TOP_VDEVS_MAX) {
      throw mpError('EINVAL', `pool ${this.host.name} already has ${TOP_VDEVS_MAX} top-level vdevs`, { pool: this.host.name });
    }
    this.checkNewDisks(inputs);
    const guids = this.guidsInUse();
    const top = new TopVdev({
      index: vdevs.length,
      guid: freshGuid(this.host.random, guids),
      children: inputs.map((l) => ({ disk: l.disk, path: l.path, guid: freshGuid(this.host.random, guids) })),
    });
    const shift = MetaslabGroup.chooseShift(top.asizeBytes);
    const entry = vdevConfigOf(top, shift);
    checkFits({ ...this.host.config(), vdevs: [...this.host.config().vdevs, entry] }, top);
    await clearLabels(top.children);
    const group = await MetaslabGroup.format(top, shift);
    await top.sync();
    await this.host.syncTask(async (tx) => {
      const next: PoolConfig = { ...this.host.config(), txg: tx.txg, vdevs: [...this.host.config().vdevs, entry] };
      await writeLabels([...vdevs, top], next, { onlyLeaves: top.children });
      await writeLabels([...vdevs, top], next);
      vdevs.push(top);
      this.host.allocator.addGroup(group);
      this.host.setConfig(next);
      await this.host.recordConfigTxg(tx);
    });
  }

  private async attachLeaf(existing: LeafName, input: LeafInput): Promise<void> {
    this.refuseWithCheckpoint('attach');
    const { top } = this.find(existing);
    this.checkNewDisks([input]);
    const leaf = new Leaf({ disk: input.disk, path: input.path, guid: freshGuid(this.host.random, this.guidsInUse()) });
    top.checkCanAttach(leaf);
    const entry = this.entryOf(top);
    const children = [...entry.children, { guid: leaf.guid, path: leaf.path }];
    checkFits(withVdev(this.host.config(), this.host.config().txg, withChildren(entry, children)), top);
    await clearLabels([leaf]);
    top.addResilveringChild(leaf);
    try {
      await this.resilver(top, leaf);
    } catch (e) {
      top.removeChild(leaf);
      await top.quiesceWrites();
      throw e;
    }
    let failure: Error | undefined;
    await this.host.syncTask(async (tx) => {
      if (leaf.faulted) {
        // A write to it failed after its copy: it may be stale, so it must not be named.
        top.removeChild(leaf);
        failure = mpError('EIO', `a write to ${leaf.path} failed while it was attached; it was not attached`, { path: leaf.path, vdev: top.index });
        return;
      }
      const next = withVdev(this.host.config(), tx.txg, withChildren(this.entryOf(top), children));
      await writeLabels(this.host.vdevs, next, { onlyLeaves: [leaf] });
      await writeLabels(this.host.vdevs, next);
      top.finishResilver(leaf);
      this.host.setConfig(next);
      await this.host.recordConfigTxg(tx);
    });
    if (failure !== undefined) {
      await top.quiesceWrites();
      throw failure;
    }
  }

  /** Copies every range of `top` that may hold live data to `leaf` (resilvering), then syncs it. */
  private async resilver(top: TopVdev, leaf: Leaf): Promise<void> {
    const ranges = copyRanges(this.host.allocator.group(top.index));
    try {
      for (const r of ranges) {
        for (let at = r.start; at < r.start + r.size; at += ATTACH_COPY_CHUNK_BYTES) {
          await top.copyToChild(leaf, at, Math.min(ATTACH_COPY_CHUNK_BYTES, r.start + r.size - at));
        }
      }
      await leaf.disk.sync();
    } catch (e) {
      if (!hasCode(e, 'EIO') && !hasCode(e, 'ENOSPC')) throw e;
      throw mpError('EIO', `copying vdev ${top.index} to ${leaf.path} failed: ${e.message}; it was not attached`, { path: leaf.path, vdev: top.index }, e);
    }
    if (leaf.faulted) {
      throw mpError('EIO', `a write to ${leaf.path} failed while it was being filled; it was not attached`, { path: leaf.path, vdev: top.index });
    }
  }

  private async detachLeaf(which: LeafName): Promise<void> {
    this.refuseWithCheckpoint('detach');
    const { top, leaf } = this.find(which);
    const details = { vdev: top.index, path: leaf.path, guid: leaf.guid.toString() };
    if (top.children.length === 1) {
      throw mpError('EINVAL', `${leaf.path} is the only disk of vdev ${top.index}: only a mirror child can be detached`, details);
    }
    if (top.children.every((c) => c === leaf || c.faulted)) {
      throw mpError('EBUSY', `detaching ${leaf.path} would leave vdev ${top.index} without a healthy copy`, details);
    }
    await this.host.syncTask(async (tx) => {
      const entry = this.entryOf(top);
      const next = withVdev(this.host.config(), tx.txg, withChildren(entry, entry.children.filter((c) => c.guid !== leaf.guid)));
      await writeLabels(this.host.vdevs, next);
      top.removeChild(leaf);
      this.host.setConfig(next);
      await this.host.recordConfigTxg(tx);
    });
    await top.quiesceWrites();
    try {
      await clearLabels([leaf]);
    } catch (e) {
      // The disk keeps labels of a config that no longer names it: import ignores it.
      if (!hasCode(e, 'EIO')) throw e;
    }
    await leaf.disk.close();
  }

  private async newGuid(): Promise<Guid> {
    this.refuseWithCheckpoint('reguid');
    // A reguid a crash cut short may have left odd labels with an older guid: start from labels
    // that all carry the current config, so the guid being replaced is on every label.
    await writeLabels(this.host.vdevs, this.host.config());
    const guid = freshGuid(this.host.random, this.guidsInUse());
    await this.host.syncTask(async (tx) => {
      const next: PoolConfig = { ...this.host.config(), poolGuid: guid, txg: tx.txg };
      await writeLabels(this.host.vdevs, next, { evenOnly: true });
      this.host.setConfig(next);
      await this.host.recordConfigTxg(tx);
    });
    await writeLabels(this.host.vdevs, this.host.config());
    assert(this.host.config().poolGuid === guid);
    return guid;
  }

  private refuseWithCheckpoint(what: string): void {
    if (!this.host.checkpointHeld()) return;
    throw mpError('EBUSY', `pool ${this.host.name} has a checkpoint: ${what} is refused while it exists; discard it first (pool checkpoint --discard)`, {
      pool: this.host.name,
    });
  }

  /** ENOENT unless `which` names exactly one leaf of the pool. */
  private find(which: LeafName): { top: TopVdev; leaf: Leaf } {
    const asGuid = typeof which === 'bigint' ? which : /^[1-9][0-9]{0,19}$/.test(which) ? BigInt(which) : undefined;
    const found = this.host.vdevs.flatMap((top) =>
      top.children.filter((leaf) => leaf.guid === asGuid || (typeof which === 'string' && leaf.path === which)).map((leaf) => ({ top, leaf })),
    );
    const hit = found[0];
    if (hit === undefined || found.length > 1) {
      const what = found.length > 1 ? `${found.length} disks of pool ${this.host.name} match` : `pool ${this.host.name} has no disk`;
      throw mpError(found.length > 1 ? 'EINVAL' : 'ENOENT', `${what} '${which}'`, { pool: this.host.name, vdev: which.toString() });
    }
    return hit;
  }

  /** EINVAL when a disk is given twice or is already in the pool (by object or path). */
  private checkNewDisks(inputs: readonly LeafInput[]): void {
    const leaves = this.host.vdevs.flatMap((v) => v.children);
    const disks = new Set(leaves.map((l) => l.disk));
    const paths = new Set(leaves.map((l) => l.path));
    for (const l of inputs) {
      if (disks.has(l.disk) || paths.has(l.path)) {
        throw mpError('EINVAL', `${l.path} is already a disk of pool ${this.host.name} (or given twice)`, { path: l.path, pool: this.host.name });
      }
      disks.add(l.disk);
      paths.add(l.path);
    }
  }

  private guidsInUse(): Set<Guid> {
    const c = this.host.config();
    return new Set([c.poolGuid, ...c.vdevs.flatMap((v) => [v.guid, ...v.children.map((l) => l.guid)])]);
  }

  private entryOf(top: TopVdev): VdevConfig {
    const entry = this.host.config().vdevs[top.index];
    assert(entry !== undefined && entry.guid === top.guid, `vdev ${top.index} is not in the config`);
    return entry;
  }
}

/** A random guid no part of the pool has (labels refuse duplicates); added to `taken`. */
function freshGuid(random: Random, taken: Set<Guid>): Guid {
  let g = newGuid(random);
  while (taken.has(g)) g = newGuid(random);
  taken.add(g);
  return g;
}

function withChildren(entry: VdevConfig, children: readonly LeafConfig[]): VdevConfig {
  assert(children.length >= 1 && children.length <= MIRROR_CHILDREN_MAX);
  return { ...entry, kind: children.length === 1 ? 'disk' : 'mirror', children };
}

function withVdev(config: PoolConfig, t: Txg, entry: VdevConfig): PoolConfig {
  return { ...config, txg: t, vdevs: config.vdevs.map((v) => (v.index === entry.index ? entry : v)) };
}

/** EINVAL (before anything is written) when the config would not fit a label. */
function checkFits(config: PoolConfig, top: TopVdev): void {
  const leaf = config.vdevs[top.index]?.children[0];
  assert(leaf !== undefined);
  encodeConfigArea({ ...config, leafGuid: leaf.guid, topIndex: top.index });
}

/**
 * The ranges of a vdev that may hold live data, merged and in order: each metaslab's space map
 * area, its allocated ranges (this txg's included) and its deferred frees (an older uberblock a
 * crash falls back to may still reach them). Free space holds nothing anyone reads.
 */
export function copyRanges(group: MetaslabGroup): Range[] {
  const all: Range[] = [];
  for (const ms of group.metaslabs) {
    const s = ms.snapshot();
    all.push({ start: ms.start, size: ms.reservedBytes }, ...s.allocated, ...[...s.deferred.values()].flat());
  }
  all.sort((a, b) => a.start - b.start);
  const out: Range[] = [];
  for (const r of all) {
    const last = out.at(-1);
    if (last !== undefined && last.start + last.size >= r.start) {
      out[out.length - 1] = { start: last.start, size: Math.max(last.size, r.start + r.size - last.start) };
    } else {
      out.push({ ...r });
    }
  }
  assert(out.every((r) => r.start % limits.sectorBytes === 0 && r.size % limits.sectorBytes === 0), 'copy ranges are whole sectors');
  return out;
}
