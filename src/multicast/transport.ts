/**
 * The receive side of CoAP group communication (RFC 7252 §8): a transport
 * over a UDP socket bound to a multicast group address, so everything that
 * arrives on it is known to be a multicast request (Node's dgram cannot tell
 * a datagram's destination address otherwise).
 *
 * The filters here enforce the §8.1 rules whatever the layers above do:
 * - inbound, only Non-confirmable requests are passed up; a CON request, an
 *   empty message (ping), a response, an ACK or an RST sent to a group is
 *   dropped, so it is never acknowledged and never reset;
 * - outbound, only Non-confirmable messages leave (never an ACK, never an RST);
 * - §11.3 amplification: a response larger than `maxResponseSize` is not
 *   sent, and responses are rate-limited per destination address and overall
 *   (token buckets), so a spoofed request cannot turn the group into a flood.
 *
 * Responses go out from `replyVia` (a unicast transport of the server, so
 * the client sees each member's own unicast address and can continue with
 * it) or else from the group socket itself; either way the source address
 * is unicast (Linux picks it from the route for a socket bound to a group).
 */

import { MessageType } from '../constants/codes.js';
import type { AddressFamily, Peer, Transport, TransportHandlers } from '../transport/transport.js';
import { makePeer } from '../transport/transport.js';
import type { UdpTransport } from '../transport/udp.js';
import { type Clock, realClock } from '../util/clock.js';

/** Token-bucket rates of the responses sent to multicast requests (RFC 7252 §11.3). */
export interface GroupRateLimit {
  /** Responses per second toward one destination address (default 10). */
  perPeer: number;
  /** Responses per second in total (default 100). */
  total: number;
}

export interface GroupTransportOptions {
  /** Largest response sent to a multicast request, in bytes (default 1152, one datagram). */
  maxResponseSize?: number;
  rateLimit?: Partial<GroupRateLimit>;
  /** Send responses from this unicast transport instead of the group socket. */
  replyVia?: Transport;
  /** The clock of the rate limits (default the real clock; a multicast server passes its own). */
  clock?: Clock;
}

/** Counters of what the filters did (tests and diagnostics). */
export interface GroupStats {
  /** NON requests passed up to the server. */
  requests: number;
  /** CON requests ignored (a multicast request must be NON, §8.1). */
  droppedConfirmable: number;
  /** Datagrams ignored that are not a CoAP request (too short, wrong version, a response). */
  droppedOther: number;
  /** Responses sent. */
  responses: number;
  /** Outgoing messages dropped because they were not NON (no CON or ACK to a group request). */
  droppedNonNon: number;
  /** Responses dropped because they were larger than `maxResponseSize`. */
  droppedTooLarge: number;
  /** Responses dropped by the per-destination or total rate limit. */
  droppedRateLimited: number;
}

class Bucket {
  tokens: number;
  last: number;
  constructor(
    readonly rate: number,
    now: number,
  ) {
    this.tokens = rate;
    this.last = now;
  }
  take(now: number): boolean {
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

export class GroupTransport implements Transport {
  readonly scheme = 'coap';
  readonly reliable = false;
  readonly maxMessageSize: number;
  readonly stats: GroupStats = {
    requests: 0,
    droppedConfirmable: 0,
    droppedOther: 0,
    responses: 0,
    droppedNonNon: 0,
    droppedTooLarge: 0,
    droppedRateLimited: 0,
  };
  private readonly limit: GroupRateLimit;
  private readonly total: Bucket;
  private readonly perPeer = new Map<string, Bucket>();
  private readonly replyVia: Transport | undefined;
  private readonly clock: Clock;

  constructor(
    /** The socket bound to the group address. */
    readonly group: UdpTransport,
    /** The group address (with its zone for IPv6 link-local groups). */
    readonly groupAddress: string,
    options: GroupTransportOptions = {},
  ) {
    this.maxMessageSize = Math.min(options.maxResponseSize ?? 1152, group.maxMessageSize);
    this.limit = { perPeer: options.rateLimit?.perPeer ?? 10, total: options.rateLimit?.total ?? 100 };
    this.clock = options.clock ?? realClock;
    this.total = new Bucket(this.limit.total, this.clock.now());
    this.replyVia = options.replyVia;
  }

  attach(handlers: TransportHandlers): void {
    this.group.attach({
      message: (data, peer) => {
        // Byte 0: Ver(2) T(2) TKL(4); byte 1: code. Requests have class 0 and a non-zero code.
        if (data.length < 4 || data[0]! >> 6 !== 1) return void this.stats.droppedOther++;
        const type = (data[0]! >> 4) & 3;
        const code = data[1]!;
        if (code === 0 || code >> 5 !== 0) return void this.stats.droppedOther++;
        if (type !== MessageType.NON) return void this.stats.droppedConfirmable++;
        this.stats.requests++;
        handlers.message(data, peer);
      },
      ...(handlers.error ? { error: handlers.error } : {}),
    });
  }

  send(data: Uint8Array, peer: Peer): void {
    if (data.length < 4 || ((data[0]! >> 4) & 3) !== MessageType.NON) {
      this.stats.droppedNonNon++;
      return;
    }
    if (data.length > this.maxMessageSize) {
      this.stats.droppedTooLarge++;
      return;
    }
    const now = this.clock.now();
    let b = this.perPeer.get(peer.address);
    if (b === undefined) {
      if (this.perPeer.size >= 4096) this.perPeer.clear();
      b = new Bucket(this.limit.perPeer, now);
      this.perPeer.set(peer.address, b);
    }
    if (!b.take(now) || !this.total.take(now)) {
      this.stats.droppedRateLimited++;
      return;
    }
    this.stats.responses++;
    const via = this.replyVia;
    if (via !== undefined) {
      const local = via.localAddress();
      if (local.family === peer.family) return via.send(data, makePeer(peer.address, peer.port));
      if (local.family === 'IPv6' && peer.family === 'IPv4' && local.address === '::') {
        return via.send(data, makePeer(`::ffff:${peer.address}`, peer.port));
      }
    }
    this.group.send(data, peer);
  }

  localAddress(): { address: string; port: number; family: AddressFamily } {
    const a = this.group.localAddress();
    return { ...a, address: this.groupAddress };
  }

  close(): Promise<void> {
    return this.group.close();
  }
}
