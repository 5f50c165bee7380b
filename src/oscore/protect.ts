/**
 * Message protection (RFC 8613 §5, §8): the Class E / I / U split of the
 * options (§4.1), the plaintext (inner code, Class E options, payload), the
 * additional authenticated data (§5.4) and the AEAD nonce (§5.2); the outer
 * message carries code 0.02 POST (0.05 FETCH with Observe) or 2.04 Changed
 * (2.05 Content with Observe), the OSCORE option and the Class U options.
 */
import { Buffer } from 'node:buffer';
import { type CoapMessage, type CoapOption, decodeMessage, encodeMessage } from '../codec/message.js';
import { encodeUint } from '../codec/options.js';
import { parseUri, uriToOptions } from '../codec/uri.js';
import { OptionNumber } from '../constants/options.js';
import {
  MessageFormatError,
  OscoreContextNotFoundError,
  OscoreError,
  OscoreReplayError,
  UriError,
} from '../errors.js';
import { cborEncode } from './cbor.js';
import type { OscoreContext } from './context.js';
import { decodeOscoreOption, encodeOscoreOption, partialIvOf, sequenceOf } from './option.js';

/** A message without its header: code, options and payload. */
export interface PlainMessage {
  code: number;
  options: CoapOption[];
  payload?: Buffer | undefined;
}

/** What a request's protection leaves for its response (§5.4: request_kid, request_piv; the nonce). */
export interface RequestBinding {
  /** The context the request was protected or verified with. */
  context: OscoreContext;
  /** The request's kid (the client's Sender ID). */
  kid: Buffer;
  /** The request's kid context, if it carried one. */
  kidContext: Buffer | undefined;
  /** The request's Partial IV. */
  partialIv: Buffer;
  /** The request's sequence number (its Partial IV as a number). */
  sequenceNumber: number;
  /** The request's AEAD nonce (a response without Partial IV reuses it). */
  nonce: Buffer;
}

/** Options that stay outside only (Class U, §4.1): the proxy's routing information. */
function outerOnly(n: number): boolean {
  return (
    n === OptionNumber.UriHost ||
    n === OptionNumber.UriPort ||
    n === OptionNumber.Oscore ||
    n === OptionNumber.HopLimit ||
    n === OptionNumber.ProxyUri ||
    n === OptionNumber.ProxyScheme
  );
}

const EMPTY = Buffer.alloc(0);

/** The §5.4 AAD: Enc_structure ["Encrypt0", h'', external_aad]. */
export function oscoreAad(alg: number, requestKid: Uint8Array, requestPiv: Uint8Array): Buffer {
  const external = cborEncode([1, [alg], requestKid, requestPiv, EMPTY]);
  return cborEncode(['Encrypt0', EMPTY, external]);
}

/** Plaintext (§5.3): the inner code, the Class E options, the payload after 0xFF. */
function plaintextOf(code: number, options: CoapOption[], payload: Buffer | undefined): Buffer {
  const m = encodeMessage({ type: 0, code: 0x45, messageId: 0, options, payload });
  m[3] = code;
  return m.subarray(3);
}

/** Reads a plaintext back into code, options and payload (OscoreError when malformed). */
export function parsePlaintext(pt: Buffer): PlainMessage {
  if (pt.length === 0) throw new OscoreError('Decryption produced an empty plaintext');
  const code = pt[0]!;
  if (code === 0) throw new OscoreError('inner code 0.00');
  const m = Buffer.allocUnsafe(pt.length + 3);
  m[0] = 0x40;
  m[1] = code;
  m[2] = 0;
  pt.copy(m, 3);
  m[3] = 0;
  try {
    const d = decodeMessage(m);
    return { code, options: d.options, payload: d.payload };
  } catch (err) {
    if (err instanceof MessageFormatError) throw new OscoreError(`inner message malformed: ${err.message}`);
    throw err;
  }
}

function split(options: readonly CoapOption[]): { inner: CoapOption[]; outer: CoapOption[] } {
  const inner: CoapOption[] = [];
  const outer: CoapOption[] = [];
  for (const o of options) {
    if (o.number === OptionNumber.ProxyUri) {
      // §4.1.3.3: Proxy-Uri is split: scheme and authority outside, path and query inside.
      let u: ReturnType<typeof parseUri>;
      try {
        u = parseUri(o.value.toString('utf8'));
      } catch (err) {
        throw new UriError(`Proxy-Uri cannot be protected: ${(err as Error).message}`);
      }
      // The proxy needs the authority even for an IP literal (bare IPv6, as its Proxy-Scheme rule reads it).
      outer.push(
        { number: OptionNumber.ProxyScheme, value: Buffer.from(u.scheme, 'utf8') },
        { number: OptionNumber.UriHost, value: Buffer.from(u.host, 'utf8') },
        { number: OptionNumber.UriPort, value: encodeUint(u.port) },
      );
      for (const x of uriToOptions(u)) if (!outerOnly(x.number)) inner.push(x);
    } else if (o.number === OptionNumber.Oscore) {
      throw new OscoreError('the message already carries an OSCORE option');
    } else if (outerOnly(o.number)) outer.push(o);
    else inner.push(o);
  }
  return { inner, outer };
}

function withOption(outer: CoapOption[], value: Buffer): CoapOption[] {
  outer.push({ number: OptionNumber.Oscore, value });
  return outer.sort((a, b) => a.number - b.number);
}

/**
 * Protects a request (§8.1) with the next sender sequence number (or `seq`,
 * for test vectors). The outer message keeps the Class U options.
 */
export function protectRequest(
  ctx: OscoreContext,
  req: PlainMessage,
  seq?: number,
): { message: PlainMessage; binding: RequestBinding } {
  const { inner, outer } = split(req.options);
  const n = seq ?? ctx.nextSequenceNumber();
  const piv = partialIvOf(n);
  const kid = ctx.senderId;
  const nonce = ctx.nonce(kid, piv);
  const aad = oscoreAad(ctx.algorithm.id, kid, piv);
  const ct = ctx.seal(ctx.senderKey, nonce, aad, plaintextOf(req.code, inner, req.payload));
  const observe = inner.some((o) => o.number === OptionNumber.Observe);
  const opt = encodeOscoreOption({ partialIv: piv, kid, kidContext: ctx.idContext });
  if (observe) {
    // §4.1.3.5.1: Observe is also an outer option, so that a proxy can observe.
    const ob = inner.find((o) => o.number === OptionNumber.Observe)!;
    outer.push({ number: OptionNumber.Observe, value: ob.value });
  }
  return {
    message: { code: observe ? 0x05 : 0x02, options: withOption(outer, opt), payload: ct },
    binding: { context: ctx, kid, kidContext: ctx.idContext, partialIv: piv, sequenceNumber: n, nonce },
  };
}

/** Finds the context for a request's kid and kid context (undefined: unknown). */
export type ContextLookup = (kid: Buffer, kidContext: Buffer | undefined) => OscoreContext | undefined;

/** A verified request: the inner message and what its response needs. */
export interface UnprotectedRequest {
  /** The request with its inner code and options (and the outer Class U ones), as the handler sees it. */
  message: CoapMessage;
  binding: RequestBinding;
  /**
   * False when the recipient's replay state is unknown (after a restart): the request
   * verified but may be a replay; the server re-establishes freshness with Echo first.
   */
  fresh: boolean;
}

/** The OSCORE option of a message, if any. */
export function oscoreOptionOf(options: readonly CoapOption[]): Buffer | undefined {
  for (const o of options) {
    if (o.number === OptionNumber.Oscore) return o.value;
    if (o.number > OptionNumber.Oscore) break;
  }
  return undefined;
}

/**
 * Verifies and decrypts a request (§8.2). Throws an {@link OscoreError} whose
 * `responseCode` is the unprotected answer: 4.02 "Failed to decode COSE", 4.01
 * "Security context not found", 4.01 "Replay detected", 4.00 "Decryption failed".
 */
export function unprotectRequest(lookup: ContextLookup, msg: CoapMessage): UnprotectedRequest {
  const raw = oscoreOptionOf(msg.options);
  if (raw === undefined) throw answer(new OscoreError('no OSCORE option'), 0x82, 'Failed to decode COSE');
  let opt: ReturnType<typeof decodeOscoreOption>;
  try {
    opt = decodeOscoreOption(raw);
  } catch (err) {
    throw answer(err as OscoreError, 0x82, 'Failed to decode COSE');
  }
  if (opt.kid === undefined || opt.partialIv === undefined)
    throw answer(new OscoreError('request without kid or Partial IV'), 0x82, 'Failed to decode COSE');
  const ctx = lookup(opt.kid, opt.kidContext);
  if (ctx === undefined)
    throw answer(
      new OscoreContextNotFoundError('Security context not found'),
      0x81,
      'Security context not found',
    );
  const seq = sequenceOf(opt.partialIv);
  if (ctx.replayKnown && !ctx.replayOk(seq))
    throw answer(new OscoreReplayError('Replay detected'), 0x81, 'Replay detected');
  const nonce = ctx.nonce(opt.kid, opt.partialIv);
  const aad = oscoreAad(ctx.algorithm.id, opt.kid, opt.partialIv);
  let pt: Buffer;
  try {
    pt = ctx.open(ctx.recipientKey, nonce, aad, msg.payload);
  } catch (err) {
    throw answer(err as OscoreError, 0x80, 'Decryption failed');
  }
  let inner: PlainMessage;
  try {
    inner = parsePlaintext(pt);
  } catch (err) {
    throw answer(err as OscoreError, 0x80, 'Decryption failed');
  }
  if (inner.code < 1 || inner.code > 31)
    throw answer(new OscoreError('inner code is not a request method'), 0x80, 'Decryption failed');
  if (ctx.replayKnown) ctx.replayAccept(seq);
  return {
    message: unprotected(msg, inner),
    binding: {
      context: ctx,
      kid: Buffer.from(opt.kid),
      kidContext: opt.kidContext ? Buffer.from(opt.kidContext) : undefined,
      partialIv: Buffer.from(opt.partialIv),
      sequenceNumber: seq,
      nonce,
    },
    fresh: ctx.replayKnown,
  };
}

function answer(err: OscoreError, code: number, diagnostic: string): OscoreError {
  err.responseCode = code;
  err.diagnostic = diagnostic;
  return err;
}

/**
 * Protects a response (§8.3). Without `ownPartialIv` it reuses the request's
 * nonce and carries an empty OSCORE option; with it (Observe notifications,
 * responses while the replay state is unknown) it takes the next sender
 * sequence number (`seq` for test vectors).
 */
export function protectResponse(
  binding: RequestBinding,
  res: PlainMessage,
  opts: { ownPartialIv?: boolean; seq?: number } = {},
): PlainMessage {
  const ctx = binding.context;
  const { inner: innerOptions, outer } = split(res.options);
  // A notification's number goes outside (for proxies); inside its Observe stays empty: the
  // client numbers notifications by their Partial IV (§4.1.3.5.2; as libcoap does).
  const observe = innerOptions.find((o) => o.number === OptionNumber.Observe);
  const inner = observe
    ? innerOptions.map((o) => (o === observe ? { number: OptionNumber.Observe, value: EMPTY } : o))
    : innerOptions;
  let nonce = binding.nonce;
  let piv: Buffer | undefined;
  if (opts.ownPartialIv) {
    piv = partialIvOf(opts.seq ?? ctx.nextSequenceNumber());
    nonce = ctx.nonce(ctx.senderId, piv);
  }
  const aad = oscoreAad(ctx.algorithm.id, binding.kid, binding.partialIv);
  const ct = ctx.seal(ctx.senderKey, nonce, aad, plaintextOf(res.code, inner, res.payload));
  if (observe) outer.push({ number: OptionNumber.Observe, value: observe.value });
  return {
    code: observe ? 0x45 : 0x44,
    options: withOption(outer, encodeOscoreOption({ partialIv: piv })),
    payload: ct,
  };
}

/**
 * Verifies and decrypts a response (§8.4) to the request `binding` came from.
 * A response without OSCORE option is the server's unprotected error: an
 * OscoreError carrying its code and diagnostic.
 */
export function unprotectResponse(binding: RequestBinding, msg: CoapMessage): CoapMessage {
  const raw = oscoreOptionOf(msg.options);
  if (raw === undefined) {
    const diag = msg.payload.toString('utf8');
    const code = `${msg.code >> 5}.${String(msg.code & 31).padStart(2, '0')}`;
    const err = new OscoreError(
      `the server answered ${code} without OSCORE protection${diag ? `: ${diag}` : ''}`,
      diag === 'Security context not found'
        ? { hint: 'the server has no context for our Sender ID (kid): check sender-id / recipient-id' }
        : undefined,
    );
    err.responseCode = msg.code;
    err.diagnostic = diag;
    throw err;
  }
  const opt = decodeOscoreOption(raw);
  const ctx = binding.context;
  const nonce = opt.partialIv === undefined ? binding.nonce : ctx.nonce(ctx.recipientId, opt.partialIv);
  const aad = oscoreAad(ctx.algorithm.id, binding.kid, binding.partialIv);
  const pt = ctx.open(ctx.recipientKey, nonce, aad, msg.payload);
  const inner = parsePlaintext(pt);
  if (inner.code >> 5 < 2) throw new OscoreError('inner code of a response is not a response code');
  return unprotected(msg, inner);
}

/** The unprotected message: `msg`'s header and outer options (less OSCORE), the inner code, options and payload. */
function unprotected(msg: CoapMessage, inner: PlainMessage): CoapMessage {
  const options: CoapOption[] = [];
  for (const o of msg.options) if (outerOnly(o.number) && o.number !== OptionNumber.Oscore) options.push(o);
  for (const o of inner.options) if (!outerOnly(o.number)) options.push(o);
  options.sort((a, b) => a.number - b.number);
  return {
    type: msg.type,
    code: inner.code,
    messageId: msg.messageId,
    token: msg.token,
    options,
    payload: inner.payload ?? EMPTY,
  };
}

/** The inner Uri-Path of options ("/a/b"; "" when none). */
export function innerPath(options: readonly CoapOption[]): string {
  let p = '';
  for (const o of options) if (o.number === OptionNumber.UriPath) p += `/${o.value.toString('utf8')}`;
  return p;
}
