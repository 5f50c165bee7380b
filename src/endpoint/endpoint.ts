/**
 * An Endpoint wires one transport to the message layer and the exchange
 * layer, in one visible place (like aiocoap's protocol.py). Clients and
 * servers are both built on endpoints.
 */
import {
  type DerivedParameters,
  deriveParameters,
  resolveParameters,
  type TransmissionParameters,
} from '../constants/transmission.js';
import {
  type ClientExchange,
  ExchangeLayer,
  type OutgoingRequest,
  type RequestCallbacks,
  type ServerHandler,
} from '../exchange/exchange-layer.js';
import type { DedupOptions } from '../message-layer/dedup.js';
import { MessageLayer, type PeerTableOptions } from '../message-layer/message-layer.js';
import type { Peer, Transport } from '../transport/transport.js';
import type { Clock } from '../util/clock.js';

export interface EndpointOptions {
  /** Overrides of the RFC 7252 §4.8 transmission parameters. */
  transmission?: Partial<TransmissionParameters>;
  /** Token length for new requests, 0-8 bytes (default 8). */
  tokenLength?: number;
  /** Delay before a slow handler's request gets an empty ACK (default 1000 ms). */
  separateResponseDelayMs?: number;
  /** Bounds of the deduplication memory. */
  dedup?: DedupOptions;
  /**
   * Client side: repeat a request once, transparently, when the server
   * answers 4.01 Unauthorized with an Echo option (RFC 9175 §2.3; servers use
   * it to verify the client's address before large responses). Default true.
   */
  answerEcho?: boolean;
  /** Bounds of the per-peer state table (size, idle expiry). */
  peers?: PeerTableOptions;
  /**
   * The source of time and timers for retransmission, deduplication and
   * peer expiry, NSTART/PROBING_RATE, request timeouts and the
   * separate-response delay (default: the real clock, `performance.now()`
   * and Node's timers). Tests pass a `VirtualClock` to run these without
   * real waiting; the server's observe, block-wise and Echo state use the
   * same clock.
   */
  clock?: Clock;
}

export class Endpoint {
  readonly params: TransmissionParameters;
  readonly derived: DerivedParameters;
  /** @internal the layers are in `coapkit/internals`, with no stability promise. */
  readonly messageLayer: MessageLayer;
  /** @internal see `messageLayer`. */
  readonly exchangeLayer: ExchangeLayer;
  /** The endpoint's source of time (`EndpointOptions.clock`). */
  readonly clock: Clock;

  constructor(
    readonly transport: Transport,
    options: EndpointOptions = {},
  ) {
    this.params = resolveParameters(options.transmission);
    this.derived = deriveParameters(this.params);
    const tokenLength = options.tokenLength ?? 8;
    if (!Number.isInteger(tokenLength) || tokenLength < 0 || tokenLength > 8) {
      throw new RangeError(`tokenLength must be 0-8, got ${tokenLength}`);
    }
    this.messageLayer = new MessageLayer(transport, {
      params: this.params,
      derived: this.derived,
      ...(options.dedup ? { dedup: options.dedup } : {}),
      ...(options.peers ? { peers: options.peers } : {}),
      ...(options.clock ? { clock: options.clock } : {}),
    });
    this.clock = this.messageLayer.time;
    this.exchangeLayer = new ExchangeLayer(this.messageLayer, {
      tokenLength,
      separateResponseDelayMs: options.separateResponseDelayMs ?? 1000,
      ...(options.answerEcho === false ? { answerEcho: false } : {}),
    });
  }

  /** @internal the exchange layer's request handler (a `CoapServer` sets it). */
  set handler(h: ServerHandler | undefined) {
    this.exchangeLayer.handler = h;
  }

  /** @internal see the setter. */
  get handler(): ServerHandler | undefined {
    return this.exchangeLayer.handler;
  }

  /** @internal a raw exchange; applications use `CoapClient`. */
  request(peer: Peer, req: OutgoingRequest, callbacks: RequestCallbacks): ClientExchange {
    return this.exchangeLayer.request(peer, req, callbacks);
  }

  ping(peer: Peer): Promise<number> {
    return this.exchangeLayer.ping(peer);
  }

  async close(): Promise<void> {
    this.exchangeLayer.close();
    this.messageLayer.close();
    await this.transport.close();
  }
}
