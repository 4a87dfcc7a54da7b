// The node daemon (`mirrorpool node start`): one HTTP(S) server on the configured address that
// serves `/healthz`, `/status` and `/metrics`, and upgrades `/rpc` to the authenticated
// websocket transport. It keeps every cached pool imported (ResidentPools), so commands run
// against open pools and the txg timer runs between them.
// Invariants: nothing is handled for a request without a valid credential (HTTP: a bearer
// token of the right scope; websocket: the handshake in rpc/); shutdown stops accepting, lets
// running requests finish for up to `drainMs`, then closes connections and exports every pool
// (a txg sync), so an acknowledged write is on disk when the process exits.
// Called by cli-node.ts (`node start`, `up`) and the integration tests.

import { readFile } from 'node:fs/promises';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';
import { SystemClock, SystemRandom, hasCode, mpError } from '../lib/index.js';
import type { NodeStatus } from './api.js';
import { packageVersion } from './cli.js';
import { daemonMethods } from './daemon-methods.js';
import { type Logger, createLogger, errorFields } from './log.js';
import { type NodeMetrics, createNodeMetrics } from './metrics.js';
import { type LogLevel, type NodeHome, type PeerConfig, loadNodeHome, parseListen, removeRunFile, setLocalNode, writeRunFile } from './node-config.js';
import { PeerClients } from './peer-clients.js';
import { ResidentPools } from './resident-pools.js';
import { type RpcSession, type Scope, scopeAllows, serveConnection, verifyToken, wsServerOptions } from './rpc/index.js';

/** Block cache of each pool the daemon keeps open. */
const DAEMON_CACHE_BYTES = 256 * 1024 * 1024;
/** Interval of websocket pings; a peer silent for two of them is dropped. */
const KEEPALIVE_MS = 15_000;
/** How long shutdown waits for running requests before it closes their connections. */
const DRAIN_MS_DEFAULT = 10_000;

export interface DaemonOptions {
  readonly home: string;
  readonly listen?: string;
  readonly advertise?: string;
  readonly logLevel?: LogLevel;
  readonly logSink?: { write(s: string): void };
  readonly drainMs?: number;
}

export class NodeDaemon {
  private readonly sessions = new Set<RpcSession>();
  private readonly running = new Set<Promise<unknown>>();
  private draining = false;
  private stopped: Promise<void> | null = null;
  readonly startedAt = new Date();
  /** Connections to other nodes that `send --to` keeps between pushes. */
  readonly peerClients = new PeerClients();
  /** The nodes accepted on /rpc: node.json's peers at start, again after each `reloadPeers`. */
  private peers: readonly PeerConfig[];

  private constructor(
    readonly node: NodeHome,
    readonly url: string,
    private readonly server: Server,
    private readonly wss: WebSocketServer,
    readonly pools: ResidentPools,
    readonly metrics: NodeMetrics,
    readonly log: Logger,
    private readonly drainMs: number,
    private readonly poolFailures: NodeStatus['poolFailures'],
  ) {
    this.peers = node.config.peers;
  }

  /**
   * Reads node.json's peers again (SIGHUP; `node peer add` sends it to a running daemon). Only
   * the peers change: identity, secret, address and TLS need a restart. New connections see the
   * new list; open ones stay. A home that no longer loads, or holds another identity, changes
   * nothing and rejects.
   */
  async reloadPeers(): Promise<readonly PeerConfig[]> {
    const fresh = await loadNodeHome(this.node.home);
    if (fresh.config.nodeId !== this.node.config.nodeId) {
      throw mpError('EINVAL', `${this.node.home} now holds node ${fresh.config.nodeId}, not ${this.node.config.nodeId}: restart the daemon`, { home: this.node.home });
    }
    this.peers = fresh.config.peers;
    this.log.info('peers reloaded', { peers: this.peers.length });
    return this.peers;
  }

  /** Loads the home, opens its pools, listens; resolves once connections are accepted. */
  static async start(options: DaemonOptions): Promise<NodeDaemon> {
    const node = await loadNodeHome(options.home);
    const config = node.config;
    const log = createLogger(options.logLevel ?? config.logLevel, options.logSink ?? process.stderr, { node: config.nodeId });
    const { host, port } = parseListen(options.listen ?? config.listen);
    const pools = ResidentPools.install(node.home, {
      clock: new SystemClock(),
      random: new SystemRandom(),
      tuning: { txgTimeoutMs: config.txgTimeoutMs, cacheBytes: DAEMON_CACHE_BYTES },
    });
    const opened = await pools.openAll();
    for (const f of opened.failures) log.error('pool not opened', { pool: f.pool, ...errorFields(f.error) });
    const metrics = createNodeMetrics({ nodeId: config.nodeId, version: packageVersion(), pools: () => pools.list() });
    const server = config.tls === undefined ? createServer() : createTlsServer({ cert: await readFile(config.tls.cert), key: await readFile(config.tls.key) });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      await pools.close();
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') throw mpError('EBUSY', `${host}:${port} is already in use`, { listen: `${host}:${port}` }, e);
      if (code === 'EADDRNOTAVAIL' || code === 'EACCES') throw mpError('EINVAL', `cannot listen on ${host}:${port} (${code})`, { listen: `${host}:${port}` }, e);
      throw e;
    }
    const actualPort = (server.address() as AddressInfo).port;
    // Port 0, listened on or advertised (a home made with --listen host:0), is the port it got.
    const advertise = options.advertise ?? (port === 0 || /:0\/?$/.test(config.advertise) ? config.advertise.replace(/:\d+\/?$/, `:${actualPort}`) : config.advertise);
    const wss = new WebSocketServer(wsServerOptions());
    const failures = opened.failures.map((f) => ({ pool: f.pool, code: f.error.code, message: f.error.message }));
    const daemon = new NodeDaemon(node, advertise.replace(/\/$/, ''), server, wss, pools, metrics, log, options.drainMs ?? DRAIN_MS_DEFAULT, failures);
    setLocalNode({ node, replication: (e) => metrics.replication(e), peers: daemon.peerClients });
    await writeRunFile(node.home, { pid: process.pid, url: daemon.url });
    server.on('request', (req, res) => daemon.onHttp(req, res));
    server.on('upgrade', (req, socket, head) => daemon.onUpgrade(req, socket, head));
    log.info('node started', { url: daemon.url, listen: `${host}:${actualPort}`, pools: opened.opened, tls: config.tls !== undefined });
    return daemon;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  status(): NodeStatus {
    return {
      nodeId: this.node.config.nodeId,
      publicKey: this.node.config.publicKey,
      url: this.url,
      version: packageVersion(),
      startedAt: this.startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      connections: this.sessions.size,
      pools: this.pools.list().map(({ name, pool }) => ({ name, guid: pool.guid.toString(), lastSyncedTxg: Number(pool.lastSyncedTxg) })),
      poolFailures: this.poolFailures,
      peers: this.peers.map((p) => ({ id: p.id, ...(p.url === undefined ? {} : { url: p.url }) })),
    };
  }

  /** Runs a request's work, refusing new work once shutdown began, so shutdown can wait for it. */
  track<T>(work: () => Promise<T>): Promise<T> {
    if (this.draining) return Promise.reject(mpError('ECANCELED', 'the node is shutting down'));
    const p = work();
    this.running.add(p);
    const forget = (): void => {
      this.running.delete(p);
    };
    p.then(forget, forget);
    return p;
  }

  /** The principal of an HTTP request's bearer token, if it allows `need`; otherwise answers 401/403. */
  private httpAuth(req: IncomingMessage, res: ServerResponse, need: Scope): boolean {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer ([A-Za-z0-9._-]{1,1024})$/.exec(header);
    if (m === null) {
      this.metrics.transport.authFailure('token-malformed');
      reply(res, 401, { code: 'EAUTH', message: 'a bearer token is required', details: { reason: 'token-malformed' } });
      return false;
    }
    try {
      const claims = verifyToken(this.node.clusterSecret, m[1] ?? '', Date.now());
      if (scopeAllows(claims.scope, need)) return true;
      this.metrics.transport.authFailure('scope');
      reply(res, 403, { code: 'EAUTH', message: `a token of scope ${claims.scope} cannot read this (needs ${need})`, details: { reason: 'scope' } });
    } catch (e) {
      if (!hasCode(e, 'EAUTH')) throw e;
      const reason = (e.details['reason'] as Parameters<NodeMetrics['transport']['authFailure']>[0] | undefined) ?? 'token-malformed';
      this.metrics.transport.authFailure(reason);
      reply(res, 401, e.toWire());
    }
    return false;
  }

  private onHttp(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') return reply(res, 405, { code: 'EINVAL', message: 'only GET is served here' });
    if (path === '/healthz') {
      const ok = !this.draining && this.poolFailures.length === 0;
      return reply(res, ok ? 200 : 503, { status: ok ? 'ok' : this.draining ? 'stopping' : 'degraded', nodeId: this.node.config.nodeId });
    }
    if (path === '/status') {
      if (this.httpAuth(req, res, 'ro')) reply(res, 200, this.status());
      return;
    }
    if (path === '/metrics') {
      if (!this.httpAuth(req, res, 'metrics')) return;
      this.metrics.render().then(
        (text) => {
          res.writeHead(200, { 'content-type': this.metrics.contentType });
          res.end(text);
        },
        (e: unknown) => {
          this.log.error('metrics render failed', errorFields(e));
          reply(res, 500, { code: 'EIO', message: 'metrics could not be rendered' });
        },
      );
      return;
    }
    reply(res, 404, { code: 'ENOENT', message: `no such path ${path} (try /healthz, /status, /metrics, /rpc)` });
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if ((req.url ?? '').split('?')[0] !== '/rpc' || this.draining) {
      socket.end(`HTTP/1.1 ${this.draining ? '503 Service Unavailable' : '404 Not Found'}\r\nconnection: close\r\n\r\n`);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const session = serveConnection(ws, {
        auth: {
          keys: this.node.keys,
          clusterSecret: this.node.clusterSecret,
          knownNodes: (id) => this.peers.find((p) => p.id === id)?.publicKey,
          now: () => Date.now(),
        },
        methods: daemonMethods(this),
        events: this.metrics.transport,
        onInternalError: (e, method) => this.log.error('request failed with a bug', { method, ...errorFields(e) }),
      });
      this.sessions.add(session);
      const stopPings = keepAlive(ws);
      const forget = (): void => {
        stopPings();
        this.sessions.delete(session);
      };
      session.closed.then(forget, forget);
    });
  }

  /** Graceful shutdown: stop accepting, drain, close connections, export every pool. Idempotent. */
  stop(reason = 'stop requested'): Promise<void> {
    this.stopped ??= this.shutdown(reason);
    return this.stopped;
  }

  private async shutdown(reason: string): Promise<void> {
    this.log.info('node stopping', { reason, running: this.running.size });
    this.draining = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const drained = Promise.allSettled([...this.running]);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.drainMs);
    });
    if ((await Promise.race([drained, late])) === 'late') this.log.warn('requests still running at shutdown; their connections are closed', { running: this.running.size });
    clearTimeout(timer);
    for (const s of this.sessions) s.close(1001, 'node shutting down');
    this.server.closeAllConnections();
    await closed;
    await Promise.allSettled([...this.running]);
    await this.peerClients.close();
    await this.pools.close();
    await removeRunFile(this.node.home);
    setLocalNode(undefined);
    this.log.info('node stopped');
  }
}

/**
 * Pings an idle peer every KEEPALIVE_MS and drops it when a pong has not come back by the next
 * ping: a peer that vanished without closing (a cut link, a frozen host) must not hold a receive
 * and its dataset forever. Returns the stop function.
 */
function keepAlive(ws: WebSocket): () => void {
  let alive = true;
  ws.on('pong', () => {
    alive = true;
  });
  const timer = setInterval(() => {
    if (!alive) {
      ws.terminate();
      return;
    }
    alive = false;
    ws.ping();
  }, KEEPALIVE_MS);
  timer.unref();
  return () => clearInterval(timer);
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body)}\n`);
}
