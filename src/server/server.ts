/**
 * The CoAP server: routes, the right error codes (§5.9), /.well-known/core
 * (RFC 6690), and handlers that never crash the server. It runs on any
 * number of transports at once (coap:// and coaps:// side by side).
 */

import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
// The global `performance` is an accessor: every use would call a getter; the module binding does not.
import { performance } from 'node:perf_hooks';
import { BlockwiseServer, type BlockwiseServerOptions } from '../blockwise/server.js';
import { utf8Interned } from '../codec/intern.js';
import { filterLinks, type Link, serializeLinkFormat } from '../codec/link-format.js';
import type { CoapMessage, CoapOption } from '../codec/message.js';
import {
  decodeUint,
  encodeUint,
  firstBadCritical,
  getOption,
  getOptions,
  getUintOption,
  optionValue,
} from '../codec/options.js';
import { MessageType, Method, type MethodName, parseCode, ResponseCode } from '../constants/codes.js';
import { ContentFormat, parseContentFormat } from '../constants/content-formats.js';
import { OptionNumber, optionName } from '../constants/options.js';
import { channels } from '../diagnostics.js';
import { Endpoint, type EndpointOptions } from '../endpoint/endpoint.js';
import { InvalidArgumentError, ResponseCodeError } from '../errors.js';
import type { OutgoingResponse } from '../exchange/exchange-layer.js';
import { listenMulticast, type MulticastListener, type MulticastServerOptions } from '../multicast/server.js';
import { ObserveServer, type ObserveServerOptions } from '../observe/server.js';
import type { Peer, Transport } from '../transport/transport.js';
import { UdpTransport, type UdpTransportOptions } from '../transport/udp.js';
import type { Clock } from '../util/clock.js';
import { AmplificationGuard, type EchoOptions } from './echo.js';
import {
  type HandlerResult,
  type Middleware,
  type RequestHandler,
  type ServerPeer,
  ServerRequest,
  type ServerResponse,
} from './request.js';
import { type ResourceAttributes, Router } from './router.js';

export {
  type HandlerResult,
  type Middleware,
  type RequestHandler,
  ServerRequest,
  type ServerResponse,
} from './request.js';

/** A layer around a server's whole pipeline (see `CoapServer.around`). */
export type ServerHandlerLayer = (
  msg: CoapMessage,
  peer: Peer,
  endpoint: Endpoint | undefined,
) => OutgoingResponse | null | Promise<OutgoingResponse | null>;

export interface ServerOptions extends EndpointOptions {
  /** Largest request payload accepted, in bytes (default 1024 * 64). Larger gets 4.13. */
  maxPayloadSize?: number;
  /** Add a diagnostic payload to error responses (default true). */
  diagnosticPayloads?: boolean;
  /** Called when a handler throws something other than ResponseCodeError. */
  onError?: (error: unknown, req: ServerRequest) => void;
  /**
   * Amplification limit (RFC 7252 §11.3, RFC 9175 §2.4) for plain-UDP (coap://)
   * peers whose address is not verified: a response larger than this many
   * times the request datagram is replaced (default 3; `false` turns the rule
   * off). GET/FETCH and error responses get 4.01 Unauthorized + Echo instead
   * (a 6-byte value the client repeats to prove its address); an Observe
   * registration is challenged before it registers; a 2.xx to an unsafe
   * method (its change is kept) goes out as the first block of a smaller
   * Block2 size when block-wise is enabled, else an idempotent unconditional
   * request (PUT, DELETE, iPATCH) is challenged, else (POST, PATCH) the
   * payload is not sent. Applies to UdpTransport endpoints only: coaps://
   * (DTLS cookie exchange), multicast and in-memory transports are not limited.
   */
  amplificationFactor?: number | false;
  /** Bounds of the Echo address verification (lifetime, verified-peer table). */
  echo?: EchoOptions;
  /**
   * Longest request path accepted, in bytes of its "/seg1/seg2" form (each
   * Uri-Path value plus one for its slash). Longer requests get 4.00 Bad
   * Request before any routing or middleware (block-wise, observe) sees them.
   * Default 1024.
   */
  maxUriPathBytes?: number;
  /** Most Uri-Path options (path segments) in a request; more get 4.00. Default 32. */
  maxUriPathSegments?: number;
  /**
   * Longest query accepted, in bytes of its "?a=1&b=2" form (each Uri-Query
   * value plus one for its separator); longer gets 4.00. Default 1024.
   */
  maxUriQueryBytes?: number;
  /**
   * Block-wise transfer (RFC 7959), on by default: handlers see whole bodies and
   * large responses go out in blocks. The built-in layer's `maxBodySize` defaults
   * to `maxPayloadSize`. Options for the built-in layer, a
   * BlockwiseServer to use (e.g. one shared by several servers), or `false`:
   * then a request carrying Block1 or Block2 (critical options) gets 4.02 Bad
   * Option (RFC 7252 §5.4.1) instead of being taken for the whole body.
   */
  blockwise?: BlockwiseServerOptions | BlockwiseServer | false;
  /**
   * Observe (RFC 7641), on by default: a GET with Observe=0 on a route with
   * `obs: true` registers the client; `server.observe.notify(path)` sends the
   * new state. Options for the built-in layer, an ObserveServer to use (e.g. one
   * shared by several servers), or `false`: then Observe (elective) is ignored.
   */
  observe?: ObserveServerOptions | ObserveServer | false;
}

/** Defaults of the request URI limits (see ServerOptions). */
export const DEFAULT_MAX_URI_PATH_BYTES = 1024;
export const DEFAULT_MAX_URI_PATH_SEGMENTS = 32;
export const DEFAULT_MAX_URI_QUERY_BYTES = 1024;

interface UriLimits {
  pathBytes: number;
  segments: number;
  queryBytes: number;
}

/** Cuts a response to an unsafe request down to `budget` bytes without losing it (block-wise). */
export type ResponseShrinker = (
  req: ServerRequest,
  res: OutgoingResponse,
  budget: number,
) => OutgoingResponse | undefined;

/** Options this server understands; unknown critical ones get 4.02 (§5.4.1). */
const RECOGNIZED = new Set<number>([
  OptionNumber.IfMatch,
  OptionNumber.UriHost,
  OptionNumber.ETag,
  OptionNumber.IfNoneMatch,
  OptionNumber.Observe,
  OptionNumber.UriPort,
  OptionNumber.LocationPath,
  OptionNumber.UriPath,
  OptionNumber.ContentFormat,
  OptionNumber.MaxAge,
  OptionNumber.UriQuery,
  OptionNumber.Accept,
  OptionNumber.LocationQuery,
  OptionNumber.Block2,
  OptionNumber.Block1,
  OptionNumber.Size2,
  OptionNumber.ProxyUri,
  OptionNumber.ProxyScheme,
  OptionNumber.Size1,
  OptionNumber.NoResponse,
]);

const DEFAULT_CODES: Record<number, number> = {
  [Method.GET]: ResponseCode.Content,
  [Method.FETCH]: ResponseCode.Content,
  [Method.POST]: ResponseCode.Changed,
  [Method.PUT]: ResponseCode.Changed,
  [Method.DELETE]: ResponseCode.Deleted,
  [Method.PATCH]: ResponseCode.Changed,
  [Method.iPATCH]: ResponseCode.Changed,
};

export class CoapServer {
  readonly router = new Router<RequestHandler>();
  readonly endpoints: Endpoint[] = [];
  private readonly linkProviders: Array<() => Link[]> = [];
  private readonly middlewares: Middleware[] = [];
  /** How many middlewares at the start run before block-wise and observe (`useFirst`: access control). */
  private firstCount = 0;
  /**
   * Decides which links a request to /.well-known/core sees (access control:
   * a peer does not discover what it may not read). Undefined: every link.
   */
  discoveryFilter: ((req: ServerRequest, link: Link) => boolean) | undefined;
  /** Handler for requests carrying Proxy-Uri / Proxy-Scheme; 5.05 when unset. */
  proxyHandler: RequestHandler | undefined;
  readonly recognizedOptions = new Set(RECOGNIZED);
  private readonly maxPayloadSize: number;
  /** Whether error responses carry a diagnostic payload (`ServerOptions.diagnosticPayloads`). */
  readonly diagnosticPayloads: boolean;
  /** The amplification rule for coap:// peers (undefined when `amplificationFactor: false`). */
  readonly amplification: AmplificationGuard | undefined;
  /** `{ clock }` when the options name one, for the layers this server creates. */
  private readonly clockOption: { clock?: Clock };
  private bwLayer: BlockwiseServer | undefined;
  /** Amplification rule: a large response to an unsafe request goes out as a small first block (block-wise layer). */
  private shrinkResponse: ResponseShrinker | undefined;
  /** The server created bwLayer (and closes it when replaced). */
  private bwOwned = false;
  private obsLayer: ObserveServer | undefined;
  private obsOwned = false;
  private obsMiddleware: Middleware | undefined;

  constructor(private readonly options: ServerOptions = {}) {
    this.maxPayloadSize = options.maxPayloadSize ?? 64 * 1024;
    const factor = options.amplificationFactor ?? 3;
    // One clock for the server's timers (EndpointOptions.clock): its layers use it too.
    const clock = options.clock ? { clock: options.clock } : {};
    this.clockOption = clock;
    this.amplification =
      factor === false ? undefined : new AmplificationGuard(factor, { ...clock, ...options.echo });
    this.diagnosticPayloads = options.diagnosticPayloads ?? true;
    this.router.add(Method.GET, '/.well-known/core', (req) => this.wellKnownCore(req), {
      ct: ContentFormat.LinkFormat,
      hidden: true,
    });
    const bw = options.blockwise;
    if (bw instanceof BlockwiseServer) this.setBlockwise(bw);
    // The built-in layer reassembles no more than the server accepts (`maxPayloadSize`):
    // a larger upload gets its 4.13 at the first block that passes the limit.
    else if (bw !== false)
      this.setBlockwise(new BlockwiseServer({ maxBodySize: this.maxPayloadSize, ...clock, ...bw }), true);
    else {
      this.recognizedOptions.delete(OptionNumber.Block1);
      this.recognizedOptions.delete(OptionNumber.Block2);
    }
    const obs = options.observe;
    if (obs instanceof ObserveServer) this.setObserve(obs);
    else if (obs !== false) this.setObserve(new ObserveServer({ ...clock, ...obs }), true);
  }

  /** The server's `clock` option (undefined: the real clock), for layers installed on it (OSCORE). */
  get clock(): Clock | undefined {
    return this.clockOption.clock;
  }

  /** The block-wise layer (undefined when created with `blockwise: false` and not enabled since). */
  get blockwise(): BlockwiseServer | undefined {
    return this.bwLayer;
  }

  /** The observe layer, for `server.observe.notify(path)` (undefined when created with `observe: false`). */
  get observe(): ObserveServer | undefined {
    return this.obsLayer;
  }

  /** The block-wise layer, turned on if it was off; `options` change its settings. Idempotent. */
  enableBlockwise(options?: BlockwiseServerOptions): BlockwiseServer {
    if (this.bwLayer) return options ? this.bwLayer.configure(options) : this.bwLayer;
    return this.setBlockwise(
      new BlockwiseServer({ maxBodySize: this.maxPayloadSize, ...this.clockOption, ...options }),
      true,
    );
  }

  /** The observe layer, turned on if it was off; `options` change its settings. Idempotent. */
  enableObserve(options?: ObserveServerOptions): ObserveServer {
    if (this.obsLayer) return options ? this.obsLayer.configure(options) : this.obsLayer;
    return this.setObserve(new ObserveServer({ ...this.clockOption, ...options }), true);
  }

  /**
   * Makes `layer` this server's block-wise layer, in place of the current one
   * (same place in the pipeline: first). `BlockwiseServer.install` calls this.
   */
  setBlockwise(layer: BlockwiseServer, owned = false): BlockwiseServer {
    const old = this.bwLayer;
    if (old === layer) return layer;
    const i = old ? this.middlewares.indexOf(old.middleware) : -1;
    if (i >= 0) this.middlewares[i] = layer.middleware;
    else this.middlewares.splice(this.firstCount, 0, layer.middleware);
    if (old && this.bwOwned) old.close();
    this.bwLayer = layer;
    this.bwOwned = owned;
    this.shrinkResponse = (req, res, budget) => layer.fitFirstBlock(req, res, budget);
    this.recognizedOptions.add(OptionNumber.Block1);
    this.recognizedOptions.add(OptionNumber.Block2);
    return layer;
  }

  /**
   * Makes `layer` this server's observe layer, in place of the current one
   * (right after block-wise, RFC 7959 §2.6 / RFC 7641 need whole bodies and
   * whole notifications). `ObserveServer.install` calls this.
   */
  setObserve(layer: ObserveServer, owned = false): ObserveServer {
    const old = this.obsLayer;
    if (old === layer) return layer;
    const mw = layer.middlewareFor(this);
    const i = this.obsMiddleware ? this.middlewares.indexOf(this.obsMiddleware) : -1;
    if (i >= 0) this.middlewares[i] = mw;
    else {
      const after = this.bwLayer ? this.middlewares.indexOf(this.bwLayer.middleware) + 1 : this.firstCount;
      this.middlewares.splice(after, 0, mw);
    }
    if (old) {
      if (this.obsOwned) old.close();
      else old.forget(this);
    }
    this.obsLayer = layer;
    this.obsOwned = owned;
    this.obsMiddleware = mw;
    return layer;
  }

  /**
   * Runs the pipeline after middleware `mw` with `req` (the observe layer re-runs
   * a registration's GET for each notification). Null when `mw` is not installed.
   */
  runAfter(mw: Middleware, req: ServerRequest): OutgoingResponse | null | Promise<OutgoingResponse | null> {
    const i = this.middlewares.indexOf(mw);
    return i < 0 ? null : this.runMiddlewares(req, i + 1);
  }

  route(
    method: MethodName | number,
    pattern: string,
    handler: RequestHandler,
    attrs?: ResourceAttributes,
  ): this {
    const code = typeof method === 'number' ? method : Method[method];
    if (code === undefined) throw new InvalidArgumentError(`unknown method ${String(method)}`);
    this.router.add(code, pattern, handler, attrs);
    this.invalidateLinks();
    return this;
  }

  get(p: string, h: RequestHandler, a?: ResourceAttributes): this {
    return this.route('GET', p, h, a);
  }
  post(p: string, h: RequestHandler, a?: ResourceAttributes): this {
    return this.route('POST', p, h, a);
  }
  put(p: string, h: RequestHandler, a?: ResourceAttributes): this {
    return this.route('PUT', p, h, a);
  }
  delete(p: string, h: RequestHandler, a?: ResourceAttributes): this {
    return this.route('DELETE', p, h, a);
  }
  fetch(p: string, h: RequestHandler, a?: ResourceAttributes): this {
    return this.route('FETCH', p, h, a);
  }
  patch(p: string, h: RequestHandler, a?: ResourceAttributes): this {
    return this.route('PATCH', p, h, a);
  }
  ipatch(p: string, h: RequestHandler, a?: ResourceAttributes): this {
    return this.route('iPATCH', p, h, a);
  }

  /** Removes a route (all methods, or one). */
  unroute(pattern: string, method?: MethodName | number): void {
    this.router.remove(pattern, typeof method === 'string' ? Method[method] : method);
    this.invalidateLinks();
  }

  /**
   * Adds links to /.well-known/core (dynamic resources). With `watch`, the
   * provider tells when its links change (`watch` receives a function to
   * call then) and the server caches the serialized document until a route
   * or a watched provider changes; a provider added without `watch` is asked
   * on every discovery request (no caching).
   */
  addLinkProvider(provider: () => Link[], watch?: (invalidate: () => void) => void): void {
    this.linkProviders.push(provider);
    if (watch === undefined) this.linksCacheable = false;
    else watch(() => this.invalidateLinks());
    this.invalidateLinks();
  }

  /** Drops the cached /.well-known/core document (call after changing `router` directly). */
  invalidateLinks(): void {
    this.linkCache = undefined;
  }

  /** The cached links and their serialization; undefined until the first discovery request. */
  private linkCache: { links: Link[]; doc: Buffer; etag: Buffer; routes: number } | undefined;
  private linksCacheable = true;

  /**
   * Runs `mw` for every request before routing, after the built-in block-wise
   * and observe layers (so it sees whole bodies).
   */
  use(mw: Middleware): void {
    this.middlewares.push(mw);
  }

  /**
   * Runs `mw` before every other middleware, block-wise and observe included
   * (after those added by earlier `useFirst` calls): access control refuses a
   * request before a body is reassembled or an observer registered.
   */
  useFirst(mw: Middleware): void {
    this.middlewares.splice(this.firstCount++, 0, mw);
  }

  /**
   * Starts serving on a UDP socket (`{ port, host }`, default port 5683 on
   * '::' / '0.0.0.0') or on a given transport (e.g. DTLS). Can be called
   * several times to serve on several transports.
   */
  async listen(target: Transport | (UdpTransportOptions & { port?: number }) = {}): Promise<Endpoint> {
    const transport =
      'attach' in target
        ? (target as Transport)
        : await UdpTransport.create({
            port: 5683,
            ...target,
            recvBufferSize: target.recvBufferSize ?? 4 * 1024 * 1024,
          });
    const ep = new Endpoint(transport, this.options);
    ep.handler = (msg, peer) => this.handle(msg, peer, ep);
    this.endpoints.push(ep);
    return ep;
  }

  /**
   * Joins multicast groups (default 224.0.1.187 port 5683) and serves them
   * under the RFC 7252 §8 rules (NON only, leisure, no error responses).
   * Call after `listen()` so responses go out from that unicast endpoint.
   */
  listenMulticast(options: MulticastServerOptions = {}): Promise<MulticastListener[]> {
    return listenMulticast(this, options);
  }

  addresses(): Array<{ scheme: string; address: string; port: number; family: string }> {
    return this.endpoints.map((e) => ({ scheme: e.transport.scheme, ...e.transport.localAddress() }));
  }

  async close(): Promise<void> {
    if (this.obsOwned) this.obsLayer?.close();
    if (this.bwOwned) this.bwLayer?.close();
    const eps = this.endpoints.splice(0);
    await Promise.all(eps.map((e) => e.close()));
  }

  /** Links for /.well-known/core: routes with attributes plus dynamic providers. */
  links(): Link[] {
    const out: Link[] = [];
    for (const r of this.router.routes()) {
      if (r.attrs.hidden || r.hasParams) continue;
      out.push(routeLink(r.pattern, r.attrs));
    }
    for (const p of this.linkProviders) out.push(...p());
    return out;
  }

  /**
   * The links and their serialized document, built once and kept until a
   * route or a watched link provider changes (every provider must be watched).
   */
  private discovery(): { links: Link[]; doc: Buffer; etag: Buffer } {
    const c = this.linkCache;
    if (c !== undefined && c.routes === this.router.routes().length) return c;
    const links = this.links();
    const doc = Buffer.from(serializeLinkFormat(links), 'utf8');
    // An ETag of its own: the block-wise layer then need not hash the document for every block 0,
    // and a client holding the current document gets 2.03 Valid.
    const etag = createHash('sha256').update(doc).digest().subarray(0, 8);
    const built = { links, doc, etag, routes: this.router.routes().length };
    if (this.linksCacheable) this.linkCache = built;
    return built;
  }

  private wellKnownCore(req: ServerRequest): ServerResponse {
    const q = req.query;
    if (q.length > 1)
      throw new ResponseCodeError(ResponseCode.BadRequest, 'only one query filter is supported');
    let d = this.discovery();
    const only = this.discoveryFilter;
    if (only !== undefined) {
      const seen = d.links.filter((l) => only(req, l));
      if (seen.length !== d.links.length) {
        const doc = Buffer.from(serializeLinkFormat(seen), 'utf8');
        d = { links: seen, doc, etag: createHash('sha256').update(doc).digest().subarray(0, 8) };
      }
    }
    if (q.length === 0 || q[0] === '') {
      return {
        code: ResponseCode.Content,
        contentFormat: ContentFormat.LinkFormat,
        payload: d.doc,
        etag: d.etag,
      };
    }
    const links = filterLinks(d.links, q[0]);
    if (links.length === 0) throw new ResponseCodeError(ResponseCode.NotFound, 'no matching link');
    return {
      code: ResponseCode.Content,
      contentFormat: ContentFormat.LinkFormat,
      payload: serializeLinkFormat(links),
    };
  }

  private uriLimits: UriLimits | undefined;

  private resolveUriLimits(): UriLimits {
    const o = this.options;
    const pick = (v: number | undefined, d: number, name: string): number => {
      if (v === undefined) return d;
      if (!Number.isInteger(v) || v < 0) throw new InvalidArgumentError(`${name} must be an integer >= 0`);
      return v;
    };
    this.uriLimits = {
      pathBytes: pick(o.maxUriPathBytes, DEFAULT_MAX_URI_PATH_BYTES, 'maxUriPathBytes'),
      segments: pick(o.maxUriPathSegments, DEFAULT_MAX_URI_PATH_SEGMENTS, 'maxUriPathSegments'),
      queryBytes: pick(o.maxUriQueryBytes, DEFAULT_MAX_URI_QUERY_BYTES, 'maxUriQueryBytes'),
    };
    return this.uriLimits;
  }

  /** 4.00 for a request whose URI exceeds a limit (RFC 7252 has no 4.14; 4.00 is the generic answer). */
  /**
   * A request refused before the pipeline (malformed critical option, URI over its limits):
   * the error, through No-Response and the amplification rule like any other answer.
   */
  private refuse(
    msg: CoapMessage,
    peer: Peer,
    endpoint: Endpoint | undefined,
    code: number,
    what: string,
  ): OutgoingResponse | null {
    const res = this.suppress(msg, this.error(code, what)) as OutgoingResponse | null;
    const guard = this.guardFor(endpoint);
    return guard === undefined ? res : guard.limit(msg, peer, res);
  }

  /** A request over the URI limits: 4.00 (RFC 7252 registers no 4.14), before any routing. */
  private uriTooLong(msg: CoapMessage, peer: Peer, endpoint: Endpoint | undefined, what: string) {
    return this.refuse(msg, peer, endpoint, ResponseCode.BadRequest, what);
  }

  /** The amplification rule applies to plain UDP only; multicast requests come without endpoint. */
  private guardFor(endpoint: Endpoint | undefined): AmplificationGuard | undefined {
    return this.amplification !== undefined &&
      endpoint !== undefined &&
      endpoint.transport instanceof UdpTransport
      ? this.amplification
      : undefined;
  }

  /**
   * A layer around the whole pipeline (OSCORE: `enableOscore`): it sees every request
   * before anything else and returns the answer; it runs the pipeline with `pipeline()`.
   */
  around: ServerHandlerLayer | undefined;

  /** Handles a request (called by every endpoint): through the `around` layer when one is set, else the pipeline. */
  handle(
    msg: CoapMessage,
    peer: ServerPeer,
    endpoint?: Endpoint,
  ): OutgoingResponse | null | Promise<OutgoingResponse | null> {
    return this.around === undefined ? this.pipeline(msg, peer, endpoint) : this.around(msg, peer, endpoint);
  }

  /** The server's request pipeline (under the `around` layer, when one is set). */
  pipeline(
    msg: CoapMessage,
    peer: ServerPeer,
    endpoint?: Endpoint,
  ): OutgoingResponse | null | Promise<OutgoingResponse | null> {
    // Path from Uri-Path options.
    // Most paths have one segment: keep it in a local and size the array exactly.
    // An unrecognized or malformed critical option (e.g. a Uri-Query over 255 bytes) rejects the
    // request before any limit, middleware or state sees it.
    const badCritical = firstBadCritical(msg.options, this.recognizedOptions);
    if (badCritical !== undefined) {
      // §5.4.1: in a Non-confirmable request it causes the message to be rejected (§4.3), not a 4.02.
      if (msg.type === MessageType.NON) return null;
      return this.refuse(
        msg,
        peer,
        endpoint,
        ResponseCode.BadOption,
        `unrecognized or malformed critical option ${optionName(badCritical)} (${badCritical})`,
      );
    }
    // The URI limits are checked in the same pass, before any string is built for an oversized value.
    const lim = this.uriLimits ?? this.resolveUriLimits();
    let first: string | undefined;
    let more: string[] | undefined;
    let path = '';
    let pathBytes = 0;
    let segmentCount = 0;
    let queryBytes = 0;
    for (const o of msg.options) {
      if (o.number === OptionNumber.UriQuery) {
        queryBytes += o.value.length + 1;
        if (queryBytes > lim.queryBytes)
          return this.uriTooLong(msg, peer, endpoint, `Uri-Query longer than ${lim.queryBytes} bytes`);
      } else if (o.number === OptionNumber.UriPath) {
        pathBytes += o.value.length + 1;
        if (pathBytes > lim.pathBytes)
          return this.uriTooLong(msg, peer, endpoint, `Uri-Path longer than ${lim.pathBytes} bytes`);
        if (++segmentCount > lim.segments)
          return this.uriTooLong(msg, peer, endpoint, `more than ${lim.segments} Uri-Path segments`);
        const s = utf8Interned(o.value);
        if (first === undefined) first = s;
        else if (more === undefined) more = [first, s];
        else more.push(s);
        path += `/${s}`;
      }
    }
    if (path === '') path = '/';
    // One segment (most requests): the same "/name" string each time, its hash computed once for
    // every Map it is looked up in (routes, observers, the store).
    else if (segmentCount === 1) path = onePath(first!, path);
    const segments = more ?? (first === undefined ? [] : [first]);
    const req = new ServerRequest(msg, peer, path, segments);
    req.endpoint = endpoint;
    // Amplification rule (RFC 9175 §2.4); an OSCORE-verified request comes from a holder of its key.
    const guard = peer.oscore === undefined ? this.guardFor(endpoint) : undefined;
    req.amplification = guard;
    const started = channels.response.hasSubscribers ? performance.now() : 0;
    if (channels.request.hasSubscribers) {
      channels.request.publish({
        peer,
        token: msg.token,
        method: req.method,
        path,
        messageId: msg.messageId,
      });
    }
    let result = this.suppress(msg, this.runMiddlewares(req, 0));
    if (guard !== undefined) {
      const shrink = this.shrinkResponse;
      result =
        result instanceof Promise
          ? result.then((r) => guard.limit(msg, peer, r, shrink, req))
          : guard.limit(msg, peer, result, shrink, req);
    }
    if (channels.response.hasSubscribers) {
      const publish = (r: OutgoingResponse | null) => {
        channels.response.publish({
          peer,
          token: msg.token,
          code: r?.code,
          durationMs: performance.now() - started,
        });
        return r;
      };
      return result instanceof Promise ? result.then(publish) : publish(result);
    }
    return result;
  }

  private runMiddlewares(
    req: ServerRequest,
    i: number,
  ): OutgoingResponse | null | Promise<OutgoingResponse | null> {
    let mw = this.middlewares[i];
    // The observe layer, for a request that is no observation (most): straight on.
    if (mw !== undefined && mw === this.obsMiddleware && !this.obsLayer!.concerns(req.message))
      mw = this.middlewares[++i];
    if (mw === undefined) return this.dispatch(req);
    const next = (replacement?: ServerRequest) => this.runMiddlewares(replacement ?? req, i + 1);
    const r = mw(req, next);
    return r === undefined ? next() : r;
  }

  /** RFC 7967 No-Response: drop responses of the classes the client is not interested in. */
  private suppress(
    msg: CoapMessage,
    r: OutgoingResponse | null | Promise<OutgoingResponse | null>,
  ): OutgoingResponse | null | Promise<OutgoingResponse | null> {
    const nr = getUintOption(msg.options, OptionNumber.NoResponse);
    if (nr === undefined || nr === 0) return r;
    const filter = (res: OutgoingResponse | null) => {
      if (res === null) return null;
      const cls = res.code >> 5;
      const bit = cls === 2 ? 2 : cls === 4 ? 8 : cls === 5 ? 16 : 0;
      return (nr & bit) !== 0 ? null : res;
    };
    return r instanceof Promise ? r.then(filter) : filter(r);
  }

  private error(code: number, text: string, extra?: CoapOption[]): OutgoingResponse {
    const res: OutgoingResponse = { code };
    if (this.diagnosticPayloads && text) res.payload = Buffer.from(text, 'utf8');
    if (extra) res.options = extra;
    return res;
  }

  private dispatch(req: ServerRequest): OutgoingResponse | null | Promise<OutgoingResponse | null> {
    const msg = req.message;
    if (
      getOption(msg.options, OptionNumber.ProxyUri) !== undefined ||
      getOption(msg.options, OptionNumber.ProxyScheme) !== undefined
    ) {
      if (!this.proxyHandler)
        return this.error(ResponseCode.ProxyingNotSupported, 'this server is not a proxy');
      return this.invoke(this.proxyHandler, req);
    }
    if (msg.payload.length > this.maxPayloadSize) {
      return this.error(
        ResponseCode.RequestEntityTooLarge,
        `request payload exceeds ${this.maxPayloadSize} bytes`,
        [{ number: OptionNumber.Size1, value: encodeUint(this.maxPayloadSize) }],
      );
    }
    const m = this.router.match(req.path, req.pathSegments);
    if (!m) return this.error(ResponseCode.NotFound, '');
    const handler = m.route.handlers.get(msg.code);
    if (!handler) return this.error(ResponseCode.MethodNotAllowed, '');
    if (m.params !== undefined) req.params = m.params;
    req.route = m.route;
    const accepts = m.route.attrs.accepts;
    if (accepts && msg.payload.length > 0) {
      const cf = req.contentFormat;
      if (cf === undefined || !accepts.includes(cf)) {
        return this.error(
          ResponseCode.UnsupportedContentFormat,
          `accepted content formats: ${accepts.join(', ')}`,
        );
      }
    }
    return this.invoke(handler, req);
  }

  private invoke(
    handler: RequestHandler,
    req: ServerRequest,
  ): OutgoingResponse | null | Promise<OutgoingResponse | null> {
    let r: HandlerResult | Promise<HandlerResult>;
    try {
      r = handler(req);
    } catch (err) {
      return this.fromError(err, req);
    }
    if (r instanceof Promise) {
      return r.then(
        (v) => this.finish(req, v),
        (err) => this.fromError(err, req),
      );
    }
    return this.finish(req, r);
  }

  private fromError(err: unknown, req: ServerRequest): OutgoingResponse {
    if (err instanceof ResponseCodeError) return this.error(err.responseCode, err.message);
    try {
      this.options.onError?.(err, req);
    } catch {
      // A failing error hook must not take the server down either.
    }
    return this.error(ResponseCode.InternalServerError, 'Internal Server Error');
  }

  private finish(req: ServerRequest, r: HandlerResult): OutgoingResponse | null {
    try {
      return this.toOutgoing(req, r);
    } catch (err) {
      return this.fromError(err, req);
    }
  }

  /** The last short text payload a handler returned, and its bytes (handlers often return constants). */
  private lastText: string | undefined;
  private lastTextBytes: Buffer = Buffer.alloc(0);

  /** UTF-8 bytes of a text payload; repeated short texts reuse the previous encoding. */
  private encodeText(text: string): Buffer {
    if (text === this.lastText) return this.lastTextBytes;
    const bytes = Buffer.from(text, 'utf8');
    if (text.length <= 64) {
      this.lastText = text;
      this.lastTextBytes = bytes;
    }
    return bytes;
  }

  /** Converts what a handler returned into a wire response. */
  toOutgoing(req: ServerRequest, r: HandlerResult): OutgoingResponse | null {
    const msg = req.message;
    if (r === null) return null;
    const res: ServerResponse =
      r === undefined ? {} : typeof r === 'string' || r instanceof Uint8Array ? { payload: r } : r;
    let code: number;
    if (res.code === undefined) {
      code = DEFAULT_CODES[msg.code] ?? ResponseCode.Content;
      if (res.locationPath && msg.code === Method.POST) code = ResponseCode.Created;
    } else {
      const c = parseCode(res.code);
      if (c === undefined || c >> 5 < 2)
        throw new InvalidArgumentError(`invalid response code ${String(res.code)}`);
      code = c;
    }
    // Options in ascending number order (ETag 4, Location-Path 8, Content-Format 12, Max-Age 14,
    // Location-Query 15), so the encoder need not sort them; `res.options` may add any.
    const options: CoapOption[] = [];
    const etag = res.etag;
    if (etag !== undefined)
      options.push({ number: OptionNumber.ETag, value: Buffer.isBuffer(etag) ? etag : Buffer.from(etag) });
    if (res.locationPath) {
      for (const seg of res.locationPath)
        options.push({ number: OptionNumber.LocationPath, value: Buffer.from(seg, 'utf8') });
    }
    let contentFormat: number | undefined;
    if (res.contentFormat !== undefined) {
      contentFormat =
        typeof res.contentFormat === 'number' ? res.contentFormat : contentFormatOf(res.contentFormat);
      if (contentFormat === undefined)
        throw new InvalidArgumentError(`unknown content format ${JSON.stringify(res.contentFormat)}`);
      options.push({ number: OptionNumber.ContentFormat, value: uintValue(contentFormat) });
    }
    if (res.maxAge !== undefined) options.push({ number: OptionNumber.MaxAge, value: uintValue(res.maxAge) });
    if (res.locationQuery) {
      for (const q of res.locationQuery)
        options.push({ number: OptionNumber.LocationQuery, value: Buffer.from(q, 'utf8') });
    }
    if (res.options) {
      for (const o of res.options) options.push({ number: o.number, value: optionValue(o.number, o.value) });
    }
    let payload = typeof res.payload === 'string' ? this.encodeText(res.payload) : res.payload;
    // One pass over the request's options for Accept and ETag (most requests have neither).
    let acceptValue: Buffer | undefined;
    let hasEtag = false;
    for (const o of msg.options) {
      if (o.number === OptionNumber.Accept) acceptValue ??= o.value;
      else if (o.number === OptionNumber.ETag) hasEtag = true;
    }
    const accept = acceptValue === undefined || acceptValue.length > 4 ? undefined : decodeUint(acceptValue);
    // §5.10.4: Accept names the only acceptable Content-Format.
    if (accept !== undefined && code >> 5 === 2 && payload && payload.length > 0) {
      const cf = contentFormat ?? ContentFormat.TextPlain;
      if (cf !== accept) {
        return this.error(
          ResponseCode.NotAcceptable,
          `resource cannot be represented as content format ${accept}`,
        );
      }
    }
    // §5.10.6.2: a GET whose ETag matches the current representation gets 2.03 Valid.
    if (
      hasEtag &&
      code === ResponseCode.Content &&
      etag !== undefined &&
      (msg.code === Method.GET || msg.code === Method.FETCH)
    ) {
      if (getOptions(msg.options, OptionNumber.ETag).some((e) => Buffer.compare(e, etag) === 0)) {
        code = ResponseCode.Valid;
        payload = undefined;
        const keep = options.filter(
          (o) => o.number === OptionNumber.ETag || o.number === OptionNumber.MaxAge,
        );
        options.length = 0;
        options.push(...keep);
      }
    }
    const out: OutgoingResponse = { code };
    if (options.length > 0) out.options = options;
    if (payload && payload.length > 0) out.payload = payload;
    return out;
  }
}

/**
 * "/segment" strings by interned segment (bounded: cleared when full). Only short segments
 * (resource names): long ones a peer makes up would otherwise keep up to 1024 x 2 KB here.
 */
const ONE_PATHS = new Map<string, string>();
const ONE_PATH_MAX_SEGMENT = 64;

function onePath(segment: string, built: string): string {
  const p = ONE_PATHS.get(segment);
  if (p !== undefined) return p;
  if (segment.length > ONE_PATH_MAX_SEGMENT) return built;
  if (ONE_PATHS.size >= 1024) ONE_PATHS.clear();
  ONE_PATHS.set(segment, built);
  return built;
}

/** Content-Format names handlers return ("json", "text/plain"), parsed once (bounded). */
const CF_NAMES = new Map<string, number | undefined>();

function contentFormatOf(name: string): number | undefined {
  let cf = CF_NAMES.get(name);
  if (cf === undefined && !CF_NAMES.has(name)) {
    cf = parseContentFormat(name);
    if (CF_NAMES.size >= 256) CF_NAMES.clear();
    CF_NAMES.set(name, cf);
  }
  return cf;
}

/** Encoded uint option values 0-1023 (Content-Format, Max-Age), shared: the encoder only reads them. */
const UINT_VALUES: Buffer[] = [];

/** encodeUint, without an allocation for the small values every response carries. */
function uintValue(n: number): Buffer {
  if (n >= 0 && n < 1024 && Number.isInteger(n)) {
    let v = UINT_VALUES[n];
    if (v === undefined) {
      v = encodeUint(n);
      UINT_VALUES[n] = v;
    }
    return v;
  }
  return encodeUint(n);
}

function routeLink(pattern: string, a: ResourceAttributes): Link {
  const attributes: Link['attributes'] = [];
  if (a.rt) attributes.push(['rt', a.rt]);
  if (a.if) attributes.push(['if', a.if]);
  if (a.ct !== undefined) attributes.push(['ct', Array.isArray(a.ct) ? a.ct.join(' ') : String(a.ct)]);
  if (a.sz !== undefined) attributes.push(['sz', String(a.sz)]);
  if (a.title) attributes.push(['title', a.title]);
  if (a.obs) attributes.push(['obs', true]);
  return { target: pattern, attributes };
}
