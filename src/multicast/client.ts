/**
 * Client side of CoAP group communication (RFC 7252 §8.2), the transport
 * part: one NON request to a group address, then every response from any
 * member is passed on until the window ends. Responses are matched on the
 * token alone (they come from the members' unicast addresses, never from the
 * group address).
 *
 * This layer knows endpoints and transports, not the client: it takes a
 * request already built and hands back raw responses. `multicastRequest`
 * and `CoapClient.multicast` (client/client.ts) parse the URI, build the
 * request and wrap the responses.
 */
import { Endpoint, type EndpointOptions } from '../endpoint/endpoint.js';
import { InvalidArgumentError } from '../errors.js';
import type { ClientExchange, InboundResponse, OutgoingRequest } from '../exchange/exchange-layer.js';
import { makePeer } from '../transport/transport.js';
import { UdpTransport } from '../transport/udp.js';
import { DEFAULT_LEISURE_MS } from './server.js';

/** Default collection window: DEFAULT_LEISURE plus a margin for the round trip. */
export const DEFAULT_MULTICAST_WINDOW_MS = DEFAULT_LEISURE_MS + 1000;

/** IPv4 224.0.0.0/4 or IPv6 ff00::/8 (a zone, `%eth0`, is ignored). */
export function isMulticastAddress(address: string): boolean {
  if (address.includes(':')) return /^ff/i.test(address);
  const first = Number(address.split('.')[0]);
  return first >= 224 && first <= 239;
}

/** How a group request goes out (the socket side of `MulticastRequestOptions`). */
export interface GroupSendOptions {
  /** How long to collect responses, in ms (must be > 0). */
  windowMs: number;
  /** Interface to send on: an IPv4 address, or an interface name / "::%name" for IPv6. */
  multicastInterface?: string;
  /** IP TTL / IPv6 hop limit of the request (default 1: this link only). */
  multicastTtl?: number;
  /** Deliver the request to servers on this host too (default true). */
  loopback?: boolean;
  /** Endpoint options (token length...). */
  endpoint?: EndpointOptions;
  /** Local address to bind (default the wildcard address of the group's family). */
  bindAddress?: string;
  /** Stops collecting at once (resolves with what arrived so far). */
  signal?: AbortSignal;
}

/**
 * Sends `request` as one NON message to the group `address` (already
 * resolved, zone included for IPv6 link-local) on `port`, and calls
 * `onResponse` for each response until the window ends or `signal` aborts.
 * Resolves then; rejects on a socket error. The socket is closed either way.
 */
export async function sendGroupRequest(
  group: { address: string; family: 4 | 6; port: number },
  request: OutgoingRequest,
  opts: GroupSendOptions,
  onResponse: (res: InboundResponse) => void,
): Promise<void> {
  const [bare, zone] = group.address.split('%') as [string, string | undefined];
  if (!isMulticastAddress(bare)) {
    throw new InvalidArgumentError(`${group.address} is not a multicast address`, {
      hint: 'use a group address such as coap://224.0.1.187 or coap://[ff02::fd%25eth0]',
    });
  }
  const windowMs = opts.windowMs;
  if (!(windowMs > 0)) throw new InvalidArgumentError(`windowMs must be > 0, got ${windowMs}`);
  const v6 = group.family === 6;
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
  const peer = makePeer(group.address, group.port);
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
        { ...request, confirmable: false },
        {
          multicast: true,
          timeoutMs: windowMs + 60_000,
          onResponse: (r) => {
            onResponse(r);
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
}
