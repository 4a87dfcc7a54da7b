import { describe, expect, it } from 'vitest';
import { AssertionFailure } from './assert.js';
import { SimClock, idle } from './clock.js';
import { diskContract } from './disk.contract.js';
import type { ErrorCode } from './errors.js';
import { limits } from './limits.js';
import { Prng } from './prng.js';
import { type DiskFaultRule, SimDisk, type SimDiskOptions } from './sim-disk.js';

/** Matches a MirrorpoolError with `code` (typed as Error so toThrow takes it). */
const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;

const SECTOR = limits.sectorBytes;
const SIZE = 64 * SECTOR;

diskContract('SimDisk', async (sizeBytes) => ({
  disk: new SimDisk({ sizeBytes, random: new Prng(0x51d15c) }),
  cleanup: async () => {},
}));

function pattern(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  new Prng(seed).fill(out);
  return out;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function simDisk(options: Partial<SimDiskOptions> = {}): SimDisk {
  return new SimDisk({ sizeBytes: SIZE, random: new Prng(1), ...options });
}

/** A disk holding pattern(seed) everywhere, synced. */
async function syncedDisk(seed: number, options: Partial<SimDiskOptions> = {}): Promise<{ disk: SimDisk; old: Uint8Array }> {
  const disk = simDisk(options);
  const old = pattern(seed, SIZE);
  await disk.write(0, old);
  await disk.sync();
  return { disk, old };
}

/** Settles to 'resolved', 'pending' (after a few event-loop turns) or the error. */
function watch(p: Promise<unknown>): () => unknown {
  let state: unknown = 'pending';
  p.then(
    () => void (state = 'resolved'),
    (e: unknown) => void (state = e),
  );
  return () => state;
}

describe('SimDisk crashes', () => {
  it('keeps synced writes through crash(drop)', async () => {
    const disk = simDisk();
    const data = pattern(2, 4 * SECTOR);
    await disk.write(8 * SECTOR, data);
    await disk.sync();
    expect(disk.unsyncedWrites()).toBe(0);
    expect(disk.crash('drop')).toEqual({ kept: 0, dropped: 0, torn: 0 });
    expect(hex(await disk.read(8 * SECTOR, 4 * SECTOR))).toBe(hex(data));
  });

  it('keeps a durable write through crash(drop) while other unsynced writes are lost', async () => {
    const disk = simDisk();
    const old = pattern(5, 2 * SECTOR);
    await disk.write(0, old); // unsynced, overlapping the durable write: lands first or never
    const other = pattern(6, SECTOR);
    await disk.write(20 * SECTOR, other);
    const data = pattern(7, SECTOR);
    await disk.writeDurable(SECTOR, data);
    disk.crash('drop');
    expect(hex(await disk.read(SECTOR, SECTOR))).toBe(hex(data));
    expect(hex(await disk.read(0, SECTOR))).toBe(hex(old.subarray(0, SECTOR)));
    expect(hex(await disk.read(20 * SECTOR, SECTOR))).toBe(hex(new Uint8Array(SECTOR)));
  });

  it('loses unsynced writes in crash(drop) and keeps them in crash(keep)', async () => {
    for (const mode of ['drop', 'keep'] as const) {
      const { disk, old } = await syncedDisk(3);
      const data = pattern(4, 2 * SECTOR);
      await disk.write(0, data);
      await disk.write(10 * SECTOR, data);
      expect(disk.unsyncedWrites()).toBe(2);
      const report = disk.crash(mode);
      expect(report).toEqual(mode === 'drop' ? { kept: 0, dropped: 2, torn: 0 } : { kept: 2, dropped: 0, torn: 0 });
      expect(disk.unsyncedWrites()).toBe(0);
      const expected = old.slice();
      if (mode === 'keep') {
        expected.set(data, 0);
        expected.set(data, 10 * SECTOR);
      }
      expect(hex(await disk.read(0, SIZE)), mode).toBe(hex(expected));
      expect(hex(disk.durableBytes(0, SIZE)), mode).toBe(hex(expected));
    }
  });

  it('tears a multi-sector write so each sector is either old or new, the same way for the same seed', async () => {
    async function tornOutcome(seed: number): Promise<string> {
      const { disk, old } = await syncedDisk(5, { random: new Prng(seed) });
      const fresh = pattern(6, 32 * SECTOR);
      await disk.write(16 * SECTOR, fresh);
      expect(disk.crash('tear')).toEqual({ kept: 0, dropped: 0, torn: 1 });
      const after = await disk.read(0, SIZE);
      let outcome = '';
      for (let s = 0; s < SIZE / SECTOR; s++) {
        const got = hex(after.subarray(s * SECTOR, (s + 1) * SECTOR));
        const was = hex(old.subarray(s * SECTOR, (s + 1) * SECTOR));
        const inWrite = s >= 16 && s < 48;
        const now = inWrite ? hex(fresh.subarray((s - 16) * SECTOR, (s - 15) * SECTOR)) : was;
        expect(got === was || got === now, `seed ${seed} sector ${s}`).toBe(true);
        if (inWrite) outcome += got === now ? 'N' : 'o';
      }
      return outcome;
    }
    const outcomes = new Set<string>();
    for (const seed of [1, 2, 3, 4]) {
      const first = await tornOutcome(seed);
      expect(await tornOutcome(seed), `seed ${seed}`).toBe(first);
      outcomes.add(first);
    }
    // Different seeds tear differently, and a tear is really partial.
    expect(outcomes.size).toBeGreaterThan(1);
    expect([...outcomes].some((o) => o.includes('N') && o.includes('o'))).toBe(true);
  });

  it('accounts for every unsynced write in the report of crash(random)', async () => {
    for (let seed = 0; seed < 20; seed++) {
      const disk = simDisk({ random: new Prng(seed) });
      const count = 1 + (seed % 7);
      for (let i = 0; i < count; i++) await disk.write(i * 2 * SECTOR, pattern(seed * 10 + i, 2 * SECTOR));
      const report = disk.crash('random');
      expect(report.kept + report.dropped + report.torn, `seed ${seed}`).toBe(count);
      expect(disk.unsyncedWrites()).toBe(0);
    }
  });

  it('makes durable only the writes that resolved before sync began', async () => {
    const disk = simDisk();
    const early = pattern(7, SECTOR);
    const late = pattern(8, SECTOR);
    await disk.write(0, early);
    const lateWrite = disk.write(SECTOR, late); // still in flight when sync begins
    const sync = disk.sync();
    await Promise.all([lateWrite, sync]);
    expect(disk.unsyncedWrites()).toBe(1);
    disk.crash('drop');
    expect(hex(await disk.read(0, SECTOR))).toBe(hex(early));
    expect(hex(await disk.read(SECTOR, SECTOR))).toBe(hex(new Uint8Array(SECTOR)));
  });

  it('does not make durable a write that resolves while a slow sync runs', async () => {
    const clock = new SimClock();
    const disk = simDisk({ clock, latencyMs: { write: 5, sync: 10 } });
    const data = pattern(9, SECTOR);
    const sync = disk.sync();
    const write = disk.write(0, data);
    await clock.advance(5);
    await write;
    await clock.advance(5);
    await sync;
    disk.crash('drop');
    expect(hex(await disk.read(0, SECTOR))).toBe(hex(new Uint8Array(SECTOR)));
  });

  it('keeps a resize volatile until sync', async () => {
    const { disk, old } = await syncedDisk(10);
    await disk.resize(2 * SIZE);
    disk.crash('drop');
    expect(disk.size()).toBe(SIZE);
    await disk.resize(SIZE / 2);
    disk.crash('drop');
    expect(disk.size()).toBe(SIZE);
    expect(hex(await disk.read(0, SIZE))).toBe(hex(old));
    await disk.resize(SIZE / 2);
    await disk.sync();
    disk.crash('drop');
    expect(disk.size()).toBe(SIZE / 2);
    expect(hex(await disk.read(0, SIZE / 2))).toBe(hex(old.subarray(0, SIZE / 2)));
  });

  it('replays a resize and the writes after it in order', async () => {
    const disk = simDisk();
    const tail = pattern(11, SECTOR);
    await disk.resize(2 * SIZE);
    await disk.write(2 * SIZE - SECTOR, tail);
    disk.crash('keep');
    expect(disk.size()).toBe(2 * SIZE);
    expect(hex(await disk.read(2 * SIZE - SECTOR, SECTOR))).toBe(hex(tail));
  });

  it('is usable again after a crash, even when it was closed', async () => {
    const disk = simDisk();
    await disk.close();
    disk.crash('drop');
    await disk.write(0, pattern(12, SECTOR));
    expect(hex(await disk.read(0, SECTOR))).toBe(hex(pattern(12, SECTOR)));
  });

  it('fails an assertion when used after close, until reopened', async () => {
    const disk = simDisk();
    await disk.close();
    await expect(disk.read(0, SECTOR)).rejects.toBeInstanceOf(AssertionFailure);
    disk.reopen();
    expect((await disk.read(0, SECTOR)).length).toBe(SECTOR);
  });
});

describe('SimDisk faults', () => {
  const range: readonly [number, number] = [8 * SECTOR, 16 * SECTOR];

  it('fails reads with EIO only where they overlap the fault range', async () => {
    const { disk, old } = await syncedDisk(13);
    disk.injectFault({ op: 'read', effect: { kind: 'eio' }, range });
    await expect(disk.read(8 * SECTOR, SECTOR)).rejects.toEqual(withCode('EIO'));
    await expect(disk.read(15 * SECTOR, SECTOR)).rejects.toEqual(withCode('EIO'));
    await expect(disk.read(7 * SECTOR, 2 * SECTOR)).rejects.toEqual(withCode('EIO'));
    await expect(disk.read(0, SIZE)).rejects.toEqual(withCode('EIO'));
    expect(hex(await disk.read(0, 8 * SECTOR))).toBe(hex(old.subarray(0, 8 * SECTOR)));
    expect(hex(await disk.read(16 * SECTOR, SECTOR))).toBe(hex(old.subarray(16 * SECTOR, 17 * SECTOR)));
    await disk.write(8 * SECTOR, pattern(14, SECTOR));
  });

  it('fails writes with EIO only where they overlap the fault range, landing nothing', async () => {
    const { disk, old } = await syncedDisk(15);
    const rule = disk.injectFault({ op: 'write', effect: { kind: 'eio' }, range });
    await expect(disk.write(10 * SECTOR, pattern(16, SECTOR))).rejects.toEqual(withCode('EIO'));
    await expect(disk.write(6 * SECTOR, pattern(16, 4 * SECTOR))).rejects.toEqual(withCode('EIO'));
    expect(disk.unsyncedWrites()).toBe(0);
    const outside = pattern(17, SECTOR);
    await disk.write(16 * SECTOR, outside);
    rule.remove();
    const expected = old.slice();
    expected.set(outside, 16 * SECTOR);
    expect(hex(await disk.read(0, SIZE))).toBe(hex(expected));
    await disk.write(10 * SECTOR, outside);
  });

  it('fails a sync with EIO and makes nothing durable', async () => {
    const disk = simDisk();
    disk.injectFault({ op: 'sync', effect: { kind: 'eio' }, times: 1 });
    await disk.write(0, pattern(18, SECTOR));
    await expect(disk.sync()).rejects.toEqual(withCode('EIO'));
    expect(disk.unsyncedWrites()).toBe(1);
    await disk.sync();
    expect(disk.unsyncedWrites()).toBe(0);
  });

  it('retires a rule after it has hit `times` I/Os', async () => {
    const disk = simDisk();
    const rule: DiskFaultRule = { op: 'read', effect: { kind: 'eio' }, times: 2 };
    disk.injectFault(rule);
    await expect(disk.read(0, SECTOR)).rejects.toEqual(withCode('EIO'));
    await expect(disk.read(0, SECTOR)).rejects.toEqual(withCode('EIO'));
    expect((await disk.read(0, SECTOR)).length).toBe(SECTOR);
    expect((await disk.read(0, SECTOR)).length).toBe(SECTOR);
    expect(disk.stats.faults).toBe(2);
    expect(rule.times).toBe(2);
  });

  it('never fires a rule of probability 0', async () => {
    const disk = simDisk();
    disk.injectFault({ op: 'read', effect: { kind: 'eio' }, probability: 0 });
    disk.injectFault({ op: 'write', effect: { kind: 'eio' }, probability: 0 });
    for (let i = 0; i < 200; i++) {
      await disk.write((i % 64) * SECTOR, pattern(i, SECTOR));
      await disk.read((i % 64) * SECTOR, SECTOR);
    }
    expect(disk.stats.faults).toBe(0);
  });

  it('fires a rule of probability one half on some I/Os and not others', async () => {
    const disk = simDisk({ random: new Prng(19) });
    disk.injectFault({ op: 'read', effect: { kind: 'eio' }, probability: 0.5 });
    const results = await Promise.all(Array.from({ length: 200 }, () => disk.read(0, SECTOR).then(() => 'ok', () => 'eio')));
    const failures = results.filter((r) => r === 'eio').length;
    expect(failures).toBeGreaterThan(50);
    expect(failures).toBeLessThan(150);
  });

  it('fails a write with ENOSPC, landing nothing', async () => {
    const { disk, old } = await syncedDisk(20);
    disk.injectFault({ op: 'write', effect: { kind: 'enospc' } });
    await expect(disk.write(0, pattern(21, SECTOR))).rejects.toEqual(withCode('ENOSPC'));
    disk.clearFaults();
    expect(hex(await disk.read(0, SIZE))).toBe(hex(old));
  });

  it('loses a write that resolves as if it had landed', async () => {
    const { disk, old } = await syncedDisk(22);
    disk.injectFault({ op: 'write', effect: { kind: 'lost' }, times: 1 });
    await disk.write(4 * SECTOR, pattern(23, 2 * SECTOR));
    expect(hex(await disk.read(0, SIZE))).toBe(hex(old));
    await disk.sync();
    disk.crash('keep');
    expect(hex(await disk.read(0, SIZE))).toBe(hex(old));
  });

  it('lands a misdirected write shifted, leaving its target alone', async () => {
    const { disk, old } = await syncedDisk(24);
    disk.injectFault({ op: 'write', effect: { kind: 'misdirect', shiftBytes: 3 * SECTOR }, times: 1 });
    const data = pattern(25, 2 * SECTOR);
    await disk.write(4 * SECTOR, data);
    const expected = old.slice();
    expected.set(data, 7 * SECTOR);
    expect(hex(await disk.read(0, SIZE))).toBe(hex(expected));
    await disk.sync();
    disk.crash('drop');
    expect(hex(await disk.read(0, SIZE))).toBe(hex(expected));
  });

  it('drops a write misdirected off the end of the device', async () => {
    const { disk, old } = await syncedDisk(26);
    disk.injectFault({ op: 'write', effect: { kind: 'misdirect', shiftBytes: SIZE } });
    await disk.write(0, pattern(27, SECTOR));
    expect(hex(await disk.read(0, SIZE))).toBe(hex(old));
  });

  it('flips exactly one bit of a read, leaving the data at rest alone', async () => {
    const { disk, old } = await syncedDisk(28);
    disk.injectFault({ op: 'read', effect: { kind: 'flip' }, times: 1 });
    const flipped = await disk.read(2 * SECTOR, 4 * SECTOR);
    const original = old.subarray(2 * SECTOR, 6 * SECTOR);
    let differingBits = 0;
    for (let i = 0; i < flipped.length; i++) {
      let x = flipped[i]! ^ original[i]!;
      for (; x !== 0; x &= x - 1) differingBits++;
    }
    expect(differingBits).toBe(1);
    expect(hex(await disk.read(0, SIZE))).toBe(hex(old));
  });

  it('returns an empty read unchanged under a flip rule', async () => {
    const disk = simDisk();
    disk.injectFault({ op: 'read', effect: { kind: 'flip' } });
    expect((await disk.read(SECTOR, 0)).length).toBe(0);
  });

  it('keeps a bit flipped at rest through a crash', async () => {
    const { disk, old } = await syncedDisk(29);
    disk.flipBit(100, 3);
    const expected = old.slice();
    expected[100] = expected[100]! ^ 8;
    expect(hex(await disk.read(0, SIZE))).toBe(hex(expected));
    disk.crash('drop');
    expect(hex(await disk.read(0, SIZE))).toBe(hex(expected));
    expect(() => disk.flipBit(SIZE, 0)).toThrow(AssertionFailure);
    expect(() => disk.flipBit(0, 8)).toThrow(AssertionFailure);
  });

  it('rejects a fault that does not fit its operation with EINVAL', () => {
    const disk = simDisk();
    const misfits: DiskFaultRule[] = [
      { op: 'read', effect: { kind: 'enospc' } },
      { op: 'read', effect: { kind: 'lost' } },
      { op: 'read', effect: { kind: 'misdirect', shiftBytes: SECTOR } },
      { op: 'write', effect: { kind: 'flip' } },
      { op: 'sync', effect: { kind: 'flip' } },
      { op: 'sync', effect: { kind: 'enospc' } },
    ];
    for (const rule of misfits) expect(() => disk.injectFault(rule), `${rule.op}+${rule.effect.kind}`).toThrow(withCode('EINVAL'));
    for (const probability of [-0.1, 1.5, NaN]) {
      expect(() => disk.injectFault({ op: 'read', effect: { kind: 'eio' }, probability })).toThrow(withCode('EINVAL'));
    }
  });

  it('stops firing a rule once it is removed', async () => {
    const disk = simDisk();
    const rule = disk.injectFault({ op: 'read', effect: { kind: 'eio' } });
    await expect(disk.read(0, SECTOR)).rejects.toEqual(withCode('EIO'));
    rule.remove();
    expect((await disk.read(0, SECTOR)).length).toBe(SECTOR);
  });
});

describe('SimDisk latency', () => {
  it('does not resolve a read until the clock has advanced by the read latency', async () => {
    const clock = new SimClock();
    const disk = simDisk({ clock, latencyMs: { read: 10 } });
    const state = watch(disk.read(0, SECTOR));
    for (let i = 0; i < 5; i++) await idle();
    expect(state()).toBe('pending');
    await clock.advance(9);
    expect(state()).toBe('pending');
    await clock.advance(1);
    expect(state()).toBe('resolved');
  });

  it('fails a delayed write with EIO when the disk crashes under it, and lands nothing', async () => {
    const clock = new SimClock();
    const { disk, old } = await (async () => {
      const d = simDisk({ clock, latencyMs: { write: 10 } });
      const o = pattern(30, SIZE);
      const w = d.write(0, o);
      await clock.advance(10);
      await w;
      await d.sync();
      return { disk: d, old: o };
    })();
    const state = watch(disk.write(0, pattern(31, 4 * SECTOR)));
    await clock.advance(5);
    disk.crash('keep');
    await clock.advance(5);
    expect(state()).toEqual(withCode('EIO'));
    expect(disk.unsyncedWrites()).toBe(0);
    expect(hex(await disk.read(0, SIZE))).toBe(hex(old));
  });

  it('fails a delayed read with EIO when the disk crashes under it', async () => {
    const clock = new SimClock();
    const disk = simDisk({ clock, latencyMs: { read: 10 } });
    const state = watch(disk.read(0, SECTOR));
    disk.crash('drop');
    await clock.advance(10);
    expect(state()).toEqual(withCode('EIO'));
  });

  it('refuses latency without a clock', () => {
    expect(() => simDisk({ latencyMs: { read: 1 } })).toThrow(AssertionFailure);
  });
});

describe('SimDisk sizes', () => {
  it('refuses a size over simDiskBytesMax or not whole sectors with EINVAL', () => {
    for (const sizeBytes of [limits.simDiskBytesMax + SECTOR, SECTOR + 1, -SECTOR]) {
      expect(() => simDisk({ sizeBytes }), String(sizeBytes)).toThrow(withCode('EINVAL'));
    }
  });

  it('refuses to resize over simDiskBytesMax with EINVAL', async () => {
    const disk = simDisk();
    await expect(disk.resize(limits.simDiskBytesMax + SECTOR)).rejects.toEqual(withCode('EINVAL'));
    expect(disk.size()).toBe(SIZE);
  });
});
