/**
 * A CoAP-to-CoAP forward proxy (RFC 7252 §5.7; across transports, RFC 8323 §8) with a response cache
 * (§5.6). Requests carrying Proxy-Uri, or Proxy-Scheme with Uri-* options,
 * are forwarded with a CoapClient; cacheable responses are kept until their
 * Max-Age runs out. Failures map to 5.02 Bad Gateway / 5.04 Gateway Timeout.
 */

import { Buffer } from 'node:buffer';
import type { CoapClient } from '../client/client.js';
import type { CoapOption } from '../codec/message.js';
import { getOption, getUintOption } from '../codec/options.js';
import { type CoapUri, parseUri } from '../codec/uri.js';
import { Method, ResponseCode } from '../constants/codes.js';
import { isNoCacheKey, isUnsafe, OptionNumber } from '../constants/options.js';
import { CoapError, ResponseCodeError, TimeoutError } from '../errors.js';
import type { CoapServer, ServerRequest, ServerResponse } from '../server/server.js';
import { type Clock, realClock } from '../util/clock.js';

export interface ForwardProxyOptions {
  /** The client used to reach origin servers. */
  client: CoapClient;
  /**
   * Schemes the proxy forwards to (default all it can reach: coap, coaps,
   * coap+tcp, coaps+tcp, coap+ws, coaps+ws). The proxy listens on whatever
   * transports its server does, so it translates between UDP, DTLS, TCP,
   * TLS and WebSockets in any direction.
   */
  schemes?: string[];
  /** Maximum cached responses (default 1000; 0 disables caching). */
  cacheEntries?: number;
  /** Timeout for a forwarded request in ms (default 30 s). */
  timeout?: number;
  /** Decides whether a target may be reached (e.g. to forbid loops or private hosts). */
  allow?: (uri: CoapUri, req: ServerRequest) => boolean;
  /**
   * The clock of the cache's Max-Age expiry (default the `clock` option of the server
   * it is attached to, else the real clock).
   */
  clock?: Clock;
}

interface CacheEntry {
  response: ServerResponse;
  expires: number;
}

/** Options that are about the hop, not the target: never forwarded as-is. */
const HOP_OPTIONS = new Set<number>([
  OptionNumber.ProxyUri,
  OptionNumber.ProxyScheme,
  OptionNumber.UriHost,
  OptionNumber.UriPort,
  OptionNumber.UriPath,
  OptionNumber.UriQuery,
]);

/** The schemes a ForwardProxy forwards to by default. */
export const DEFAULT_PROXY_SCHEMES: readonly string[] = [
  'coap',
  'coaps',
  'coap+tcp',
  'coaps+tcp',
  'coap+ws',
  'coaps+ws',
];

export class ForwardProxy {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly maxEntries: number;
  private readonly schemes: Set<string>;
  hits = 0;
  misses = 0;

  private clock: Clock;

  constructor(private readonly options: ForwardProxyOptions) {
    this.clock = options.clock ?? realClock;
    this.maxEntries = options.cacheEntries ?? 1000;
    this.schemes = new Set(options.schemes ?? DEFAULT_PROXY_SCHEMES);
  }

  /**
   * Installs the proxy as the server's Proxy-Uri handler. OSCORE-protected requests
   * (RFC 8613 §4.2) are forwarded as they are: the OSCORE option and the ciphertext go
   * through unread, and their unique OSCORE option keeps them out of each other's cache entries.
   */
  attach(server: CoapServer): this {
    if (this.options.clock === undefined && server.clock !== undefined) this.clock = server.clock;
    server.proxyHandler = (req) => this.handle(req);
    server.recognizedOptions.add(OptionNumber.Oscore);
    return this;
  }

  /** The target URI of a proxy request (§5.7.2 / §6.4 in reverse). */
  targetUri(req: ServerRequest): CoapUri {
    const proxyUri = getOption(req.options, OptionNumber.ProxyUri);
    let uri: CoapUri;
    try {
      if (proxyUri !== undefined) uri = parseUri(proxyUri.toString('utf8'));
      else {
        const scheme = getOption(req.options, OptionNumber.ProxyScheme)!.toString('utf8');
        const host = getOption(req.options, OptionNumber.UriHost)?.toString('utf8');
        if (!host) throw new ResponseCodeError(ResponseCode.BadRequest, 'Proxy-Scheme needs Uri-Host');
        const port = getUintOption(req.options, OptionNumber.UriPort);
        const h = host.includes(':') ? `[${host}]` : host;
        const base = parseUri(`${scheme}://${h}${port !== undefined ? `:${port}` : ''}/`);
        uri = { ...base, path: req.pathSegments, query: req.query };
      }
    } catch (err) {
      if (err instanceof ResponseCodeError) throw err;
      throw new ResponseCodeError(ResponseCode.BadRequest, `invalid proxy target: ${(err as Error).message}`);
    }
    if (!this.schemes.has(uri.scheme)) {
      throw new ResponseCodeError(ResponseCode.ProxyingNotSupported, `scheme ${uri.scheme} is not proxied`);
    }
    return uri;
  }

  /** §5.6: cache key = method + target + every option that is not NoCacheKey. */
  private cacheKey(req: ServerRequest, uri: CoapUri, forwarded: CoapOption[]): string {
    let k = `${req.code}|${uri.scheme}://${uri.host}:${uri.port}/${uri.path.join('/')}?${uri.query.join('&')}`;
    for (const o of forwarded) if (!isNoCacheKey(o.number)) k += `|${o.number}=${o.value.toString('hex')}`;
    return k;
  }

  async handle(req: ServerRequest): Promise<ServerResponse> {
    const uri = this.targetUri(req);
    if (this.options.allow && !this.options.allow(uri, req)) {
      throw new ResponseCodeError(ResponseCode.Forbidden, 'target not allowed by this proxy');
    }
    // Forward end-to-end options; unsafe options the proxy does not know must not pass (§5.7.1) —
    // here every option is either known or forwarded unchanged, which a CoAP-CoAP proxy may do.
    const forwarded = req.options.filter((o) => !HOP_OPTIONS.has(o.number));
    const cacheable = req.code === Method.GET || req.code === Method.FETCH;
    const key = cacheable && this.maxEntries > 0 ? this.cacheKey(req, uri, forwarded) : undefined;
    const now = this.clock.now();
    if (key !== undefined) {
      const hit = this.cache.get(key);
      if (hit && hit.expires > now) {
        this.hits++;
        // §5.6.1: the Max-Age of a cached response is what is left of it.
        const left = Math.max(0, Math.floor((hit.expires - now) / 1000));
        return { ...hit.response, maxAge: left };
      }
      if (hit) this.cache.delete(key);
      this.misses++;
    }
    let res: Awaited<ReturnType<CoapClient['request']>>;
    try {
      res = await this.options.client.request(uri, {
        method: req.code,
        ...(req.payload.length > 0 ? { payload: req.payload } : {}),
        confirmable: true,
        options: forwarded.map((o) => ({ number: o.number, value: o.value })),
        timeout: this.options.timeout ?? 30_000,
      });
    } catch (err) {
      if (err instanceof TimeoutError)
        throw new ResponseCodeError(ResponseCode.GatewayTimeout, 'origin server timed out');
      const msg = err instanceof CoapError ? err.message : String(err);
      throw new ResponseCodeError(ResponseCode.BadGateway, `cannot reach origin: ${msg}`);
    }
    const out: ServerResponse = {
      code: res.code,
      payload: res.payload,
      // Pass on the response's options except hop-by-hop ones.
      options: res.options
        .filter(
          (o) =>
            !HOP_OPTIONS.has(o.number) &&
            o.number !== OptionNumber.MaxAge &&
            !(isUnsafe(o.number) && o.number >= 2048),
        )
        .map((o) => ({ number: o.number, value: o.value })),
    };
    const maxAge = getUintOption(res.options, OptionNumber.MaxAge) ?? 60;
    out.maxAge = maxAge;
    const cacheableCode = res.code === ResponseCode.Content || res.code >> 5 >= 4;
    if (key !== undefined && cacheableCode && maxAge > 0) {
      if (this.cache.size >= this.maxEntries) {
        const oldest = this.cache.keys().next().value;
        if (oldest !== undefined) this.cache.delete(oldest);
      }
      this.cache.set(key, { response: out, expires: now + maxAge * 1000 });
    }
    return out;
  }
}

/** Small helper for building a Proxy-Uri option. */
export function proxyUriOption(target: string): { number: number; value: Buffer } {
  return { number: OptionNumber.ProxyUri, value: Buffer.from(target, 'utf8') };
}
