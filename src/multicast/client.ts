/**
 * Client side of CoAP group communication (RFC 7252 §8.2): one NON request
 * to a group address, then every response from any member is collected
 * until the window ends. Responses are matched on the token alone (they come
 * from the members' unicast addresses, never from the group address).
 */
import { buildRequest, type RequestOptions } from '../client/client.js';
import { CoapResponse } from '../client/response.js';
import { type CoapUri, parseUri, uriToOptions } from '../codec/uri.js';
import { Endpoint, type EndpointOptions } from '../endpoint/endpoint.js';
import { InvalidArgumentError, UriError } from '../errors.js';
import type { ClientExchange } from '../exchange/exchange-layer.js';
import { resolveHost } from '../transport/resolve.js';
import { makePeer } from '../transport/transport.js';
import { UdpTransport } from '../transport/udp.js';
import { DEFAULT_LEISURE_MS } from './server.js';

/** Default collection window: DEFAULT_LEISURE plus a margin for the round trip. */
export const DEFAULT_MULTICAST_WINDOW_MS = DEFAULT_LEISURE_MS + 1000;

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

/** Sends one NON request to a multicast URI and resolves with all responses in arrival order. */
export async function multicastRequest(
  uri: string | CoapUri,
  opts: MulticastRequestOptions = {},
): Promise<CoapResponse[]> {
  const u = typeof uri === 'string' ? parseUri(uri) : uri;
  if (u.scheme !== 'coap')
    throw new UriError('group communication is only defined for coap:// (RFC 7252 §8)');
  const resolved = await resolveHost(u.host);
  const [bare, zone] = resolved.address.split('%') as [string, string | undefined];
  if (!isMulticast(bare)) {
    throw new InvalidArgumentError(`${resolved.address} is not a multicast address`, {
      hint: 'use a group address such as coap://224.0.1.187 or coap://[ff02::fd%25eth0]',
    });
  }
  const windowMs = opts.windowMs ?? DEFAULT_MULTICAST_WINDOW_MS;
  if (!(windowMs > 0)) throw new InvalidArgumentError(`windowMs must be > 0, got ${windowMs}`);
  const v6 = resolved.family === 6;
  const udp = await UdpTransport.create({
    type: v6 ? 'udp6' : 'udp4',
    host: opts.bindAddress ?? (v6 ? '::' : '0.0.0.0'),
    port: 0,
  });
  const sock = udp.rawSocket;
  try {
    let iface = opts.multicastInterface;
    if (v6 && iface === undefined && zone !== undefined) iface = `::%${zone}`;
    if (v6 && iface !== undefined && !iface.includes(':')) iface = `::%${iface}`;
    if (iface !== undefined) sock.setMulticastInterface(iface);
    sock.setMulticastTTL(opts.multicastTtl ?? 1);
    sock.setMulticastLoopback(opts.loopback ?? true);
  } catch (err) {
    await udp.close();
    throw new InvalidArgumentError(`cannot use that multicast interface/TTL: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const endpoint = new Endpoint(udp, opts.endpoint ?? {});
  const peer = makePeer(resolved.address, u.port);
  const { code, options, payload } = buildRequest(uriToOptions(u, u.port), opts);
  const responses: CoapResponse[] = [];
  let exchange: ClientExchange | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, windowMs);
      const onAbort = () => {
        clearTimeout(timer);
        resolve();
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      exchange = endpoint.request(
        peer,
        {
          code,
          options,
          ...(payload ? { payload } : {}),
          ...(opts.token ? { token: opts.token } : {}),
          confirmable: false,
        },
        {
          multicast: true,
          timeoutMs: windowMs + 60_000,
          onResponse: (r) => {
            const res = new CoapResponse(r.message, r.peer, false, r.rttMs);
            responses.push(res);
            opts.onResponse?.(res);
            return false;
          },
          onError: (err) => {
            clearTimeout(timer);
            opts.signal?.removeEventListener('abort', onAbort);
            reject(err);
          },
        },
      );
    });
  } finally {
    exchange?.cancel();
    await endpoint.close();
  }
  return responses;
}

/** IPv4 224.0.0.0/4 or IPv6 ff00::/8 (zone ignored). */
function isMulticast(address: string): boolean {
  if (address.includes(':')) return /^ff/i.test(address);
  const first = Number(address.split('.')[0]);
  return first >= 224 && first <= 239;
}
