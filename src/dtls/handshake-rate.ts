/**
 * Handshake rate limit of the DTLS server: token buckets per source address
 * (IPv6: per /64) and one global bucket, charged by a verified ClientHello
 * (valid cookie) that starts a handshake, weighted by what the handshake costs
 * the server (see HANDSHAKE_WEIGHTS). Over either bucket the ClientHello is
 * dropped (its client retransmits and gets in once tokens are back), so one
 * address that answers cookies cannot keep the CPU busy with handshake after
 * handshake while other clients wait.
 *
 * State: one bucket per address that started a handshake lately, created only
 * after a valid cookie and only when the handshake is admitted; a bucket that
 * has refilled is no different from no bucket and is dropped (by the sweep, or
 * when a new address needs room). At most `maxAddresses` are kept: when full,
 * the least recently charged bucket goes (it is the one closest to full).
 */
import type { Clock } from '../util/clock.js';
import { InvalidArgumentError } from '../util/errors.js';
import { prefixOf } from '../util/ip-prefix.js';

/** Limits of the handshake rate (units: PSK handshakes; see HANDSHAKE_WEIGHTS). */
export interface HandshakeRateOptions {
  /** Handshake units per second one address (IPv6: one /64) earns. Default 10. */
  perAddress?: number | undefined;
  /** Units one address can spend at once (its bucket's size; at least the heaviest weight). Default 60. */
  burst?: number | undefined;
  /** Handshake units per second for all addresses together. Default 1500 (about half a core of PSK handshakes). */
  global?: number | undefined;
  /** Size of the global bucket. Default: `global` (one second's worth). */
  globalBurst?: number | undefined;
  /** Addresses (buckets) tracked at once. Default 10,000. */
  maxAddresses?: number | undefined;
}

/** Defaults of {@link HandshakeRateOptions}. */
export const HANDSHAKE_RATE_DEFAULTS = {
  /** Units a second per address (IPv6: /64). */
  perAddress: 10,
  /** An address's bucket size. */
  burst: 60,
  /** Units a second in all (the global bucket holds one second's worth). */
  global: 1500,
  /** Address buckets kept at once. */
  maxAddresses: 10_000,
} as const;

/**
 * What a handshake costs the server, in PSK handshakes, by key exchange.
 * Measured two ways (see bench/README.md): the server's own time per full
 * handshake in-process without sockets (`npx tsx bench/dtls-handshake-weights.mts`:
 * PSK ~0.1 ms, ECDHE_PSK +0.1-0.2 ms, ECDHE_ECDSA with our signature +0.2 ms,
 * with the client's X.509 chain and CertificateVerify to verify +0.6-0.8 ms),
 * plus what every handshake pays in socket I/O and bookkeeping on top (the
 * coaps bench: ~0.3 ms of server CPU per full PSK handshake over loopback).
 * Rounded up for the heavier kinds (a longer client chain costs more).
 */
export const HANDSHAKE_WEIGHTS = {
  /** Plain PSK: PRF and hashes only. */
  psk: 1,
  /** ECDHE_PSK: one ECDH key pair and shared secret more. */
  ecdhePsk: 1.5,
  /** ECDHE_ECDSA, no client authentication: ECDH, one signature. */
  certificate: 2,
  /** ECDHE_ECDSA with a CertificateRequest: ECDH, one signature, the client's chain and CertificateVerify to verify. */
  certificateMutual: 4,
} as const;

/** Why a handshake was not admitted. */
export type RateRefusal = 'address' | 'global';

interface Bucket {
  tokens: number;
  /** Clock time the tokens were counted at. */
  at: number;
}

function rate(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v))
    throw new InvalidArgumentError(`handshakeRate.${name} must be a positive number (got ${String(v)})`);
  return v;
}

export class HandshakeRateLimiter {
  private readonly perAddress: number;
  private readonly burst: number;
  private readonly globalRate: number;
  private readonly globalBurst: number;
  private readonly maxAddresses: number;
  /** Buckets by address share key, least recently charged first. */
  private readonly buckets = new Map<string, Bucket>();
  private readonly global: Bucket;
  /** Counters: refused by an address's bucket, by the global one; buckets dropped before they had refilled. */
  readonly stats = { limitedAddress: 0, limitedGlobal: 0, evictedEarly: 0 };

  constructor(
    options: HandshakeRateOptions,
    private readonly clock: Clock,
  ) {
    const D = HANDSHAKE_RATE_DEFAULTS;
    this.perAddress = rate(options.perAddress, D.perAddress, 'perAddress');
    this.burst = rate(options.burst, D.burst, 'burst');
    this.globalRate = rate(options.global, D.global, 'global');
    this.globalBurst = rate(options.globalBurst, this.globalRate, 'globalBurst');
    const max = options.maxAddresses ?? D.maxAddresses;
    if (!Number.isInteger(max) || max < 1)
      throw new InvalidArgumentError(`handshakeRate.maxAddresses must be a positive integer (got ${max})`);
    this.maxAddresses = max;
    const heaviest = HANDSHAKE_WEIGHTS.certificateMutual;
    if (this.burst < heaviest || this.globalBurst < heaviest)
      throw new InvalidArgumentError(
        `handshakeRate.burst and globalBurst must be at least ${heaviest} (the weight of a mutual certificate handshake)`,
      );
    this.global = { tokens: this.globalBurst, at: clock.now() };
  }

  /** Addresses (IPv6: /64 prefixes) with a bucket now. */
  get trackedAddresses(): number {
    return this.buckets.size;
  }

  /** Tokens left in the bucket of `address` (its share key), refilled to now; `burst` when it has none. */
  tokensOf(address: string): number {
    const b = this.buckets.get(prefixOf(address));
    return b === undefined ? this.burst : this.refill(b, this.perAddress, this.burst, this.clock.now());
  }

  /** Tokens left in the global bucket now. */
  get globalTokens(): number {
    return this.refill(this.global, this.globalRate, this.globalBurst, this.clock.now());
  }

  private refill(b: Bucket, perSecond: number, size: number, now: number): number {
    return Math.min(size, b.tokens + ((now - b.at) * perSecond) / 1000);
  }

  /**
   * Charges `weight` to the address's bucket and the global one if both hold
   * it; otherwise charges nothing and says which bucket refused.
   */
  admit(address: string, weight: number): RateRefusal | undefined {
    const now = this.clock.now();
    const key = prefixOf(address);
    const b = this.buckets.get(key);
    const own = b === undefined ? this.burst : this.refill(b, this.perAddress, this.burst, now);
    if (own < weight) {
      this.stats.limitedAddress++;
      return 'address';
    }
    const g = this.refill(this.global, this.globalRate, this.globalBurst, now);
    if (g < weight) {
      this.stats.limitedGlobal++;
      return 'global';
    }
    this.global.tokens = g - weight;
    this.global.at = now;
    if (b !== undefined) {
      // Most recently charged last.
      this.buckets.delete(key);
      b.tokens = own - weight;
      b.at = now;
      this.buckets.set(key, b);
      return undefined;
    }
    if (this.buckets.size >= this.maxAddresses) this.makeRoom(now);
    this.buckets.set(key, { tokens: own - weight, at: now });
    return undefined;
  }

  /** Drops the least recently charged bucket (counted when it had not refilled yet). */
  private makeRoom(now: number): void {
    const first = this.buckets.entries().next().value;
    if (first === undefined) return;
    const [key, b] = first;
    if (this.refill(b, this.perAddress, this.burst, now) < this.burst) this.stats.evictedEarly++;
    this.buckets.delete(key);
  }

  /** Drops the buckets that have refilled (they mean the same as none). */
  sweep(): void {
    const now = this.clock.now();
    for (const [key, b] of this.buckets)
      if (this.refill(b, this.perAddress, this.burst, now) >= this.burst) this.buckets.delete(key);
  }

  /** Time (ms) after which a bucket charged now has surely refilled: the sweep period that keeps the table short. */
  get refillMs(): number {
    return (1000 * this.burst) / this.perAddress;
  }
}
