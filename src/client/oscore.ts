/**
 * OSCORE on the client (RFC 8613 §8.1, §8.4): one round trip of a protected
 * request. The request is protected with the next sender sequence number,
 * the response verified and decrypted; an inner 4.01 with Echo (the server
 * re-establishing freshness after a restart, RFC 9175 / RFC 8613 Appendix
 * B.1.2) is answered once by repeating the request with that Echo value.
 */
import { Buffer } from 'node:buffer';
import type { CoapMessage, CoapOption } from '../codec/message.js';
import { encodeBlock, encodeUint } from '../codec/options.js';
import { ResponseCode } from '../constants/codes.js';
import { OptionNumber } from '../constants/options.js';
import { channels } from '../diagnostics.js';
import type { Endpoint } from '../endpoint/endpoint.js';
import { OscoreError } from '../errors.js';
import type {
  ClientExchange,
  InboundResponse,
  OutgoingRequest,
  RequestCallbacks,
} from '../exchange/exchange-layer.js';
import type { OscoreContext } from '../oscore/context.js';
import { decodeOscoreOption, sequenceOf } from '../oscore/option.js';
import {
  DEFAULT_MAX_UNFRAGMENTED_SIZE,
  joinParts,
  outerBlock,
  withoutOuterBlock,
} from '../oscore/outer-block.js';
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
    const protectedReq: PlainRequest = {
      code: message.code,
      options: message.options,
      ...(message.payload ? { payload: message.payload } : {}),
    };
    const r = await outerReassemble(protectedReq, await send(protectedReq), send);
    const inner = unprotectResponse(binding, r.message);
    if (channels.oscore.hasSubscribers)
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
    let current: ClientExchange;
    const send = (r: OutgoingRequest, echoed: boolean): void => {
      const plain: PlainMessage = {
        code: r.code,
        options: (r.options ?? []).map((o) => ({ number: o.number, value: Buffer.from(o.value) })),
        payload: r.payload === undefined ? undefined : Buffer.from(r.payload),
      };
      const { message, binding } = protectRequest(ctx, plain);
      publishInner(peer, 'out', plain, binding.kid, binding.partialIv);
      let lastPiv = -1;
      let first = true;
      current = ep.request(
        peer,
        {
          ...r,
          code: message.code,
          options: message.options,
          ...(message.payload ? { payload: message.payload } : {}),
        },
        {
          ...cb,
          onResponse: (res) => {
            let inner: CoapMessage;
            try {
              inner = unprotectResponse(binding, res.message);
            } catch (err) {
              // The first answer decides the exchange; a later forged or broken one is only dropped.
              if (!first) return false;
              cb.onError(err as Error);
              return true;
            }
            const piv = responsePiv(res.message);
            if (piv !== undefined) {
              const n = sequenceOf(piv);
              if (n <= lastPiv) return false;
              lastPiv = n;
            }
            // Notifications (§4.1.3.5.2, §7.4.1): the inner Observe may be empty (libcoap's is);
            // the Partial IV numbers them, so it is what the observe layer orders by.
            if (piv !== undefined && (hasObserve(inner) || hasObserve(res.message)))
              inner = withObserveNumber(inner, sequenceOf(piv) % 0x1000000);
            publishInner(res.peer, 'in', inner, binding.kid, piv);
            const echo =
              first && !echoed && inner.code === ResponseCode.Unauthorized
                ? inner.options.find((o) => o.number === OptionNumber.Echo)
                : undefined;
            first = false;
            if (echo !== undefined) {
              // The server re-establishes freshness (RFC 8613 Appendix B.1.2): once, the same
              // request again (same token, once this exchange is over) with the Echo value inside.
              const options = [
                ...(r.options ?? []).filter((o) => o.number !== OptionNumber.Echo),
                { number: OptionNumber.Echo, value: Buffer.from(echo.value) },
              ];
              queueMicrotask(() => {
                try {
                  send({ ...r, options }, true);
                } catch (err) {
                  cb.onError(err as Error);
                }
              });
              return true;
            }
            return cb.onResponse({ ...res, message: inner });
          },
        },
      );
    };
    send(req, false);
    // The exchange of the request that is current (the repeated one after an Echo challenge).
    return {
      get token() {
        return current.token;
      },
      get messageId() {
        return current.messageId;
      },
      cancel: () => current.cancel(),
    };
  };
  return wrapped;
}

/**
 * A protected response cut into outer Block2 blocks (RFC 8613 §4.1.3.4.2, by a
 * proxy or the server): the same protected request is sent again for each
 * following block, and the protected payload put back together before it is
 * verified; more than MAX_UNFRAGMENTED_SIZE bytes → OscoreError (dropped).
 */
export async function outerReassemble(
  req: PlainRequest,
  first: InboundResponse,
  send: (req: PlainRequest) => Promise<InboundResponse>,
  maxSize = DEFAULT_MAX_UNFRAGMENTED_SIZE,
): Promise<InboundResponse> {
  let b = outerBlock(first.message.options, OptionNumber.Block2);
  if (b === undefined) return first;
  if (b === null || b.num !== 0)
    throw new OscoreError('Malformed outer Block2 option in a protected response');
  const parts: Buffer[] = [];
  let length = 0;
  let r = first;
  for (;;) {
    const payload = r.message.payload ?? Buffer.alloc(0);
    length += payload.length;
    if (length > maxSize)
      throw new OscoreError(
        `protected response larger than MAX_UNFRAGMENTED_SIZE (${maxSize} bytes): dropped`,
      );
    parts.push(Buffer.from(payload));
    if (!b.more) break;
    if (payload.length !== b.size) throw new OscoreError('Outer Block2 block of the wrong size');
    const num = b.num + 1;
    const options = req.options.filter((o) => o.number !== OptionNumber.Block2);
    options.push({ number: OptionNumber.Block2, value: encodeBlock(num, false, b.szx) });
    r = await send({ ...req, options });
    const next = outerBlock(r.message.options, OptionNumber.Block2);
    if (next === undefined || next === null || next.num !== num || next.szx !== b.szx)
      throw new OscoreError(`outer Block2 block ${num} missing or malformed in a protected response`);
    b = next;
  }
  const message = {
    ...first.message,
    options: withoutOuterBlock(first.message.options),
    payload: joinParts(parts),
  };
  return { ...first, message };
}

function responsePiv(msg: CoapMessage): Buffer | undefined {
  const raw = oscoreOptionOf(msg.options);
  return raw === undefined ? undefined : decodeOscoreOption(raw).partialIv;
}

function hasObserve(m: CoapMessage): boolean {
  return m.options.some((o) => o.number === OptionNumber.Observe);
}

/** `m` with its (inner) Observe option set to `n`. */
function withObserveNumber(m: CoapMessage, n: number): CoapMessage {
  const options = m.options.filter((o) => o.number !== OptionNumber.Observe);
  options.push({ number: OptionNumber.Observe, value: encodeUint(n) });
  options.sort((a, b) => a.number - b.number);
  return { ...m, options };
}
