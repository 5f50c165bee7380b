/**
 * In-memory transport for tests: a pair (or a hub) of endpoints that pass
 * datagrams through an optional lossy link with drop/delay/duplicate hooks.
 */

import { Buffer } from 'node:buffer';
import { type Clock, realClock } from '../util/clock.js';
import type { AddressFamily, Peer, Transport, TransportHandlers } from './transport.js';
import { makePeer } from './transport.js';

export interface LinkConditions {
  /** Return true to drop this datagram. */
  drop?: (data: Uint8Array, from: Peer, to: Peer) => boolean;
  /**
   * Delay in ms before delivery, on the network's clock (default 0: the next
   * turn of the event loop, on any clock, so that a virtual clock need not be
   * advanced for plain delivery).
   */
  delay?: (data: Uint8Array, from: Peer, to: Peer) => number;
  /** Return true to deliver this datagram twice. */
  duplicate?: (data: Uint8Array, from: Peer, to: Peer) => boolean;
}

export class MemoryNetwork {
  private readonly nodes = new Map<string, MemoryTransport>();
  private nextPort = 40000;
  conditions: LinkConditions = {};

  /** @param clock - the clock that delays of `conditions.delay` run on (default the real one). */
  constructor(readonly clock: Clock = realClock) {}

  createTransport(address = '10.0.0.1', port?: number): MemoryTransport {
    const p = port ?? this.nextPort++;
    const t = new MemoryTransport(this, makePeer(address, p));
    this.nodes.set(t.self.key, t);
    return t;
  }

  /** @internal */
  deliver(data: Uint8Array, from: Peer, to: Peer): void {
    const c = this.conditions;
    if (c.drop?.(data, from, to)) return;
    const copies = c.duplicate?.(data, from, to) ? 2 : 1;
    const target = this.nodes.get(to.key);
    if (!target) return;
    for (let i = 0; i < copies; i++) {
      const buf = Buffer.from(data);
      const d = c.delay?.(data, from, to) ?? 0;
      if (d > 0) this.clock.setTimer(() => target.receive(buf, from), d);
      else if (this.clock === realClock) setTimeout(() => target.receive(buf, from), 0);
      else setImmediate(() => target.receive(buf, from));
    }
  }

  /** @internal */
  remove(t: MemoryTransport): void {
    this.nodes.delete(t.self.key);
  }
}

export class MemoryTransport implements Transport {
  readonly scheme = 'coap';
  readonly reliable = false;
  readonly maxMessageSize = 1152;
  private handlers: TransportHandlers | undefined;
  private closed = false;

  constructor(
    private readonly net: MemoryNetwork,
    readonly self: Peer,
  ) {}

  attach(handlers: TransportHandlers): void {
    this.handlers = handlers;
  }

  send(data: Uint8Array, peer: Peer): void {
    if (!this.closed) this.net.deliver(data, this.self, peer);
  }

  /** @internal */
  receive(data: Buffer, from: Peer): void {
    if (!this.closed) this.handlers?.message(data, from);
  }

  localAddress(): { address: string; port: number; family: AddressFamily } {
    return { address: this.self.address, port: this.self.port, family: this.self.family };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.net.remove(this);
  }
}
