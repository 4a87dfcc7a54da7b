// The node's Prometheus registry against a real pool (a mirror of two SimDisks): transport and
// replication events become the documented series, pool figures are read at scrape time, and
// the whole exposition passes `promtool check metrics` with no lint output.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { Pool, keyed } from '../engine/index.js';
import { Prng, SimClock, SimDisk } from '../lib/index.js';
import { AUTH_FAILURE_REASONS, FRAME_ERROR_REASONS, type NamedPool, createNodeMetrics } from './metrics.js';

const TUNING = { txgTimeoutMs: 0, dirtyMaxBytes: 64 * 1024 * 1024 };

interface Machine {
  readonly disks: SimDisk[];
  readonly env: { clock: SimClock; random: Prng; tuning: typeof TUNING };
}

function machine(seed: number): Machine {
  const random = new Prng(seed);
  const disks = [0, 1].map(() => new SimDisk({ sizeBytes: 32 * 1024 * 1024, random: random.fork() }));
  return { disks, env: { clock: new SimClock(), random, tuning: TUNING } };
}

const leaves = (m: Machine): { disk: SimDisk; path: string }[] => m.disks.map((disk, i) => ({ disk, path: `/vdevs/d${i}` }));

/** A mirrored pool `tank` holding key `k` (64 KiB), synced. */
async function mirrorPool(m: Machine): Promise<Pool> {
  const pool = await Pool.create('tank', [leaves(m)], m.env);
  const data = new Uint8Array(64 * 1024).fill(7);
  await pool.dsl.withView('tank', 'write', (v) => keyed.putKey(v, () => pool.assign(), 'k', data));
  await pool.sync();
  return pool;
}

/** The value of the sample `name{labels}` (labels matched exactly), or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got = (m[2] ?? '').split(/,(?=[a-zA-Z_]+=")/).filter((s) => s !== '').sort().join(',');
    if (got === want) return Number(m[3]);
  }
  return undefined;
}

function promtool(args: readonly string[], stdin: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr.on('data', (b: Buffer) => (output += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
    child.stdin.end(stdin);
  });
}

function metricsFor(pools: () => readonly NamedPool[], wallMs = 1_700_000_000_000): ReturnType<typeof createNodeMetrics> {
  return createNodeMetrics({ nodeId: 'n1', version: '9.8.7', pools, clock: { wallMs: () => wallMs } });
}

describe('node metrics', () => {
  it('turns transport events into connection, request, byte and failure series', async () => {
    const metrics = metricsFor(() => []);
    const t = metrics.transport;
    t.connectionOpened();
    t.connectionOpened();
    t.connectionClosed();
    t.request('pool.status', 'OK', 0.002);
    t.request('pool.status', 'ENOENT', 0.0004);
    t.request('pool.status', 'not-a-code', 40);
    t.bytes('in', 100);
    t.bytes('out', 2500);
    t.authFailure('token-expired');
    t.frameError('oversized');
    const text = await metrics.render();
    expect(sample(text, 'mirrorpool_transport_connections')).toBe(1);
    expect(sample(text, 'mirrorpool_transport_connections_total')).toBe(2);
    expect(sample(text, 'mirrorpool_transport_requests_total', { method: 'pool.status', code: 'OK' })).toBe(1);
    expect(sample(text, 'mirrorpool_transport_requests_total', { method: 'pool.status', code: 'ENOENT' })).toBe(1);
    expect(sample(text, 'mirrorpool_transport_requests_total', { method: 'pool.status', code: 'other' })).toBe(1);
    expect(sample(text, 'mirrorpool_transport_request_duration_seconds_bucket', { method: 'pool.status', le: '0.0005' })).toBe(1);
    expect(sample(text, 'mirrorpool_transport_request_duration_seconds_bucket', { method: 'pool.status', le: '30' })).toBe(2);
    expect(sample(text, 'mirrorpool_transport_request_duration_seconds_count', { method: 'pool.status' })).toBe(3);
    expect(sample(text, 'mirrorpool_transport_bytes_total', { direction: 'in' })).toBe(100);
    expect(sample(text, 'mirrorpool_transport_bytes_total', { direction: 'out' })).toBe(2500);
    expect(sample(text, 'mirrorpool_transport_auth_failures_total', { reason: 'token-expired' })).toBe(1);
    expect(sample(text, 'mirrorpool_transport_frame_errors_total', { reason: 'oversized' })).toBe(1);
    expect(metrics.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  });

  it('shows every auth failure and frame error reason at 0 before the first event', async () => {
    const text = await metricsFor(() => []).render();
    for (const reason of AUTH_FAILURE_REASONS) expect(sample(text, 'mirrorpool_transport_auth_failures_total', { reason })).toBe(0);
    for (const reason of FRAME_ERROR_REASONS) expect(sample(text, 'mirrorpool_transport_frame_errors_total', { reason })).toBe(0);
    expect(sample(text, 'mirrorpool_transport_bytes_total', { direction: 'in' })).toBe(0);
    expect(sample(text, 'mirrorpool_replication_errors_total', { code: 'ETIMEDOUT' })).toBe(0);
    expect(sample(text, 'mirrorpool_replication_last_success_timestamp_seconds')).toBe(0);
  });

  it('never throws from a transport event, dropping values no caller should pass', async () => {
    const metrics = metricsFor(() => []);
    expect(() => {
      metrics.transport.connectionClosed();
      metrics.transport.bytes('in', -5);
      metrics.transport.request('pool.list', 'OK', Number.NaN);
    }).not.toThrow();
    const text = await metrics.render();
    expect(sample(text, 'mirrorpool_transport_connections')).toBe(0);
    expect(sample(text, 'mirrorpool_transport_bytes_total', { direction: 'in' })).toBe(0);
    expect(sample(text, 'mirrorpool_transport_requests_total', { method: 'pool.list', code: 'OK' })).toBe(1);
    expect(sample(text, 'mirrorpool_transport_request_duration_seconds_count', { method: 'pool.list' })).toBeUndefined();
  });

  it('counts methods past the label bound as other', async () => {
    const metrics = metricsFor(() => []);
    for (let i = 0; i < 70; i++) metrics.transport.request(`m${i}`, 'OK', 0.001);
    const text = await metrics.render();
    expect(sample(text, 'mirrorpool_transport_requests_total', { method: 'm63', code: 'OK' })).toBe(1);
    expect(sample(text, 'mirrorpool_transport_requests_total', { method: 'm64', code: 'OK' })).toBeUndefined();
    expect(sample(text, 'mirrorpool_transport_requests_total', { method: 'other', code: 'OK' })).toBe(6);
  });

  it('tracks replication runs as replicate.ts reports them: attempts, retries and the last success', async () => {
    const metrics = metricsFor(() => [], 1_700_000_123_000);
    const active = async (): Promise<number | undefined> => sample(await metrics.render(), 'mirrorpool_replication_active');
    metrics.replication({ kind: 'start' });
    metrics.replication({ kind: 'start' });
    metrics.replication({ kind: 'bytes', n: 4096 });
    expect(await active()).toBe(2);
    // The first run fails an attempt and goes on; then lands.
    metrics.replication({ kind: 'error', code: 'ETIMEDOUT' });
    metrics.replication({ kind: 'retry' });
    expect(await active()).toBe(2);
    metrics.replication({ kind: 'bytes', n: 1000 });
    metrics.replication({ kind: 'done', seconds: 12 });
    expect(await active()).toBe(1);
    // The second fails for good: an error with no retry after it.
    metrics.replication({ kind: 'error', code: 'ENOSPC' });
    const text = await metrics.render();
    expect(sample(text, 'mirrorpool_replication_active')).toBe(0);
    expect(sample(text, 'mirrorpool_replication_bytes_total')).toBe(5096);
    expect(sample(text, 'mirrorpool_replication_errors_total', { code: 'ETIMEDOUT' })).toBe(1);
    expect(sample(text, 'mirrorpool_replication_errors_total', { code: 'ENOSPC' })).toBe(1);
    expect(sample(text, 'mirrorpool_replication_retries_total')).toBe(1);
    expect(sample(text, 'mirrorpool_replication_duration_seconds_count')).toBe(1);
    expect(sample(text, 'mirrorpool_replication_duration_seconds_bucket', { le: '10' })).toBe(0);
    expect(sample(text, 'mirrorpool_replication_duration_seconds_bucket', { le: '30' })).toBe(1);
    expect(sample(text, 'mirrorpool_replication_last_success_timestamp_seconds')).toBe(1_700_000_123);
  });

  it('names the node and its version, and keeps the process defaults under their standard names', async () => {
    const text = await metricsFor(() => []).render();
    expect(sample(text, 'mirrorpool_node_info', { node_id: 'n1', version: '9.8.7' })).toBe(1);
    expect(text).toMatch(/^process_cpu_seconds_total /m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes /m);
    expect(text).not.toMatch(/^mirrorpool_process_/m);
    expect(text).not.toMatch(/^nodejs_active_handles_total/m);
  });

  it('reads space, txg and vdev figures from the open pools at scrape time', async () => {
    const pool = await mirrorPool(machine(1));
    const metrics = metricsFor(() => [{ name: 'tank', pool }]);
    let text = await metrics.render();
    const p = { pool: 'tank' };
    expect(sample(text, 'mirrorpool_pool_imported', p)).toBe(1);
    expect(sample(text, 'mirrorpool_pool_state', { ...p, state: 'ONLINE' })).toBe(1);
    expect(sample(text, 'mirrorpool_pool_state', { ...p, state: 'SUSPENDED' })).toBe(0);
    expect(sample(text, 'mirrorpool_pool_last_synced_txg', p)).toBe(pool.lastSyncedTxg);
    const size = sample(text, 'mirrorpool_pool_size_bytes', p) ?? 0;
    const allocated = sample(text, 'mirrorpool_pool_allocated_bytes', p) ?? 0;
    expect(allocated).toBeGreaterThan(64 * 1024);
    expect(allocated + (sample(text, 'mirrorpool_pool_free_bytes', p) ?? 0)).toBe(size);
    expect(sample(text, 'mirrorpool_pool_vdev_size_bytes', { ...p, vdev: '0' })).toBe(size);
    expect(sample(text, 'mirrorpool_pool_vdev_allocated_bytes', { ...p, vdev: '0' })).toBe(allocated);
    expect(sample(text, 'mirrorpool_pool_vdev_written_bytes_total', { ...p, vdev: '0' })).toBeGreaterThan(0);
    expect(sample(text, 'mirrorpool_pool_leaf_checksum_errors_total', { ...p, vdev: '0', leaf: '/vdevs/d1' })).toBe(0);
    expect(sample(text, 'mirrorpool_pool_leaf_faulted', { ...p, vdev: '0', leaf: '/vdevs/d0' })).toBe(0);
    expect(sample(text, 'mirrorpool_pool_checkpoint_held_bytes', p)).toBe(0);
    expect(sample(text, 'mirrorpool_pool_dirty_bytes', p)).toBe(0);
    const txgs = sample(text, 'mirrorpool_pool_txgs_synced_total', p) ?? 0;
    expect(txgs).toBeGreaterThan(0);
    await pool.sync();
    await pool.dsl.withView('tank', 'write', (v) => keyed.putKey(v, () => pool.assign(), 'k2', new Uint8Array(8192)));
    await pool.sync();
    text = await metrics.render();
    expect(sample(text, 'mirrorpool_pool_last_synced_txg', p)).toBe(pool.lastSyncedTxg);
    expect(sample(text, 'mirrorpool_pool_txgs_synced_total', p)).toBeGreaterThan(txgs);
    await pool.export();
  });

  it('counts checksum errors and heals on the device that returned bad data', async () => {
    const m = machine(2);
    await (await mirrorPool(m)).export();
    for (const d of m.disks) d.reopen();
    const pool = await Pool.import(leaves(m), m.env);
    m.disks[0]!.injectFault({ op: 'read', effect: { kind: 'flip' } });
    const back = await pool.dsl.withView('tank', 'read', (v) => keyed.readKey(v, 'k', 0, 64 * 1024));
    expect(back[100]).toBe(7);
    m.disks[0]!.clearFaults();
    const text = await metricsFor(() => [{ name: 'tank', pool }]).render();
    const leaf0 = { pool: 'tank', vdev: '0', leaf: '/vdevs/d0' };
    expect(sample(text, 'mirrorpool_pool_leaf_checksum_errors_total', leaf0)).toBeGreaterThan(0);
    expect(sample(text, 'mirrorpool_pool_leaf_healed_copies_total', leaf0)).toBeGreaterThan(0);
    expect(sample(text, 'mirrorpool_pool_leaf_checksum_errors_total', { ...leaf0, leaf: '/vdevs/d1' })).toBe(0);
    expect(sample(text, 'mirrorpool_pool_vdev_checksum_errors_total', { pool: 'tank', vdev: '0' })).toBe(0);
    expect(sample(text, 'mirrorpool_pool_unrecoverable_read_errors_total', { pool: 'tank' })).toBe(0);
    await pool.export();
  });

  it('still renders when a listed pool was exported meanwhile', async () => {
    const pool = await mirrorPool(machine(3));
    await pool.export();
    const text = await metricsFor(() => [{ name: 'tank', pool }]).render();
    expect(text).toContain('# TYPE mirrorpool_pool_imported gauge');
  });

  it('lists exactly the registered mirrorpool metrics in docs/metrics.md', async () => {
    const doc = await readFile(new URL('../../docs/metrics.md', import.meta.url), 'utf8');
    const documented = [...doc.matchAll(/^\| `(mirrorpool_[a-z0-9_]+)` \|/gm)].map((m) => m[1]).sort();
    const registered = metricsFor(() => []).registry.getMetricsAsArray().map((m) => m.name).filter((n) => n.startsWith('mirrorpool_')).sort();
    expect(documented).toEqual(registered);
  });

  it('passes promtool check metrics without a single lint message', async () => {
    const pool = await mirrorPool(machine(4));
    const metrics = metricsFor(() => [{ name: 'tank', pool }]);
    metrics.transport.connectionOpened();
    metrics.transport.request('pool.list', 'OK', 0.01);
    metrics.replication({ kind: 'start' });
    metrics.replication({ kind: 'done', seconds: 3 });
    const result = await promtool(['check', 'metrics'], await metrics.render());
    expect(result.output).toBe('');
    expect(result.code).toBe(0);
    await pool.export();
  });
});
