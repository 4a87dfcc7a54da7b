// What a send produces, whoever consumes it (stdout in `send`, a remote node in `send --to`, an
// RPC response in `stream.send`): the plans of the streams (one, or one per snapshot for `-I`)
// and their frames in order. Built from the snapshot names or from a resume token.
// Called by cli-stream.ts, replicate.ts and daemon-methods.ts.

import { type Pool, parseName } from '../engine/index.js';
import { type SendPlan, decodeResumeToken, estimateSend, packageSnapshots, sendPlan, sendStream, sendStreamParts } from '../sync/index.js';

/** Bytes of the reused buffer SendSource.chunks() fills. */
const STAGE_BYTES = 256 * 1024;

export interface SendRequest {
  /** pool/ds@snap; taken from the token when absent. */
  readonly to?: string;
  /** The from snapshot or bookmark (full name). */
  readonly from?: string;
  /** Every snapshot between `from` and `to` too, as a package of streams (`-I`). */
  readonly intermediates?: boolean;
  /** A resume token of a stopped receive (`-t`). */
  readonly token?: string;
}

export interface SendSource {
  readonly to: string;
  readonly plans: readonly SendPlan[];
  frames(): AsyncGenerator<Uint8Array, void, undefined>;
  /** The same frames, each as parts to write back to back (a WRITE's data uncopied). */
  frameParts(): AsyncGenerator<readonly Uint8Array[], void, undefined>;
  /**
   * The same bytes as chunks of one reused buffer, filled with the frames' parts back to back (a
   * part of STAGE_BYTES or more comes alone, as it is; so does the first frame, BEGIN): for a
   * consumer that is done with each chunk before it asks for the next (an RPC stream copies it),
   * which then takes no fresh memory per frame.
   */
  chunks(): AsyncGenerator<Uint8Array, void, undefined>;
  estimate(): Promise<number>;
}

/** The snapshot a request sends, checked as a snapshot name (EINVAL otherwise). */
export function sendTarget(request: SendRequest): string {
  const to = request.token !== undefined ? decodeResumeToken(request.token).toName : (request.to ?? '');
  parseName(to, ['snapshot']);
  return to;
}

/** Plans the streams of `request` on `pool` (ENOENT, ESTALE, EINVAL as sendPlan raises them). */
export async function sendSource(pool: Pool, request: SendRequest): Promise<SendSource> {
  const to = sendTarget(request);
  const from = request.from;
  const steps = request.intermediates === true && from !== undefined ? await packageSnapshots(pool, from, to) : [to];
  const plans: SendPlan[] = [];
  let prev = from;
  for (const step of steps) {
    plans.push(await sendPlan(pool, step, { ...(prev === undefined ? {} : { from: prev }), ...(request.token === undefined ? {} : { token: request.token }) }));
    prev = step;
  }
  const frameParts = async function* (): AsyncGenerator<readonly Uint8Array[], void, undefined> {
    for (const [i, plan] of plans.entries()) yield* sendStreamParts(pool, plan, { more: i < plans.length - 1 });
  };
  return {
    to,
    plans,
    async *frames() {
      for (const [i, plan] of plans.entries()) yield* sendStream(pool, plan, { more: i < plans.length - 1 });
    },
    frameParts,
    async *chunks() {
      const stage = new Uint8Array(STAGE_BYTES);
      let fill = 0;
      let first = true;
      for await (const parts of frameParts()) {
        for (const part of parts) {
          if (fill > 0 && fill + part.length > STAGE_BYTES) {
            yield stage.subarray(0, fill);
            fill = 0;
          }
          if (part.length >= STAGE_BYTES) {
            yield part;
            continue;
          }
          stage.set(part, fill);
          fill += part.length;
        }
        // BEGIN goes alone: the receiver checks its target while the first blocks are read.
        if (first) {
          first = false;
          yield stage.subarray(0, fill);
          fill = 0;
        }
      }
      if (fill > 0) yield stage.subarray(0, fill);
    },
    async estimate() {
      let bytes = 0;
      for (const plan of plans) bytes += await estimateSend(pool, plan);
      return bytes;
    },
  };
}
