/**
 * The CoAP client: `await client.request('coap://host/path', { ... })`.
 * Resolves names, picks the transport by scheme (UDP for coap://, DTLS for
 * coaps://), and returns a CoapResponse or throws a typed error.
 */

import { Buffer } from 'node:buffer';
import { blockwiseExchange } from '../blockwise/client.js';
import type { BlockProgress } from '../blockwise/common.js';
import type { CoapOption } from '../codec/message.js';
import { encodeUint, type OptionInput, optionValue } from '../codec/options.js';
import { type CoapUri, parseUri, uriToOptions } from '../codec/uri.js';
import { Method, type MethodName } from '../constants/codes.js';
import { parseContentFormat } from '../constants/content-formats.js';
import { OptionNumber } from '../constants/options.js';
import { Endpoint, type EndpointOptions } from '../endpoint/endpoint.js';
import { ClosedError, InvalidArgumentError, TimeoutError, UriError } from '../errors.js';
import type { InboundResponse } from '../exchange/exchange-layer.js';
import { DEFAULT_MULTICAST_WINDOW_MS, isMulticastAddress, sendGroupRequest } from '../multicast/client.js';
import { Observation, type ObserveOptions } from '../observe/client.js';
import type { OscoreContext } from '../oscore/context.js';
import { formatAddress } from '../transport/address.js';
import type { ReliableTransportOptions } from '../transport/reliable.js';
import { createReliableTransport, type ReliableScheme } from '../transport/reliable-factory.js';
import { type Lookup, resolveHost } from '../transport/resolve.js';
import type { Peer, Transport } from '../transport/transport.js';
import { makePeer } from '../transport/transport.js';
import { UdpTransport } from '../transport/udp.js';
import type { Clock } from '../util/clock.js';
import { oscoreEndpoint, oscoreRoundTrip } from './oscore.js';
import { CoapResponse } from './response.js';

export interface PskCredentials {
  identity: string | Uint8Array;
  key: string | Uint8Array;
}

export interface ClientOptions extends EndpointOptions {
  /** Pre-shared key for coaps:// requests. */
  psk?: PskCredentials;
  /**
   * DTLS options passed to the DTLS client transport (cipher suites, MTU,
   * certificate mode: cert, key, ca, rpk, rpkTrust, verifyPeer; see DtlsClientOptions).
   */
  dtls?: Record<string, unknown>;
  /**
   * coaps://: offer a DTLS Connection ID (RFC 9146), so the session survives
   * this client's address or port changing (a NAT rebinding) without a new
   * handshake, with a server that supports CIDs. Default false: the CID
   * travels in the clear and makes the client's traffic linkable across
   * address changes (RFC 9146 §8).
   */
  cid?: boolean;
  /** Local address/port for the client sockets. */
  bind?: { address?: string; port?: number };
  /** Custom name lookup (tests, custom resolvers). */
  lookup?: Lookup;
  /** Prefer this address family when a name has both A and AAAA records. */
  preferFamily?: 4 | 6;
  /** Let the process exit while the client is idle (default true). */
  unref?: boolean;
  /** Default block size for block-wise transfers (RFC 7959), 16..1024 (default 1024). */
  blockSize?: number;
  /**
   * Tell a wrong scheme apart quickly (default true). A server silent for 1 s
   * is probed once in the other protocol: coap:// sends one DTLS ClientHello
   * (a DTLS server answers with a HelloVerifyRequest: "that port speaks DTLS:
   * use coaps://"), coaps:// one CoAP ping (a CoAP server answers with a
   * Reset: "that port speaks plain CoAP: use coap://"). Each probe is one
   * small datagram that the right kind of server ignores. With false, such
   * requests just time out.
   */
  detectWrongScheme?: boolean;
  /**
   * coaps+tcp:// and coaps+ws:// (RFC 8323): TLS options: trusted CAs, a
   * client certificate and key (PEM), whether to verify the server
   * certificate (default true). `psk` applies to coaps+tcp:// too (TLS 1.2
   * PSK cipher suites).
   */
  tls?: {
    /** Trusted CA certificates (PEM); default Node's bundled roots. */
    ca?: string | Uint8Array | Array<string | Uint8Array>;
    /** Client certificate chain (PEM). */
    cert?: string | Uint8Array;
    /** Client private key (PEM). */
    key?: string | Uint8Array;
    /** Verify the server certificate (default true). */
    rejectUnauthorized?: boolean;
  };
  /** Bounds and settings of the RFC 8323 connections (coap+tcp, coaps+tcp, coap+ws, coaps+ws). */
  reliable?: ReliableTransportOptions;
}

export type RequestMethod = MethodName | number;

export interface RequestOptions {
  method?: RequestMethod;
  payload?: string | Uint8Array;
  contentFormat?: number | string;
  accept?: number | string;
  /** CON (default) or NON. */
  confirmable?: boolean;
  /** Extra options, e.g. `[{ number: OptionNumber.ETag, value: etag }]`. */
  options?: ReadonlyArray<{ number: number; value: OptionInput }>;
  /**
   * Overall time limit in ms for the whole exchange, every block of a block-wise transfer
   * included: one deadline, each round trip gets what is left of it (TimeoutError when it
   * runs out). Without it each round trip gets the §4.8.2 default (MAX_TRANSMIT_WAIT, 93 s)
   * and `maxBodySize` bounds how many blocks a server can make the client fetch.
   */
  timeout?: number;
  signal?: AbortSignal;
  /** Use this token instead of a random one. */
  token?: Uint8Array;
  /** Send to a multicast group and accept the first response from any member. */
  multicast?: boolean;
  /**
   * Block size for block-wise transfer (RFC 7959), a power of two 16..1024
   * (default 1024). Large payloads go out with Block1; Block2 responses are
   * fetched completely. Below 1024 the size is negotiated early.
   */
  blockSize?: number;
  /** Progress of block-wise transfers (after every block). */
  onProgress?: (p: BlockProgress) => void;
  /**
   * Largest response body accepted, in bytes (default 16 MiB, `DEFAULT_MAX_BODY_SIZE`): a
   * larger Size2, or more bytes received block by block, fails with BodyTooLargeError
   * (a BlockTransferError) and stops the transfer.
   */
  maxBodySize?: number;
  /**
   * Protect the request end to end with OSCORE (RFC 8613) in this security context: the
   * response is verified and decrypted (OscoreError when it cannot be); block-wise
   * transfers are inner (each block protected); a 4.01 + Echo freshness challenge
   * (RFC 9175) is answered once by repeating the request with the Echo value.
   */
  oscore?: OscoreContext;
}

/** A request target after URI parsing and name resolution. */
export interface ResolvedTarget {
  uri: CoapUri;
  peer: Peer;
  endpoint: Endpoint;
  /** The options the URI contributes (§6.4). */
  uriOptions: CoapOption[];
}

export class CoapClient {
  private readonly endpoints = new Map<string, Promise<Endpoint>>();
  private closed = false;

  constructor(private readonly options: ClientOptions = {}) {}

  /** Resolves a URI to a peer and the endpoint that talks to it. */
  async resolve(uri: string | CoapUri): Promise<ResolvedTarget> {
    if (this.closed) throw new ClosedError('client is closed');
    const u = typeof uri === 'string' ? parseUri(uri) : uri;
    const resolved = await resolveHost(u.host, {
      ...(this.options.lookup ? { lookup: this.options.lookup } : {}),
      ...(this.options.preferFamily ? { prefer: this.options.preferFamily } : {}),
    });
    const peer = makePeer(resolved.address, u.port);
    if (u.scheme !== 'coap' && u.scheme !== 'coaps') {
      const endpoint = await this.reliableEndpointFor(u.scheme, u.hostType === 0 ? u.host : undefined);
      return { uri: u, peer, endpoint, uriOptions: uriToOptions(u, u.port) };
    }
    // Plain UDP to one unicast server gets a connected socket of its own, so an
    // ICMP port unreachable fails the request at once instead of after 93 s.
    const connected =
      u.scheme === 'coap' &&
      this.options.bind?.port === undefined &&
      !isMulticastAddress(resolved.address) &&
      this.connectedCount < MAX_CONNECTED_SOCKETS;
    const endpoint = connected
      ? await this.connectedEndpointFor(peer, resolved.family)
      : await this.endpointFor(u.scheme, resolved.family);
    return { uri: u, peer, endpoint, uriOptions: uriToOptions(u, u.port) };
  }

  private connectedCount = 0;

  private connectedEndpointFor(peer: Peer, family: 4 | 6): Promise<Endpoint> {
    const key = `coap/${peer.key}`;
    let ep = this.endpoints.get(key);
    if (ep === undefined) {
      this.connectedCount++;
      ep = (async () => {
        const udp = await UdpTransport.create({
          type: family === 6 ? 'udp6' : 'udp4',
          host: this.options.bind?.address ?? (family === 6 ? '::' : '0.0.0.0'),
          port: 0,
          connect: { address: peer.address, port: peer.port },
          ...(this.options.detectWrongScheme !== false ? { dtlsProbeMs: 1000 } : {}),
        });
        if (this.options.unref ?? true) udp.unref();
        return new Endpoint(udp, this.options);
      })();
      this.endpoints.set(key, ep);
      ep.catch(() => {
        this.endpoints.delete(key);
        this.connectedCount--;
      });
    }
    return ep;
  }

  private endpointFor(scheme: 'coap' | 'coaps', family: 4 | 6): Promise<Endpoint> {
    const key = `${scheme}/${family}`;
    let ep = this.endpoints.get(key);
    if (ep === undefined) {
      ep = this.createEndpoint(scheme, family);
      this.endpoints.set(key, ep);
      ep.catch(() => this.endpoints.delete(key));
    }
    return ep;
  }

  /** One endpoint per RFC 8323 scheme (and server name, which TLS checks and WebSockets send). */
  private reliableEndpointFor(scheme: ReliableScheme, servername: string | undefined): Promise<Endpoint> {
    const key = `${scheme}/${servername ?? ''}`;
    let ep = this.endpoints.get(key);
    if (ep === undefined) {
      ep = createReliableTransport(scheme, servername, this.options).then(
        (t) => new Endpoint(t, this.options),
      );
      this.endpoints.set(key, ep);
      ep.catch(() => this.endpoints.delete(key));
    }
    return ep;
  }

  private async createEndpoint(scheme: 'coap' | 'coaps', family: 4 | 6): Promise<Endpoint> {
    let transport: Transport;
    const unref = this.options.unref ?? true;
    if (scheme === 'coap') {
      const udp = await UdpTransport.create({
        type: family === 6 ? 'udp6' : 'udp4',
        host: this.options.bind?.address ?? (family === 6 ? '::' : '0.0.0.0'),
        port: this.options.bind?.port ?? 0,
      });
      if (unref) udp.unref();
      transport = udp;
    } else {
      const d = this.options.dtls;
      const certificates =
        d !== undefined && ['cert', 'ca', 'rpk', 'rpkTrust'].some((k) => d[k] !== undefined);
      if (!this.options.psk && !certificates) {
        throw new InvalidArgumentError('coaps:// needs a pre-shared key: pass { psk: { identity, key } }', {
          hint: 'with the CLI: --identity ID --psk SECRET (or COAPKIT_PSK_IDENTITY / COAPKIT_PSK)',
        });
      }
      transport = await createDtlsClientTransport({
        ...(this.options.psk ? { psk: this.options.psk } : {}),
        family,
        ...(this.options.bind ? { bind: this.options.bind } : {}),
        ...(this.options.detectWrongScheme === false ? { probePlainCoap: false } : {}),
        ...(this.options.cid === true ? { cid: true } : {}),
        ...(this.options.dtls ?? {}),
        unref,
      });
    }
    return new Endpoint(transport, this.options);
  }

  /** Sends a request and resolves with the response (any code). */
  async request(uri: string | CoapUri, opts: RequestOptions = {}): Promise<CoapResponse> {
    const target = await this.resolve(uri);
    const { code, options, payload } = buildRequest(target.uriOptions, opts);
    // One deadline for the whole exchange, on the endpoint's clock (the one its retransmission
    // and timeout timers use): every round trip (block) gets what is left of it.
    const clock = target.endpoint.clock;
    const deadline = opts.timeout !== undefined ? clock.now() + opts.timeout : undefined;
    let roundTrips = 0;
    let send = (req: { code: number; options: CoapOption[]; payload?: Buffer }) =>
      new Promise<InboundResponse>((resolve, reject) => {
        let timeoutMs = opts.timeout;
        if (deadline !== undefined && roundTrips++ > 0) {
          timeoutMs = deadline - clock.now();
          if (timeoutMs <= 0) {
            reject(overallTimeout(opts.timeout!, roundTrips - 1));
            return;
          }
        }
        target.endpoint.request(
          target.peer,
          {
            code: req.code,
            options: req.options,
            ...(req.payload ? { payload: req.payload } : {}),
            ...(opts.token ? { token: opts.token } : {}),
            // §8.1: a multicast request MUST be Non-confirmable.
            confirmable: isMulticastAddress(target.peer.address) ? false : (opts.confirmable ?? true),
          },
          {
            onResponse: (r: InboundResponse) => {
              resolve(r);
              return true;
            },
            onError: (err) =>
              reject(
                deadline !== undefined &&
                  roundTrips > 1 &&
                  err instanceof TimeoutError &&
                  deadline - clock.now() < 2
                  ? overallTimeout(opts.timeout!, roundTrips, err)
                  : explainTimeout(err, target),
              ),
            ...(timeoutMs !== undefined ? { timeoutMs } : {}),
            ...(opts.signal ? { signal: opts.signal } : {}),
            ...(opts.multicast ? { multicast: true } : {}),
          },
        );
      });
    if (opts.oscore !== undefined) {
      if (opts.multicast) throw new InvalidArgumentError('OSCORE group communication is not supported');
      const plain = send;
      const ctx = opts.oscore;
      send = (req) => oscoreRoundTrip(ctx, target.peer, req, plain);
    }
    if (opts.multicast) {
      const r = await send({ code, options, ...(payload ? { payload } : {}) });
      return new CoapResponse(r.message, r.peer, r.piggybacked, r.rttMs);
    }
    const blockSize = opts.blockSize ?? this.options.blockSize;
    const transport = target.endpoint.transport;
    // A body larger than one block over a new RFC 8323 connection: the peer's CSM first, so
    // the first block can already be BERT (the blocks of a transfer never grow).
    if (payload !== undefined && payload.length > 1024 && transport.bertMessageSize?.(target.peer) === 0)
      await boundedWait(transport.awaitCsm?.(target.peer), clock, deadline, opts.signal);
    const result = await blockwiseExchange(
      send,
      { code, options, payload },
      {
        ...(blockSize !== undefined ? { blockSize } : {}),
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
        ...(opts.maxBodySize !== undefined ? { maxBodySize: opts.maxBodySize } : {}),
        target: `${transport.scheme}|${target.peer.key}`,
        // RFC 8323 §6 BERT: asked for the first block (the peer's CSM was awaited above).
        ...(transport.bertMessageSize ? { bert: () => transport.bertMessageSize!(target.peer) } : {}),
      },
    );
    const last = result.last;
    return new CoapResponse(result.message, last.peer, last.piggybacked, last.rttMs);
  }

  /**
   * Observes a resource (RFC 7641). The result is an async iterator of
   * notifications (`for await (const n of client.observe(uri))`, `n.observe`
   * is the sequence number) with `cancel()` and `Symbol.asyncDispose`;
   * leaving the loop with `break` deregisters.
   */
  observe(
    uri: string | CoapUri,
    opts: ObserveOptions &
      Pick<RequestOptions, 'accept' | 'method' | 'payload' | 'contentFormat' | 'oscore'> = {},
  ): Observation {
    const target = this.resolve(uri).then((t) => {
      const { code, options, payload } = buildRequest(t.uriOptions, {
        method: opts.method ?? 'GET',
        ...(opts.accept !== undefined ? { accept: opts.accept } : {}),
        ...(opts.contentFormat !== undefined ? { contentFormat: opts.contentFormat } : {}),
        ...(opts.payload !== undefined ? { payload: opts.payload } : {}),
      });
      return {
        endpoint: opts.oscore ? oscoreEndpoint(t.endpoint, opts.oscore) : t.endpoint,
        peer: t.peer,
        code,
        options: [...options, ...(opts.options ?? [])],
        ...(payload ? { payload } : {}),
      };
    });
    const blockSize = opts.blockSize ?? this.options.blockSize;
    return new Observation(target, { ...opts, ...(blockSize !== undefined ? { blockSize } : {}) });
  }

  /**
   * Group communication (RFC 7252 §8.2): sends one NON request to a multicast
   * URI and resolves with every response received within `windowMs`
   * (default DEFAULT_LEISURE + 1 s), from any member, in arrival order.
   */
  async multicast(uri: string | CoapUri, opts: MulticastRequestOptions = {}): Promise<CoapResponse[]> {
    if (this.closed) throw new ClosedError('client is closed');
    return multicastRequest(uri, {
      ...(this.options.bind?.address !== undefined ? { bindAddress: this.options.bind.address } : {}),
      ...(this.options.tokenLength !== undefined
        ? { endpoint: { tokenLength: this.options.tokenLength } }
        : {}),
      ...opts,
    });
  }

  get(uri: string | CoapUri, opts: Omit<RequestOptions, 'method'> = {}): Promise<CoapResponse> {
    return this.request(uri, { ...opts, method: 'GET' });
  }

  post(uri: string | CoapUri, opts: Omit<RequestOptions, 'method'> = {}): Promise<CoapResponse> {
    return this.request(uri, { ...opts, method: 'POST' });
  }

  put(uri: string | CoapUri, opts: Omit<RequestOptions, 'method'> = {}): Promise<CoapResponse> {
    return this.request(uri, { ...opts, method: 'PUT' });
  }

  delete(uri: string | CoapUri, opts: Omit<RequestOptions, 'method'> = {}): Promise<CoapResponse> {
    return this.request(uri, { ...opts, method: 'DELETE' });
  }

  /** CoAP ping (§4.3): an empty CON answered by RST. Resolves with the RTT in ms. */
  async ping(uri: string | CoapUri): Promise<number> {
    const target = await this.resolve(uri);
    return target.endpoint.ping(target.peer).catch((err: Error) => {
      throw explainTimeout(err, target);
    });
  }

  /** The endpoints this client has opened (for advanced use: observe, block-wise). */
  async endpoint(scheme: 'coap' | 'coaps', family: 4 | 6): Promise<Endpoint> {
    return this.endpointFor(scheme, family);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const eps = [...this.endpoints.values()];
    this.endpoints.clear();
    await Promise.all(
      eps.map((p) =>
        p.then(
          (e) => e.close(),
          () => undefined,
        ),
      ),
    );
  }
}

/** Turns request options into a code, an option list and a payload. */
export function buildRequest(
  uriOptions: readonly CoapOption[],
  opts: RequestOptions,
): { code: number; options: CoapOption[]; payload: Buffer | undefined } {
  const code = methodCode(opts.method ?? 'GET');
  const options: CoapOption[] = [...uriOptions];
  if (opts.contentFormat !== undefined) {
    const cf = parseContentFormat(opts.contentFormat);
    if (cf === undefined) throw new InvalidArgumentError(`unknown content format "${opts.contentFormat}"`);
    options.push({ number: OptionNumber.ContentFormat, value: encodeUint(cf) });
  }
  if (opts.accept !== undefined) {
    const a = parseContentFormat(opts.accept);
    if (a === undefined) throw new InvalidArgumentError(`unknown content format "${opts.accept}"`);
    options.push({ number: OptionNumber.Accept, value: encodeUint(a) });
  }
  for (const o of opts.options ?? [])
    options.push({ number: o.number, value: optionValue(o.number, o.value) });
  const payload =
    opts.payload === undefined
      ? undefined
      : typeof opts.payload === 'string'
        ? Buffer.from(opts.payload, 'utf8')
        : Buffer.from(opts.payload.buffer, opts.payload.byteOffset, opts.payload.byteLength);
  return { code, options, payload: payload && payload.length > 0 ? payload : undefined };
}

export function methodCode(m: RequestMethod): number {
  if (typeof m === 'number') {
    if (!Number.isInteger(m) || m < 1 || m > 31) throw new InvalidArgumentError(`invalid method code ${m}`);
    return m;
  }
  const entry = Object.entries(Method).find(([k]) => k.toLowerCase() === String(m).toLowerCase());
  if (!entry) throw new InvalidArgumentError(`unknown method "${m}"`);
  return entry[1];
}

/**
 * Waits for `p`, but not past `deadline` (on `clock`) nor an abort: the request
 * then goes on, and times out or aborts as it would have.
 */
function boundedWait(
  p: Promise<unknown> | undefined,
  clock: Clock,
  deadline: number | undefined,
  signal?: AbortSignal,
) {
  if (p === undefined || (deadline === undefined && signal === undefined)) return p;
  return new Promise<void>((resolve) => {
    const done = () => {
      clock.clearTimer(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer =
      deadline === undefined ? undefined : clock.setTimer(done, Math.max(0, deadline - clock.now()));
    signal?.addEventListener('abort', done, { once: true });
    p.then(done, done);
  });
}

/** The request's one deadline ran out in the middle of a block-wise exchange. */
function overallTimeout(ms: number, roundTrips: number, cause?: Error): TimeoutError {
  return new TimeoutError(
    `the exchange did not complete within the ${Math.round(ms)} ms timeout (${roundTrips} round trips)`,
    {
      ...(cause ? { cause } : {}),
      hint: 'the timeout covers every block of a block-wise transfer: raise it for a large body',
    },
  );
}

/**
 * A request that timed out says why it likely did: for coaps://, what the DTLS
 * handshake got from the server (nothing, a cookie, the server's hello); for
 * coap:// to 5684, that this is the coaps:// port.
 */
function explainTimeout(err: Error, target: ResolvedTarget): Error {
  if (!(err instanceof TimeoutError)) return err;
  const { peer } = target;
  if (target.uri.scheme === 'coaps') {
    const t = target.endpoint.transport as {
      describeStall?: (peer: Peer) => { message: string; hint: string } | undefined;
    };
    const d = t.describeStall?.(peer);
    if (d === undefined) return err;
    return new TimeoutError(d.message, { cause: err, hint: d.hint });
  }
  if (peer.port === 5684) {
    const where = formatAddress(peer.address, peer.port);
    return new TimeoutError(err.message, {
      cause: err,
      hint: `5684 is the coaps:// (DTLS) port: try coaps://${where}/... with a pre-shared key (--identity ID --psk SECRET)`,
    });
  }
  return err;
}

/** Most servers a client keeps a connected UDP socket for; beyond, requests share one socket. */
const MAX_CONNECTED_SOCKETS = 256;

export { DEFAULT_MULTICAST_WINDOW_MS, isMulticastAddress };

/** Options of `multicastRequest` / `CoapClient.multicast`: a request's options plus the group's. */
export interface MulticastRequestOptions
  extends Omit<RequestOptions, 'confirmable' | 'multicast' | 'timeout' | 'blockSize' | 'onProgress'> {
  /** How long to collect responses, in ms (default DEFAULT_LEISURE + 1 s = 6000). */
  windowMs?: number;
  /**
   * Interface to send on: an IPv4 address for IPv4 groups, an interface name
   * ("eth0") or "::%name" for IPv6 groups (a zone in the URI also works).
   */
  multicastInterface?: string;
  /** IP TTL / IPv6 hop limit of the request (default 1: this link only). */
  multicastTtl?: number;
  /** Deliver the request to servers on this host too (default true). */
  loopback?: boolean;
  /** Called for each response as it arrives. */
  onResponse?: (res: CoapResponse) => void;
  /** Endpoint options (token length...). */
  endpoint?: EndpointOptions;
  /** Local address to bind (default the wildcard address of the group's family). */
  bindAddress?: string;
}

/**
 * Group communication (RFC 7252 §8.2): sends one NON request to a multicast URI and
 * resolves with all responses received within `windowMs`, in arrival order.
 */
export async function multicastRequest(
  uri: string | CoapUri,
  opts: MulticastRequestOptions = {},
): Promise<CoapResponse[]> {
  const u = typeof uri === 'string' ? parseUri(uri) : uri;
  if (u.scheme !== 'coap')
    throw new UriError('group communication is only defined for coap:// (RFC 7252 §8)');
  const resolved = await resolveHost(u.host);
  const { code, options, payload } = buildRequest(uriToOptions(u, u.port), opts);
  const responses: CoapResponse[] = [];
  await sendGroupRequest(
    { address: resolved.address, family: resolved.family, port: u.port },
    { code, options, ...(payload ? { payload } : {}), ...(opts.token ? { token: opts.token } : {}) },
    { ...opts, windowMs: opts.windowMs ?? DEFAULT_MULTICAST_WINDOW_MS },
    (r) => {
      const res = new CoapResponse(r.message, r.peer, false, r.rttMs);
      responses.push(res);
      opts.onResponse?.(res);
    },
  );
  return responses;
}

type DtlsFactory = (options: Record<string, unknown>) => Promise<Transport>;
let dtlsFactory: DtlsFactory | undefined;

/** Loads the DTLS client transport lazily (plain-UDP users never load DTLS code). */
async function createDtlsClientTransport(options: Record<string, unknown>): Promise<Transport> {
  if (!dtlsFactory) {
    const modPath = '../transport/dtls.js';
    const mod = (await import(modPath)) as { DtlsClientTransport?: { create: DtlsFactory } };
    if (!mod.DtlsClientTransport)
      throw new InvalidArgumentError('DTLS support is not available in this build');
    dtlsFactory = (o) => mod.DtlsClientTransport!.create(o);
  }
  return dtlsFactory(options);
}

let defaultClient: CoapClient | undefined;

/** The shared client used by the top-level `request()` and `ping()` helpers. */
export function getDefaultClient(): CoapClient {
  if (!defaultClient) defaultClient = new CoapClient();
  return defaultClient;
}

/** `await request('coap://host/path')` with a shared client. */
export function request(uri: string, opts?: RequestOptions): Promise<CoapResponse> {
  return getDefaultClient().request(uri, opts);
}

export function ping(uri: string): Promise<number> {
  return getDefaultClient().ping(uri);
}
