/**
 * Test helpers for the in-memory transport: endpoints with fast transmission
 * parameters, and a "raw" peer that sends crafted datagrams and records what
 * it receives (to test the message layer byte by byte).
 */
import {
  type CoapMessage,
  decodeMessage,
  type EncodableMessage,
  encodeMessage,
} from '../../src/codec/message.js';
import type { TransmissionParameters } from '../../src/constants/transmission.js';
import { Endpoint, type EndpointOptions } from '../../src/endpoint/endpoint.js';
import { MemoryNetwork, type MemoryTransport } from '../../src/transport/memory.js';
import type { Peer } from '../../src/transport/transport.js';
import { type Clock, realClock } from '../../src/util/clock.js';

export const FAST: Partial<TransmissionParameters> = {
  ackTimeout: 50,
  ackRandomFactor: 1.5,
  maxRetransmit: 3,
};

export interface Received {
  data: Buffer;
  from: Peer;
  at: number;
  msg: CoapMessage | undefined;
}

/** A bare transport that records every datagram and can send anything. */
export class RawPeer {
  readonly received: Received[] = [];
  private waiters: Array<() => void> = [];

  constructor(
    readonly transport: MemoryTransport,
    private readonly clock: Clock = realClock,
  ) {
    transport.attach({
      message: (data, from) => {
        let msg: CoapMessage | undefined;
        try {
          msg = decodeMessage(data);
        } catch {
          msg = undefined;
        }
        this.received.push({ data, from, at: this.clock.now(), msg });
        for (const w of this.waiters.splice(0)) w();
      },
    });
  }

  get peer(): Peer {
    return this.transport.self;
  }

  send(to: Peer, data: Uint8Array | EncodableMessage): void {
    const bytes = data instanceof Uint8Array ? data : encodeMessage(data);
    this.transport.send(bytes, to);
  }

  /**
   * Resolves once `count` datagrams in total have been received (rejects
   * after `ms` of real time: a safety net, not a timing assertion).
   */
  async waitFor(count: number, ms = 2000): Promise<Received[]> {
    const deadline = performance.now() + ms;
    while (this.received.length < count) {
      const left = deadline - performance.now();
      if (left <= 0)
        throw new Error(`timed out waiting for ${count} datagrams (have ${this.received.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.received;
  }

  /** Waits for the next datagram after the ones already received. */
  async next(ms = 2000): Promise<Received> {
    const n = this.received.length;
    await this.waitFor(n + 1, ms);
    return this.received[n]!;
  }

  /** Waits for a received datagram (already received or future) that satisfies `pred`. */
  async until(pred: (r: Received) => boolean, ms = 2000): Promise<Received> {
    const deadline = performance.now() + ms;
    for (let i = 0; ; i++) {
      if (i >= this.received.length) await this.waitFor(i + 1, Math.max(1, deadline - performance.now()));
      const r = this.received[i]!;
      if (pred(r)) return r;
    }
  }

  clear(): void {
    this.received.length = 0;
  }
}

export interface MemorySetup {
  net: MemoryNetwork;
  endpoint(options?: EndpointOptions, address?: string, port?: number): Endpoint;
  raw(address?: string, port?: number): RawPeer;
  close(): Promise<void>;
}

/**
 * A network with cleanup of everything created through it. With a `clock`
 * (a VirtualClock in tests) the network's delays and every endpoint created
 * through it run on that clock.
 */
export function memorySetup(clock?: Clock): MemorySetup {
  const net = new MemoryNetwork(clock);
  const endpoints: Endpoint[] = [];
  const raws: RawPeer[] = [];
  return {
    net,
    endpoint(options = {}, address = '10.0.0.1', port?: number) {
      const ep = new Endpoint(net.createTransport(address, port), {
        transmission: FAST,
        ...(clock ? { clock } : {}),
        ...options,
      });
      endpoints.push(ep);
      return ep;
    },
    raw(address = '10.0.0.9', port?: number) {
      const r = new RawPeer(net.createTransport(address, port), net.clock);
      raws.push(r);
      return r;
    },
    async close() {
      await Promise.all(endpoints.map((e) => e.close()));
      await Promise.all(raws.map((r) => r.transport.close()));
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Peer of an endpoint's transport (in-memory). */
export function selfOf(ep: Endpoint): Peer {
  return (ep.transport as MemoryTransport).self;
}
