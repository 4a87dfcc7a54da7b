// What `dataset list`, `dataset get` and `ls` print: the stable --json shapes (documented in
// docs/cli.md; fields are only ever added) and their human tables. JSON carries exact values
// (bytes, txgs; 64-bit guids as decimal strings); tables print sizes `1.5G`-style and times as
// ISO dates. Key listings are written page by page as they are read, so a large key directory is
// never held in memory at once. Called by cli-dataset.ts and cli-data.ts.

import type { DatasetEntry, KeyInfo, PropertyValue } from '../engine/index.js';
import { table } from './pool-report.js';
import { formatSize } from './units.js';

export interface DatasetRow {
  readonly name: string;
  readonly type: DatasetEntry['type'];
  readonly guid: string;
  readonly createTxg: number;
  readonly creationMs: number;
  /** null for bookmarks, which hold no blocks. */
  readonly usedBytes: number | null;
  readonly referencedBytes: number | null;
  /** The snapshot a clone was made from; null for everything else. */
  readonly origin: string | null;
}

export interface PropertyRow {
  readonly name: string;
  readonly property: string;
  /** Exact, as the engine reports it: bytes, txgs and milliseconds in decimal. */
  readonly value: string;
  /** `local`, `default`, `inherited from <dataset>`, or `-` for figures nobody sets. */
  readonly source: string;
}

export interface KeyRow {
  readonly key: string;
  readonly sizeBytes: number;
  readonly modifyTxg: number;
  readonly object: number;
}

/** Properties whose value is a byte count: tables print them `1.5G`-style. */
const SIZE_PROPERTIES: ReadonlySet<string> = new Set([
  'used',
  'referenced',
  'written',
  'usedbydataset',
  'usedbysnapshots',
  'usedbychildren',
  'available',
]);

export function datasetRowOf(e: DatasetEntry): DatasetRow {
  return {
    name: e.name,
    type: e.type,
    guid: e.guid.toString(),
    createTxg: e.createTxg,
    creationMs: e.creationMs,
    usedBytes: e.usedBytes ?? null,
    referencedBytes: e.referencedBytes ?? null,
    origin: e.origin ?? null,
  };
}

const size = (n: number | null): string => (n === null ? '-' : formatSize(n));

export function renderDatasets(rows: readonly DatasetRow[]): string {
  if (rows.length === 0) return 'no datasets available\n';
  return table(
    ['NAME', 'USED', 'REFER', 'CREATETXG', 'ORIGIN'],
    rows.map((r) => [r.name, size(r.usedBytes), size(r.referencedBytes), String(r.createTxg), r.origin ?? '-']),
    [false, true, true, true, false],
  );
}

export function propertyRowOf(name: string, p: PropertyValue): PropertyRow {
  return { name, property: p.property, value: p.value, source: p.source };
}

/** The value as a table shows it; `parsable` keeps it exact. */
function displayValue(p: PropertyRow, parsable: boolean): string {
  if (parsable || !/^[0-9]+$/.test(p.value)) return p.value;
  if (SIZE_PROPERTIES.has(p.property)) return formatSize(Number(p.value));
  if (p.property === 'creation') return new Date(Number(p.value)).toISOString();
  return p.value;
}

export function renderProperties(rows: readonly PropertyRow[], parsable: boolean): string {
  return table(
    ['NAME', 'PROPERTY', 'VALUE', 'SOURCE'],
    rows.map((r) => [r.name, r.property, displayValue(r, parsable), r.source]),
    [false, false, false, false],
  );
}

export function keyRowOf(k: KeyInfo): KeyRow {
  return { key: k.key, sizeBytes: k.size, modifyTxg: k.modifyTxg, object: k.object };
}

/** A key as a table cell: control characters are escaped so one key stays on one line. */
function keyCell(key: string): string {
  let out = '';
  for (const c of key) {
    const code = c.charCodeAt(0);
    out += code < 0x20 || code === 0x7f ? `\\x${code.toString(16).padStart(2, '0')}` : c;
  }
  return out;
}

/**
 * Writes a key listing page by page: a table whose columns widen as longer cells come (the
 * header takes the first page's widths), or a JSON array of KeyRow. `end()` closes the output;
 * an empty table prints `no keys`.
 */
export class KeyListWriter {
  private widths = [3, 4, 4];
  private rows = 0;

  constructor(
    private readonly write: (s: string) => void,
    private readonly asJson: boolean,
  ) {}

  page(rows: readonly KeyRow[]): void {
    if (rows.length === 0) return;
    if (this.asJson) {
      const items = rows.map((r) => `  ${JSON.stringify(r, null, 2).replace(/\n/g, '\n  ')}`);
      this.write(`${this.rows === 0 ? '[\n' : ',\n'}${items.join(',\n')}`);
    } else {
      const cells = rows.map((r) => [keyCell(r.key), formatSize(r.sizeBytes), String(r.modifyTxg)]);
      for (const c of cells) this.widths = this.widths.map((w, i) => Math.max(w, (c[i] ?? '').length));
      const lines = this.rows === 0 ? [this.line(['KEY', 'SIZE', 'MTXG'])] : [];
      for (const c of cells) lines.push(this.line(c));
      this.write(`${lines.join('\n')}\n`);
    }
    this.rows += rows.length;
  }

  end(): void {
    if (this.asJson) this.write(this.rows === 0 ? '[]\n' : '\n]\n');
    else if (this.rows === 0) this.write('no keys\n');
  }

  private line(cells: readonly string[]): string {
    const [key = '', size = '', txg = ''] = cells;
    const [keyW = 0, sizeW = 0, txgW = 0] = this.widths;
    return `${key.padEnd(keyW)}  ${size.padStart(sizeW)}  ${txg.padStart(txgW)}`;
  }
}
