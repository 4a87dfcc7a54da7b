// Finding pools that can be imported: read the labels of every file in the given folders (or of
// the given files, as `zpool import -d` allows), group the leaves by pool guid, and check each
// pool's newest config against the leaves found. Reads only; takes no lock (a pool may be open
// elsewhere — the import itself takes the lock). A folder's files that carry no label are not
// vdevs and are skipped; a file named explicitly that carries none is reported in `notVdevs`.
// Called by pool-admin.ts (`pool import`).

import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { readDiskLabels } from '../engine/index.js';
import { FileDisk, hasCode, mpError } from '../lib/index.js';

/** Files one scan reads labels from, at most (1 MiB of labels each). */
export const SCAN_FILES_MAX = 4096;

type DiskLabels = Awaited<ReturnType<typeof readDiskLabels>>;
type LabelConfig = DiskLabels['configs'][number]['config'];

interface ScannedLeaf {
  readonly path: string;
  readonly config: LabelConfig;
  /** Newest valid uberblock of its pool on this leaf (0: none). */
  readonly newestTxg: number;
}

export interface ImportablePool {
  readonly name: string;
  readonly guid: string;
  /** ONLINE: every leaf of the newest config was found and an uberblock verifies; else UNAVAIL. */
  readonly state: 'ONLINE' | 'UNAVAIL';
  /** Newest valid uberblock txg found on the leaves (0: none). */
  readonly txg: number;
  /** Paths of the leaves found, in config order (top-level vdev, then child). */
  readonly vdevs: readonly string[];
  /** Leaves the config names that were not found. */
  readonly missing: readonly { readonly guid: string; readonly path: string }[];
}

export interface ScanResult {
  readonly pools: readonly ImportablePool[];
  /** Files named explicitly (not found in a folder) that hold no valid label. */
  readonly notVdevs: readonly string[];
}

function fsError(e: unknown, path: string): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return mpError('ENOENT', `${path}: no such file or folder`, { path }, e);
  if (code === 'EACCES' || code === 'EPERM') return mpError('EAUTH', `${path}: permission denied`, { path }, e);
  return e;
}

/** The files to read: every regular file of each folder, or the file itself; sorted, unique. */
async function candidates(sources: readonly string[]): Promise<{ path: string; explicit: boolean }[]> {
  const found = new Map<string, boolean>();
  for (const source of sources) {
    const dir = resolve(source);
    const st = await stat(dir).catch((e: unknown) => {
      throw fsError(e, dir);
    });
    if (!st.isDirectory()) {
      found.set(dir, true);
      continue;
    }
    const names = await readdir(dir).catch((e: unknown) => {
      throw fsError(e, dir);
    });
    for (const name of names.sort()) {
      const path = join(dir, name);
      const entry = await stat(path).catch((e: unknown) => {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null; // removed meanwhile, or a dangling link
        throw fsError(e, path);
      });
      if (entry?.isFile() === true && !found.has(path)) found.set(path, false);
    }
    if (found.size > SCAN_FILES_MAX) {
      throw mpError('EINVAL', `more than ${SCAN_FILES_MAX} files to scan; name fewer folders or files with --dir`, { files: found.size });
    }
  }
  return [...found].map(([path, explicit]) => ({ path, explicit }));
}

async function readLeaf(path: string, explicit: boolean): Promise<ScannedLeaf | null> {
  let disk: FileDisk;
  try {
    disk = await FileDisk.open(path);
  } catch (e) {
    if (!explicit && (hasCode(e, 'EAUTH') || hasCode(e, 'ENOENT'))) return null; // not ours to read
    throw e;
  }
  let labels: DiskLabels;
  try {
    labels = await readDiskLabels(disk);
  } finally {
    await disk.close();
  }
  let config: LabelConfig | undefined;
  for (const c of labels.configs) if (config === undefined || c.config.txg > config.txg) config = c.config;
  if (config === undefined) return null;
  const guid = config.poolGuid;
  const newestTxg = Math.max(0, ...labels.uberblocks.filter((u) => u.uberblock.poolGuid === guid).map((u) => u.uberblock.txg));
  return { path, config, newestTxg };
}

/** One pool from its leaves: the newest config decides which leaves belong and which are missing. */
function assemble(leaves: readonly ScannedLeaf[]): ImportablePool {
  const config = leaves.reduce((best, l) => (l.config.txg > best.config.txg ? l : best)).config;
  const byLeaf = new Map<bigint, ScannedLeaf>();
  for (const leaf of leaves) {
    const have = byLeaf.get(leaf.config.leafGuid);
    if (have === undefined || leaf.newestTxg > have.newestTxg) byLeaf.set(leaf.config.leafGuid, leaf);
  }
  const vdevs: string[] = [];
  const missing: { guid: string; path: string }[] = [];
  let txg = 0;
  for (const child of config.vdevs.flatMap((v) => v.children)) {
    const leaf = byLeaf.get(child.guid);
    if (leaf === undefined) {
      missing.push({ guid: child.guid.toString(), path: child.path });
      continue;
    }
    vdevs.push(leaf.path);
    txg = Math.max(txg, leaf.newestTxg);
  }
  const state = missing.length === 0 && txg > 0 ? 'ONLINE' : 'UNAVAIL';
  return { name: config.name, guid: config.poolGuid.toString(), state, txg, vdevs, missing };
}

/** Reads the labels under `sources` (folders or files) and returns the pools they hold, by name. */
export async function scanForPools(sources: readonly string[]): Promise<ScanResult> {
  const groups = new Map<string, ScannedLeaf[]>();
  const notVdevs: string[] = [];
  for (const { path, explicit } of await candidates(sources)) {
    const leaf = await readLeaf(path, explicit);
    if (leaf === null) {
      if (explicit) notVdevs.push(path);
      continue;
    }
    const key = leaf.config.poolGuid.toString();
    groups.set(key, [...(groups.get(key) ?? []), leaf]);
  }
  const pools = [...groups.values()].map(assemble).sort((a, b) => a.name.localeCompare(b.name) || a.guid.localeCompare(b.guid));
  return { pools, notVdevs };
}
