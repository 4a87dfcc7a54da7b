import { afterEach, describe, expect, it } from 'vitest';
import type { MirrorpoolError } from '../../lib/index.js';
import { type RpcClient, connect } from './client.js';
import type { CallContext, MethodSpec, RpcLimits } from './connection.js';
import { type TestServer, deferred, rejection, startServer, testCluster, tick } from './rpc-test-support.js';

const cluster = testCluster();
const WINDOW = 64 * 1024;
/** Small frames and window so writes are split and the window fills quickly. */
const LIMITS: Partial<RpcLimits> = { streamWindowBytes: WINDOW, frameBytesMax: 16 * 1024 };
let server: TestServer | undefined;
const clients: RpcClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await server?.close();
  server = undefined;
});

async function setup(methods: Record<string, MethodSpec>): Promise<RpcClient> {
  server = await startServer({ auth: cluster.auth, methods, limits: LIMITS });
  const c = await connect(server.url, { kind: 'token', token: cluster.token('rw') }, { limits: LIMITS });
  clients.push(c);
  return c;
}

function pattern(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

describe('rpc streams', () => {
  it('streams server to client in order, never more than the window ahead of a slow consumer', async () => {
    const chunks = Array.from({ length: 40 }, (_, i) => pattern(10_000 + i, i));
    let consumed = 0;
    let aheadMax = 0;
    const produce: MethodSpec = {
      scope: 'ro',
      handler: async (_p, ctx) => {
        let written = 0;
        for (const chunk of chunks) {
          await ctx.write(chunk);
          written += chunk.length;
          aheadMax = Math.max(aheadMax, written - consumed);
        }
        return written;
      },
    };
    const c = await setup({ produce });
    const received: Buffer[] = [];
    const total = await c.call<number>('produce', null, {
      output: async (chunk) => {
        consumed += chunk.length;
        received.push(Buffer.from(chunk));
        await tick();
      },
    });
    expect(Buffer.concat(received).equals(Buffer.concat(chunks))).toBe(true);
    expect(total).toBe(consumed);
    expect(aheadMax).toBeLessThanOrEqual(WINDOW);
    expect(aheadMax).toBeGreaterThan(WINDOW / 2);
    expect(Math.max(...received.map((r) => r.length))).toBeLessThanOrEqual(16 * 1024);
  });

  it('streams client to server in order, never more than the window ahead of a slow handler', async () => {
    const chunks = Array.from({ length: 40 }, (_, i) => pattern(9_000 + i, i));
    let consumed = 0;
    let produced = 0;
    let aheadMax = 0;
    const consume: MethodSpec = {
      scope: 'rw',
      handler: async (_p, ctx) => {
        const got: Buffer[] = [];
        for await (const chunk of ctx.input) {
          consumed += chunk.length;
          got.push(Buffer.from(chunk));
          await tick();
        }
        return Buffer.concat(got).equals(Buffer.concat(chunks));
      },
    };
    async function* input(): AsyncGenerator<Uint8Array> {
      for (const chunk of chunks) {
        yield chunk;
        produced += chunk.length;
        aheadMax = Math.max(aheadMax, produced - consumed);
      }
    }
    const c = await setup({ consume });
    expect(await c.call('consume', null, { input: input() })).toBe(true);
    expect(aheadMax).toBeLessThanOrEqual(WINDOW);
    expect(aheadMax).toBeGreaterThan(WINDOW / 2);
  });

  it('gives a handler that streams nothing an empty input and lets it stop reading early', async () => {
    const count: MethodSpec = {
      scope: 'ro',
      handler: async (_p, ctx) => {
        let n = 0;
        for await (const chunk of ctx.input) {
          n += chunk.length;
          if (n >= 50_000) break;
        }
        return n;
      },
    };
    const c = await setup({ count });
    expect(await c.call('count')).toBe(0);
    async function* endless(): AsyncGenerator<Uint8Array> {
      for (;;) yield pattern(10_000, 1);
    }
    expect(await c.call('count', null, { input: endless() })).toBeGreaterThanOrEqual(50_000);
    expect(await c.call('count', null, { input: toAsync([pattern(10, 0), pattern(20, 0)]) })).toBe(30);
  });

  it('drops the output of a call without an output callback, however much the handler writes', async () => {
    const flood: MethodSpec = {
      scope: 'ro',
      handler: async (_p, ctx) => {
        for (let i = 0; i < 40; i++) await ctx.write(pattern(WINDOW / 4, i));
        return 'flooded';
      },
    };
    const c = await setup({ flood });
    expect(await c.call('flood')).toBe('flooded');
    expect(await c.call('flood', null, { deadlineMs: 10_000 })).toBe('flooded');
    expect(server!.events.frameErrors).toEqual([]);
  });

  it('sends what a buffer held when written, even if the writer reuses it at once', async () => {
    const reused = Buffer.alloc(40_000);
    const sent: Buffer[] = [];
    const rewrite: MethodSpec = {
      scope: 'ro',
      handler: async (_p, ctx) => {
        for (let i = 0; i < 20; i++) {
          reused.fill(i);
          sent.push(Buffer.from(reused));
          await ctx.write(reused);
        }
        return null;
      },
    };
    let consumed = 0;
    const sink: MethodSpec = {
      scope: 'rw',
      handler: async (_p, ctx) => {
        const got: Buffer[] = [];
        for await (const chunk of ctx.input) got.push(Buffer.from(chunk));
        consumed = Buffer.concat(got).length;
        return Buffer.concat(got).equals(Buffer.concat(sent));
      },
    };
    const c = await setup({ rewrite, sink });
    const received: Buffer[] = [];
    await c.call('rewrite', null, { output: (chunk) => void received.push(Buffer.from(chunk)) });
    expect(Buffer.concat(received).equals(Buffer.concat(sent))).toBe(true);
    sent.length = 0;
    async function* input(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 20; i++) {
        reused.fill(100 + i);
        sent.push(Buffer.from(reused));
        yield reused;
      }
    }
    expect(await c.call('sink', null, { input: input() })).toBe(true);
    expect(consumed).toBe(20 * 40_000);
  });

  it('fails the caller with the error of its own input or output callback', async () => {
    const c = await setup({
      sink: { scope: 'ro', handler: async (_p, ctx) => { for await (const _ of ctx.input) { /* drain */ } return 'done'; } },
      source: { scope: 'ro', handler: async (_p, ctx) => { for (;;) await ctx.write(pattern(1000, 0)); } },
    });
    async function* broken(): AsyncGenerator<Uint8Array> {
      yield pattern(10, 0);
      throw new Error('disk went away');
    }
    await expect(c.call('sink', null, { input: broken() })).rejects.toThrow('disk went away');
    await expect(c.call('source', null, { output: () => { throw new Error('cannot store'); } })).rejects.toThrow('cannot store');
    expect(await c.call('sink', null, { input: toAsync([pattern(5, 0)]) })).toBe('done');
  });

  it('rejects both sides with ECANCELED when the connection drops mid-stream', async () => {
    const handlerSaw = deferred<{ write: unknown; aborted: boolean }>();
    const endless: MethodSpec = {
      scope: 'ro',
      handler: async (_p, ctx: CallContext) => {
        try {
          for (;;) await ctx.write(pattern(4096, 0));
        } catch (e) {
          handlerSaw.resolve({ write: e, aborted: ctx.signal.aborted });
          throw e;
        }
      },
    };
    const c = await setup({ endless });
    let chunks = 0;
    const call = c.call('endless', null, {
      output: () => {
        if (++chunks === 3) server!.sockets[0]!.terminate();
      },
    });
    expect(await rejection(call)).toMatchObject({ code: 'ECANCELED', details: { reason: 'connection closed' } });
    const seen = await handlerSaw.promise;
    expect(seen.aborted).toBe(true);
    expect((seen.write as MirrorpoolError).code).toBe('ECANCELED');
    expect((await rejection(c.call('endless'))).code).toBe('ECANCELED');
  });

  it('aborts the handler reading input when the client goes away', async () => {
    const reading = deferred();
    const handlerSaw = deferred<{ read: unknown; reason: unknown }>();
    const sink: MethodSpec = {
      scope: 'ro',
      handler: async (_p, ctx) => {
        try {
          for await (const _ of ctx.input) reading.resolve();
        } catch (e) {
          handlerSaw.resolve({ read: e, reason: ctx.signal.reason });
        }
        return null;
      },
    };
    const c = await setup({ sink });
    async function* slow(): AsyncGenerator<Uint8Array> {
      yield pattern(100, 0);
      await new Promise(() => undefined);
    }
    const call = c.call('sink', null, { input: slow() });
    await reading.promise;
    await c.close();
    expect((await rejection(call)).code).toBe('ECANCELED');
    const seen = await handlerSaw.promise;
    expect((seen.read as MirrorpoolError).code).toBe('ECANCELED');
    expect((seen.reason as MirrorpoolError).details.reason).toBe('connection closed');
  });

  it('rejects writes after the call ended with ECANCELED', async () => {
    const ctxSeen = deferred<CallContext>();
    const c = await setup({ quick: { scope: 'ro', handler: async (_p, ctx) => (ctxSeen.resolve(ctx), 'ok') } });
    expect(await c.call('quick')).toBe('ok');
    const ctx = await ctxSeen.promise;
    expect((await rejection(ctx.write(Buffer.from('late')))).code).toBe('ECANCELED');
  });
});

async function* toAsync(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) yield chunk;
}
