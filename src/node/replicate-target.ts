// Where `send --to` pushes: the target's parsing and the retry default, apart from replicate.ts
// so the CLI checks its arguments without loading the transport. Used by cli-stream.ts and
// replicate.ts.

import { parseName } from '../engine/index.js';
import { hasCode, mpError } from '../lib/index.js';

export const RETRIES_DEFAULT = 5;

export interface ReplicateTarget {
  readonly url: string;
  readonly dataset: string;
}

/** `ws://host:port:pool/ds` (or wss://) → the node URL and the dataset. EINVAL otherwise. */
export function parseTarget(text: string): ReplicateTarget {
  const m = /^(wss?:\/\/[^/]+?)\/?:([^:]+)$/.exec(text);
  if (m === null) throw mpError('EINVAL', `--to '${text}' is not <node-url>:<pool/ds> (example: ws://10.0.0.2:7101:tank/data)`, { value: text });
  const dataset = m[2] ?? '';
  try {
    // Pool names start with a letter, so `ws://host:7101` (no dataset) is refused here.
    parseName(dataset, ['dataset']);
  } catch (e) {
    if (!hasCode(e, 'EINVAL')) throw e;
    throw mpError('EINVAL', `--to '${text}': ${e.message} (expected <node-url>:<pool/ds>)`, { value: text }, e);
  }
  return { url: m[1] ?? '', dataset };
}
