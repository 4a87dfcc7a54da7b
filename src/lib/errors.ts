// The one error class of mirrorpool and the registry of its stable codes.
// Operating errors (bad input, disk faults, peers gone) are MirrorpoolError with a code from
// ERROR_CODES; callers branch on `code`, never on `message`. Programmer errors are assertion
// failures (assert.ts) and are never caught. docs/errors.md is rendered from this registry and a
// test keeps the two identical.

export const ERROR_CODES = {
  ENOENT: 'The named thing (pool, dataset, snapshot, object, key, node) does not exist.',
  EEXIST: 'The named thing already exists.',
  EINVAL: 'An argument, name, size, offset or option is invalid; nothing was changed.',
  EBUSY: 'The resource is in use or a bound is reached (pool opened elsewhere, held snapshot, full queue); retry later.',
  ENOSPC: 'No space is left on the device, vdev or pool.',
  EIO: 'A device reported an I/O error and no good copy of the data could be read or written.',
  ECKSUM: 'Data read back failed its checksum and no good copy exists.',
  EROFS: 'The target is read-only (a snapshot, or a dataset with readonly=on).',
  ETIMEDOUT: 'An operation did not finish before its deadline.',
  ECANCELED: 'The operation was canceled by its caller or by shutdown; in the CLI, also the reader of stdout went away (a closed pipe).',
  EQUORUM: 'Not enough masters answered to form a quorum; details carry the tally.',
  ESTALE: 'The request names a state that is no longer current (an old epoch, token or guid).',
  EPROTO: 'Bytes on disk, in a stream or on the wire do not follow the format.',
  EAUTH: 'Authentication or authorisation failed.',
  ENOTSUP: 'The operation or feature is not supported by this build or this pool.',
  EXDEV: 'The operation would cross pools, datasets or clusters where that is not allowed.',
} as const satisfies Record<string, string>;

export type ErrorCode = keyof typeof ERROR_CODES;

export type ErrorDetails = Readonly<Record<string, unknown>>;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

export class MirrorpoolError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MirrorpoolError';
    this.code = code;
    this.details = details;
  }

  /** The shape that crosses the wire: never a stack. */
  toWire(): { code: ErrorCode; message: string; details: ErrorDetails } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

/** Creates a coded error; the usual way to fail at the point of failure. */
export function mpError(code: ErrorCode, message: string, details?: ErrorDetails, cause?: unknown): MirrorpoolError {
  return new MirrorpoolError(code, message, details, cause === undefined ? undefined : { cause });
}

export function hasCode(e: unknown, code: ErrorCode): e is MirrorpoolError {
  return e instanceof MirrorpoolError && e.code === code;
}

/** Renders docs/errors.md; errors.test.ts checks the committed file equals this. */
export function renderErrorsDoc(): string {
  const rows = Object.entries(ERROR_CODES).map(([code, text]) => `| \`${code}\` | ${text} |`);
  return [
    '# Error codes',
    '',
    'Every operating error in mirrorpool is a `MirrorpoolError` with one of these stable codes.',
    'Scripts and callers branch on the code, never on the message. On the command line an error',
    'prints as `mirrorpool: <CODE>: <message>` on stderr; over the wire it travels as',
    '`{code, message, details}`. Programmer errors are assertion failures and stop the process.',
    '',
    'This file is generated from `src/lib/errors.ts`',
    '(`UPDATE_DOCS=1 npx vitest run src/lib/errors.test.ts`); a test fails when the two differ.',
    '',
    '| code | meaning |',
    '| --- | --- |',
    ...rows,
    '',
  ].join('\n');
}
