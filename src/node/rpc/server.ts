// The server end of an RPC connection: sends HELLO, authenticates the client within
// handshakeTimeoutMs, then dispatches REQ frames to registered handlers with scope checks, the
// in-flight bound, deadlines, cancellation and streams. Invariants: no handler runs before
// authentication; every request frame gets exactly one RESULT or ERROR unless the client
// canceled it; an in-flight slot is held until the handler settles (even after a deadline answer);
// a protocol error sends FAIL and closes only this connection. The daemon calls serveConnection
// for each socket its WebSocketServer accepts.

import type { WebSocket } from 'ws';
import { MirrorpoolError, hasCode, mpError } from '../../lib/index.js';
import { type CallContext, Deadlines, type Handler, type MethodSpec, type RpcLimits, Wire, type WireOwner, resolveLimits } from './connection.js';
import { type AuthFailureReason, type FrameErrorReason, NO_EVENTS, type TransportEvents } from './events.js';
import type { Frame } from './frames.js';
import { type Principal, type ServerAuth, acceptClient, authError, makeHello } from './handshake.js';
import { EMPTY_INPUT, InStream, OutStream } from './streams.js';
import { scopeAllows } from './tokens.js';

export interface ServeOptions {
  readonly auth: ServerAuth;
  readonly methods: (name: string) => MethodSpec | undefined;
  readonly limits?: Partial<RpcLimits>;
  readonly events?: TransportEvents;
  readonly onInternalError?: (e: unknown, method: string) => void;
}

export interface RpcSession {
  readonly closed: Promise<void>;
  readonly principal: Principal | undefined;
  close(code?: number, reason?: string): void;
}

interface ServerCall {
  readonly id: number;
  readonly method: string;
  readonly startedMs: number;
  readonly deadlineMs: number;
  /** performance.now() of the deadline. */
  readonly expiresAt: number;
  /** Made when the handler first looks at ctx.signal. */
  controller: AbortController | undefined;
  /** Why the call was aborted, once it was. */
  abortReason: MirrorpoolError | undefined;
  readonly input: InStream | undefined;
  readonly output: OutStream;
  live: boolean;
}

/** The call's signal, made on first use (most handlers never look at it). */
function signalOf(call: ServerCall): AbortSignal {
  if (call.controller === undefined) {
    call.controller = new AbortController();
    if (call.abortReason !== undefined) call.controller.abort(call.abortReason);
  }
  return call.controller.signal;
}

type ReqFrame = Extract<Frame, { kind: 'req' }>;

const seconds = (startedMs: number): number => (performance.now() - startedMs) / 1000;

class ServerConnection implements WireOwner {
  readonly wire: Wire;
  principal: Principal | undefined;
  private readonly hello: ReturnType<typeof makeHello>;
  private readonly handshakeTimer: NodeJS.Timeout;
  private readonly calls = new Map<number, ServerCall>();
  private lastId = 0;
  private inflight = 0;
  private readonly deadlines = new Deadlines((now) => this.expire(now));

  constructor(ws: WebSocket, private readonly options: ServeOptions, private readonly limits: RpcLimits, private readonly events: TransportEvents) {
    this.wire = new Wire(ws, limits, events, this);
    events.connectionOpened();
    this.hello = makeHello(options.auth.keys, limits.frameBytesMax);
    this.wire.send(this.hello);
    this.handshakeTimer = setTimeout(() => {
      this.refuse('handshake-timeout', authError('handshake-timeout', `no authentication within ${limits.handshakeTimeoutMs} ms`));
    }, limits.handshakeTimeoutMs);
  }

  frame(f: Frame): void {
    if (f.kind === 'fail') return this.wire.remoteFailure(new MirrorpoolError(f.error.code, f.error.message, f.error.details));
    if (this.principal === undefined) return this.authenticate(f);
    switch (f.kind) {
      case 'req': return this.request(f);
      case 'cancel': return this.cancel(f.id);
      case 'credit': return this.credit(f.id, f.bytes);
      case 'data': return this.data(f.id, f.payload);
      case 'end': return this.inputEnd(f.id);
      default: return this.protocolError('bad-shape', `unexpected ${f.kind} frame from a client`);
    }
  }

  badFrame(error: MirrorpoolError, reason: FrameErrorReason): void {
    if (this.principal === undefined) return this.refuse('handshake-malformed', authError('handshake-malformed', `bad handshake frame: ${error.message}`));
    this.events.frameError(reason);
    this.wire.fail(error);
  }

  socketError(_error: Error): void {
    // Wire counted frame-level errors; socket resets end in closed().
  }

  closed(error: MirrorpoolError): void {
    clearTimeout(this.handshakeTimer);
    this.deadlines.stop();
    const lost = error.code === 'ECANCELED' ? error : mpError('ECANCELED', 'connection closed', { reason: 'connection closed', cause: error.code });
    for (const call of [...this.calls.values()]) this.finish(call, lost);
    this.events.connectionClosed();
  }

  private refuse(reason: AuthFailureReason, error: MirrorpoolError): void {
    if (!this.wire.open) return;
    clearTimeout(this.handshakeTimer);
    this.events.authFailure(reason);
    this.wire.fail(error, 1008);
  }

  private authenticate(f: Frame): void {
    const verdict = acceptClient(this.options.auth, this.hello, f);
    if (!verdict.ok) return this.refuse(verdict.reason, verdict.error);
    clearTimeout(this.handshakeTimer);
    if (f.kind === 'auth-token' || f.kind === 'auth-node') this.wire.peerFrameBytesMax = f.frameBytesMax;
    this.principal = verdict.principal;
    this.wire.send(verdict.welcome);
  }

  private protocolError(reason: FrameErrorReason, message: string): void {
    this.events.frameError(reason);
    this.wire.fail(mpError('EPROTO', message, { reason }));
  }

  private answer(id: number, method: string, error: MirrorpoolError): void {
    this.wire.send({ kind: 'error', id, error: error.toWire() });
    this.events.request(method, error.code, 0);
  }

  private request(f: ReqFrame): void {
    if (f.id <= this.lastId) return this.protocolError('bad-shape', `request id ${f.id} is not above ${this.lastId}`);
    this.lastId = f.id;
    const principal = this.principal!;
    const spec = this.options.methods(f.method);
    if (spec === undefined) return this.answer(f.id, 'unknown', mpError('ENOTSUP', `unknown method ${f.method}`, { method: f.method }));
    if (!scopeAllows(principal.scope, spec.scope)) {
      this.events.authFailure('scope');
      const message = `${f.method} needs scope ${spec.scope}; this ${principal.kind} has ${principal.scope}`;
      return this.answer(f.id, f.method, authError('scope', message, { method: f.method, need: spec.scope, have: principal.scope }));
    }
    if (this.inflight >= this.limits.inflightMax) {
      const message = `${this.limits.inflightMax} requests are in flight on this connection`;
      return this.answer(f.id, f.method, mpError('EBUSY', message, { method: f.method, inflightMax: this.limits.inflightMax }));
    }
    this.start(f, spec.handler, principal);
  }

  private start(f: ReqFrame, handler: Handler, principal: Principal): void {
    const startedMs = performance.now();
    const deadlineMs = Math.min(f.deadlineMs, this.limits.deadlineMsMax);
    const call: ServerCall = {
      id: f.id, method: f.method, startedMs, deadlineMs, expiresAt: startedMs + deadlineMs, controller: undefined, abortReason: undefined,
      input: f.hasInput ? new InStream(this.wire, f.id, this.limits.streamWindowBytes) : undefined,
      output: new OutStream(this.wire, f.id, f.outputCredit ?? 0), live: true,
    };
    this.deadlines.add(call.expiresAt);
    this.calls.set(call.id, call);
    this.inflight++;
    call.input?.open();
    const ctx: CallContext = {
      principal, method: f.method, input: call.input ?? EMPTY_INPUT,
      get signal() {
        return signalOf(call);
      },
      write: (chunk) => call.output.write(chunk),
    };
    // The handler starts at once; one that throws instead of rejecting is treated alike.
    const run = async (): Promise<unknown> => handler(f.params, ctx);
    run().then((result) => this.settled(call, true, result), (e: unknown) => this.settled(call, false, e));
  }

  /** Answers ETIMEDOUT for the calls whose deadline passed; the earliest deadline left. */
  private expire(now: number): number {
    let next = Infinity;
    for (const call of [...this.calls.values()]) {
      if (call.expiresAt <= now) {
        const { method, deadlineMs } = call;
        const error = mpError('ETIMEDOUT', `${method} did not finish within ${deadlineMs} ms`, { method, deadlineMs });
        this.wire.send({ kind: 'error', id: call.id, error: error.toWire() });
        this.finish(call, error);
      } else if (call.expiresAt < next) {
        next = call.expiresAt;
      }
    }
    return next;
  }

  private settled(call: ServerCall, ok: boolean, value: unknown): void {
    this.inflight--;
    if (!call.live) return;
    let error: MirrorpoolError | undefined;
    if (ok) {
      try {
        this.wire.send({ kind: 'result', id: call.id, result: value });
      } catch (e) {
        if (!hasCode(e, 'EINVAL')) throw e;
        error = mpError('EINVAL', `result of ${call.method} cannot be sent: ${e.message}`, { method: call.method, ...e.details });
      }
    } else if (value instanceof MirrorpoolError) {
      error = value;
    } else {
      this.options.onInternalError?.(value, call.method);
      error = mpError('EIO', `internal error in ${call.method}`, { method: call.method });
    }
    if (error !== undefined) this.sendError(call.id, error);
    this.finish(call, error);
  }

  private sendError(id: number, error: MirrorpoolError): void {
    try {
      this.wire.send({ kind: 'error', id, error: error.toWire() });
    } catch (e) {
      // Details too big for the peer's frame limit: the code and message still go out.
      if (!hasCode(e, 'EINVAL')) throw e;
      this.wire.send({ kind: 'error', id, error: { code: error.code, message: error.message, details: {} } });
    }
  }

  /** Ends a live call: `error` undefined means it answered with a result. */
  private finish(call: ServerCall, error: MirrorpoolError | undefined): void {
    if (!call.live) return;
    call.live = false;
    this.calls.delete(call.id);
    const ended = (): MirrorpoolError => mpError('ECANCELED', `call ${call.method} ended`, { method: call.method, reason: error?.code ?? 'answered' });
    const aborted = error?.code === 'ETIMEDOUT' || error?.code === 'ECANCELED' ? error : undefined;
    call.output.end(ended);
    call.input?.fail(aborted ?? ended);
    if (aborted !== undefined) {
      call.abortReason = aborted;
      call.controller?.abort(aborted);
    }
    this.events.request(call.method, error?.code ?? 'OK', seconds(call.startedMs));
  }

  private cancel(id: number): void {
    const call = this.calls.get(id);
    if (call !== undefined) this.finish(call, mpError('ECANCELED', `${call.method} was canceled by the caller`, { method: call.method, reason: 'canceled by caller' }));
    else if (id > this.lastId) this.protocolError('unknown-stream', `CANCEL for request ${id}, which was never sent`);
  }

  private credit(id: number, bytes: number): void {
    const call = this.calls.get(id);
    if (call !== undefined) call.output.grant(bytes);
    else if (id > this.lastId) this.protocolError('unknown-stream', `CREDIT for request ${id}, which was never sent`);
  }

  private data(id: number, payload: Uint8Array): void {
    const call = this.calls.get(id);
    if (call === undefined) {
      // DATA of a call that already ended may still be on its way: dropped.
      if (id > this.lastId) this.protocolError('unknown-stream', `DATA for request ${id}, which was never sent`);
      return;
    }
    if (call.input === undefined) return this.protocolError('unknown-stream', `DATA for request ${id}, which has no input stream`);
    const pushed = call.input.push(payload);
    if (pushed === 'window-exceeded') this.protocolError('window-exceeded', `DATA for request ${id} beyond the granted window`);
    else if (pushed === 'ended') this.protocolError('unknown-stream', `DATA for request ${id} after its END`);
  }

  private inputEnd(id: number): void {
    const call = this.calls.get(id);
    if (call === undefined) {
      if (id > this.lastId) this.protocolError('unknown-stream', `END for request ${id}, which was never sent`);
      return;
    }
    if (call.input === undefined) return this.protocolError('unknown-stream', `END for request ${id}, which has no input stream`);
    call.input.end();
  }
}

/** Runs the RPC protocol on an accepted websocket until it closes. */
export function serveConnection(ws: WebSocket, options: ServeOptions): RpcSession {
  const conn = new ServerConnection(ws, options, resolveLimits(options.limits), options.events ?? NO_EVENTS);
  return {
    closed: conn.wire.closed,
    get principal() {
      return conn.principal;
    },
    close: (code = 1001, reason = 'closing') => conn.wire.close(code, reason),
  };
}
