// What `pool list`, `pool status` and the import scan print: the stable --json shapes (documented
// in docs/cli.md; fields are only ever added) and their human tables. Sizes are exact bytes in
// JSON and `1.5G`-style in tables. Error counters are those of the pool as this command opened it
// (the engine keeps no persistent error log yet). Called by cli-pool.ts.

import type { Pool } from '../engine/index.js';
import type { Disk } from '../lib/index.js';
import type { ImportablePool } from './pool-scan.js';
import { formatSize } from './units.js';

export interface ErrorCounts {
  readonly read: number;
  readonly write: number;
  readonly checksum: number;
}

export type VdevState = 'ONLINE' | 'DEGRADED' | 'FAULTED';

export interface LeafReport {
  readonly guid: string;
  readonly path: string;
  readonly state: 'ONLINE' | 'FAULTED';
  readonly errors: ErrorCounts;
  /** Copies of blocks this leaf had wrong and got rewritten from a good copy. */
  readonly heals: number;
}

export interface VdevReport {
  readonly index: number;
  readonly guid: string;
  readonly kind: 'disk' | 'mirror';
  /** `mirror-<index>`, or the leaf's path for a plain disk. */
  readonly name: string;
  readonly state: VdevState;
  readonly sizeBytes: number;
  readonly allocatedBytes: number;
  readonly freeBytes: number;
  readonly errors: ErrorCounts;
  readonly children: readonly LeafReport[];
}

export interface PoolReport {
  readonly name: string;
  readonly guid: string;
  readonly state: 'ONLINE' | 'DEGRADED' | 'SUSPENDED';
  /** Txg of the newest uberblock (the last txg on disk). */
  readonly txg: number;
  readonly sizeBytes: number;
  readonly allocatedBytes: number;
  readonly freeBytes: number;
  readonly errors: ErrorCounts;
  readonly vdevs: readonly VdevReport[];
  /** The checkpoint: none, active (txg, time, space it holds) or being discarded (space left). */
  readonly checkpoint: {
    readonly state: 'none' | 'active' | 'discarding';
    readonly txg: number | null;
    readonly createdMs: number | null;
    readonly heldBytes: number;
    readonly discardStartBytes: number | null;
  };
}

export interface ListRow {
  readonly name: string;
  readonly guid: string;
  /** null when the pool could not be opened (see `error`). */
  readonly sizeBytes: number | null;
  readonly allocatedBytes: number | null;
  readonly freeBytes: number | null;
  /** The pool state, or UNAVAIL when it could not be opened. */
  readonly health: PoolReport['state'] | 'UNAVAIL';
  readonly txg: number | null;
  readonly vdevs: readonly string[];
  readonly error: { readonly code: string; readonly message: string } | null;
}

function counts(c: { readErrors: number; writeErrors: number; checksumErrors: number }): ErrorCounts {
  return { read: c.readErrors, write: c.writeErrors, checksum: c.checksumErrors };
}

function mirrorState(children: readonly LeafReport[]): VdevState {
  const faulted = children.filter((c) => c.state === 'FAULTED').length;
  return faulted === 0 ? 'ONLINE' : faulted < children.length ? 'DEGRADED' : 'FAULTED';
}

/** The status of an open pool; `paths` names each leaf by the file it was opened from. */
export function reportOf(pool: Pool, paths: ReadonlyMap<Disk, string>): PoolReport {
  const s = pool.status();
  const vdevs = pool.vdevs.map((v): VdevReport => {
    const space = pool.allocator.vdevSpace(v.index);
    const children = v.children.map(
      (c): LeafReport => ({
        guid: c.guid.toString(),
        path: paths.get(c.disk) ?? c.path,
        state: c.faulted ? 'FAULTED' : 'ONLINE',
        errors: counts(c.counters),
        heals: c.counters.heals,
      }),
    );
    return {
      index: v.index,
      guid: v.guid.toString(),
      kind: v.kind,
      name: v.kind === 'mirror' ? `mirror-${v.index}` : (children[0]?.path ?? `vdev-${v.index}`),
      state: mirrorState(children),
      sizeBytes: space.capacityBytes,
      allocatedBytes: space.allocatedBytes,
      freeBytes: space.freeBytes,
      errors: counts(v.counters),
      children,
    };
  });
  const sum = (k: keyof ErrorCounts): number => vdevs.reduce((n, v) => n + v.errors[k], 0);
  return {
    name: s.name,
    guid: s.guid.toString(),
    state: s.state,
    txg: pool.uberblock.txg,
    sizeBytes: s.sizeBytes,
    allocatedBytes: s.allocatedBytes,
    freeBytes: s.freeBytes,
    errors: { read: sum('read'), write: sum('write'), checksum: sum('checksum') },
    vdevs,
    checkpoint: {
      state: s.checkpoint.state, txg: s.checkpoint.txg, createdMs: s.checkpoint.createdMs,
      heldBytes: s.checkpoint.heldBytes, discardStartBytes: s.checkpoint.discardStartBytes,
    },
  };
}

function checkpointLine(c: PoolReport['checkpoint']): string {
  if (c.state === 'active') {
    return `txg ${c.txg}, created ${new Date(c.createdMs ?? 0).toISOString()}, holding ${formatSize(c.heldBytes)}`;
  }
  if (c.state === 'discarding') {
    const start = c.discardStartBytes ?? c.heldBytes;
    const done = start === 0 ? 100 : Math.floor((100 * (start - c.heldBytes)) / start);
    return `discarding, ${formatSize(c.heldBytes)} of ${formatSize(start)} left (${done}% done; goes on while the pool is open)`;
  }
  return 'none';
}

export function listRowOf(r: PoolReport, vdevs: readonly string[]): ListRow {
  return {
    name: r.name,
    guid: r.guid,
    sizeBytes: r.sizeBytes,
    allocatedBytes: r.allocatedBytes,
    freeBytes: r.freeBytes,
    health: r.state,
    txg: r.txg,
    vdevs,
    error: null,
  };
}

/** Columns padded to their widest cell; `right` marks right-aligned (numeric) columns. */
export function table(header: readonly string[], rows: readonly (readonly string[])[], right: readonly boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (right[i] === true ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [header, ...rows].map(line).join('\n') + '\n';
}

const size = (n: number | null): string => (n === null ? '-' : formatSize(n));

export function renderList(rows: readonly ListRow[]): string {
  if (rows.length === 0) return 'no pools imported\n';
  return table(
    ['NAME', 'SIZE', 'ALLOC', 'FREE', 'HEALTH', 'TXG'],
    rows.map((r) => [r.name, size(r.sizeBytes), size(r.allocatedBytes), size(r.freeBytes), r.health, r.txg === null ? '-' : String(r.txg)]),
    [false, true, true, true, false, true],
  );
}

function statusRows(r: PoolReport): string[][] {
  const errs = (e: ErrorCounts): string[] => [String(e.read), String(e.write), String(e.checksum)];
  const space = (x: { sizeBytes: number; allocatedBytes: number; freeBytes: number }): string[] => [
    formatSize(x.sizeBytes),
    formatSize(x.allocatedBytes),
    formatSize(x.freeBytes),
  ];
  const rows: string[][] = [[r.name, r.state, ...errs(r.errors), ...space(r)]];
  for (const v of r.vdevs) {
    const leafOnly = v.kind === 'disk' && v.children[0] !== undefined;
    rows.push([`  ${v.name}`, v.state, ...errs(leafOnly ? (v.children[0]?.errors ?? v.errors) : v.errors), ...space(v)]);
    if (leafOnly) continue;
    for (const c of v.children) rows.push([`    ${c.path}`, c.state, ...errs(c.errors), '', '', '']);
  }
  return rows;
}

export function renderStatus(reports: readonly PoolReport[]): string {
  if (reports.length === 0) return 'no pools imported\n';
  return reports
    .map((r) => {
      const errors = r.errors.read + r.errors.write + r.errors.checksum;
      const config = table(
        ['NAME', 'STATE', 'READ', 'WRITE', 'CKSUM', 'SIZE', 'ALLOC', 'FREE'],
        statusRows(r),
        [false, false, true, true, true, true, true, true],
      );
      return [
        `  pool: ${r.name}`,
        `    id: ${r.guid}`,
        ` state: ${r.state}`,
        `   txg: ${r.txg}`,
        ` space: ${formatSize(r.sizeBytes)} size, ${formatSize(r.allocatedBytes)} allocated, ${formatSize(r.freeBytes)} free`,
        `checkpoint: ${checkpointLine(r.checkpoint)}`,
        'config:',
        '',
        config.replace(/^/gm, '    ').trimEnd(),
        '',
        `errors: ${errors === 0 ? 'No known data errors' : `${errors} I/O or checksum errors since the pool was opened`}`,
        '',
      ].join('\n');
    })
    .join('\n');
}

export function renderImportable(pools: readonly ImportablePool[]): string {
  if (pools.length === 0) return 'no pools available to import\n';
  return table(
    ['NAME', 'GUID', 'STATE', 'TXG', 'VDEVS'],
    pools.map((p) => [
      p.name,
      p.guid,
      p.state,
      String(p.txg),
      [...p.vdevs, ...p.missing.map((m) => `(missing ${m.path})`)].join(' '),
    ]),
    [false, false, false, true, false],
  );
}
