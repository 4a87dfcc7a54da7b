import { afterEach, describe, expect, it } from 'vitest';
import { type MirrorpoolError, mpError } from '../../lib/index.js';
import { type RpcClient, connect } from './client.js';
import type { CallContext, MethodSpec, RpcLimits } from './connection.js';
import { RawPeer, type TestServer, deferred, rejection, startServer, testCluster } from './rpc-test-support.js';

const cluster = testCluster();
let server: TestServer | undefined;
const clients: RpcClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await server?.close();
  server = undefined;
});

async function setup(methods: Record<string, MethodSpec>, limits?: Partial<RpcLimits>, onInternalError?: (e: unknown, m: string) => void): Promise<RpcClient> {
  server = await startServer({ auth: cluster.auth, methods, ...(limits ? { limits } : {}), ...(onInternalError ? { onInternalError } : {}) });
  return client(limits);
}

async function client(limits?: Partial<RpcLimits>): Promise<RpcClient> {
  const c = await connect(server!.url, { kind: 'token', token: cluster.token('rw') }, limits ? { limits } : {});
  clients.push(c);
  return c;
}

const echo: MethodSpec = { scope: 'ro', handler: async (params) => params };

describe('rpc requests', () => {
  it('answers a request with the handler result and tells the handler who calls', async () => {
    let seen: CallContext | undefined;
    const c = await setup({ echo, who: { scope: 'ro', handler: async (_p, ctx) => ((seen = ctx), ctx.principal) } });
    const params = { name: 'tank', sizes: [1, 2 ** 40], raw: Buffer.from([1, 2]), nested: { ok: true, none: null } };
    expect(await c.call('echo', params)).toEqual(params);
    expect(await c.call('echo')).toBeUndefined();
    expect(await c.call('who')).toMatchObject({ kind: 'token', scope: 'rw' });
    expect(seen!.method).toBe('who');
    expect(server!.events.codes()).toEqual(['OK', 'OK', 'OK']);
    expect(server!.events.opened).toBe(1);
  });

  it('sends errors as code, message and details, never a stack', async () => {
    const fail: MethodSpec = { scope: 'ro', handler: async () => Promise.reject(mpError('ENOENT', 'no pool tank', { pool: 'tank' })) };
    const c = await setup({ fail });
    const e = await rejection(c.call('fail'));
    expect(e).toMatchObject({ code: 'ENOENT', message: 'no pool tank', details: { pool: 'tank' } });
    const raw = await RawPeer.open(server!.url);
    await raw.loginWithToken(cluster.token('ro'));
    raw.send({ kind: 'req', id: 1, method: 'fail', params: null, deadlineMs: 1000, hasInput: false });
    const frame = await raw.next('error');
    expect(frame.error).toEqual({ code: 'ENOENT', message: 'no pool tank', details: { pool: 'tank' } });
    expect(raw.raw.at(-1)!.toString('latin1')).not.toMatch(/at |\.ts:/);
    raw.ws.terminate();
  });

  it('turns a handler bug into EIO "internal error" and reports it to the hook', async () => {
    const reported: [unknown, string][] = [];
    const c = await setup({ bug: { scope: 'ro', handler: async () => { throw new TypeError('x is undefined'); } } }, undefined, (e, m) => reported.push([e, m]));
    const e = await rejection(c.call('bug'));
    expect(e).toMatchObject({ code: 'EIO', message: 'internal error in bug' });
    expect(JSON.stringify(e.details)).not.toContain('undefined');
    expect(reported).toHaveLength(1);
    expect(reported[0]![0]).toBeInstanceOf(TypeError);
    expect(reported[0]![1]).toBe('bug');
  });

  it('answers an unknown method with ENOTSUP and keeps the connection', async () => {
    const c = await setup({ echo });
    expect(await rejection(c.call('nope', 1))).toMatchObject({ code: 'ENOTSUP', details: { method: 'nope' } });
    expect(await c.call('echo', 2)).toBe(2);
    expect(server!.events.requests.map((r) => [r.method, r.code])).toEqual([['unknown', 'ENOTSUP'], ['echo', 'OK']]);
  });

  it('returns the EINVAL a handler raises for params of the wrong type', async () => {
    const add: MethodSpec = {
      scope: 'ro',
      handler: async (params) => {
        const p = params as { a?: unknown; b?: unknown } | null;
        if (typeof p?.a !== 'number' || typeof p.b !== 'number') throw mpError('EINVAL', 'a and b must be numbers', { params: p });
        return p.a + p.b;
      },
    };
    const c = await setup({ add });
    expect(await c.call('add', { a: 1, b: 2 })).toBe(3);
    for (const params of [null, 'x', { a: '1', b: 2 }, [1, 2]]) expect((await rejection(c.call('add', params))).code).toBe('EINVAL');
  });

  it('refuses params that are not plain data or too big before sending them', async () => {
    const c = await setup({ echo }, { frameBytesMax: 64 * 1024 });
    expect((await rejection(c.call('echo', new Date()))).code).toBe('EINVAL');
    expect((await rejection(c.call('echo', Buffer.alloc(100_000)))).code).toBe('EINVAL');
    expect((await rejection(c.call('echo', 1, { deadlineMs: 0 }))).code).toBe('EINVAL');
    expect((await rejection(c.call('', 1))).code).toBe('EINVAL');
    expect(await c.call('echo', 'still fine')).toBe('still fine');
  });

  it('answers EINVAL when a result does not fit the caller frame limit', async () => {
    const c = await setup({ big: { scope: 'ro', handler: async () => Buffer.alloc(200_000) } }, { frameBytesMax: 64 * 1024 });
    expect(await rejection(c.call('big'))).toMatchObject({ code: 'EINVAL' });
  });

  it('aborts the handler and answers ETIMEDOUT at the deadline', async () => {
    const reason = deferred<unknown>();
    const slow: MethodSpec = {
      scope: 'ro',
      handler: (_p, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => {
        reason.resolve(ctx.signal.reason);
        resolve('too late');
      })),
    };
    const c = await setup({ slow, echo });
    expect(await rejection(c.call('slow', null, { deadlineMs: 50 }))).toMatchObject({ code: 'ETIMEDOUT', details: { method: 'slow', deadlineMs: 50 } });
    expect(await reason.promise).toMatchObject({ code: 'ETIMEDOUT' });
    expect(await c.call('echo', 1)).toBe(1);
    expect(server!.events.codes('slow')).toEqual(['ETIMEDOUT']);
  });

  it('times out each of several concurrent calls at its own deadline', async () => {
    const slow: MethodSpec = {
      scope: 'ro',
      handler: (_p, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(null))),
    };
    const c = await setup({ slow, echo });
    const started = performance.now();
    const settledAt = (p: Promise<unknown>): Promise<[string, number]> => rejection(p).then((e) => [e.code, performance.now() - started]);
    // The longest first, so the earlier deadlines have to move the connection's timer forward.
    const calls = [settledAt(c.call('slow', 3, { deadlineMs: 600 })), settledAt(c.call('slow', 2, { deadlineMs: 300 })),
      settledAt(c.call('slow', 1, { deadlineMs: 100 }))];
    expect(await c.call('echo', 'meanwhile')).toBe('meanwhile');
    const [third, second, first] = await Promise.all(calls);
    for (const [code] of [first!, second!, third!]) expect(code).toBe('ETIMEDOUT');
    expect(first![1]).toBeGreaterThanOrEqual(99);
    expect(second![1]).toBeGreaterThanOrEqual(299);
    expect(third![1]).toBeGreaterThanOrEqual(599);
    expect(first![1]).toBeLessThan(second![1]);
    expect(second![1]).toBeLessThan(third![1]);
    expect(server!.events.codes('slow')).toEqual(['ETIMEDOUT', 'ETIMEDOUT', 'ETIMEDOUT']);
  });

  it('cancels on abort: ECANCELED for the caller and an aborted signal for the handler', async () => {
    const started = deferred();
    const reason = deferred<unknown>();
    const wait: MethodSpec = {
      scope: 'ro',
      handler: (_p, ctx) => new Promise((resolve) => {
        ctx.signal.addEventListener('abort', () => {
          reason.resolve(ctx.signal.reason);
          resolve(null);
        });
        started.resolve();
      }),
    };
    const c = await setup({ wait, echo });
    const abort = new AbortController();
    const call = c.call('wait', null, { signal: abort.signal });
    await started.promise;
    abort.abort();
    expect(await rejection(call)).toMatchObject({ code: 'ECANCELED' });
    expect(await reason.promise).toMatchObject({ code: 'ECANCELED', details: { reason: 'canceled by caller' } });
    expect((await rejection(c.call('echo', 1, { signal: abort.signal }))).code).toBe('ECANCELED');
    expect(await c.call('echo', 2)).toBe(2);
    expect(server!.events.codes('wait')).toEqual(['ECANCELED']);
  });

  it('answers EBUSY beyond inflightMax at once, settles everything, and still serves others', async () => {
    const gate = deferred();
    const hold: MethodSpec = { scope: 'ro', handler: async (p) => ((await gate.promise), p) };
    const c = await setup({ hold, echo });
    const total = 2000;
    let busy = 0;
    const calls = Array.from({ length: total }, (_, i) => c.call('hold', i).then(
      () => 'OK',
      (e: MirrorpoolError) => {
        if (e.code === 'EBUSY' && ++busy === total - 64) gate.resolve();
        return e.code;
      },
    ));
    const codes = await Promise.all(calls);
    expect(codes.filter((x) => x === 'OK')).toHaveLength(64);
    expect(codes.filter((x) => x === 'EBUSY')).toHaveLength(total - 64);
    expect(await (await client()).call('echo', 'other')).toBe('other');
    expect(await c.call('echo', 'same')).toBe('same');
  });
});
