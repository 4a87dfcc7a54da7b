// The deterministic workload of the kill -9 test: operation k writes pattern(k) into one of a
// few objects and records k in the progress object, in the same transaction. The state after
// operations 0..k is a pure function of k, so the parent can rebuild it and compare.
import { pattern } from '../../src/engine/test-support.js';

export const OBJECTS = 5;
/**
 * Object 1 is the dataset's key directory; object 2 is the progress object; data objects are
 * 3..OBJECTS+2 (created in this order).
 */
export const PROGRESS_OBJECT = 2;

export function operation(k: number): { object: number; offset: number; data: Uint8Array } {
  return {
    object: PROGRESS_OBJECT + 1 + (k % OBJECTS),
    offset: (k * 7919) % 1_000_000,
    data: pattern(k + 1, 1000 + ((k * 131) % 60_000)),
  };
}

/** Contents of every data object after operations 0..k (k = -1: none). */
export function stateAfter(k: number): Map<number, Uint8Array> {
  const state = new Map<number, Uint8Array>();
  for (let i = 0; i < OBJECTS; i++) state.set(PROGRESS_OBJECT + 1 + i, new Uint8Array(0));
  for (let j = 0; j <= k; j++) {
    const op = operation(j);
    const cur = state.get(op.object) ?? new Uint8Array(0);
    const next = new Uint8Array(Math.max(cur.length, op.offset + op.data.length));
    next.set(cur);
    next.set(op.data, op.offset);
    state.set(op.object, next);
  }
  return state;
}
