// The benchmark harness: every figure is measured in the same run as its peer (or held against a
// fixed limit) and reported as a ratio, so a slower or faster machine does not change the verdict.
// Suites return Figures; run.ts prints the table and writes bench/results/latest.json.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export interface Figure {
  suite: string;
  name: string;
  /** The measured value, in `unit`. */
  value: number;
  unit: string;
  /** What the value is compared with: a peer measured in the same run, or a limit. */
  versus: { label: string; value: number };
  /** value / versus.value. */
  ratio: number;
  /** The ratio the project targets, and which side of it is good. */
  target: { op: '>=' | '<='; ratio: number };
}

export function figure(f: Omit<Figure, 'ratio'>): Figure {
  return { ...f, ratio: f.value / f.versus.value };
}

/** The middle value (the mean of the two middle ones for an even count); 0 for none. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  if (s.length === 0) return 0;
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

export function meets(f: Figure): boolean {
  return f.target.op === '>=' ? f.ratio >= f.target.ratio : f.ratio <= f.target.ratio;
}

/** Calls `fn` repeatedly for at least `minMs` (and at least `minCalls` times); returns calls/second. */
export async function rate(fn: () => unknown, options: { minMs?: number; minCalls?: number } = {}): Promise<number> {
  const minMs = options.minMs ?? 1000;
  const minCalls = options.minCalls ?? 3;
  for (let i = 0; i < minCalls; i++) await fn(); // warm up
  let calls = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < minMs || calls < minCalls) {
    await fn();
    calls++;
    elapsed = performance.now() - start;
  }
  return calls / (elapsed / 1000);
}

/** Made on first use, so importing the harness changes nothing for suites that never collect. */
let collect: (() => void) | null = null;

/** A full garbage collection now (the --expose-gc flag is read when a context is created). */
export function fullGc(): void {
  if (collect === null) {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    if (typeof gc !== 'function') throw new Error('bench: no gc() even with --expose-gc');
    collect = gc as () => void;
  }
  collect();
}

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export function formatTable(figures: readonly Figure[]): string {
  const rows = figures.map((f) => [
    f.suite,
    f.name,
    `${f.value.toFixed(3)} ${f.unit}`,
    `${f.versus.label} ${f.versus.value.toFixed(3)}`,
    `${f.ratio.toFixed(2)}x`,
    `${f.target.op} ${f.target.ratio}x`,
    meets(f) ? 'ok' : 'MISS',
  ]);
  const header = ['suite', 'figure', 'value', 'versus', 'ratio', 'target', ''];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
