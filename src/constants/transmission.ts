/**
 * CoAP transmission parameters (RFC 7252 §4.8) and the values derived from
 * them (§4.8.2). All times are in milliseconds.
 */
export interface TransmissionParameters {
  /** ACK_TIMEOUT, default 2000 ms. */
  ackTimeout: number;
  /** ACK_RANDOM_FACTOR, default 1.5 (must be >= 1). */
  ackRandomFactor: number;
  /** MAX_RETRANSMIT, default 4. */
  maxRetransmit: number;
  /** NSTART: outstanding interactions per peer, default 1. */
  nstart: number;
  /** DEFAULT_LEISURE for multicast responses, default 5000 ms. */
  defaultLeisure: number;
  /** PROBING_RATE in bytes/second toward a peer that does not answer, default 1. */
  probingRate: number;
  /** MAX_LATENCY, default 100 000 ms. */
  maxLatency: number;
  /** PROCESSING_DELAY, default = ACK_TIMEOUT. */
  processingDelay: number;
}

export const DEFAULT_TRANSMISSION: Readonly<TransmissionParameters> = Object.freeze({
  ackTimeout: 2000,
  ackRandomFactor: 1.5,
  maxRetransmit: 4,
  nstart: 1,
  defaultLeisure: 5000,
  probingRate: 1,
  maxLatency: 100_000,
  processingDelay: 2000,
});

export interface DerivedParameters {
  /** MAX_TRANSMIT_SPAN = ACK_TIMEOUT * (2^MAX_RETRANSMIT - 1) * ACK_RANDOM_FACTOR (45 s). */
  maxTransmitSpan: number;
  /** MAX_TRANSMIT_WAIT = ACK_TIMEOUT * (2^(MAX_RETRANSMIT + 1) - 1) * ACK_RANDOM_FACTOR (93 s). */
  maxTransmitWait: number;
  /** EXCHANGE_LIFETIME = MAX_TRANSMIT_SPAN + 2 * MAX_LATENCY + PROCESSING_DELAY (247 s). */
  exchangeLifetime: number;
  /** NON_LIFETIME = MAX_TRANSMIT_SPAN + MAX_LATENCY (145 s). */
  nonLifetime: number;
}

export function deriveParameters(p: TransmissionParameters): DerivedParameters {
  const maxTransmitSpan = p.ackTimeout * (2 ** p.maxRetransmit - 1) * p.ackRandomFactor;
  const maxTransmitWait = p.ackTimeout * (2 ** (p.maxRetransmit + 1) - 1) * p.ackRandomFactor;
  return {
    maxTransmitSpan,
    maxTransmitWait,
    exchangeLifetime: maxTransmitSpan + 2 * p.maxLatency + p.processingDelay,
    nonLifetime: maxTransmitSpan + p.maxLatency,
  };
}

/** Merges user overrides with the defaults; PROCESSING_DELAY follows ACK_TIMEOUT unless given. */
export function resolveParameters(overrides?: Partial<TransmissionParameters>): TransmissionParameters {
  const p = { ...DEFAULT_TRANSMISSION, ...overrides };
  if (overrides?.ackTimeout !== undefined && overrides.processingDelay === undefined) {
    p.processingDelay = overrides.ackTimeout;
  }
  return p;
}
