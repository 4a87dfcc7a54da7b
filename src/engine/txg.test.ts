// TxgManager on its own: a sync function the test finishes by hand, dirty bytes the test sets.
// The throttle is what these pin down: past the dirty limit, assign() waits for the txg already
// syncing when there is one, not for a sync of the open txg behind it.

import { describe, expect, it } from 'vitest';
import { SimClock, idle } from '../lib/index.js';
import { TxgManager } from './txg.js';
import { type Txg, txg } from './types.js';

const MAX = 100;

/** A manager whose syncs wait for `finish(t)`; dirty bytes per txg are set with `dirty`. */
function harness() {
  const dirty = new Map<Txg, number>();
  const finishers = new Map<Txg, () => void>();
  const started: Txg[] = [];
  const m = new TxgManager({
    firstTxg: txg(1),
    clock: new SimClock(),
    syncTxg: (t) => {
      started.push(t);
      return new Promise<void>((resolve) => finishers.set(t, () => (dirty.delete(t), resolve())));
    },
    dirtyBytes: (t) => (t === undefined ? [...dirty.values()].reduce((a, b) => a + b, 0) : (dirty.get(t) ?? 0)),
    dirtyMaxBytes: MAX,
    dirtySyncBytes: MAX / 4,
    timeoutMs: 0,
  });
  const finish = (t: number): void => {
    const f = finishers.get(txg(t));
    if (f === undefined) throw new Error(`txg ${t} is not syncing`);
    f();
  };
  return { m, dirty, started, finish };
}

describe('TxgManager throttle', () => {
  it('a writer over the limit resumes when the syncing txg lands, while the open txg keeps filling', async () => {
    const { m, dirty, started, finish } = harness();
    const tx1 = await m.assign();
    dirty.set(tx1.txg, 60);
    tx1.commit();
    const kicker = await m.assign(); // txg 1 is past dirtySyncBytes: this assign kicks its sync
    expect(kicker.txg).toBe(1);
    kicker.commit();
    await idle();
    expect(started).toEqual([1]);
    const tx2 = await m.assign();
    expect(tx2.txg).toBe(2);
    dirty.set(tx2.txg, 60);
    tx2.commit();
    let resumed = false;
    const waiting = m.assign().then((tx) => ((resumed = true), tx));
    await idle();
    expect(resumed).toBe(false); // 120 bytes dirty: over the limit
    finish(1);
    const tx3 = await waiting;
    // Resumed in txg 2 with txg 2 not synced: the writer did not wait for it.
    expect(tx3.txg).toBe(2);
    expect(m.lastSyncedTxg).toBe(1);
    expect(m.stats.throttledAssigns).toBe(1);
    tx3.commit();
    await idle();
    expect(started).toEqual([1, 2]); // the kick of txg 2 (past dirtySyncBytes), once tx3 let go
    finish(2);
    await idle();
    expect(m.lastSyncedTxg).toBe(2);
  });

  it('with nothing syncing, a writer over the limit syncs the open txg and waits for it', async () => {
    const { m, dirty, started, finish } = harness();
    const tx1 = await m.assign();
    tx1.commit();
    dirty.set(txg(1), MAX + 1); // over the limit before any kick: nothing is syncing
    let resumed = false;
    const waiting = m.assign().then((tx) => ((resumed = true), tx));
    await idle();
    expect(started).toEqual([1]);
    expect(resumed).toBe(false);
    finish(1);
    const tx2 = await waiting;
    expect(tx2.txg).toBe(2);
    expect(m.lastSyncedTxg).toBe(1);
    tx2.commit();
  });

  it('a failed sync fails the waiting writer with the pool suspended', async () => {
    const dirty = new Map<Txg, number>([[txg(1), MAX + 1]]);
    const m = new TxgManager({
      firstTxg: txg(1),
      clock: new SimClock(),
      syncTxg: () => Promise.reject(new Error('disk gone')),
      dirtyBytes: () => [...dirty.values()].reduce((a, b) => a + b, 0),
      dirtyMaxBytes: MAX,
      dirtySyncBytes: MAX / 4,
      timeoutMs: 0,
    });
    await expect(m.assign()).rejects.toThrow(/pool suspended: txg 1 failed to sync/);
    expect(m.failed()).toBe(true);
  });
});
