// The Clock interface: the only way the core reads time or waits. SystemClock uses the process's
// monotonic clock and real timers; SimClock is simulated time that moves only when told to (or,
// with autoAdvance, whenever the process has nothing else to run), so a whole cluster replays
// exactly from one seed. clock.contract.ts runs one suite against both.
//
// Rules: nowMs() never decreases; sleep(ms) resolves no earlier than nowMs() + ms and timers due
// at the same time resolve in the order they were set; an aborted sleep rejects ECANCELED;
// a negative or non-finite ms is EINVAL.

import { assert } from './assert.js';
import { mpError } from './errors.js';

export interface Clock {
  /** Monotonic milliseconds from an arbitrary origin. */
  nowMs(): number;
  /** Milliseconds since the Unix epoch, for times shown to people (snapshot creation). */
  wallMs(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Longest delay setTimeout honours. */
const TIMER_MS_MAX = 0x7fff_ffff;

function checkMs(ms: number): void {
  if (!Number.isFinite(ms) || ms < 0) throw mpError('EINVAL', `sleep duration must be >= 0 ms, got ${ms}`, { ms });
}

function canceled(): Error {
  return mpError('ECANCELED', 'sleep was canceled');
}

export class SystemClock implements Clock {
  nowMs(): number {
    return performance.now();
  }

  wallMs(): number {
    return Date.now();
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    checkMs(ms);
    if (signal?.aborted) return Promise.reject(canceled());
    const dueMs = performance.now() + ms;
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(canceled());
      };
      // Node's timers run on a whole-millisecond loop clock and may fire up to 1 ms before
      // performance.now() reaches the deadline, and a delay over 2^31 - 1 ms fires at once:
      // re-arm until the deadline has really passed.
      const onTimer = (): void => {
        const leftMs = dueMs - performance.now();
        if (leftMs > 0) {
          timer = setTimeout(onTimer, Math.min(Math.ceil(leftMs), TIMER_MS_MAX));
          return;
        }
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      let timer = setTimeout(onTimer, Math.min(ms, TIMER_MS_MAX));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

interface SimTimer {
  readonly atMs: number;
  readonly seq: number;
  readonly fire: () => void;
  canceled: boolean;
}

export interface SimClockOptions {
  /** Wall-clock time at simulated 0 ms. */
  wallStartMs?: number;
  /** Jump to the next timer whenever the event loop is otherwise idle. */
  autoAdvance?: boolean;
}

export class SimClock implements Clock {
  private now = 0;
  private seq = 0;
  private readonly timers: SimTimer[] = [];
  private readonly wallStartMs: number;
  private readonly autoAdvance: boolean;
  private pumpScheduled = false;

  constructor(options: SimClockOptions = {}) {
    this.wallStartMs = options.wallStartMs ?? 1_767_225_600_000; // 2026-01-01T00:00:00Z
    this.autoAdvance = options.autoAdvance ?? false;
  }

  nowMs(): number {
    return this.now;
  }

  wallMs(): number {
    return this.wallStartMs + Math.floor(this.now);
  }

  /** Timers not yet fired. */
  pendingTimers(): number {
    return this.timers.filter((t) => !t.canceled).length;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    checkMs(ms);
    if (signal?.aborted) return Promise.reject(canceled());
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        if (timer.canceled) return;
        timer.canceled = true;
        reject(canceled());
      };
      // A fired timer lets go of the signal, which may be long-lived (a shutdown signal).
      const fire = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const timer: SimTimer = { atMs: this.now + ms, seq: this.seq++, fire, canceled: false };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.insert(timer);
      this.schedulePump();
    });
  }

  /** Moves time forward by `ms`, firing due timers in order and letting each one's work run. */
  async advance(ms: number): Promise<void> {
    checkMs(ms);
    const target = this.now + ms;
    for (;;) {
      const next = this.timers[0];
      if (next === undefined || next.atMs > target) break;
      await this.fireNext();
    }
    this.now = target;
  }

  /** Fires every timer, moving time as far as needed; returns when none is left. */
  async runAll(maxTimers = 1_000_000): Promise<void> {
    for (let i = 0; this.timers.length > 0; i++) {
      assert(i < maxTimers, 'SimClock.runAll: timers keep being set');
      await this.fireNext();
    }
  }

  private async fireNext(): Promise<void> {
    const timer = this.timers.shift();
    assert(timer !== undefined);
    assert(timer.atMs >= this.now, 'SimClock: timer in the past');
    this.now = timer.atMs;
    if (!timer.canceled) {
      timer.canceled = true;
      timer.fire();
    }
    await idle();
  }

  private insert(timer: SimTimer): void {
    let i = this.timers.length;
    while (i > 0) {
      const prev = this.timers[i - 1];
      assert(prev !== undefined);
      if (prev.atMs <= timer.atMs) break;
      i--;
    }
    this.timers.splice(i, 0, timer);
  }

  private schedulePump(): void {
    if (!this.autoAdvance || this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      if (this.timers.length === 0) return;
      void this.fireNext().then(() => this.schedulePump());
    });
  }
}

/** Resolves once every queued microtask (and any they queue) has run. */
export function idle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
