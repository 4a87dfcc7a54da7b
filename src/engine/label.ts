// Labels: the pool config and the uberblock ring that every leaf carries four times (two labels
// at the front, two at the back; vdev.ts places them). Import (readPool) finds the pool from the
// disks alone: the config with the highest txg names every vdev, and the newest uberblock that
// verifies on any label is the pool's root. Writes go even labels, sync, odd labels, sync, so a
// crash never tears every copy of what was there before. Called by pool create/import/sync and by
// vdev-admin.ts (add, attach, detach, reguid).
//
// Reguid: a label a crash left with the pool's previous guid still belongs to the pool when the
// newest config names its leaf, and an uberblock is the pool's when its guid is one that a config
// of the same leaf carries (vdev-admin.ts writes the new guid to the even labels, then the
// uberblock, then the odd labels, so some label always names the guid of the newest uberblock).
//
// Label (layout.labelBytes): config area (layout.labelConfigBytes) then UBERBLOCK_RING_SLOTS
// uberblock slots of layout.uberblockBytes; txg t lives in slot t % UBERBLOCK_RING_SLOTS.
// Config area: 0 magic "MPLABEL\0"  8 version u32  12 payload bytes u32
//   16 sha256(bytes 0..15 ++ payload)  48..63 reserved zero  64 payload: UTF-8 JSON of the
//   LabelConfig (guids as decimal strings); the rest of the area is zero.
// Uberblock slot: 0 magic "MPUBERB\0"  8 version u32  12..15 reserved  16 txg u64
//   24 pool guid u64  32 timestamp ms u64  40 checkpoint txg u64 (0 = none)
//   48 root block pointer (128)  176..991 reserved zero  992 sha256(bytes 0..991).
// The file runs to about 500 lines: three codecs (config, uberblock) plus import share one
// format; the strict config validator is the natural piece to split out if it grows.

import {
  type Disk,
  type MirrorpoolError,
  assert,
  bytesEqual,
  concatBytes,
  hasCode,
  mpError,
  readU64,
  readU64Number,
  sha256,
  writeU64,
  writeU64Number,
} from '../lib/index.js';
import { TOP_VDEVS_MAX, decodeBlockPointer, encodeBlockPointer } from './blkptr.js';
import { type BlockPointer, type Guid, type Txg, UBERBLOCK_RING_SLOTS, layout } from './types.js';
import { type Leaf, MIRROR_CHILDREN_MAX, LEAF_ASIZE_BYTES_MIN, TopVdev, leafLayout } from './vdev.js';

export interface LeafConfig {
  readonly guid: Guid;
  /** Last known path of the leaf's device, for messages. */
  readonly path: string;
}

export interface VdevConfig {
  readonly index: number;
  readonly guid: Guid;
  readonly kind: 'disk' | 'mirror';
  readonly metaslabShift: number;
  readonly asizeBytes: number;
  readonly children: readonly LeafConfig[];
}

export interface PoolConfig {
  readonly name: string;
  readonly poolGuid: Guid;
  readonly version: number;
  /** Txg in which this config was written; the highest one found wins at import. */
  readonly txg: Txg;
  readonly vdevs: readonly VdevConfig[];
}

/** What one label holds: the pool config plus which leaf carries it. */
export interface LabelConfig extends PoolConfig {
  readonly leafGuid: Guid;
  readonly topIndex: number;
}

export interface Uberblock {
  readonly txg: Txg;
  readonly poolGuid: Guid;
  /** Wall-clock ms from the caller's Clock (an integer). */
  readonly timestampMs: number;
  /** Root of the MOS. */
  readonly rootBp: BlockPointer;
  /** Txg of the pool checkpoint; 0 when there is none. */
  readonly checkpointTxg: Txg;
}

const POOL_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,254}$/;
const PATH_CHARS_MAX = 4096;
const METASLAB_SHIFT_MIN = 9;
const METASLAB_SHIFT_MAX = 52;
const CONFIG_MAGIC = new TextEncoder().encode('MPLABEL\0');
const UB_MAGIC = new TextEncoder().encode('MPUBERB\0');
const CONFIG_HEADER_BYTES = 64;
const CONFIG_PAYLOAD_MAX = layout.labelConfigBytes - CONFIG_HEADER_BYTES;
const UB_BYTES = layout.uberblockBytes;
const UB_SUM_AT = UB_BYTES - 32;
const UB_BP_AT = 48;
const UB_RESERVED_AT = UB_BP_AT + layout.blockPointerBytes;

// ---- config codec ----

/** The config entry of a top-level vdev as it stands (the pool picks its metaslab shift). */
export function vdevConfigOf(top: TopVdev, metaslabShift: number): VdevConfig {
  return {
    index: top.index,
    guid: top.guid,
    kind: top.kind,
    metaslabShift,
    asizeBytes: top.asizeBytes,
    children: top.children.map((c) => ({ guid: c.guid, path: c.path })),
  };
}

/** JSON with guids as decimal strings (JSON has no 64-bit integers). */
function labelConfigJson(c: LabelConfig): string {
  return JSON.stringify(c, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

/** The whole config area of one label. EINVAL if the config does not fit. */
export function encodeConfigArea(config: LabelConfig): Uint8Array {
  const json = labelConfigJson(config);
  try {
    parseLabelConfig(JSON.parse(json));
  } catch (e) {
    // The same rules as import: a config that could not be imported is never written.
    if (hasCode(e, 'EPROTO')) throw mpError('EINVAL', e.message, e.details);
    throw e;
  }
  const payload = new TextEncoder().encode(json);
  if (payload.length > CONFIG_PAYLOAD_MAX) {
    throw mpError('EINVAL', `pool config of ${payload.length} bytes exceeds ${CONFIG_PAYLOAD_MAX}`, { bytes: payload.length });
  }
  const area = new Uint8Array(layout.labelConfigBytes);
  const view = new DataView(area.buffer);
  area.set(CONFIG_MAGIC, 0);
  view.setUint32(8, layout.version, true);
  view.setUint32(12, payload.length, true);
  area.set(sha256(concatBytes([area.subarray(0, 16), payload])), 16);
  area.set(payload, CONFIG_HEADER_BYTES);
  return area;
}

/** Decodes a config area; EPROTO for anything that is not a valid, checksummed config. */
export function decodeConfigArea(area: Uint8Array): LabelConfig {
  assert(area.length === layout.labelConfigBytes, 'decodeConfigArea: wrong area size');
  if (!bytesEqual(area.subarray(0, 8), CONFIG_MAGIC)) throw mpError('EPROTO', 'no label magic');
  const view = new DataView(area.buffer, area.byteOffset, area.length);
  const version = view.getUint32(8, true);
  const length = view.getUint32(12, true);
  if (version !== layout.version) throw mpError('EPROTO', `unsupported label version ${version}`, { version });
  if (length > CONFIG_PAYLOAD_MAX) throw mpError('EPROTO', `label config length ${length}`, { length });
  if (!isZeroFrom(area, 48, CONFIG_HEADER_BYTES) || !isZeroFrom(area, CONFIG_HEADER_BYTES + length, area.length)) {
    throw mpError('EPROTO', 'label config area has bytes outside its fields');
  }
  const payload = area.subarray(CONFIG_HEADER_BYTES, CONFIG_HEADER_BYTES + length);
  if (!bytesEqual(sha256(concatBytes([area.subarray(0, 16), payload])), area.subarray(16, 48))) {
    throw mpError('EPROTO', 'label config checksum mismatch');
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch (e) {
    throw mpError('EPROTO', 'label config is not UTF-8 JSON', {}, e);
  }
  return parseLabelConfig(json);
}

function isZeroFrom(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false;
  return true;
}

function bad(what: string): Error {
  return mpError('EPROTO', `invalid pool config: ${what}`, { field: what });
}

function record(v: unknown, keys: readonly string[], what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(what);
  const r = v as Record<string, unknown>;
  const have = Object.keys(r);
  if (have.length !== keys.length || !keys.every((k) => Object.hasOwn(r, k))) throw bad(`${what} fields`);
  return r;
}

function int(v: unknown, min: number, max: number, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw bad(what);
  return v;
}

function guidField(v: unknown, what: string): Guid {
  if (typeof v !== 'string' || !/^[1-9][0-9]{0,19}$/.test(v)) throw bad(what);
  const n = BigInt(v);
  if (n > 0xffff_ffff_ffff_ffffn) throw bad(what);
  return n as Guid;
}

function parseVdev(v: unknown, index: number, seen: Set<Guid>): VdevConfig {
  const what = `vdevs[${index}]`;
  const r = record(v, ['index', 'guid', 'kind', 'metaslabShift', 'asizeBytes', 'children'], what);
  int(r['index'], index, index, `${what}.index`);
  const kind = r['kind'];
  if (kind !== 'disk' && kind !== 'mirror') throw bad(`${what}.kind`);
  const kids = r['children'];
  const [lo, hi] = kind === 'disk' ? [1, 1] : [2, MIRROR_CHILDREN_MAX];
  if (!Array.isArray(kids) || kids.length < lo || kids.length > hi) throw bad(`${what}.children`);
  const children = kids.map((k: unknown, i): LeafConfig => {
    const c = record(k, ['guid', 'path'], `${what}.children[${i}]`);
    const path = c['path'];
    if (typeof path !== 'string' || path.length > PATH_CHARS_MAX) throw bad(`${what}.children[${i}].path`);
    return { guid: guidField(c['guid'], `${what}.children[${i}].guid`), path };
  });
  const out: VdevConfig = {
    index,
    guid: guidField(r['guid'], `${what}.guid`),
    kind,
    metaslabShift: int(r['metaslabShift'], METASLAB_SHIFT_MIN, METASLAB_SHIFT_MAX, `${what}.metaslabShift`),
    asizeBytes: int(r['asizeBytes'], LEAF_ASIZE_BYTES_MIN, Number.MAX_SAFE_INTEGER, `${what}.asizeBytes`),
    children,
  };
  if (out.asizeBytes % layout.sectorBytes !== 0) throw bad(`${what}.asizeBytes`);
  for (const g of [out.guid, ...children.map((c) => c.guid)]) {
    if (seen.has(g)) throw bad(`duplicate guid ${g}`);
    seen.add(g);
  }
  return out;
}

/** Strictly validates a decoded label config; EPROTO naming the first bad field. */
export function parseLabelConfig(json: unknown): LabelConfig {
  const r = record(json, ['name', 'poolGuid', 'version', 'txg', 'vdevs', 'leafGuid', 'topIndex'], 'config');
  const name = r['name'];
  if (typeof name !== 'string' || !POOL_NAME.test(name)) throw bad('name');
  const poolGuid = guidField(r['poolGuid'], 'poolGuid');
  const version = int(r['version'], layout.version, layout.version, 'version');
  const txg = int(r['txg'], 0, Number.MAX_SAFE_INTEGER, 'txg') as Txg;
  const list = r['vdevs'];
  if (!Array.isArray(list) || list.length < 1 || list.length > TOP_VDEVS_MAX) throw bad('vdevs');
  const seen = new Set<Guid>([poolGuid]);
  const vdevs = list.map((v: unknown, i) => parseVdev(v, i, seen));
  const topIndex = int(r['topIndex'], 0, vdevs.length - 1, 'topIndex');
  const leafGuid = guidField(r['leafGuid'], 'leafGuid');
  if (!vdevs[topIndex]?.children.some((c) => c.guid === leafGuid)) throw bad('leafGuid');
  return { name, poolGuid, version, txg, vdevs, leafGuid, topIndex };
}

// ---- uberblock codec ----

export function encodeUberblock(ub: Uberblock): Uint8Array {
  assert(Number.isSafeInteger(ub.timestampMs) && ub.timestampMs >= 0, 'uberblock timestamp must be integer ms');
  assert(ub.checkpointTxg <= ub.txg, 'checkpoint txg after the uberblock txg');
  const slot = new Uint8Array(UB_BYTES);
  slot.set(UB_MAGIC, 0);
  new DataView(slot.buffer).setUint32(8, layout.version, true);
  writeU64Number(slot, 16, ub.txg);
  writeU64(slot, 24, ub.poolGuid);
  writeU64Number(slot, 32, ub.timestampMs);
  writeU64Number(slot, 40, ub.checkpointTxg);
  slot.set(encodeBlockPointer(ub.rootBp), UB_BP_AT);
  slot.set(sha256(slot.subarray(0, UB_SUM_AT)), UB_SUM_AT);
  return slot;
}

/** Decodes one slot; EPROTO unless it is a checksummed uberblock of a known version. */
export function decodeUberblock(slot: Uint8Array): Uberblock {
  assert(slot.length === UB_BYTES, 'decodeUberblock: wrong slot size');
  if (!bytesEqual(slot.subarray(0, 8), UB_MAGIC)) throw mpError('EPROTO', 'no uberblock magic');
  if (!bytesEqual(sha256(slot.subarray(0, UB_SUM_AT)), slot.subarray(UB_SUM_AT))) {
    throw mpError('EPROTO', 'uberblock checksum mismatch');
  }
  const view = new DataView(slot.buffer, slot.byteOffset, slot.length);
  const version = view.getUint32(8, true);
  if (version !== layout.version) throw mpError('EPROTO', `unsupported uberblock version ${version}`, { version });
  if (view.getUint32(12, true) !== 0 || !isZeroFrom(slot, UB_RESERVED_AT, UB_SUM_AT)) {
    throw mpError('EPROTO', 'uberblock reserved bytes set');
  }
  const poolGuid = readU64(slot, 24);
  const txg = readU64Number(slot, 16) as Txg;
  const checkpointTxg = readU64Number(slot, 40) as Txg;
  if (poolGuid === 0n || checkpointTxg > txg) throw mpError('EPROTO', 'uberblock fields out of range', { txg });
  return {
    txg,
    poolGuid: poolGuid as Guid,
    timestampMs: readU64Number(slot, 32),
    rootBp: decodeBlockPointer(slot.subarray(UB_BP_AT, UB_RESERVED_AT)),
    checkpointTxg,
  };
}

export function uberblockSlot(t: Txg): number {
  return t % UBERBLOCK_RING_SLOTS;
}

// ---- writes ----

const PHASES: readonly (readonly number[])[] = [
  [0, 2],
  [1, 3],
];

function allLeaves(vdevs: readonly TopVdev[]): Leaf[] {
  return vdevs.flatMap((top) => top.children);
}

/** False (and the leaf marked faulted) when the device failed the I/O; other errors propagate. */
async function succeeded(leaf: Leaf, io: Promise<void>): Promise<boolean> {
  try {
    await io;
    return true;
  } catch (e) {
    if (!hasCode(e, 'EIO') && !hasCode(e, 'ENOSPC')) throw e;
    leaf.counters.writeErrors++;
    leaf.faulted = true;
    return false;
  }
}

/**
 * Writes every leaf's labels in two phases (even labels, sync, odd labels, sync) so the other
 * phase's copies stay intact whatever a crash tears. A copy counts once its disk synced after
 * it; EIO when no copy anywhere became durable. Failing leaves are marked faulted.
 */
async function writeInTwoPhases(
  leaves: readonly Leaf[],
  what: string,
  writeOne: (leaf: Leaf, label: number) => Promise<void>,
  phases: readonly (readonly number[])[] = PHASES,
): Promise<void> {
  let durable = 0;
  for (const labels of phases) {
    const written = await Promise.all(
      leaves.map(async (leaf) => {
        let n = 0;
        for (const label of labels) if (await succeeded(leaf, writeOne(leaf, label))) n++;
        return n;
      }),
    );
    const synced = await Promise.all(leaves.map((leaf) => succeeded(leaf, leaf.disk.sync())));
    for (const [i, n] of written.entries()) if (synced[i] === true) durable += n;
  }
  if (durable === 0) throw mpError('EIO', `${what}: no label could be written`, { leaves: leaves.length });
}

export interface WriteLabelsOptions {
  /** Also zero the uberblock rings (create: a disk's old contents must not look like this pool's uberblocks). */
  readonly initialize?: boolean;
  /** Only labels 0 and 2 (the first phase): reguid writes the odd ones after the uberblock. */
  readonly evenOnly?: boolean;
  /**
   * Only these leaves (a disk joining the pool: its labels must be durable before any other
   * label names it, or a crash would leave a config naming a disk that shows no label).
   */
  readonly onlyLeaves?: readonly Leaf[];
}

/**
 * Writes the config to all labels of every leaf it names (create, import, any config change;
 * bump config.txg on every change). A live child the config no longer names (detach) is left
 * alone; every child the config names must be live.
 */
export async function writeLabels(vdevs: readonly TopVdev[], config: PoolConfig, options: WriteLabelsOptions = {}): Promise<void> {
  assert(config.vdevs.length === vdevs.length, 'writeLabels: config and vdevs differ');
  const areas = new Map<Leaf, Uint8Array>();
  for (const [i, top] of vdevs.entries()) {
    const v = config.vdevs[i];
    assert(v !== undefined && top.index === i && v.index === i && v.guid === top.guid, `writeLabels: vdev ${i} differs`);
    for (const c of v.children) {
      const leaf = top.children.find((l) => l.guid === c.guid);
      assert(leaf !== undefined, `writeLabels: vdev ${i} has no child ${c.guid}`);
      const area = encodeConfigArea({ ...config, leafGuid: leaf.guid, topIndex: top.index });
      areas.set(leaf, options.initialize === true ? concatBytes([area, new Uint8Array(layout.labelBytes - area.length)]) : area);
    }
  }
  if (options.onlyLeaves !== undefined) {
    const only = new Set(options.onlyLeaves);
    assert(options.onlyLeaves.every((l) => areas.has(l)), 'writeLabels: onlyLeaves names a leaf the config does not');
    for (const leaf of [...areas.keys()]) if (!only.has(leaf)) areas.delete(leaf);
  }
  const phases = options.evenOnly === true ? PHASES.slice(0, 1) : PHASES;
  const write = (leaf: Leaf, label: number): Promise<void> => {
    const bytes = areas.get(leaf);
    assert(bytes !== undefined);
    return leaf.writeLabel(label, 0, bytes);
  };
  await writeInTwoPhases([...areas.keys()], 'write labels', write, phases);
}

/**
 * Zeroes all four labels of each leaf (config and uberblock ring) and syncs: a disk about to join
 * a pool must not show another pool's (or an earlier life's) labels, and a detached one no longer
 * claims to be a member. EIO when a leaf could not be cleared.
 */
export async function clearLabels(leaves: readonly Leaf[]): Promise<void> {
  const zeros = new Uint8Array(layout.labelBytes);
  for (const leaf of leaves) {
    for (let label = 0; label < layout.labelCount; label++) await leaf.writeLabel(label, 0, zeros);
    await leaf.disk.sync();
  }
}

/** Writes `ub` to its ring slot in every label of every leaf: labels 0 and 2, sync, 1 and 3, sync. */
export async function writeUberblock(vdevs: readonly TopVdev[], ub: Uberblock): Promise<void> {
  const slot = encodeUberblock(ub);
  const at = layout.labelConfigBytes + uberblockSlot(ub.txg) * UB_BYTES;
  await writeInTwoPhases(allLeaves(vdevs), `write uberblock ${ub.txg}`, (leaf, label) => leaf.writeLabel(label, at, slot));
}

// ---- import ----

/** One valid uberblock found on a label, for import and `pool debug`. */
export interface FoundUberblock {
  readonly disk: number;
  readonly label: number;
  readonly slot: number;
  readonly uberblock: Uberblock;
}

/** What one disk's labels hold; invalid labels (unreadable, bad checksum) are left out. */
export interface DiskLabels {
  readonly configs: readonly { readonly label: number; readonly config: LabelConfig }[];
  readonly uberblocks: readonly Omit<FoundUberblock, 'disk'>[];
}

/** Reads and verifies every label of a disk; never throws for bad or unreadable labels. */
export async function readDiskLabels(disk: Disk): Promise<DiskLabels> {
  const configs: { label: number; config: LabelConfig }[] = [];
  const uberblocks: Omit<FoundUberblock, 'disk'>[] = [];
  for (const [label, offset] of leafLayout(disk.size()).labelOffsets.entries()) {
    if (offset === undefined) continue;
    let bytes: Uint8Array;
    try {
      bytes = await disk.read(offset, layout.labelBytes);
    } catch (e) {
      if (hasCode(e, 'EIO')) continue;
      throw e;
    }
    const config = ignoringEproto(() => decodeConfigArea(bytes.subarray(0, layout.labelConfigBytes)));
    if (config !== undefined) configs.push({ label, config });
    for (let slot = 0; slot < UBERBLOCK_RING_SLOTS; slot++) {
      const at = layout.labelConfigBytes + slot * UB_BYTES;
      // A slot never written (all zeros on a young pool) is passed over without building an error.
      if (!bytesEqual(bytes.subarray(at, at + UB_MAGIC.length), UB_MAGIC)) continue;
      const ub = ignoringEproto(() => decodeUberblock(bytes.subarray(at, at + UB_BYTES)));
      if (ub !== undefined && uberblockSlot(ub.txg) === slot) uberblocks.push({ label, slot, uberblock: ub });
    }
  }
  return { configs, uberblocks };
}

function ignoringEproto<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch (e) {
    if (hasCode(e, 'EPROTO')) return undefined;
    throw e;
  }
}

export interface ReadPoolOptions {
  /** Import the newest uberblock at or before this txg (rewind). */
  readonly maxTxg?: number;
  /**
   * Ignore configs at or past this txg: a config change that never landed (Pool.import). A disk
   * whose labels show only such configs is not a member.
   */
  readonly configsBefore?: Txg;
}

export interface ImportedPool {
  /** The config with the highest txg found. */
  readonly config: PoolConfig;
  /** The newest valid uberblock (at or before maxTxg). */
  readonly uberblock: Uberblock;
  /** Every valid uberblock of this pool on every label, newest first. */
  readonly uberblocks: readonly FoundUberblock[];
  /**
   * Highest txg on disk — of an uberblock, or of the config when a crash came between its labels
   * and its uberblock — ignoring maxTxg: new txgs must pass it (after a rewind too), so no two
   * configs ever carry the same txg.
   */
  readonly newestTxgOnDisk: Txg;
  /** Top-level vdevs built from the config over the given disks (index = vdev index). */
  readonly vdevs: readonly TopVdev[];
  /** Indices of given disks of this pool that the config no longer names (ignored). */
  readonly unusedDisks: readonly number[];
  /**
   * A newer config that was passed over (see assembleConfig): its txg, and the error to raise if
   * the pool's own record shows that it did land (Pool.import reads the MOS to tell). Null when
   * the newest config found is the pool's.
   */
  readonly passedOver: PassedOverConfig | null;
}

/** A config some disk carries that names a disk not given to import. */
export interface PassedOverConfig {
  readonly txg: Txg;
  /** ENOENT naming the missing disk. */
  readonly missing: MirrorpoolError;
}

function newestConfig(labels: DiskLabels, before = Infinity): LabelConfig | undefined {
  let best: LabelConfig | undefined;
  for (const { config } of labels.configs) if (config.txg < before && (best === undefined || config.txg > best.txg)) best = config;
  return best;
}

/** Finds the pool on `disks`: its newest config, its vdevs and its newest valid uberblock. */
export async function readPool(disks: readonly Disk[], options: ReadPoolOptions = {}): Promise<ImportedPool> {
  if (disks.length === 0) throw mpError('EINVAL', 'import needs at least one disk');
  const { maxTxg } = options;
  if (maxTxg !== undefined && !(Number.isSafeInteger(maxTxg) && maxTxg >= 0)) {
    throw mpError('EINVAL', `maxTxg must be a txg, got ${maxTxg}`, { maxTxg });
  }
  const labels = await Promise.all(disks.map((d) => readDiskLabels(d)));
  const own: (LabelConfig | undefined)[] = labels.map((l, disk) => {
    if (l.configs.length === 0) throw mpError('EPROTO', `disk ${disk} is not a mirrorpool vdev (no valid label)`, { disk });
    return newestConfig(l, options.configsBefore);
  });
  const present = own.filter((c) => c !== undefined);
  const newestCfg = present.reduce<LabelConfig | undefined>((best, c) => (best === undefined || c.txg > best.txg ? c : best), undefined);
  if (newestCfg === undefined) throw mpError('EPROTO', `no disk carries a config older than txg ${options.configsBefore}`, { configsBefore: options.configsBefore });
  checkOnePool(newestCfg, present);
  const byLeaf = new Map<Guid, number>();
  for (const [disk, c] of own.entries()) {
    if (c === undefined) continue;
    if (byLeaf.has(c.leafGuid)) throw mpError('EINVAL', `two disks claim leaf ${c.leafGuid}`, { leafGuid: c.leafGuid.toString() });
    byLeaf.set(c.leafGuid, disk);
  }
  const { config, vdevs, passedOver } = assembleConfig(newestCfg, labels, disks, byLeaf);
  const members = new Set(config.vdevs.flatMap((v) => v.children.map((c) => byLeaf.get(c.guid))));
  const guids = poolGuidsOf(config, labels, own, members);
  const ours = labels
    .flatMap((l, disk) => (members.has(disk) ? l.uberblocks.map((u) => ({ ...u, disk })) : []))
    .filter((u) => guids.has(u.uberblock.poolGuid));
  // An uberblock rooted on a vdev the older config lacks was written under the newer one: it landed.
  if (passedOver !== null && ours.some((u) => u.uberblock.txg >= passedOver.txg && u.uberblock.rootBp.dvas.some((d) => d.vdev >= vdevs.length))) {
    throw passedOver.missing;
  }
  const found = ours
    .filter((u) => u.uberblock.rootBp.dvas.every((d) => d.vdev < vdevs.length))
    .sort((a, b) => b.uberblock.txg - a.uberblock.txg);
  const newest = found[0];
  if (newest === undefined) throw mpError('EPROTO', `pool ${config.name} has no valid uberblock`, { pool: config.name });
  const pick = found.find((u) => maxTxg === undefined || u.uberblock.txg <= maxTxg);
  if (pick === undefined) throw mpError('ENOENT', `pool ${config.name} has no uberblock at or before txg ${maxTxg}`, { maxTxg });
  const { leafGuid: _leaf, topIndex: _top, ...poolConfig } = config;
  return {
    config: poolConfig,
    uberblock: pick.uberblock,
    uberblocks: found,
    newestTxgOnDisk: Math.max(newest.uberblock.txg, newestCfg.txg) as Txg,
    vdevs,
    unusedDisks: disks.map((_d, i) => i).filter((i) => !members.has(i)),
    passedOver,
  };
}

/**
 * EINVAL unless every disk is of the pool of `newest` (the config with the highest txg): same
 * guid, or an older config naming a leaf of the newest (a label a reguid had not rewritten).
 */
function checkOnePool(newest: LabelConfig, own: readonly LabelConfig[]): void {
  const leaves = new Set(newest.vdevs.flatMap((v) => v.children.map((c) => c.guid)));
  const foreign = own.filter((c) => c.poolGuid !== newest.poolGuid && !(c.txg < newest.txg && leaves.has(c.leafGuid)));
  if (foreign.length === 0) return;
  const pools = new Map([newest, ...foreign].map((c) => [c.poolGuid, c.name]));
  const list = [...pools].map(([g, name]) => ({ poolGuid: g.toString(), name }));
  throw mpError('EINVAL', `the disks belong to ${pools.size} pools: ${list.map((p) => p.name).join(', ')}`, { pools: list });
}

/**
 * The guids the pool's uberblocks may carry: the newest config's, and any other that a config
 * of the same leaf (this life of the disk in the pool) still carries on a member disk — the
 * guid before a reguid whose labels a crash cut short.
 */
function poolGuidsOf(config: LabelConfig, labels: readonly DiskLabels[], own: readonly (LabelConfig | undefined)[], members: ReadonlySet<number | undefined>): Set<Guid> {
  const guids = new Set<Guid>([config.poolGuid]);
  for (const [disk, l] of labels.entries()) {
    if (!members.has(disk)) continue;
    const leafGuid = own[disk]?.leafGuid;
    for (const { config: c } of l.configs) if (c.leafGuid === leafGuid) guids.add(c.poolGuid);
  }
  return guids;
}

/**
 * The vdevs of the newest config — or, when it names a disk that is missing, of the config before
 * it, with the newer one returned as passed over. A change whose uberblock never landed may name a
 * disk whose own labels a crash kept from becoming durable (a mirror added with several new
 * disks); until that change lands every uberblock is described by the older config, and the
 * older pool may go on writing txgs past the newer config's. Whether the change landed is the
 * pool's own record (the MOS config txg), which Pool.import reads; readPool refuses at once when
 * an uberblock is rooted on a vdev only the newer config has.
 */
function assembleConfig(
  newest: LabelConfig,
  labels: readonly DiskLabels[],
  disks: readonly Disk[],
  byLeaf: ReadonlyMap<Guid, number>,
): { config: LabelConfig; vdevs: TopVdev[]; passedOver: PassedOverConfig | null } {
  try {
    return { config: newest, vdevs: newest.vdevs.map((v) => assembleVdev(v, disks, byLeaf)), passedOver: null };
  } catch (e) {
    if (!hasCode(e, 'ENOENT')) throw e;
    const older = labels
      .flatMap((l) => l.configs.map((c) => c.config))
      .filter((c) => c.poolGuid === newest.poolGuid && c.txg < newest.txg)
      .reduce<LabelConfig | undefined>((best, c) => (best === undefined || c.txg > best.txg ? c : best), undefined);
    if (older === undefined) throw e;
    return { config: older, vdevs: older.vdevs.map((v) => assembleVdev(v, disks, byLeaf)), passedOver: { txg: newest.txg, missing: e } };
  }
}

/** Builds one TopVdev from its config; ENOENT for a missing child, EPROTO for a truncated one. */
function assembleVdev(v: VdevConfig, disks: readonly Disk[], byLeaf: ReadonlyMap<Guid, number>): TopVdev {
  const children = v.children.map((c) => {
    const disk = disks[byLeaf.get(c.guid) ?? -1];
    const details = { vdev: v.index, vdevGuid: v.guid.toString(), leafGuid: c.guid.toString(), path: c.path };
    if (disk === undefined) throw mpError('ENOENT', `vdev ${c.guid} (last seen at ${c.path}) is missing`, details);
    const asize = leafLayout(disk.size()).asizeBytes;
    if (asize < v.asizeBytes) {
      throw mpError('EPROTO', `vdev ${c.guid} (${c.path}) is truncated: ${asize} of ${v.asizeBytes} bytes`, {
        ...details,
        asizeBytes: asize,
      });
    }
    return { disk, guid: c.guid, path: c.path };
  });
  return new TopVdev({ index: v.index, guid: v.guid, kind: v.kind, asizeBytes: v.asizeBytes, children });
}
