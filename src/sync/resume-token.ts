// Resume tokens: what a receive that stopped part-way (`recv -s`) hands back so the sender can
// continue where it left off (`send -t`). A token names the stream (to guid and name, from guid)
// and the position the receiver has made durable (object, byte offset); it is text an operator
// copies between hosts: `1-<16 hex digits of fletcher-4>-<base64url of JSON>`. Decoding checks the
// form, the checksum and every field; the sender then checks the token against its pool (the
// snapshots exist, the from/to pair is legitimate, the position is sane) in planResume.

import { fletcher4, mpError, toHex } from '../lib/index.js';
import { type Guid, type Pool, guid, objectId, parseName } from '../engine/index.js';
import { type SendPlan, planSend } from './send.js';

const TOKEN_VERSION = 1;
/** Longest token accepted (a name is at most 255 bytes; the rest is small). */
const TOKEN_CHARS_MAX = 2048;
/** Largest object number and offset a token may name. */
const OBJECT_MAX = 2 ** 48;
const OFFSET_MAX = 2 ** 50;

export interface ResumeToken {
  readonly toGuid: Guid;
  readonly toName: string;
  readonly fromGuid: Guid | 0n;
  readonly object: number;
  readonly offset: number;
}

function sumOf(payload: string): string {
  return toHex(fletcher4(new TextEncoder().encode(payload))).slice(0, 16);
}

export function encodeResumeToken(t: ResumeToken): string {
  const json = JSON.stringify({ toGuid: t.toGuid.toString(), toName: t.toName, fromGuid: t.fromGuid.toString(), object: t.object, offset: t.offset });
  const payload = Buffer.from(json, 'utf8').toString('base64url');
  return `${TOKEN_VERSION}-${sumOf(payload)}-${payload}`;
}

function bad(why: string): never {
  throw mpError('EINVAL', `invalid resume token: ${why}`, {});
}

function u64(value: unknown, what: string): bigint {
  if (typeof value !== 'string' || !/^(0|[1-9][0-9]{0,19})$/.test(value)) bad(`${what} is not a u64`);
  const n = BigInt(value);
  if (n >= 1n << 64n) bad(`${what} is not a u64`);
  return n;
}

function count(value: unknown, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > max) bad(`${what} is out of range`);
  return value;
}

/** Parses a token (EINVAL naming what is wrong with it); says nothing yet about the pool. */
export function decodeResumeToken(text: string): ResumeToken {
  if (typeof text !== 'string' || text.length === 0 || text.length > TOKEN_CHARS_MAX) bad('empty or too long');
  const m = /^([0-9]+)-([0-9a-f]{16})-([A-Za-z0-9_-]+)$/.exec(text);
  if (m === null) bad('not of the form <version>-<checksum>-<payload>');
  const [, version, sum, payload] = m as unknown as [string, string, string, string];
  if (Number(version) !== TOKEN_VERSION) throw mpError('ENOTSUP', `resume token version ${version} is not ${TOKEN_VERSION}`, { version });
  if (sumOf(payload) !== sum) bad('checksum mismatch (the token was altered or cut)');
  let o: unknown;
  try {
    o = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    bad('payload is not JSON');
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) bad('payload is not an object');
  const r = o as Record<string, unknown>;
  const toGuid = u64(r['toGuid'], 'toGuid');
  if (toGuid === 0n) bad('toGuid is 0');
  const toName = r['toName'];
  if (typeof toName !== 'string') bad('toName is not text');
  parseName(toName, ['snapshot']);
  const fromGuid = u64(r['fromGuid'], 'fromGuid');
  return { toGuid: guid(toGuid), toName, fromGuid: fromGuid === 0n ? 0n : guid(fromGuid), object: count(r['object'], OBJECT_MAX, 'object'), offset: count(r['offset'], OFFSET_MAX, 'offset') };
}

/**
 * The send a token asks for, checked against the pool: the to snapshot still exists with the
 * token's guid, the from point (a snapshot or bookmark of the same dataset with the token's guid)
 * is older, and the position lies within the object it names. ENOENT for a snapshot that is
 * gone, ESTALE for one whose guid changed (destroyed and re-created), EINVAL for the rest.
 */
export async function planResume(pool: Pool, text: string): Promise<SendPlan> {
  const t = decodeResumeToken(text);
  const dataset = t.toName.slice(0, t.toName.indexOf('@'));
  const entries = await pool.dsl.list({ under: dataset, types: ['snapshot', 'bookmark'] });
  const to = entries.find((e) => e.name === t.toName);
  if (to === undefined) throw mpError('ENOENT', `resume token: snapshot ${t.toName} does not exist`, { name: t.toName });
  if (to.guid !== t.toGuid) throw mpError('ESTALE', `resume token: ${t.toName} is not the snapshot the receive started from (guid differs)`, { name: t.toName });
  let from: string | undefined;
  if (t.fromGuid !== 0n) {
    const candidates = entries.filter((e) => e.guid === t.fromGuid && e.name.startsWith(dataset) && /^[@#]/.test(e.name.slice(dataset.length)));
    const chosen = candidates.find((e) => e.type === 'snapshot') ?? candidates[0];
    if (chosen === undefined) throw mpError('ENOENT', `resume token: ${dataset} has no snapshot or bookmark with the from guid ${t.fromGuid}`, { name: dataset });
    from = chosen.name;
  }
  const plan = await planSend(pool, t.toName, { ...(from === undefined ? {} : { from }), resume: { object: t.object, offset: t.offset } });
  if (t.object > 0) {
    const size = await pool.dsl.withView(t.toName, 'read', async (v) => (await v.os.header(objectId(t.object))).size);
    if (t.offset > size) throw mpError('EINVAL', `resume token: offset ${t.offset} is past the end of object ${t.object} (${size} bytes)`, { object: t.object, offset: t.offset });
  }
  return plan;
}
