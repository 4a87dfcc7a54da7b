import { describe, expect, it } from 'vitest';
import { Gate } from './gate.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('Gate', () => {
  it('lets shared holders in together and keeps an exclusive holder alone', async () => {
    const gate = new Gate();
    const log: string[] = [];
    let releaseA = (): void => undefined;
    const a = gate.withShared(() => new Promise<void>((r) => { log.push('a+'); releaseA = () => { log.push('a-'); r(); }; }));
    const b = gate.withShared(async () => { log.push('b'); });
    await tick();
    const x = gate.withExclusive(async () => { log.push('x'); });
    const c = gate.withShared(async () => { log.push('c'); });
    await tick();
    expect(log).toEqual(['a+', 'b']);
    releaseA();
    await Promise.all([a, b, x, c]);
    expect(log).toEqual(['a+', 'b', 'a-', 'x', 'c']);
  });

  it('releases the gate when the holder throws', async () => {
    const gate = new Gate();
    await expect(gate.withExclusive(async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    await expect(gate.withShared(async () => 7)).resolves.toBe(7);
  });
});
