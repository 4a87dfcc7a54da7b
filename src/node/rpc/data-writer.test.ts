import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chunkBytesFor, maskInJs, wsHeaderBytes, writeDataMessage } from './data-writer.js';
import { encodeData } from './frames.js';

/** ws's own frame parser (the Receiver every peer runs), typed as much as these tests use it. */
interface WsReceiver {
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): void;
  on(event: 'error', listener: (e: Error) => void): void;
  write(chunk: Buffer): boolean;
}
const { Receiver } = createRequire(import.meta.url)('ws') as { Receiver: new (options: object) => WsReceiver };

/** What ws's Receiver delivers for `bytes` arriving in pieces cut at `cuts`. */
function parse(bytes: Buffer, cuts: number[], isServer: boolean): { messages: Buffer[]; errors: Error[] } {
  const receiver = new Receiver({ isServer, binaryType: 'nodebuffer', maxPayload: 0, skipUTF8Validation: true });
  const messages: Buffer[] = [];
  const errors: Error[] = [];
  receiver.on('message', (data, isBinary) => {
    expect(isBinary).toBe(true);
    messages.push(Buffer.from(data));
  });
  receiver.on('error', (e) => errors.push(e));
  let at = 0;
  for (const cut of [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b).concat(bytes.length)) {
    if (cut > at) receiver.write(bytes.subarray(at, cut));
    at = Math.max(at, cut);
  }
  return { messages, errors };
}

function pattern(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

const KEY = Uint8Array.from([0x12, 0x34, 0x56, 0x78]);

describe('DATA as websocket frames', () => {
  it('keeps its golden bytes: unmasked and masked, 7-bit and 16-bit lengths', () => {
    const out = Buffer.alloc(64);
    let n = writeDataMessage(out, 0, 0x01020304, Buffer.from('abc'), undefined);
    expect(out.subarray(0, n).toString('hex')).toBe('8208' + '0101020304' + '616263');
    n = writeDataMessage(out, 0, 7, Buffer.from('abc'), KEY);
    // Payload 01 00000007 616263 XOR 12345678 12345678...
    expect(out.subarray(0, n).toString('hex')).toBe('8288' + '12345678' + '13345678' + '1555341b');
    const big = Buffer.alloc(200 + 6 + 4 + 5);
    n = writeDataMessage(big, 0, 9, Buffer.alloc(200, 0xee), undefined);
    expect(n).toBe(4 + 5 + 200);
    expect(big.subarray(0, 9).toString('hex')).toBe('827e00cd' + '0100000009');
  });

  it('uses the 64-bit length for payloads of 64 KiB and more', () => {
    const chunk = pattern(70_000, 3);
    const out = Buffer.alloc(70_100);
    const n = writeDataMessage(out, 0, 5, chunk, undefined);
    expect(n).toBe(2 + 8 + 5 + 70_000);
    expect(out.subarray(0, 10).toString('hex')).toBe('827f' + '0000000000011175');
    const { messages } = parse(out.subarray(0, n), [7, 20_000], false);
    expect(messages).toHaveLength(1);
    expect(messages[0]!.equals(encodeData(5, chunk))).toBe(true);
  });

  it('sizes chunks so that each frame is exactly the frame size asked for', () => {
    for (const frameBytes of [1024, 16 * 1024, 64 * 1024, 128 * 1024]) {
      for (const masked of [false, true]) {
        const chunk = chunkBytesFor(frameBytes, masked);
        expect(wsHeaderBytes(5 + chunk, masked) + 5 + chunk).toBe(frameBytes);
      }
    }
  });

  it('masks in JavaScript exactly as RFC 6455 says, at any alignment', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(7), fc.uint8Array({ minLength: 4, maxLength: 4 }), (source, offset, key) => {
      const out = new Uint8Array(offset + source.length);
      maskInJs(source, key, out, offset, source.length);
      for (let i = 0; i < source.length; i++) expect(out[offset + i]).toBe(source[i]! ^ key[i & 3]!);
    }), { numRuns: 300, seed: 20261130 });
  });

  it('is read back by ws as the same DATA messages, however the bytes are cut into socket reads', () => {
    const frame = fc.record({ id: fc.integer({ min: 1, max: 0xffff_ffff }), size: fc.oneof(fc.integer({ min: 1, max: 130 }), fc.integer({ min: 1, max: 70_000 })), seed: fc.nat(255) });
    fc.assert(fc.property(fc.array(frame, { minLength: 1, maxLength: 4 }), fc.boolean(), fc.array(fc.nat(), { maxLength: 6 }), (frames, masked, cuts) => {
      const chunks = frames.map((f) => pattern(f.size, f.seed));
      const out = Buffer.alloc(chunks.reduce((sum, c) => sum + c.length + 5 + 14, 0));
      let at = 0;
      frames.forEach((f, i) => {
        const key = masked ? Uint8Array.from([f.seed, f.seed ^ 0x5a, 0xa5, f.id & 0xff]) : undefined;
        at += writeDataMessage(out, at, f.id, chunks[i]!, key);
      });
      const { messages, errors } = parse(out.subarray(0, at), cuts, masked);
      expect(errors).toEqual([]);
      expect(messages).toHaveLength(frames.length);
      // Buffer.equals: toEqual on large buffers compares byte by byte in JavaScript.
      frames.forEach((f, i) => expect(messages[i]!.equals(encodeData(f.id, chunks[i]!))).toBe(true));
    }), { numRuns: 1000, seed: 20261130 });
  });

  it('refuses an unmasked frame from a client and a masked one from a server, as ws does', async () => {
    const out = Buffer.alloc(64);
    const plain = parse(Buffer.from(out.subarray(0, writeDataMessage(out, 0, 1, Buffer.from('x'), undefined))), [], true);
    const masked = parse(Buffer.from(out.subarray(0, writeDataMessage(out, 0, 1, Buffer.from('x'), KEY))), [], false);
    // The Receiver reports errors through its stream, on a later tick.
    await new Promise((resolve) => setImmediate(resolve));
    const codes = (errors: Error[]): unknown[] => errors.map((e) => (e as { code?: unknown }).code);
    expect(plain.messages).toEqual([]);
    expect(codes(plain.errors)).toEqual(['WS_ERR_EXPECTED_MASK']);
    expect(masked.messages).toEqual([]);
    expect(codes(masked.errors)).toEqual(['WS_ERR_UNEXPECTED_MASK']);
  });
});
