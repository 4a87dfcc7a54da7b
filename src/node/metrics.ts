// The node's Prometheus registry: what `/metrics` serves (docs/metrics.md lists every series).
// It owns one Registry per node (never prom-client's global one) holding the process defaults
// under their standard names, the transport counters fed by the RPC layer through
// `TransportEvents`, the replication counters fed by the node-to-node push, and pool figures
// read from the open pools at scrape time. Label values are bounded: methods past
// METHOD_LABELS_MAX and error codes outside the registry are counted as `other`.
// Created once by the daemon, which passes `transport` to the RPC server and client.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Pool, PoolStatus } from '../engine/index.js';
import { type Clock, ERROR_CODES, MirrorpoolError, SystemClock, assert, isErrorCode, unreachable } from '../lib/index.js';
import type { AuthFailureReason, FrameErrorReason, TransportEvents } from './rpc/events.js';

export interface NamedPool {
  readonly name: string;
  readonly pool: Pool;
}

/**
 * One replication run is `start`, then `bytes` as data moves, and attempts that may fail: a failed
 * attempt is `error`, which ends the run unless `retry` follows at once (same turn) to go on with
 * it; a run that lands ends with `done` (seconds since its `start`). `bytes` carries the bytes
 * moved since the previous event (a delta, not a running total). replicate.ts emits this order.
 */
export type ReplicationEvent =
  | { kind: 'start' }
  | { kind: 'bytes'; n: number }
  | { kind: 'done'; seconds: number }
  | { kind: 'error'; code: string }
  | { kind: 'retry' };

export interface NodeMetrics {
  readonly registry: Registry;
  /** Feeds the transport metrics. */
  readonly transport: TransportEvents;
  replication(event: ReplicationEvent): void;
  /** The text exposition of every metric. */
  render(): Promise<string>;
  /** The Content-Type header to serve `render()` with. */
  readonly contentType: string;
}

export interface NodeMetricsOptions {
  readonly nodeId: string;
  /** The package version (cli.ts reads it from package.json). */
  readonly version: string;
  /** The pools open now; read at every scrape. */
  readonly pools: () => readonly NamedPool[];
  /** Wall time of replication successes (default: the system clock). */
  readonly clock?: Pick<Clock, 'wallMs'>;
}

/** Request latency buckets: sub-millisecond local calls up to 30 s streams and slow peers. */
const REQUEST_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Replication run buckets: a small incremental push up to a two-hour full resync. */
const REPLICATION_BUCKETS_SECONDS = [0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200];
/** Distinct `method` label values; later ones are counted as `other` so a peer cannot grow the series. */
const METHOD_LABELS_MAX = 64;
const OTHER = 'other';

export const AUTH_FAILURE_REASONS = [
  'token-malformed', 'token-signature', 'token-expired', 'scope', 'cluster-secret',
  'unknown-node', 'node-signature', 'handshake-malformed', 'handshake-timeout',
] as const satisfies readonly AuthFailureReason[];
export const FRAME_ERROR_REASONS = [
  'not-msgpack', 'oversized', 'bad-shape', 'unknown-stream', 'window-exceeded',
] as const satisfies readonly FrameErrorReason[];
// Compile-time checks that the lists above name every reason (so each is pre-initialised at 0).
const _allAuthReasons: Exclude<AuthFailureReason, (typeof AUTH_FAILURE_REASONS)[number]> extends never ? true : never = true;
const _allFrameReasons: Exclude<FrameErrorReason, (typeof FRAME_ERROR_REASONS)[number]> extends never ? true : never = true;

/**
 * prom-client defaults left out: gauges whose `_total` suffix breaks Prometheus naming (promtool
 * rejects them) and that only repeat the sum of `nodejs_active_*{type}`.
 */
const DROPPED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export function createNodeMetrics(options: NodeMetricsOptions): NodeMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of DROPPED_DEFAULTS) registry.removeSingleMetric(name);
  new Gauge({
    name: 'mirrorpool_node_info',
    help: 'Always 1; labels name this node and the mirrorpool version it runs.',
    labelNames: ['node_id', 'version'],
    registers: [registry],
  }).set({ node_id: options.nodeId, version: options.version }, 1);
  const transport = transportMetrics(registry);
  const replication = replicationMetrics(registry, options.clock ?? new SystemClock());
  poolMetrics(registry, options.pools);
  return { registry, transport, replication, render: () => registry.metrics(), contentType: registry.contentType };
}

/** `code` as a label: OK, a registered error code, or `other`. */
function codeLabel(code: string): string {
  return code === 'OK' || isErrorCode(code) ? code : OTHER;
}

function transportMetrics(registry: Registry): TransportEvents {
  const registers = [registry];
  const connections = new Gauge({ name: 'mirrorpool_transport_connections', help: 'Connections open now, peers and clients, those still authenticating included.', registers });
  const opened = new Counter({ name: 'mirrorpool_transport_connections_total', help: 'Connections opened, accepted or dialled.', registers });
  const requests = new Counter({
    name: 'mirrorpool_transport_requests_total', help: 'Requests served and calls made, by method and result code (OK or an error code).',
    labelNames: ['method', 'code'], registers,
  });
  const latency = new Histogram({
    name: 'mirrorpool_transport_request_duration_seconds', help: 'Request duration: arrival to response when served, call to answer when made.',
    labelNames: ['method'], buckets: REQUEST_BUCKETS_SECONDS, registers,
  });
  const bytes = new Counter({ name: 'mirrorpool_transport_bytes_total', help: 'Wire bytes of websocket messages received (in) and sent (out).', labelNames: ['direction'], registers });
  const auth = new Counter({ name: 'mirrorpool_transport_auth_failures_total', help: 'Connections or requests refused by authentication, by reason.', labelNames: ['reason'], registers });
  const frames = new Counter({ name: 'mirrorpool_transport_frame_errors_total', help: 'Frames rejected before dispatch, by reason.', labelNames: ['reason'], registers });
  for (const direction of ['in', 'out']) bytes.inc({ direction }, 0);
  for (const reason of AUTH_FAILURE_REASONS) auth.inc({ reason }, 0);
  for (const reason of FRAME_ERROR_REASONS) frames.inc({ reason }, 0);
  const methods = new Set<string>();
  const methodLabel = (method: string): string => {
    if (!methods.has(method) && methods.size >= METHOD_LABELS_MAX) return OTHER;
    methods.add(method);
    return method;
  };
  let open = 0;
  // TransportEvents implementations must not throw (rpc/events.ts): a value no caller should
  // pass (a negative or non-finite count, a close without an open) is dropped, not asserted.
  const valid = (n: number): boolean => Number.isFinite(n) && n >= 0;
  return {
    connectionOpened: () => {
      open++;
      connections.set(open);
      opened.inc();
    },
    connectionClosed: () => {
      open = Math.max(0, open - 1);
      connections.set(open);
    },
    request: (method, code, seconds) => {
      const m = methodLabel(method);
      requests.inc({ method: m, code: codeLabel(code) });
      if (valid(seconds)) latency.observe({ method: m }, seconds);
    },
    bytes: (direction, n) => {
      if (valid(n)) bytes.inc({ direction }, n);
    },
    authFailure: (reason) => auth.inc({ reason }),
    frameError: (reason) => frames.inc({ reason }),
  };
}

function replicationMetrics(registry: Registry, clock: Pick<Clock, 'wallMs'>): (event: ReplicationEvent) => void {
  const registers = [registry];
  const active = new Gauge({ name: 'mirrorpool_replication_active', help: 'Replication runs in progress.', registers });
  const bytes = new Counter({ name: 'mirrorpool_replication_bytes_total', help: 'Stream bytes replication moved (sent by this node, or received into it).', registers });
  const duration = new Histogram({
    name: 'mirrorpool_replication_duration_seconds', help: 'Duration of replication runs that succeeded.',
    buckets: REPLICATION_BUCKETS_SECONDS, registers,
  });
  const errors = new Counter({ name: 'mirrorpool_replication_errors_total', help: 'Failed replication attempts, by error code (a retried attempt counts too).', labelNames: ['code'], registers });
  const retries = new Counter({ name: 'mirrorpool_replication_retries_total', help: 'Failed replication attempts that were tried again.', registers });
  const lastSuccess = new Gauge({
    name: 'mirrorpool_replication_last_success_timestamp_seconds',
    help: 'Unix time the last replication run succeeded (0: none since the node started).', registers,
  });
  for (const code of Object.keys(ERROR_CODES)) errors.inc({ code }, 0);
  let running = 0;
  const end = (): void => {
    assert(running > 0, 'replication: a run ended that never started');
    running--;
    active.set(running);
  };
  const begin = (): void => {
    running++;
    active.set(running);
  };
  return (event) => {
    switch (event.kind) {
      case 'start':
        begin();
        return;
      case 'bytes':
        assert(Number.isSafeInteger(event.n) && event.n >= 0, `replication: ${event.n} bytes`);
        bytes.inc(event.n);
        return;
      case 'done':
        assert(Number.isFinite(event.seconds) && event.seconds >= 0, `replication: run took ${event.seconds} s`);
        end();
        duration.observe(event.seconds);
        lastSuccess.set(clock.wallMs() / 1000);
        return;
      case 'error':
        errors.inc({ code: codeLabel(event.code) });
        end();
        return;
      case 'retry':
        // Follows the run's `error` in the same turn: the run goes on.
        retries.inc();
        begin();
        return;
      default:
        unreachable(event);
    }
  };
}

// --- pool metrics, read at scrape time ---

type Labels = Readonly<Record<string, string>>;
type Sample = readonly [Labels, number];

interface PoolSample {
  readonly labels: Labels;
  readonly pool: Pool;
  readonly status: PoolStatus;
}

interface IoFigures {
  readonly readBytes: number;
  readonly writeBytes: number;
  readonly readErrors: number;
  readonly writeErrors: number;
  readonly checksumErrors: number;
  readonly heals: number;
}

interface VdevSample {
  readonly labels: Labels;
  readonly space: { readonly capacityBytes: number; readonly allocatedBytes: number; readonly freeBytes: number };
  readonly counters: IoFigures;
}

interface LeafSample {
  readonly labels: Labels;
  readonly counters: IoFigures;
  readonly faulted: boolean;
}

interface Samples {
  readonly pools: readonly PoolSample[];
  readonly vdevs: readonly VdevSample[];
  readonly leaves: readonly LeafSample[];
}

interface ScrapedMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'gauge' | 'counter';
  readonly labelNames: readonly string[];
  readonly samples: (s: Samples) => readonly Sample[];
}

const POOL_STATES = ['ONLINE', 'DEGRADED', 'SUSPENDED'] as const;

/** One pool's figures, or null when it was closed under us (it is left out of this scrape). */
function samplePool(name: string, pool: Pool): Samples | null {
  try {
    const status = pool.status();
    const labels = { pool: name };
    const vdevs = pool.vdevs.map((v): VdevSample => ({
      labels: { pool: name, vdev: String(v.index) },
      space: pool.allocator.vdevSpace(v.index),
      counters: { ...v.counters },
    }));
    const leaves = pool.vdevs.flatMap((v) => v.children.map((c): LeafSample => ({
      labels: { pool: name, vdev: String(v.index), leaf: c.path },
      counters: { ...c.counters },
      faulted: c.faulted,
    })));
    return { pools: [{ labels, pool, status }], vdevs, leaves };
  } catch (e) {
    if (e instanceof MirrorpoolError) return null;
    throw e;
  }
}

function sampleAll(pools: readonly NamedPool[]): Samples {
  const all = pools.map((p) => samplePool(p.name, p.pool)).filter((s): s is Samples => s !== null);
  return { pools: all.flatMap((s) => s.pools), vdevs: all.flatMap((s) => s.vdevs), leaves: all.flatMap((s) => s.leaves) };
}

/** A txg pipeline figure of status().txgStats (typed loosely there). */
function txgStat(p: PoolSample, key: 'txgsSynced' | 'totalSyncMs' | 'lastSyncMs' | 'throttledAssigns'): number {
  const v = p.status.txgStats[key];
  assert(v !== undefined, `pool status has no txgStats.${key}`);
  return v;
}

const perPool = (f: (p: PoolSample) => number) => (s: Samples): Sample[] => s.pools.map((p) => [p.labels, f(p)]);
const perVdev = (f: (v: VdevSample) => number) => (s: Samples): Sample[] => s.vdevs.map((v) => [v.labels, f(v)]);
const perLeaf = (f: (l: LeafSample) => number) => (s: Samples): Sample[] => s.leaves.map((l) => [l.labels, f(l)]);

function gauge(name: string, help: string, samples: ScrapedMetric['samples'], labelNames: readonly string[] = ['pool']): ScrapedMetric {
  return { name, help, type: 'gauge', labelNames, samples };
}

function counter(name: string, help: string, samples: ScrapedMetric['samples'], labelNames: readonly string[] = ['pool']): ScrapedMetric {
  return { name, help, type: 'counter', labelNames, samples };
}

const VDEV = ['pool', 'vdev'];
const LEAF = ['pool', 'vdev', 'leaf'];

/** Every pool series; counters count since the pool was imported on this node. */
const POOL_METRICS: readonly ScrapedMetric[] = [
  gauge('mirrorpool_pool_imported', 'Always 1 for each pool open on this node.', perPool(() => 1)),
  gauge('mirrorpool_pool_state', 'Pool health: 1 for the current state, 0 for the others.',
    (s) => s.pools.flatMap((p) => POOL_STATES.map((state): Sample => [{ ...p.labels, state }, p.status.state === state ? 1 : 0])),
    ['pool', 'state']),
  gauge('mirrorpool_pool_last_synced_txg', 'The newest txg synced to disk.', perPool((p) => p.status.txg)),
  counter('mirrorpool_pool_txgs_synced_total', 'Txgs synced.', perPool((p) => txgStat(p, 'txgsSynced'))),
  counter('mirrorpool_pool_txg_sync_seconds_total', 'Time spent syncing txgs.', perPool((p) => txgStat(p, 'totalSyncMs') / 1000)),
  gauge('mirrorpool_pool_last_txg_sync_duration_seconds', 'How long the newest txg sync took.', perPool((p) => txgStat(p, 'lastSyncMs') / 1000)),
  counter('mirrorpool_pool_throttled_transactions_total', 'Transactions that waited for a sync because dirty data was over its limit.',
    perPool((p) => txgStat(p, 'throttledAssigns'))),
  gauge('mirrorpool_pool_dirty_bytes', 'Changed data held in memory, not yet synced.', perPool((p) => p.status.dirtyBytes)),
  gauge('mirrorpool_pool_size_bytes', 'Allocatable bytes of all vdevs.', perPool((p) => p.status.sizeBytes)),
  gauge('mirrorpool_pool_allocated_bytes', 'Bytes allocated: live blocks, checkpointed blocks and frees not yet reusable.',
    perPool((p) => p.status.allocatedBytes)),
  gauge('mirrorpool_pool_free_bytes', 'Bytes allocatable now.', perPool((p) => p.status.freeBytes)),
  gauge('mirrorpool_pool_checkpoint_held_bytes', 'Space the checkpoint keeps allocated (or, while discarding, has still to free).',
    perPool((p) => p.status.checkpoint.heldBytes)),
  counter('mirrorpool_pool_cache_hits_total', 'Block reads served by the block cache.', perPool((p) => p.pool.cache.stats.hits)),
  counter('mirrorpool_pool_cache_misses_total', 'Block reads the block cache did not hold.', perPool((p) => p.pool.cache.stats.misses)),
  gauge('mirrorpool_pool_cache_bytes', 'Bytes held by the block cache.', perPool((p) => p.pool.cache.cachedBytes())),
  counter('mirrorpool_pool_healed_blocks_total', 'Blocks read whose bad copies were rewritten from a good one.',
    perPool((p) => p.pool.blockIo.counters.healedBlocks)),
  counter('mirrorpool_pool_unrecoverable_read_errors_total', 'Block reads that found no good copy (ECKSUM or EIO returned).',
    perPool((p) => p.pool.blockIo.counters.unrecoverableErrors)),
  gauge('mirrorpool_pool_vdev_size_bytes', 'Allocatable bytes of a top-level vdev.', perVdev((v) => v.space.capacityBytes), VDEV),
  gauge('mirrorpool_pool_vdev_allocated_bytes', 'Bytes allocated on a top-level vdev.', perVdev((v) => v.space.allocatedBytes), VDEV),
  gauge('mirrorpool_pool_vdev_free_bytes', 'Bytes allocatable now on a top-level vdev.', perVdev((v) => v.space.freeBytes), VDEV),
  counter('mirrorpool_pool_vdev_read_bytes_total', 'Bytes a top-level vdev served to readers.', perVdev((v) => v.counters.readBytes), VDEV),
  counter('mirrorpool_pool_vdev_written_bytes_total', 'Bytes callers wrote to a top-level vdev (a mirror writes each to every child).', perVdev((v) => v.counters.writeBytes), VDEV),
  counter('mirrorpool_pool_vdev_read_errors_total', 'Reads of a top-level vdev that no child could serve.', perVdev((v) => v.counters.readErrors), VDEV),
  counter('mirrorpool_pool_vdev_write_errors_total', 'Writes or syncs of a top-level vdev that no child took.', perVdev((v) => v.counters.writeErrors), VDEV),
  counter('mirrorpool_pool_vdev_checksum_errors_total', 'Reads of a top-level vdev where no child had a copy that verified.',
    perVdev((v) => v.counters.checksumErrors), VDEV),
  counter('mirrorpool_pool_leaf_read_bytes_total', 'Bytes read from a device.', perLeaf((l) => l.counters.readBytes), LEAF),
  counter('mirrorpool_pool_leaf_written_bytes_total', 'Bytes written to a device.', perLeaf((l) => l.counters.writeBytes), LEAF),
  counter('mirrorpool_pool_leaf_read_errors_total', 'Reads a device failed.', perLeaf((l) => l.counters.readErrors), LEAF),
  counter('mirrorpool_pool_leaf_write_errors_total', 'Writes or syncs a device failed.', perLeaf((l) => l.counters.writeErrors), LEAF),
  counter('mirrorpool_pool_leaf_checksum_errors_total', 'Reads from a device whose data failed its checksum.', perLeaf((l) => l.counters.checksumErrors), LEAF),
  counter('mirrorpool_pool_leaf_healed_copies_total', 'Copies on a device rewritten with good bytes.', perLeaf((l) => l.counters.heals), LEAF),
  gauge('mirrorpool_pool_leaf_faulted', '1 when a device failed a write or sync and its copy may be stale.', perLeaf((l) => (l.faulted ? 1 : 0)), LEAF),
];

/**
 * Registers the pool metrics. One scrape calls every collect() in the same synchronous turn
 * (Registry.metrics()), so the figures are sampled once per scrape and dropped at the next
 * microtask: every series of a scrape comes from one consistent reading of each pool.
 */
function poolMetrics(registry: Registry, pools: () => readonly NamedPool[]): void {
  let current: Samples | null = null;
  const samples = (): Samples => {
    if (current === null) {
      current = sampleAll(pools());
      queueMicrotask(() => {
        current = null;
      });
    }
    return current;
  };
  for (const m of POOL_METRICS) {
    const config = { name: m.name, help: m.help, labelNames: m.labelNames, registers: [registry] };
    if (m.type === 'gauge') {
      new Gauge({
        ...config,
        collect(this: Gauge) {
          this.reset();
          for (const [labels, value] of m.samples(samples())) this.set(labels, value);
        },
      });
    } else {
      new Counter({
        ...config,
        collect(this: Counter) {
          this.reset();
          for (const [labels, value] of m.samples(samples())) this.inc(labels, value);
        },
      });
    }
  }
}
