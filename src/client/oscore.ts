/**
 * OSCORE on the client (RFC 8613 §8.1, §8.4): one round trip of a protected
 * request. The request is protected with the next sender sequence number,
 * the response verified and decrypted; an inner 4.01 with Echo (the server
 * re-establishing freshness after a restart, RFC 9175 / RFC 8613 Appendix
 * B.1.2) is answered once by repeating the request with that Echo value.
 */
import { Buffer } from 'node:buffer';
import type { CoapMessage, CoapOption } from '../codec/message.js';
import { ResponseCode } from '../constants/codes.js';
import { OptionNumber } from '../constants/options.js';
import { channels } from '../diagnostics.js';
import type { Endpoint } from '../endpoint/endpoint.js';
import type {
  ClientExchange,
  InboundResponse,
  OutgoingRequest,
  RequestCallbacks,
} from '../exchange/exchange-layer.js';
import type { OscoreContext } from '../oscore/context.js';
import { decodeOscoreOption, sequenceOf } from '../oscore/option.js';
import {
  innerPath,
  oscoreOptionOf,
  type PlainMessage,
  protectRequest,
  unprotectResponse,
} from '../oscore/protect.js';
import type { Peer } from '../transport/transport.js';

type PlainRequest = { code: number; options: CoapOption[]; payload?: Buffer };

/** `coapkit:oscore:message` for a message protected or decrypted here (only with subscribers). */
export function publishInner(
  peer: Peer,
  direction: 'in' | 'out',
  m: PlainMessage | CoapMessage,
  kid: Buffer,
  partialIv: Buffer | undefined,
): void {
  if (!channels.oscore.hasSubscribers) return;
  channels.oscore.publish({
    peer,
    direction,
    code: m.code,
    path: innerPath(m.options),
    payloadLength: m.payload?.length ?? 0,
    kid: kid.toString('hex'),
    partialIv: partialIv?.toString('hex') ?? '',
  });
}

/** Sends `req` protected in `ctx` through `send` and returns the response with its inner message. */
export async function oscoreRoundTrip(
  ctx: OscoreContext,
  peer: Peer,
  req: PlainRequest,
  send: (req: PlainRequest) => Promise<InboundResponse>,
): Promise<InboundResponse> {
  let current = req;
  for (let attempt = 0; ; attempt++) {
    const { message, binding } = protectRequest(ctx, current);
    publishInner(peer, 'out', current, binding.kid, binding.partialIv);
    const r = await send({
      code: message.code,
      options: message.options,
      ...(message.payload ? { payload: message.payload } : {}),
    });
    const inner = unprotectResponse(binding, r.message);
    publishInner(r.peer, 'in', inner, binding.kid, responsePiv(r.message));
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

/**
 * An endpoint whose requests are protected in `ctx` and whose responses are
 * verified (for observations: `client.observe(uri, { oscore })`). Every
 * request through it — the registration, block fetches, the deregistration —
 * is protected with a new sequence number; each notification must carry a
 * Partial IV greater than the previous one's (RFC 8613 §7.4.1), else it is
 * dropped as a replay or reordering; one that does not verify is dropped too.
 */
export function oscoreEndpoint(ep: Endpoint, ctx: OscoreContext): Endpoint {
  const wrapped = Object.create(ep) as Endpoint;
  wrapped.request = (peer: Peer, req: OutgoingRequest, cb: RequestCallbacks): ClientExchange => {
    const { message, binding } = protectRequest(ctx, {
      code: req.code,
      options: (req.options ?? []).map((o) => ({ number: o.number, value: Buffer.from(o.value) })),
      payload: req.payload === undefined ? undefined : Buffer.from(req.payload),
    });
    publishInner(
      peer,
      'out',
      { code: req.code, options: req.options ?? [] } as PlainMessage,
      binding.kid,
      binding.partialIv,
    );
    let lastPiv = -1;
    let first = true;
    return ep.request(
      peer,
      {
        ...req,
        code: message.code,
        options: message.options,
        ...(message.payload ? { payload: message.payload } : {}),
      },
      {
        ...cb,
        onResponse: (r) => {
          let inner: CoapMessage;
          try {
            inner = unprotectResponse(binding, r.message);
          } catch (err) {
            // The first answer decides the exchange; a later forged or broken one is only dropped.
            if (!first) return false;
            cb.onError(err as Error);
            return true;
          }
          const raw = oscoreOptionOf(r.message.options);
          const piv = raw === undefined ? undefined : decodeOscoreOption(raw).partialIv;
          if (piv !== undefined) {
            const n = sequenceOf(piv);
            if (n <= lastPiv) return false;
            lastPiv = n;
          }
          first = false;
          publishInner(r.peer, 'in', inner, binding.kid, piv);
          return cb.onResponse({ ...r, message: inner });
        },
      },
    );
  };
  return wrapped;
}

function responsePiv(msg: CoapMessage): Buffer | undefined {
  const raw = oscoreOptionOf(msg.options);
  return raw === undefined ? undefined : decodeOscoreOption(raw).partialIv;
}
