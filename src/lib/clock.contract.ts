// The Clock contract: one suite every implementation passes (SystemClock with real timers of at
// most 30 ms, SimClock with autoAdvance). See the rules in clock.ts.
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { Clock } from './clock.js';
import type { ErrorCode } from './errors.js';

/** Matches a MirrorpoolError with `code` (typed as Error so toThrow takes it). */
const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;

/** Settles to 'resolved' or the error, so a rejection is never left unhandled. */
function outcome(p: Promise<void>): Promise<unknown> {
  return p.then(
    () => 'resolved',
    (e: unknown) => e,
  );
}

/** Calls sleep so a synchronous throw and a rejection look the same. */
async function sleepCalled(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  await clock.sleep(ms, signal);
}

export function clockContract(name: string, make: () => Clock): void {
  describe(`Clock contract: ${name}`, () => {
    it('never moves nowMs backwards', async () => {
      const clock = make();
      let last = clock.nowMs();
      const backwards: number[] = [];
      for (let i = 0; i < 1000; i++) {
        const now = clock.nowMs();
        if (now < last) backwards.push(now);
        last = now;
      }
      for (const ms of [0, 1, 3]) {
        await clock.sleep(ms);
        const now = clock.nowMs();
        if (now < last) backwards.push(now);
        last = now;
      }
      expect(backwards).toEqual([]);
    });

    it('resolves sleep(ms) no earlier than ms after it was called', async () => {
      const clock = make();
      for (const ms of [0, 1, 2, 3, 5, 10, 1, 2, 3, 1, 2, 3, 1, 2, 3]) {
        const start = clock.nowMs();
        await clock.sleep(ms);
        expect(clock.nowMs() - start, `sleep(${ms})`).toBeGreaterThanOrEqual(ms);
      }
    });

    it('resolves timers in due order', async () => {
      const clock = make();
      const order: number[] = [];
      await Promise.all([30, 10, 20].map((ms) => clock.sleep(ms).then(() => order.push(ms))));
      expect(order).toEqual([10, 20, 30]);
    });

    it('resolves timers due at the same time in the order they were set', async () => {
      const clock = make();
      const order: number[] = [];
      await Promise.all([0, 1, 2, 3, 4].map((i) => clock.sleep(5).then(() => order.push(i))));
      expect(order).toEqual([0, 1, 2, 3, 4]);
    });

    it('rejects a sleep whose signal is already aborted with ECANCELED', async () => {
      const clock = make();
      const ac = new AbortController();
      ac.abort();
      await expect(sleepCalled(clock, 10, ac.signal)).rejects.toEqual(withCode('ECANCELED'));
      await expect(sleepCalled(clock, 0, ac.signal)).rejects.toEqual(withCode('ECANCELED'));
    });

    it('rejects a sleep aborted while it waits with ECANCELED', async () => {
      const clock = make();
      const ac = new AbortController();
      const long = outcome(clock.sleep(10_000, ac.signal));
      await clock.sleep(5);
      ac.abort();
      expect(await long).toEqual(withCode('ECANCELED'));
    });

    it('does not fire a sleep longer than the platform timer limit early', async () => {
      const clock = make();
      const ac = new AbortController();
      let fired = false;
      const long = outcome(clock.sleep(2 ** 32, ac.signal).then(() => void (fired = true)));
      await clock.sleep(20);
      expect(fired).toBe(false);
      ac.abort();
      expect(await long).toEqual(withCode('ECANCELED'));
    });

    it('stops listening on the signal once a sleep resolves', async () => {
      const clock = make();
      const ac = new AbortController();
      for (let i = 0; i < 20; i++) await clock.sleep(0, ac.signal);
      expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    });

    it('does not disturb other sleeps when one is aborted', async () => {
      const clock = make();
      const ac = new AbortController();
      const aborted = outcome(clock.sleep(5, ac.signal));
      const other = outcome(clock.sleep(5));
      ac.abort();
      expect(await aborted).toEqual(withCode('ECANCELED'));
      expect(await other).toBe('resolved');
    });

    it('rejects a negative or non-finite duration with EINVAL', async () => {
      const clock = make();
      for (const ms of [-1, -0.5, NaN, Infinity, -Infinity]) {
        await expect(sleepCalled(clock, ms), String(ms)).rejects.toEqual(withCode('EINVAL'));
      }
    });

    it('reports wallMs as plausible epoch milliseconds', () => {
      const clock = make();
      const wall = clock.wallMs();
      expect(Number.isInteger(wall)).toBe(true);
      expect(wall).toBeGreaterThan(Date.UTC(2020, 0, 1));
      expect(wall).toBeLessThan(Date.UTC(2200, 0, 1));
    });
  });
}
