import { describe, expect, it } from 'vitest';
import { AssertionFailure } from './assert.js';
import { SimClock, SystemClock, idle } from './clock.js';
import { clockContract } from './clock.contract.js';
import type { ErrorCode } from './errors.js';

/** Matches a MirrorpoolError with `code` (typed as Error so toThrow takes it). */
const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;

clockContract('SystemClock', () => new SystemClock());
clockContract('SimClock with autoAdvance', () => new SimClock({ autoAdvance: true }));

/** Sleeps on `clock` and records `label` in `log` when the sleep resolves. */
function track(clock: SimClock, ms: number, log: unknown[], label: unknown = ms): Promise<void> {
  return clock.sleep(ms).then(() => void log.push(label));
}

describe('SimClock', () => {
  it('starts at 0 and does not move on its own', async () => {
    const clock = new SimClock();
    const log: number[] = [];
    const p = track(clock, 10, log);
    for (let i = 0; i < 5; i++) await idle();
    expect(clock.nowMs()).toBe(0);
    expect(log).toEqual([]);
    await clock.runAll();
    await p;
  });

  it('fires exactly the timers due when advanced, and stops at the target time', async () => {
    const clock = new SimClock();
    const log: number[] = [];
    const all = Promise.all([30, 10, 20, 21].map((ms) => track(clock, ms, log)));
    await clock.advance(20);
    expect(log).toEqual([10, 20]);
    expect(clock.nowMs()).toBe(20);
    expect(clock.pendingTimers()).toBe(2);
    await clock.advance(0.5);
    expect(log).toEqual([10, 20]);
    expect(clock.nowMs()).toBe(20.5);
    await clock.advance(9.5);
    expect(log).toEqual([10, 20, 21, 30]);
    expect(clock.nowMs()).toBe(30);
    await all;
  });

  it('fires timers set by a firing timer when they fall due within the same advance', async () => {
    const clock = new SimClock();
    const log: string[] = [];
    const chain = clock.sleep(10).then(async () => {
      log.push(`first at ${clock.nowMs()}`);
      await clock.sleep(5);
      log.push(`second at ${clock.nowMs()}`);
    });
    await clock.advance(20);
    expect(log).toEqual(['first at 10', 'second at 15']);
    expect(clock.nowMs()).toBe(20);
    await chain;
  });

  it('drains every timer with runAll, moving time to the last one', async () => {
    const clock = new SimClock();
    const log: number[] = [];
    const all = Promise.all([5, 500, 50].map((ms) => track(clock, ms, log)));
    await clock.runAll();
    expect(log).toEqual([5, 50, 500]);
    expect(clock.nowMs()).toBe(500);
    expect(clock.pendingTimers()).toBe(0);
    await all;
  });

  it('refuses to run forever when timers keep being set', async () => {
    const clock = new SimClock();
    let stop = false;
    const loop = (async () => {
      while (!stop) await clock.sleep(1);
    })();
    await expect(clock.runAll(10)).rejects.toBeInstanceOf(AssertionFailure);
    stop = true;
    await clock.advance(1);
    await loop;
  });

  it('counts pending timers, leaving out fired and aborted ones', async () => {
    const clock = new SimClock();
    expect(clock.pendingTimers()).toBe(0);
    const ac = new AbortController();
    const a = clock.sleep(10);
    const b = clock.sleep(20, ac.signal).catch((e: unknown) => e);
    const c = clock.sleep(30);
    expect(clock.pendingTimers()).toBe(3);
    ac.abort();
    expect(await b).toEqual(withCode('ECANCELED'));
    expect(clock.pendingTimers()).toBe(2);
    await clock.advance(10);
    await a;
    expect(clock.pendingTimers()).toBe(1);
    await clock.runAll();
    await c;
    expect(clock.pendingTimers()).toBe(0);
  });

  it('reports wallMs as wallStartMs plus simulated time in whole milliseconds', async () => {
    const clock = new SimClock({ wallStartMs: 1_000_000 });
    expect(clock.wallMs()).toBe(1_000_000);
    await clock.advance(1234.75);
    expect(clock.wallMs()).toBe(1_001_234);
    expect(new SimClock().wallMs()).toBe(Date.UTC(2026, 0, 1));
  });

  it('rejects a negative or non-finite advance with EINVAL', async () => {
    const clock = new SimClock();
    for (const ms of [-1, NaN, Infinity]) {
      await expect(clock.advance(ms), String(ms)).rejects.toEqual(withCode('EINVAL'));
    }
    expect(clock.nowMs()).toBe(0);
  });
});
