/**
 * OSCORE on the server (RFC 8613 §8.2, §8.3): `enableOscore(server, { contexts,
 * required })` puts a layer around the server's pipeline. A protected request
 * is verified and decrypted before anything else sees it (routing, block-wise
 * — inner block-wise: each block is a protected request of its own); the
 * handler sees the inner request and `req.oscore.kid`; the answer is protected
 * with the request's nonce. Failures get the RFC's unprotected answers (4.02
 * "Failed to decode COSE", 4.01 "Security context not found", 4.01 "Replay
 * detected", 4.00 "Decryption failed", each with Max-Age 0). A path under
 * `required` answers an unprotected request with 4.02 "OSCORE required".
 *
 * After a restart (a context whose replay state is unknown, e.g. loaded with a
 * persisted sequence number) the first request of each client is answered
 * with a protected 4.01 + Echo (RFC 9175, RFC 8613 Appendix B.1.2) and not
 * performed; the client repeats it with the Echo value inside, which proves
 * it fresh, and the replay window starts there. The Echo values are the
 * amplification guard's (server/echo.ts): stateless, bound to the context.
 *
 * Observe over OSCORE (§4.1.3.5): the registration's response and every
 * notification carry a Partial IV of the server's own (a fresh nonce each);
 * the observe layer protects each notification through the peer's
 * `oscoreProtect`.
 *
 * Outer block-wise (§4.1.3.4.2): a protected request that a proxy cut into
 * outer Block1 blocks is put back together (2.31 Continue for each block but
 * the last) before it is verified; more than `maxUnfragmentedSize` bytes → 4.13.
 * A protected response goes out in outer Block2 blocks when the request asks
 * with an outer Block2 option or when it is larger than `outerBlockSize`; the
 * later blocks are served from the protected response kept for the purpose
 * (the same protected request again: it is not verified a second time).
 */
import { Buffer } from 'node:buffer';
import { publishInner } from '../client/oscore.js';
import { utf8Interned } from '../codec/intern.js';
import type { CoapMessage, CoapOption } from '../codec/message.js';
import { type BlockOption, encodeBlock, encodeUint } from '../codec/options.js';
import { ResponseCode } from '../constants/codes.js';
import { OptionNumber } from '../constants/options.js';
import { channels } from '../diagnostics.js';
import type { Endpoint } from '../endpoint/endpoint.js';
import { InvalidArgumentError, OscoreError, OscoreSequenceUnavailableError } from '../errors.js';
import type { OutgoingResponse } from '../exchange/exchange-layer.js';
import type { OscoreContext } from '../oscore/context.js';
import { decodeOscoreOption } from '../oscore/option.js';
import {
  DEFAULT_MAX_UNFRAGMENTED_SIZE,
  joinParts,
  OuterBlockStore,
  outerBlock,
  withoutOuterBlock,
} from '../oscore/outer-block.js';
import { oscoreOptionOf, protectResponse, type RequestBinding, unprotectRequest } from '../oscore/protect.js';
import type { Peer } from '../transport/transport.js';
import type { Clock } from '../util/clock.js';
import { AmplificationGuard, echoOf } from './echo.js';
import type { OscoreRequestInfo, ServerPeer } from './request.js';
import type { CoapServer } from './server.js';

/** Options of {@link enableOscore}. */
export interface OscoreServerOptions {
  /** The server's contexts, one per client (senderId = the server's ID, recipientId = the client's kid). */
  contexts: readonly OscoreContext[];
  /**
   * Paths that only OSCORE-protected requests may reach: "/secure" (exactly),
   * "/secure/*" (one segment below), "/secure/**" (it and everything below), "/**" (all).
   */
  required?: readonly string[];
  /** How long an Echo value of the freshness check stays valid, ms (default 60 000). */
  echoLifetimeMs?: number;
  /**
   * MAX_UNFRAGMENTED_SIZE (RFC 8613 §4.1.3.4.2): the largest protected payload put back
   * together from outer Block1 blocks, in bytes (default 65 536); larger → 4.13.
   */
  maxUnfragmentedSize?: number;
  /** A protected response payload larger than this goes out in outer Block2 blocks of 1024 bytes (default 1152). */
  outerBlockSize?: number;
  /**
   * The clock of the Echo freshness check (RFC 9175) and of the outer block-wise state's
   * expiry (default the server's `clock` option, else the real one).
   */
  clock?: Clock;
  /**
   * Every protected response carries a Partial IV of the server's own (default: only
   * Observe notifications and Echo challenges). For servers sharing one context (a
   * fleet on one store): their replay windows are apart, so a request replayed to a
   * second server would otherwise be answered under the first one's nonce.
   */
  ownPartialIv?: boolean;
}

/** What the layer did, for tests and logs. */
export interface OscoreServerStats {
  /** Requests verified and passed on. */
  verified: number;
  /** Requests refused, by diagnostic ("Replay detected", ...). */
  refused: Record<string, number>;
  /** 4.01 + Echo freshness challenges sent (replay state unknown). */
  echoChallenges: number;
  /** Unprotected requests to a required path. */
  unprotectedRefused: number;
  /**
   * Responses that could not be protected: 5.03 + Max-Age while no sequence number is
   * reserved (a shared store's next range not committed yet), else 5.00 (exhausted, not persisted).
   */
  protectFailures: number;
  /** Protected requests put back together from outer Block1 blocks. */
  outerReassembled: number;
  /** Outer Block2 blocks served from a kept protected response. */
  outerBlocksServed: number;
}

interface PartialBody {
  parts: Buffer[];
  length: number;
}

interface OuterRequest {
  msg: CoapMessage;
  key: string;
  block1?: BlockOption;
  block2?: BlockOption;
}

/** The layer `enableOscore` installs. */
export class OscoreServer {
  /** What the layer did so far. */
  readonly stats: OscoreServerStats = {
    verified: 0,
    refused: {},
    echoChallenges: 0,
    unprotectedRefused: 0,
    protectFailures: 0,
    outerReassembled: 0,
    outerBlocksServed: 0,
  };
  /** The last error that kept a response from being protected (see `stats.protectFailures`). */
  lastProtectError: unknown;
  private readonly byKid = new Map<string, OscoreContext[]>();
  private readonly required: Array<(segments: string[]) => boolean>;
  private readonly echo: AmplificationGuard;
  private readonly maxUnfragmented: number;
  private readonly outerBlockSize: number;
  private readonly alwaysOwnPiv: boolean;
  /** Outer Block1 bodies being put back together, and protected responses served in outer Block2 blocks. */
  private readonly partial: OuterBlockStore<PartialBody>;
  private readonly responses: OuterBlockStore<OutgoingResponse>;

  constructor(
    private readonly server: CoapServer,
    options: OscoreServerOptions,
  ) {
    if (!options || !Array.isArray(options.contexts))
      throw new InvalidArgumentError('enableOscore needs { contexts: OscoreContext[] }');
    for (const c of options.contexts) this.addContext(c);
    this.required = (options.required ?? []).map(compilePattern);
    // One clock with the server's layers (as observe and block-wise get it).
    const time = options.clock ?? server.clock;
    const clock = time ? { clock: time } : {};
    this.echo = new AmplificationGuard(3, { lifetimeMs: options.echoLifetimeMs ?? 60_000, ...clock });
    this.maxUnfragmented = options.maxUnfragmentedSize ?? DEFAULT_MAX_UNFRAGMENTED_SIZE;
    this.outerBlockSize = options.outerBlockSize ?? 1152;
    this.alwaysOwnPiv = options.ownPartialIv === true;
    // Partial bodies cannot be verified before they are whole: at most 64 (4 per peer) of at most
    // maxUnfragmentedSize bytes each (4 MiB with the default), each expiring 60 s after its last block.
    this.partial = new OuterBlockStore({ maxEntries: 64, maxPerPeer: 4, ...clock });
    this.responses = new OuterBlockStore(clock);
  }

  /** Adds a client's context (its kid is the context's recipientId). */
  addContext(ctx: OscoreContext): void {
    const k = ctx.recipientId.toString('hex');
    const list = this.byKid.get(k) ?? [];
    const same = list.find((c) => sameBytes(c.idContext, ctx.idContext));
    if (same !== undefined) throw new InvalidArgumentError(`two OSCORE contexts for kid ${k || '(empty)'}`);
    list.push(ctx);
    this.byKid.set(k, list);
  }

  private lookup = (kid: Buffer, kidContext: Buffer | undefined): OscoreContext | undefined => {
    const list = this.byKid.get(kid.toString('hex'));
    if (list === undefined) return undefined;
    if (kidContext === undefined) return list[0];
    return list.find((c) => c.idContext?.equals(kidContext) === true);
  };

  /** True when an unprotected request to these path segments must be refused. */
  isRequired(segments: string[]): boolean {
    for (const r of this.required) if (r(segments)) return true;
    return false;
  }

  /** The layer: runs around the server's pipeline. */
  handle = (
    msg: CoapMessage,
    peer: Peer,
    endpoint: Endpoint | undefined,
  ): OutgoingResponse | null | Promise<OutgoingResponse | null> => {
    const server = this.server;
    const raw = oscoreOptionOf(msg.options);
    // Requests for a proxy are forwarded as they are (the proxy cannot and need not read them).
    if (raw === undefined || isProxyRequest(msg.options)) {
      if (raw === undefined && this.required.length > 0 && this.isRequired(pathSegments(msg.options))) {
        this.stats.unprotectedRefused++;
        return refusal(ResponseCode.BadOption, 'OSCORE required');
      }
      return server.pipeline(msg, peer, endpoint);
    }
    let outer: OuterRequest | undefined;
    if (msg.options.some((o) => o.number === OptionNumber.Block1 || o.number === OptionNumber.Block2)) {
      const r = this.outerIn(msg, peer, raw);
      if (!('msg' in r)) return r;
      outer = r;
      msg = r.msg;
    }
    // The answer, cut into outer blocks when asked (outer Block2) or too large for one datagram.
    const out = (r: OutgoingResponse | null): OutgoingResponse | null =>
      r === null || (outer === undefined && (r.payload?.length ?? 0) <= this.outerBlockSize)
        ? r
        : this.outerOut(outer ?? { msg, key: outerKey(peer, raw) }, peer, r);
    const result = this.verified(msg, peer, endpoint);
    return result instanceof Promise ? result.then(out) : out(result);
  };

  /** An outer block of a protected request: the whole request when complete, else the answer for this block. */
  private outerIn(msg: CoapMessage, peer: Peer, raw: Buffer): OuterRequest | OutgoingResponse {
    const b1 = outerBlock(msg.options, OptionNumber.Block1);
    const b2 = outerBlock(msg.options, OptionNumber.Block2);
    if (b1 === null || b2 === null) return refusal(ResponseCode.BadOption, 'Malformed outer block option');
    const key = outerKey(peer, raw);
    if (b2 !== undefined && b2.num > 0 && b1 === undefined) {
      // A later block of a protected response kept for it; else the request is verified as any
      // other (a repeated one is refused as a replay).
      const kept = this.responses.get(key);
      if (kept !== undefined) {
        this.stats.outerBlocksServed++;
        return outerSlice(kept, b2);
      }
    }
    const options = withoutOuterBlock(msg.options);
    if (b1 === undefined) return { msg: { ...msg, options }, key, block2: b2 };
    const payload = msg.payload ?? Buffer.alloc(0);
    let p = b1.num === 0 ? { parts: [], length: 0 } : this.partial.get(key);
    if (p === undefined || p.length !== b1.num * b1.size) {
      this.partial.delete(key);
      return refusal(ResponseCode.RequestEntityIncomplete, 'Outer Block1 out of order');
    }
    if (b1.more && payload.length !== b1.size) {
      this.partial.delete(key);
      return refusal(ResponseCode.BadRequest, 'Outer Block1 size mismatch');
    }
    if (p.length + payload.length > this.maxUnfragmented) {
      this.partial.delete(key);
      const r = refusal(ResponseCode.RequestEntityTooLarge, 'Outer blocks exceed MAX_UNFRAGMENTED_SIZE');
      r.options!.push({ number: OptionNumber.Size1, value: encodeUint(this.maxUnfragmented) });
      return r;
    }
    p = { parts: [...p.parts, Buffer.from(payload)], length: p.length + payload.length };
    if (b1.more) {
      if (!this.partial.set(peer.key, key, p))
        return refusal(ResponseCode.ServiceUnavailable, 'Too many outer block transfers');
      return {
        code: ResponseCode.Continue,
        options: [{ number: OptionNumber.Block1, value: encodeBlock(b1.num, true, b1.szx) }],
      };
    }
    this.partial.delete(key);
    this.stats.outerReassembled++;
    return { msg: { ...msg, options, payload: joinParts(p.parts) }, key, block1: b1, block2: b2 };
  }

  /** The protected response `r`, with the outer Block1 echo and cut into outer Block2 blocks when asked or too large. */
  private outerOut(o: OuterRequest, peer: Peer, r: OutgoingResponse): OutgoingResponse {
    // An unprotected refusal (§8.2) is small and goes as it is.
    if (r.options === undefined || oscoreOptionOf(r.options) === undefined) return r;
    const options = [...r.options];
    if (o.block1 !== undefined)
      options.push({ number: OptionNumber.Block1, value: encodeBlock(o.block1.num, false, o.block1.szx) });
    const whole: OutgoingResponse = { ...r, options };
    const length = r.payload?.length ?? 0;
    const b2 =
      o.block2 ?? (length > this.outerBlockSize ? { num: 0, more: false, szx: 6, size: 1024 } : undefined);
    if (b2 === undefined || (b2.num === 0 && length <= b2.size)) return whole;
    if ((b2.num + 1) * b2.size < length && !this.responses.set(peer.key, o.key, whole))
      return refusal(ResponseCode.ServiceUnavailable, 'Too many outer block transfers');
    return outerSlice(whole, b2);
  }

  /** A verified protected request (whole): passed on as its inner request, the answer protected. */
  private verified(
    msg: CoapMessage,
    peer: Peer,
    endpoint: Endpoint | undefined,
  ): OutgoingResponse | null | Promise<OutgoingResponse | null> {
    const server = this.server;
    let got: ReturnType<typeof unprotectRequest>;
    try {
      got = unprotectRequest(this.lookup, msg);
    } catch (err) {
      if (!(err instanceof OscoreError) || err.responseCode === undefined) throw err;
      const d = err.diagnostic ?? err.message;
      this.stats.refused[d] = (this.stats.refused[d] ?? 0) + 1;
      return refusal(err.responseCode, d);
    }
    const { binding } = got;
    let inner = got.message;
    publishInner(peer, 'in', inner, binding.kid, binding.partialIv);
    if (!got.fresh) {
      const echoPeer = this.echoPeer(binding);
      const value = echoOf(inner.options);
      if (value === undefined || !this.echo.validEcho(value, echoPeer)) {
        this.stats.echoChallenges++;
        // Not performed; protected with a Partial IV of our own (the request may be a replay, §B.1.2).
        return this.protect(
          binding,
          {
            code: ResponseCode.Unauthorized,
            options: [{ number: OptionNumber.Echo, value: this.echo.echoValue(echoPeer) }],
          },
          true,
          peer,
        );
      }
      binding.context.replayReset(binding.sequenceNumber);
    }
    this.stats.verified++;
    // One pass over the inner options for Observe and Echo.
    let observe = false;
    let echo = false;
    for (const o of inner.options) {
      if (o.number === OptionNumber.Observe) observe = true;
      else if (o.number === OptionNumber.Echo) echo = true;
    }
    // The Echo option was for the freshness check above (the amplification rule does not apply).
    if (echo) inner = { ...inner, options: inner.options.filter((o) => o.number !== OptionNumber.Echo) };
    const info: OscoreRequestInfo = {
      kid: binding.kid,
      kidContext: binding.kidContext,
      sequenceNumber: binding.sequenceNumber,
    };
    // The handler sees `req.oscore`. Its own key keeps the block-wise cache of protected requests
    // apart from plain ones; an observation keeps the real key (its notifications and their ACKs
    // go through the message layer, which knows the peer by it) and protects each notification
    // (§4.1.3.5: with a Partial IV of its own) through `oscoreProtect`, which the observe layer calls.
    const kidKey = `${binding.kidContext?.toString('hex') ?? ''}:${binding.kid.toString('hex')}`;
    // Not enumerable (ServerPeer): the peer is published in diagnostics events and traces, these stay out.
    const innerPeer: ServerPeer = observe ? { ...peer } : { ...peer, key: `${peer.key}|oscore:${kidKey}` };
    Object.defineProperty(innerPeer, 'oscore', { value: info });
    if (observe)
      Object.defineProperty(innerPeer, 'oscoreProtect', {
        value: (r: OutgoingResponse) => this.protect(binding, r, true, peer),
      });
    // A response that registered an observation is its first notification: own Partial IV too.
    const answer = (r: OutgoingResponse | null) =>
      r === null
        ? null
        : this.protect(
            binding,
            r,
            this.alwaysOwnPiv ||
              (observe && r.options?.some((o) => o.number === OptionNumber.Observe) === true),
            peer,
          );
    const result = server.pipeline(inner, innerPeer, endpoint);
    return result instanceof Promise ? result.then(answer) : answer(result);
  }

  private protect(
    binding: RequestBinding,
    res: OutgoingResponse,
    ownPartialIv: boolean,
    peer?: Peer,
  ): OutgoingResponse {
    const plain = {
      code: res.code,
      options: res.options ?? [],
      payload: res.payload === undefined ? undefined : Buffer.from(res.payload),
    };
    let out: ReturnType<typeof protectResponse>;
    try {
      out = protectResponse(binding, plain, { ownPartialIv });
    } catch (err) {
      // No sequence number (exhausted, or FILE.seq cannot be written): nothing is sent
      // protected; an unprotected 5.00 without payload tells the client, revealing nothing.
      this.stats.protectFailures++;
      this.lastProtectError = err;
      // The next range of a shared sequence store is on its way: try again shortly.
      if (err instanceof OscoreSequenceUnavailableError)
        return {
          code: ResponseCode.ServiceUnavailable,
          options: [{ number: OptionNumber.MaxAge, value: encodeUint(err.retryAfter) }],
        };
      return refusal(ResponseCode.InternalServerError, '');
    }
    // The Partial IV is read back only for a diagnostics subscriber (publishInner would drop it).
    if (peer !== undefined && channels.oscore.hasSubscribers) {
      const raw = oscoreOptionOf(out.options);
      publishInner(
        peer,
        'out',
        plain,
        binding.kid,
        raw === undefined ? undefined : decodeOscoreOption(raw).partialIv,
      );
    }
    return { code: out.code, options: out.options, ...(out.payload ? { payload: out.payload } : {}) };
  }

  /** Echo values are bound to the client's context, not to its address. */
  private echoPeer(b: RequestBinding): Peer {
    const address = `oscore|${b.kidContext?.toString('hex') ?? ''}|${b.kid.toString('hex')}`;
    return { address, port: 0, family: 'IPv4', key: address } as unknown as Peer;
  }
}

/**
 * Turns OSCORE on for `server`: protected requests are verified and answered
 * protected; paths under `required` refuse unprotected requests. Returns the
 * layer (its `stats`, `addContext`).
 */
export function enableOscore(server: CoapServer, options: OscoreServerOptions): OscoreServer {
  const layer = new OscoreServer(server, options);
  server.recognizedOptions.add(OptionNumber.Oscore);
  server.around = layer.handle;
  return layer;
}

function refusal(code: number, diagnostic: string): OutgoingResponse {
  // §8.2: not protected; Max-Age 0 so that no proxy caches the error.
  const options: CoapOption[] = [{ number: OptionNumber.MaxAge, value: encodeUint(0) }];
  return diagnostic === '' ? { code, options } : { code, options, payload: Buffer.from(diagnostic, 'utf8') };
}

/**
 * The key of a protected request's outer block-wise state: the peer and the OSCORE option, the
 * same in every outer block (a kept response is stored and looked up under it).
 */
function outerKey(peer: Peer, raw: Buffer): string {
  return `${peer.key}|${raw.toString('hex')}`;
}

/** Block `b.num` of the protected response `r` (outer Block2, Size2 on the first). */
function outerSlice(r: OutgoingResponse, b: BlockOption): OutgoingResponse {
  const payload = r.payload ?? Buffer.alloc(0);
  const start = b.num * b.size;
  if (start >= payload.length && start > 0)
    return refusal(ResponseCode.BadOption, 'Outer Block2 beyond the end');
  const end = Math.min(start + b.size, payload.length);
  const options = [...(r.options ?? [])];
  options.push({ number: OptionNumber.Block2, value: encodeBlock(b.num, end < payload.length, b.szx) });
  if (b.num === 0) options.push({ number: OptionNumber.Size2, value: encodeUint(payload.length) });
  return { code: r.code, options, payload: payload.subarray(start, end) };
}

function isProxyRequest(options: readonly CoapOption[]): boolean {
  return options.some((o) => o.number === OptionNumber.ProxyUri || o.number === OptionNumber.ProxyScheme);
}

function pathSegments(options: readonly CoapOption[]): string[] {
  const out: string[] = [];
  // Interned, as the pipeline decodes them right after: a hit costs no string.
  for (const o of options) if (o.number === OptionNumber.UriPath) out.push(utf8Interned(o.value));
  return out;
}

function sameBytes(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === undefined ? b === undefined : b !== undefined && a.equals(b);
}

/** A required path, "/a/**", "/a/*", "/a", "/**" → a test on path segments (the CLI's banner uses it too). */
export function compilePattern(p: string): (segments: string[]) => boolean {
  if (typeof p !== 'string' || !p.startsWith('/'))
    throw new InvalidArgumentError(`OSCORE required path must start with "/", got ${JSON.stringify(p)}`);
  const parts = p
    .split('/')
    .slice(1)
    .filter((s, i, a) => !(s === '' && i === a.length - 1));
  const deep = parts[parts.length - 1] === '**';
  if (deep) parts.pop();
  if (parts.includes('**')) throw new InvalidArgumentError(`"**" only at the end of a path pattern: ${p}`);
  return (segs) => {
    if (deep ? segs.length < parts.length : segs.length !== parts.length) return false;
    for (let i = 0; i < parts.length; i++) if (parts[i] !== '*' && parts[i] !== segs[i]) return false;
    return true;
  };
}
