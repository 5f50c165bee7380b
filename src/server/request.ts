/**
 * The request as handlers and middlewares see it (ServerRequest), what a
 * handler may return, and the Middleware type: the part of the server that
 * the built-in layers (block-wise, observe) and applications build on. In its
 * own module so that those layers do not import the server that builds them
 * in (no import cycle).
 */
import { Buffer } from 'node:buffer';
import type { CoapMessage, CoapOption } from '../codec/message.js';
import { getOption, getOptions, getUintOption, type OptionInput } from '../codec/options.js';
import { describeCode, ResponseCode } from '../constants/codes.js';
import { OptionNumber } from '../constants/options.js';
import type { Endpoint } from '../endpoint/endpoint.js';
import { ResponseCodeError } from '../errors.js';
import type { OutgoingResponse } from '../exchange/exchange-layer.js';
import type { Peer } from '../transport/transport.js';
import type { AmplificationGuard } from './echo.js';
import type { Route } from './router.js';

/** What a handler sees of a request's OSCORE protection (`req.oscore`). */
export interface OscoreRequestInfo {
  /** The client's Sender ID (kid). */
  readonly kid: Buffer;
  /** The kid context (ID Context), when the request carried one. */
  readonly kidContext: Buffer | undefined;
  /** The request's sequence number (its Partial IV). */
  readonly sequenceNumber: number;
}

/**
 * The peer of a server request: the transport's {@link Peer} plus what a server layer
 * learnt of it. `enableOscore` sets the OSCORE fields on the copy it hands the pipeline,
 * as non-enumerable properties: diagnostics events and traces publish the peer, and the
 * request's keys stay out of them.
 */
export interface ServerPeer extends Peer {
  /** Set when the request came OSCORE-protected and verified (read it as `req.oscore`). */
  readonly oscore?: OscoreRequestInfo;
  /**
   * Set for an OSCORE-protected Observe registration: protects each notification
   * (RFC 8613 §4.1.3.5, a Partial IV of its own); the observe layer calls it.
   */
  readonly oscoreProtect?: (response: OutgoingResponse) => OutgoingResponse;
}

/** What a handler answers: every field optional. */
export interface ServerResponse {
  /** Response code as a number (0x45) or "2.05"; defaults by method. */
  code?: number | string;
  /** The body: text (sent as UTF-8) or bytes. */
  payload?: string | Uint8Array;
  /** Content-Format as a number (50) or a name the client side accepts too ("json", "application/json"). */
  contentFormat?: number | string;
  /** Further options, each a number and a value (bytes, text or a number, as the option's format says). */
  options?: ReadonlyArray<{
    /** Option number. */
    number: number;
    /** Option value. */
    value: OptionInput;
  }>;
  /** Max-Age in seconds (§5.10.5). */
  maxAge?: number;
  /** ETag of the representation (§5.10.6); a GET with a matching ETag gets 2.03 Valid. */
  etag?: Uint8Array;
  /** Location-Path segments (a POST that created a resource, §5.10.7). */
  locationPath?: string[];
  /** Location-Query values. */
  locationQuery?: string[];
}

/** What a handler may return: a response, its payload alone (text or bytes), or nothing (the method's default code). */
// biome-ignore lint/suspicious/noConfusingVoidType: handlers may return nothing
export type HandlerResult = ServerResponse | string | Uint8Array | undefined | null | void;
/** A route's handler: answers a request, synchronously or not (a slow one gets a separate response). */
export type RequestHandler = (req: ServerRequest) => HandlerResult | Promise<HandlerResult>;

/** The request as a handler sees it. */
export class ServerRequest {
  private paramsObject: Record<string, string> | undefined;

  /** Parameters from `:name` segments (and `*`) of the route pattern (created when first read). */
  get params(): Record<string, string> {
    if (this.paramsObject === undefined) this.paramsObject = {};
    return this.paramsObject;
  }
  /** Set by the router when the route matched. */
  set params(p: Record<string, string>) {
    this.paramsObject = p;
  }
  /** The route that matched, if any. */
  route: Route<RequestHandler> | undefined;
  /** The endpoint the request arrived on (observe notifications go back through it). */
  endpoint: Endpoint | undefined;
  /**
   * The amplification rule when the request came over plain UDP (RFC 9175
   * §2.4): the observe layer asks it before registering an observer.
   */
  amplification: AmplificationGuard | undefined;

  constructor(
    /** The decoded request. */
    readonly message: CoapMessage,
    /** Who sent it (address, port and, over coaps://, the PSK identity; OSCORE, see {@link ServerPeer}). */
    readonly peer: ServerPeer,
    /** The Uri-Path as "/a/b" ("/" when empty). */
    readonly path: string,
    /** The Uri-Path segments. */
    readonly pathSegments: string[],
  ) {}

  /** The request code (0.01 GET = 1, ...). */
  get code(): number {
    return this.message.code;
  }

  /** "GET", "POST", ... */
  get method(): string {
    return describeCode(this.message.code);
  }

  /** Every option of the request, in order. */
  get options(): CoapOption[] {
    return this.message.options;
  }

  /** The request body (whole, reassembled when it came block-wise). */
  get payload(): Buffer {
    return this.message.payload;
  }

  /**
   * OSCORE (RFC 8613): set when the request came protected and verified; `kid` is the
   * client's Sender ID, which names its security context (see `enableOscore`).
   */
  get oscore(): OscoreRequestInfo | undefined {
    return this.peer.oscore;
  }

  /** The request's token (§5.3.1). */
  get token(): Buffer {
    return this.message.token;
  }

  /** The request's Message ID. */
  get messageId(): number {
    return this.message.messageId;
  }

  /** True for a CON request. */
  get confirmable(): boolean {
    return this.message.type === 0;
  }

  /** Authenticated identity for coaps:// requests (see {@link PeerAuth}); undefined for plain coap://. */
  get identity(): string | undefined {
    return this.peer.identity;
  }

  /** The Uri-Query values, as text. */
  get query(): string[] {
    return getOptions(this.message.options, OptionNumber.UriQuery).map((b) => b.toString('utf8'));
  }

  /** The request's Content-Format, if any. */
  get contentFormat(): number | undefined {
    return getUintOption(this.message.options, OptionNumber.ContentFormat);
  }

  /** The Accept option, if any (§5.10.4). */
  get accept(): number | undefined {
    return getUintOption(this.message.options, OptionNumber.Accept);
  }

  /** The first value of option `n`, if present. */
  option(n: number): Buffer | undefined {
    return getOption(this.message.options, n);
  }

  /** Every value of option `n`. */
  optionAll(n: number): Buffer[] {
    return getOptions(this.message.options, n);
  }

  /** The payload as UTF-8 text. */
  text(): string {
    return this.message.payload.toString('utf8');
  }

  /**
   * Evaluates If-Match / If-None-Match (§5.10.8) against the resource's
   * current ETag (undefined = the resource does not exist) and throws
   * ResponseCodeError 4.12 when a precondition fails.
   */
  checkPreconditions(currentEtag: Uint8Array | undefined): void {
    const ifMatch = getOptions(this.message.options, OptionNumber.IfMatch);
    if (ifMatch.length > 0) {
      const ok =
        currentEtag !== undefined &&
        ifMatch.some((v) => v.length === 0 || Buffer.compare(v, currentEtag) === 0);
      if (!ok) throw new ResponseCodeError(ResponseCode.PreconditionFailed, 'If-Match precondition failed');
    }
    if (
      getOption(this.message.options, OptionNumber.IfNoneMatch) !== undefined &&
      currentEtag !== undefined
    ) {
      throw new ResponseCodeError(ResponseCode.PreconditionFailed, 'If-None-Match: resource exists');
    }
  }
}

/**
 * A hook that can take over a request before routing (observe, block-wise,
 * proxying). Returning undefined passes the request on.
 */
export type Middleware = (
  req: ServerRequest,
  /** Runs the rest of the pipeline; pass a request to continue with a replacement (e.g. a reassembled body). */
  next: (replacement?: ServerRequest) => Promise<OutgoingResponse | null> | OutgoingResponse | null,
) => OutgoingResponse | null | Promise<OutgoingResponse | null> | undefined;
