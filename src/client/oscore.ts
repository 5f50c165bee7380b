/**
 * OSCORE on the client (RFC 8613 §8.1, §8.4): one round trip of a protected
 * request. The request is protected with the next sender sequence number,
 * the response verified and decrypted; an inner 4.01 with Echo (the server
 * re-establishing freshness after a restart, RFC 9175 / RFC 8613 Appendix
 * B.1.2) is answered once by repeating the request with that Echo value.
 */
import { Buffer } from 'node:buffer';
import type { CoapOption } from '../codec/message.js';
import { ResponseCode } from '../constants/codes.js';
import { OptionNumber } from '../constants/options.js';
import type { InboundResponse } from '../exchange/exchange-layer.js';
import type { OscoreContext } from '../oscore/context.js';
import { protectRequest, unprotectResponse } from '../oscore/protect.js';

type PlainRequest = { code: number; options: CoapOption[]; payload?: Buffer };

/** Sends `req` protected in `ctx` through `send` and returns the response with its inner message. */
export async function oscoreRoundTrip(
  ctx: OscoreContext,
  req: PlainRequest,
  send: (req: PlainRequest) => Promise<InboundResponse>,
): Promise<InboundResponse> {
  let current = req;
  for (let attempt = 0; ; attempt++) {
    const { message, binding } = protectRequest(ctx, current);
    const r = await send({
      code: message.code,
      options: message.options,
      ...(message.payload ? { payload: message.payload } : {}),
    });
    const inner = unprotectResponse(binding, r.message);
    const echo =
      inner.code === ResponseCode.Unauthorized
        ? inner.options.find((o) => o.number === OptionNumber.Echo)
        : undefined;
    if (echo !== undefined && attempt === 0) {
      current = {
        ...current,
        options: [
          ...current.options.filter((o) => o.number !== OptionNumber.Echo),
          { number: OptionNumber.Echo, value: Buffer.from(echo.value) },
        ],
      };
      continue;
    }
    return { ...r, message: inner };
  }
}
