// Always-on assertions for programmer errors. An AssertionFailure is never caught: it means the
// code is wrong, not the input. Bad input gets a MirrorpoolError instead (errors.ts).

export class AssertionFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AssertionFailure';
  }
}

export function assert(condition: unknown, message = 'assertion failed'): asserts condition {
  if (!condition) throw new AssertionFailure(message);
}

export function unreachable(value: never, message = 'unreachable'): never {
  throw new AssertionFailure(`${message}: ${String(value)}`);
}

/** Asserts `n` is a safe non-negative integer and returns it. */
export function assertUint(n: number, what = 'value'): number {
  assert(Number.isSafeInteger(n) && n >= 0, `${what} must be a non-negative safe integer, got ${n}`);
  return n;
}
