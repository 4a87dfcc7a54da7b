// Fletcher-4 as ZFS defines it: four 64-bit accumulators a, b, c, d over the input read as 32-bit
// little-endian words (a += w; b += a; c += b; d += c), each wrapping exactly at 2^64. The digest
// is the four accumulators as 64-bit little-endian words (32 bytes).
//
// The loop runs in a small hand-assembled WebAssembly module (i64 arithmetic wraps natively); JS
// copies the input through the module's memory in bounded chunks. A trailing 1-3 bytes are padded
// with zeros to a full word, so fletcher4(x) equals any incremental split of x.
//
// The accumulators after a run of n words are linear in the accumulators before it, so a run
// whose own fletcher-4 is known can be taken in without reading it (Fletcher4.append): the send
// stream's running checksum takes each block this way, its checksum already computed for it.
//
// Used for block pointer checksums (engine) and the running stream checksum (sync).

import { assert } from './assert.js';
import { limits } from './limits.js';

export const FLETCHER4_DIGEST_BYTES = 32;

const STATE_OFFSET = 0;
const DATA_OFFSET = 64;

// --- the WebAssembly module -------------------------------------------------------------------
// export "f4"(ptr: i32, len: i32): folds the words in [ptr, ptr+len) into the state at memory[0..32).
// len is a multiple of 4. The main loop takes 16 bytes per turn.

const op = {
  block: 0x02, loop: 0x03, br: 0x0c, brIf: 0x0d, end: 0x0b, void: 0x40,
  localGet: 0x20, localSet: 0x21, localTee: 0x22,
  i32Const: 0x41, i32Add: 0x6a, i32And: 0x71, i32GeU: 0x4f,
  i64Load: 0x29, i64Load32U: 0x35, i64Store: 0x37, i64Add: 0x7c,
} as const;

const P = 0, LEN = 1, A = 2, B = 3, C = 4, D = 5, END = 6, END16 = 7;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

function foldWord(offset: number): number[] {
  return [
    op.localGet, A, op.localGet, P, op.i64Load32U, 2, ...uleb(offset), op.i64Add, op.localTee, A,
    op.localGet, B, op.i64Add, op.localTee, B,
    op.localGet, C, op.i64Add, op.localTee, C,
    op.localGet, D, op.i64Add, op.localSet, D,
  ];
}

function advance(bytes: number): number[] {
  return [op.localGet, P, op.i32Const, ...sleb(bytes), op.i32Add, op.localSet, P];
}

function loopUntil(limitLocal: number, body: number[]): number[] {
  return [
    op.block, op.void, op.loop, op.void,
    op.localGet, P, op.localGet, limitLocal, op.i32GeU, op.brIf, 1,
    ...body,
    op.br, 0, op.end, op.end,
  ];
}

function moduleBytes(): Uint8Array {
  const accs = [A, B, C, D];
  const code = [
    ...accs.flatMap((acc, i) => [op.i32Const, 0, op.i64Load, 3, ...uleb(STATE_OFFSET + 8 * i), op.localSet, acc]),
    op.localGet, P, op.localGet, LEN, op.i32Add, op.localSet, END,
    op.localGet, P, op.localGet, LEN, op.i32Const, ...sleb(-16), op.i32And, op.i32Add, op.localSet, END16,
    ...loopUntil(END16, [...foldWord(0), ...foldWord(4), ...foldWord(8), ...foldWord(12), ...advance(16)]),
    ...loopUntil(END, [...foldWord(0), ...advance(4)]),
    ...accs.flatMap((acc, i) => [op.i32Const, 0, op.localGet, acc, op.i64Store, 3, ...uleb(STATE_OFFSET + 8 * i)]),
    op.end,
  ];
  const body = [2, 4, 0x7e, 2, 0x7f, ...code]; // locals: 4 x i64, 2 x i32
  const pages = Math.ceil((DATA_OFFSET + limits.fletcherChunkBytes) / 65536);
  const section = (id: number, content: number[]): number[] => [id, ...uleb(content.length), ...content];
  const name = (s: string): number[] => [...uleb(s.length), ...Array.from(s, (ch) => ch.charCodeAt(0))];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 2, 0x7f, 0x7f, 0]),
    ...section(3, [1, 0]),
    ...section(5, [1, 0, ...uleb(pages)]),
    ...section(7, [2, ...name('f4'), 0, 0, ...name('mem'), 2, 0]),
    ...section(10, [1, ...uleb(body.length), ...body]),
  ]);
}

const instance = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes()));
const kernel = instance.exports['f4'] as (ptr: number, len: number) => void;
const memory = new Uint8Array((instance.exports['mem'] as WebAssembly.Memory).buffer);

// --- the JS side --------------------------------------------------------------------------------

/** Incremental fletcher-4: update() any number of times with any split, then digest(). */
export class Fletcher4 {
  private readonly state = new Uint8Array(FLETCHER4_DIGEST_BYTES);
  private readonly tail = new Uint8Array(4);
  private tailBytes = 0;
  private finished = false;

  update(data: Uint8Array): this {
    assert(!this.finished, 'fletcher4: update after digest');
    let pos = 0;
    if (this.tailBytes > 0) {
      const take = Math.min(4 - this.tailBytes, data.length);
      this.tail.set(data.subarray(0, take), this.tailBytes);
      this.tailBytes += take;
      pos = take;
      if (this.tailBytes < 4) return this;
      this.fold(this.tail);
      this.tailBytes = 0;
    }
    const aligned = pos + ((data.length - pos) & ~3);
    this.fold(data.subarray(pos, aligned));
    this.tail.set(data.subarray(aligned), 0);
    this.tailBytes = data.length - aligned;
    return this;
  }

  /** Pads a trailing 1-3 bytes with zeros to a full word, so that what follows starts a word. */
  pad(): this {
    assert(!this.finished, 'fletcher4: pad after digest');
    if (this.tailBytes > 0) {
      this.tail.fill(0, this.tailBytes);
      this.fold(this.tail);
      this.tailBytes = 0;
    }
    return this;
  }

  /**
   * pad(), then `byteLength` bytes whose own fletcher-4 is `digest`, without the bytes: the same
   * state as pad().update(bytes).pad(). With (a, b, c, d) the state before and n the run's words,
   * the state after is a + a', b + n a + b', c + n b + T2 a + c', d + n c + T2 b + T3 a + d', where
   * (a', b', c', d') is `digest`, T2 = n(n+1)/2 and T3 = n(n+1)(n+2)/6, all modulo 2^64.
   */
  append(digest: Uint8Array, byteLength: number): this {
    assert(digest.length === FLETCHER4_DIGEST_BYTES && Number.isSafeInteger(byteLength) && byteLength >= 0);
    this.pad();
    const n = BigInt(Math.ceil(byteLength / 4));
    const t2 = (n * (n + 1n)) / 2n;
    const t3 = (n * (n + 1n) * (n + 2n)) / 6n;
    const s = new DataView(this.state.buffer);
    const r = new DataView(digest.buffer, digest.byteOffset, FLETCHER4_DIGEST_BYTES);
    const [a, b, c, d] = [0, 8, 16, 24].map((at) => s.getBigUint64(at, true)) as [bigint, bigint, bigint, bigint];
    const [a2, b2, c2, d2] = [0, 8, 16, 24].map((at) => r.getBigUint64(at, true)) as [bigint, bigint, bigint, bigint];
    // setBigUint64 keeps the low 64 bits: the wrap at 2^64.
    s.setBigUint64(0, a + a2, true);
    s.setBigUint64(8, b + n * a + b2, true);
    s.setBigUint64(16, c + n * b + t2 * a + c2, true);
    s.setBigUint64(24, d + n * c + t2 * b + t3 * a + d2, true);
    return this;
  }

  /** The 32-byte digest; the hasher is finished afterwards. */
  digest(): Uint8Array {
    assert(!this.finished, 'fletcher4: digest twice');
    this.pad();
    this.finished = true;
    return this.state.slice();
  }

  private fold(words: Uint8Array): void {
    assert(words.length % 4 === 0);
    if (words.length === 0) return;
    memory.set(this.state, STATE_OFFSET);
    for (let pos = 0; pos < words.length; pos += limits.fletcherChunkBytes) {
      const chunk = words.subarray(pos, pos + limits.fletcherChunkBytes);
      memory.set(chunk, DATA_OFFSET);
      kernel(DATA_OFFSET, chunk.length);
    }
    this.state.set(memory.subarray(STATE_OFFSET, STATE_OFFSET + FLETCHER4_DIGEST_BYTES));
  }
}

export function fletcher4(data: Uint8Array): Uint8Array {
  return new Fletcher4().update(data).digest();
}
