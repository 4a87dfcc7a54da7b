import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, MirrorpoolError, hasCode, isErrorCode, mpError, renderErrorsDoc } from './errors.js';

const docsDir = new URL('../../docs/', import.meta.url);
const docPath = new URL('errors.md', docsDir);

describe('MirrorpoolError', () => {
  it('carries its code and details', () => {
    const e = new MirrorpoolError('ENOSPC', 'disk full', { vdev: 2 });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('MirrorpoolError');
    expect(e.code).toBe('ENOSPC');
    expect(e.details).toEqual({ vdev: 2 });
  });

  it('defaults details to an empty object', () => {
    expect(new MirrorpoolError('EIO', 'x').details).toEqual({});
  });

  it('keeps the cause given to mpError', () => {
    const cause = new Error('os said no');
    const e = mpError('EIO', 'read failed', { offset: 512 }, cause);
    expect(e.code).toBe('EIO');
    expect(e.details).toEqual({ offset: 512 });
    expect(e.cause).toBe(cause);
    expect(mpError('EIO', 'no cause').cause).toBeUndefined();
  });

  it('travels over the wire as code, message and details, never a stack', () => {
    const wire = mpError('ESTALE', 'old epoch', { epoch: 3 }, new Error('inner')).toWire();
    expect(wire).toEqual({ code: 'ESTALE', message: 'old epoch', details: { epoch: 3 } });
    expect(Object.keys(wire).sort()).toEqual(['code', 'details', 'message']);
    expect(JSON.stringify(wire)).not.toContain('stack');
    expect(JSON.stringify(wire)).not.toContain('inner');
  });
});

describe('codes', () => {
  it('recognises every registered code and nothing else', () => {
    for (const code of Object.keys(ERROR_CODES)) expect(isErrorCode(code), code).toBe(true);
    for (const other of ['EFOO', 'einval', '', 'toString', 'constructor', 42, undefined, null]) {
      expect(isErrorCode(other), String(other)).toBe(false);
    }
  });

  it('names every code like an errno and documents it', () => {
    for (const [code, text] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(/^E[A-Z]+$/);
      expect(text.length).toBeGreaterThan(10);
    }
  });

  it('tests a code with hasCode only on MirrorpoolError', () => {
    const e = mpError('EBUSY', 'queue full');
    expect(hasCode(e, 'EBUSY')).toBe(true);
    expect(hasCode(e, 'EIO')).toBe(false);
    const osError = Object.assign(new Error('x'), { code: 'EBUSY' });
    expect(hasCode(osError, 'EBUSY')).toBe(false);
    expect(hasCode(undefined, 'EBUSY')).toBe(false);
    expect(hasCode({ code: 'EBUSY' }, 'EBUSY')).toBe(false);
  });
});

describe('docs/errors.md', () => {
  it('lists every code', () => {
    const doc = renderErrorsDoc();
    for (const code of Object.keys(ERROR_CODES)) expect(doc).toContain(`| \`${code}\` |`);
  });

  it('equals the rendering of the registry (UPDATE_DOCS=1 rewrites it)', async () => {
    const expected = renderErrorsDoc();
    if (process.env['UPDATE_DOCS'] === '1') {
      await mkdir(fileURLToPath(docsDir), { recursive: true });
      await writeFile(docPath, expected);
    }
    const actual = await readFile(docPath, 'utf8');
    expect(actual).toBe(expected);
  });
});
