/**
 * Decryption for display (`coapkit dissect --oscore`, `--trace`): a captured
 * request or response opened with a context from either side's file, without
 * replay checks and without touching any state. A request's kid names the
 * sender: our own Sender ID (the file is the client's) or our Recipient ID
 * (the file is the server's); its response comes from the other side.
 */
import type { Buffer } from 'node:buffer';
import type { CoapOption } from '../codec/message.js';
import type { OscoreContext } from './context.js';
import { decodeOscoreOption, type OscoreOptionValue } from './option.js';
import { oscoreAad, oscoreOptionOf, type PlainMessage, parsePlaintext } from './protect.js';

/** What a request's decryption leaves for its response. */
export interface PeekedRequest {
  inner: PlainMessage;
  context: OscoreContext;
  /** True when the request was sent by the context's owner (a client's file). */
  ours: boolean;
  kid: Buffer;
  partialIv: Buffer;
  nonce: Buffer;
}

/** The decoded OSCORE option of a message, or an error text; undefined without the option. */
export function peekOption(options: readonly CoapOption[]): OscoreOptionValue | string | undefined {
  const raw = oscoreOptionOf(options);
  if (raw === undefined) return undefined;
  try {
    return decodeOscoreOption(raw);
  } catch (err) {
    return (err as Error).message;
  }
}

function sameContext(ctx: OscoreContext, kidContext: Buffer | undefined): boolean {
  return kidContext === undefined || ctx.idContext?.equals(kidContext) === true;
}

/** Opens a captured protected request; a text saying why when it cannot. */
export function peekRequest(
  contexts: readonly OscoreContext[],
  options: readonly CoapOption[],
  payload: Buffer,
): PeekedRequest | string {
  const opt = peekOption(options);
  if (opt === undefined) return 'no OSCORE option';
  if (typeof opt === 'string') return opt;
  if (opt.kid === undefined || opt.partialIv === undefined) return 'request without kid or Partial IV';
  let tried = 0;
  for (const ctx of contexts) {
    if (!sameContext(ctx, opt.kidContext)) continue;
    for (const ours of [true, false]) {
      if (!(ours ? ctx.senderId : ctx.recipientId).equals(opt.kid)) continue;
      tried++;
      const nonce = ctx.nonce(opt.kid, opt.partialIv);
      try {
        const pt = ctx.open(
          ours ? ctx.senderKey : ctx.recipientKey,
          nonce,
          oscoreAad(ctx.algorithm.id, opt.kid, opt.partialIv),
          payload,
        );
        return {
          inner: parsePlaintext(pt),
          context: ctx,
          ours,
          kid: opt.kid,
          partialIv: opt.partialIv,
          nonce,
        };
      } catch {
        // Another context may have the same IDs.
      }
    }
  }
  return tried === 0 ? `no context for kid 0x${opt.kid.toString('hex')}` : 'decryption failed';
}

/** Opens a captured protected response to `req`; a text saying why when it cannot. */
export function peekResponse(
  req: PeekedRequest,
  options: readonly CoapOption[],
  payload: Buffer,
): PlainMessage | string {
  const opt = peekOption(options);
  if (opt === undefined) return 'not protected';
  if (typeof opt === 'string') return opt;
  const ctx = req.context;
  // The response comes from the other side of the request's sender.
  const key = req.ours ? ctx.recipientKey : ctx.senderKey;
  const id = req.ours ? ctx.recipientId : ctx.senderId;
  const nonce = opt.partialIv === undefined ? req.nonce : ctx.nonce(id, opt.partialIv);
  try {
    return parsePlaintext(ctx.open(key, nonce, oscoreAad(ctx.algorithm.id, req.kid, req.partialIv), payload));
  } catch {
    return 'decryption failed';
  }
}
