// Structured logs of the daemon: one JSON object per line on a text sink (stderr by default),
// with `time` (ISO 8601), `level`, `msg`, the node id and any fields of the event. Levels below
// the configured one are dropped. Errors are logged by code and message; a stack is logged only
// for a bug (an error that is not a MirrorpoolError). Called by daemon.ts and cli-node.ts.

import { MirrorpoolError } from '../lib/index.js';
import type { LogLevel } from './node-config.js';

const RANK: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** The fields that describe an error in a log line. */
export function errorFields(e: unknown): Record<string, unknown> {
  if (e instanceof MirrorpoolError) return { code: e.code, error: e.message, ...(Object.keys(e.details).length > 0 ? { details: e.details } : {}) };
  if (e instanceof Error) return { error: e.message, stack: e.stack };
  return { error: String(e) };
}

export function createLogger(level: LogLevel, sink: { write(s: string): void }, base: Record<string, unknown> = {}): Logger {
  const line = (l: LogLevel, msg: string, fields: Record<string, unknown> = {}): void => {
    if (RANK[l] < RANK[level]) return;
    sink.write(`${JSON.stringify({ time: new Date().toISOString(), level: l, msg, ...base, ...fields })}\n`);
  };
  return {
    debug: (m, f) => line('debug', m, f),
    info: (m, f) => line('info', m, f),
    warn: (m, f) => line('warn', m, f),
    error: (m, f) => line('error', m, f),
  };
}
