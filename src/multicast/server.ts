/**
 * Server side of CoAP group communication (RFC 7252 §8.1, §8.2).
 *
 * `listenMulticast(server, { groups })` (or `server.listenMulticast({ groups })`)
 * binds one socket per group to the
 * group address itself (SO_REUSEADDR, so several servers on one host can
 * share the group and port), joins the group, and serves it through an
 * Endpoint marked as multicast:
 * - CON requests are ignored, never ACKed or RST (the GroupTransport filter);
 * - a response is only sent when it is useful: no 4.xx/5.xx, no empty 2.05,
 *   no "nothing matched" (/.well-known/core?rt=x with no match is a 4.04
 *   per RFC 6690 §4.1, so it is suppressed too) (§8.2.1 "SHOULD NOT respond");
 * - it goes out as NON after a random delay in [0, Leisure) (§8.2,
 *   DEFAULT_LEISURE 5 s unless `leisureMs` says otherwise);
 * - responses are size- and rate-limited (§11.3, see GroupTransport).
 *
 * Linux note: a socket bound to the wildcard address on the group's port also
 * receives the group's datagrams (IP_MULTICAST_ALL is 1 by default and Node
 * cannot clear it or read IP_PKTINFO). So a unicast endpoint on 0.0.0.0:5683
 * or [::]:5683 next to a group socket on 5683 would process every multicast
 * request a second time as if it were unicast (and answer CONs, send errors).
 * Bind the unicast endpoint to specific addresses (what `coapkit serve
 * --multicast` does) or to another port; `wildcardConflict()` detects it.
 */
import type { CoapMessage } from '../codec/message.js';
import { ResponseCode } from '../constants/codes.js';
import { Endpoint, type EndpointOptions } from '../endpoint/endpoint.js';
import { InvalidArgumentError } from '../errors.js';
import type { OutgoingResponse, ServerHandler } from '../exchange/exchange-layer.js';
import type { Peer, Transport } from '../transport/transport.js';
import { UdpTransport } from '../transport/udp.js';
import { type Clock, realClock } from '../util/clock.js';
import { GroupTransport, type GroupTransportOptions } from './transport.js';

/** "All CoAP Nodes" (RFC 7252 §12.8). */
export const ALL_COAP_NODES_IPV4 = '224.0.1.187';
export const ALL_COAP_NODES_IPV6_LINK_LOCAL = 'ff02::fd';
export const ALL_COAP_NODES_IPV6_SITE_LOCAL = 'ff05::fd';
/** §8.2 / §4.8 DEFAULT_LEISURE. */
export const DEFAULT_LEISURE_MS = 5000;

export interface MulticastServerOptions extends GroupTransportOptions {
  /** Groups to join (default the IPv4 All CoAP Nodes group 224.0.1.187). */
  groups?: string[];
  /** UDP port (default 5683). */
  port?: number;
  /** IPv4 address of the interface to join IPv4 groups on (default: chosen by the kernel). */
  interface?: string;
  /** Interface name (e.g. "eth0", "lo") for IPv6 groups; needed for link-local ff02::fd. */
  interface6?: string;
  /** Leisure in ms: each response waits a random time in [0, leisure) (default 5000). */
  leisureMs?: number;
  /** Endpoint options for the group endpoints (transmission parameters...). */
  endpoint?: EndpointOptions;
}

/**
 * What joining groups needs of a server (a `CoapServer` is one): this layer
 * sits under the server and never imports it.
 */
export interface MulticastHost {
  /** Answers one request with the server's routes (null: no response). */
  handle(msg: CoapMessage, peer: Peer): OutgoingResponse | null | Promise<OutgoingResponse | null>;
  /**
   * The server's endpoints: the group endpoints are appended (so closing the
   * server closes them), and its unicast UDP endpoints are where responses
   * are sent from.
   */
  readonly endpoints: Endpoint[];
  /** The server's clock (`CoapServer`'s `clock` option), for the group endpoints and rate limits. */
  readonly clock?: Clock | undefined;
}

/** One joined group. */
export interface MulticastListener {
  group: string;
  port: number;
  endpoint: Endpoint;
  transport: GroupTransport;
}

export function isIpv6Group(group: string): boolean {
  return group.includes(':');
}

/** Scope of an IPv6 multicast address (4th hex digit: 2 link-local, 5 site-local...). */
export function ipv6Scope(group: string): number {
  const m = /^ff[0-9a-f]([0-9a-f])/i.exec(group);
  return m ? Number.parseInt(m[1]!, 16) : 14;
}

/**
 * Whether a multicast response is worth sending (§8.2.1): not an error,
 * not an empty 2.05.
 */
export function usefulMulticastResponse(res: OutgoingResponse | null): res is OutgoingResponse {
  if (res === null) return false;
  const cls = res.code >> 5;
  if (cls !== 2) return false;
  if (res.code === ResponseCode.Content && (res.payload === undefined || res.payload.length === 0))
    return false;
  return true;
}

/** The request handler of a multicast endpoint: suppression plus the leisure delay. */
export function multicastHandler(
  handle: ServerHandler,
  leisureMs: number,
  random: () => number = Math.random,
  clock: Clock = realClock,
): ServerHandler {
  return async (msg, peer) => {
    const res = await handle(msg, peer);
    if (!usefulMulticastResponse(res)) return null;
    const delay = Math.floor(random() * leisureMs);
    if (delay > 0) await new Promise<void>((resolve) => clock.setTimer(resolve, delay));
    return res;
  };
}

/** True when a unicast bind would also receive the group's datagrams (see the Linux note above). */
export function wildcardConflict(unicastHost: string | undefined, unicastPort: number, groupPort: number) {
  const wildcard =
    unicastHost === undefined || unicastHost === '::' || unicastHost === '0.0.0.0' || unicastHost === '';
  return wildcard && unicastPort === groupPort && unicastPort !== 0;
}

/** Joins the groups and serves them with `server`'s routes under the multicast rules. */
export async function listenMulticast(
  server: MulticastHost,
  options: MulticastServerOptions = {},
): Promise<MulticastListener[]> {
  const groups = options.groups ?? [ALL_COAP_NODES_IPV4];
  const port = options.port ?? 5683;
  const leisureMs = options.leisureMs ?? DEFAULT_LEISURE_MS;
  if (!(leisureMs >= 0)) throw new InvalidArgumentError(`leisureMs must be >= 0, got ${leisureMs}`);
  const out: MulticastListener[] = [];
  try {
    for (const group of groups) {
      const v6 = isIpv6Group(group);
      let bindHost = group;
      let iface: string | undefined;
      if (v6) {
        const name = options.interface6;
        if (name === undefined && ipv6Scope(group) <= 2) {
          throw new InvalidArgumentError(`joining ${group} needs an interface name (interface6)`);
        }
        if (name !== undefined) {
          bindHost = `${group}%${name}`;
          iface = `::%${name}`;
        }
      } else iface = options.interface;
      const udp = await UdpTransport.create({
        host: bindHost,
        port,
        reuseAddr: true,
        type: v6 ? 'udp6' : 'udp4',
        multicastGroups: [group],
        ...(iface !== undefined ? { multicastInterface: iface } : {}),
      });
      // Responses sent from the group socket leave through the group's interface.
      try {
        if (iface !== undefined) udp.rawSocket.setMulticastInterface(iface);
      } catch {
        // Not fatal: only matters for multicast we send, and we send unicast.
      }
      const replyVia = options.replyVia ?? pickReply(server, v6, v6 ? undefined : iface);
      // One clock: the options', the endpoint options', else the server's.
      const clock = options.clock ?? options.endpoint?.clock ?? server.clock;
      const transport = new GroupTransport(udp, bindHost, {
        ...options,
        ...(replyVia ? { replyVia } : {}),
        ...(clock ? { clock } : {}),
      });
      const ep = new Endpoint(transport, { ...options.endpoint, ...(clock ? { clock } : {}) });
      // No endpoint for the request: observe does not register over multicast.
      ep.handler = multicastHandler(
        (msg, peer) => server.handle(msg, peer),
        leisureMs,
        Math.random,
        ep.clock,
      );
      server.endpoints.push(ep);
      out.push({ group: bindHost, port: udp.localAddress().port, endpoint: ep, transport });
    }
  } catch (err) {
    await Promise.all(out.map((l) => l.endpoint.close()));
    for (const l of out) {
      const i = server.endpoints.indexOf(l.endpoint);
      if (i >= 0) server.endpoints.splice(i, 1);
    }
    throw err;
  }
  return out;
}

/**
 * The unicast UDP endpoint of the server to answer from: the one bound to the
 * multicast interface address, else the only one of the group's family; with
 * several (one per local address) the group socket answers, from the address
 * the kernel picks by route.
 */
function pickReply(server: MulticastHost, v6: boolean, iface: string | undefined): Transport | undefined {
  const candidates: UdpTransport[] = [];
  for (const ep of server.endpoints) {
    const t = ep.transport;
    if (!(t instanceof UdpTransport)) continue;
    const a = t.localAddress();
    if (v6 ? a.family === 'IPv6' : a.family === 'IPv4' || a.address === '::') candidates.push(t);
  }
  const exact = candidates.find((t) => t.localAddress().address === iface);
  if (exact) return exact;
  return candidates.length === 1 ? candidates[0] : undefined;
}
