import { describe, expect, it } from 'vitest';
import type { ErrorCode } from '../lib/index.js';
import { MEM_OBJECT_BYTES_MAX, MemObject } from './mem-object.js';

const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;

describe('MemObject', () => {
  it('reads zeros past its size and grows on writes past the end', async () => {
    const obj = new MemObject();
    expect(obj.size()).toBe(0);
    expect([...(await obj.read(10, 4))]).toEqual([0, 0, 0, 0]);
    await obj.write(5, new Uint8Array([1, 2]));
    expect(obj.size()).toBe(7);
    expect([...(await obj.read(3, 6))]).toEqual([0, 0, 1, 2, 0, 0]);
    await obj.write(20_000, new Uint8Array([9]));
    expect(obj.size()).toBe(20_001);
    expect([...(await obj.read(6, 2))]).toEqual([2, 0]);
  });

  it('turns bytes past a shrinking truncate into zeros when it grows again', async () => {
    const obj = new MemObject(new Uint8Array([1, 2, 3, 4, 5]));
    await obj.truncate(2);
    expect(obj.size()).toBe(2);
    await obj.truncate(5);
    expect([...obj.bytes()]).toEqual([1, 2, 0, 0, 0]);
    await obj.write(4, new Uint8Array([7]));
    expect([...obj.bytes()]).toEqual([1, 2, 0, 0, 7]);
  });

  it('never aliases the buffers it is given or returns', async () => {
    const data = new Uint8Array([1, 2, 3]);
    const obj = new MemObject(data);
    data[0] = 9;
    const read = await obj.read(0, 3);
    read[1] = 9;
    const written = new Uint8Array([4]);
    await obj.write(2, written);
    written[0] = 9;
    expect([...obj.bytes()]).toEqual([1, 2, 4]);
  });

  it('counts reads and writes', async () => {
    const obj = new MemObject();
    await obj.write(0, new Uint8Array(10));
    await obj.read(0, 4);
    expect(obj.stats).toEqual({ reads: 1, writes: 1, readBytes: 4, writtenBytes: 10 });
  });

  it('rejects negative, fractional and oversized ranges with EINVAL', async () => {
    const obj = new MemObject();
    await expect(obj.read(-1, 1)).rejects.toThrow(withCode('EINVAL'));
    await expect(obj.read(0, 1.5)).rejects.toThrow(withCode('EINVAL'));
    await expect(obj.write(MEM_OBJECT_BYTES_MAX, new Uint8Array(1))).rejects.toThrow(withCode('EINVAL'));
    await expect(obj.truncate(-5)).rejects.toThrow(withCode('EINVAL'));
    expect(obj.size()).toBe(0);
  });
});
