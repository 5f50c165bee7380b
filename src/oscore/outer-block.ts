/**
 * Outer block-wise (RFC 8613 §4.1.3.4.2): a proxy that does not know OSCORE
 * may cut a protected message into outer Block1/Block2 blocks (Class U
 * options, outside the ciphertext). The OSCORE endpoints put the protected
 * payload back together before verifying it, and refuse one larger than
 * MAX_UNFRAGMENTED_SIZE (a request: 4.13; a response: dropped).
 * `OuterBlockStore` keeps the partial bodies (and the protected responses
 * being served in outer Block2 blocks): a global bound, a per-peer share,
 * each entry expiring.
 */
import { Buffer } from 'node:buffer';
import type { CoapOption } from '../codec/message.js';
import { type BlockOption, decodeBlock } from '../codec/options.js';
import { OptionNumber } from '../constants/options.js';
import { type Clock, realClock } from '../util/clock.js';
import { Tally } from '../util/keyed.js';

/** The default MAX_UNFRAGMENTED_SIZE (bytes of protected payload put back together). */
export const DEFAULT_MAX_UNFRAGMENTED_SIZE = 64 * 1024;

/** The outer Block1 or Block2 option of `options`, decoded; undefined when absent; null when malformed. */
export function outerBlock(options: readonly CoapOption[], number: number): BlockOption | undefined | null {
  const o = options.find((x) => x.number === number);
  if (o === undefined) return undefined;
  try {
    return decodeBlock(o.value);
  } catch {
    return null;
  }
}

/** `options` without the outer block-wise options (Block1, Block2, Size1, Size2). */
export function withoutOuterBlock(options: readonly CoapOption[]): CoapOption[] {
  return options.filter(
    (o) =>
      o.number !== OptionNumber.Block1 &&
      o.number !== OptionNumber.Block2 &&
      o.number !== OptionNumber.Size1 &&
      o.number !== OptionNumber.Size2,
  );
}

interface Entry<T> {
  peer: string;
  expires: number;
  value: T;
}

/** Options of {@link OuterBlockStore}. */
export interface OuterBlockStoreOptions {
  /** Entries in all (default 256). */
  maxEntries?: number;
  /** Entries per peer (default 8). */
  maxPerPeer?: number;
  /** How long an entry lives after its last use, ms (default 60 000). */
  lifetimeMs?: number;
  clock?: Clock;
}

/** A bounded, expiring map keyed by peer + OSCORE option (which is the same in every outer block). */
export class OuterBlockStore<T> {
  private readonly map = new Map<string, Entry<T>>();
  private readonly perPeer = new Tally<string>();
  private readonly maxEntries: number;
  private readonly maxPerPeer: number;
  private readonly lifetimeMs: number;
  private readonly clock: Clock;

  constructor(options: OuterBlockStoreOptions = {}) {
    this.maxEntries = options.maxEntries ?? 256;
    this.maxPerPeer = options.maxPerPeer ?? 8;
    this.lifetimeMs = options.lifetimeMs ?? 60_000;
    this.clock = options.clock ?? realClock;
  }

  /** Entries held now. */
  get size(): number {
    return this.map.size;
  }

  get(key: string): T | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    const now = this.clock.now();
    if (e.expires <= now) {
      this.delete(key);
      return undefined;
    }
    e.expires = now + this.lifetimeMs;
    return e.value;
  }

  /** Stores `value`; false when the global bound or the peer's share is used up. */
  set(peer: string, key: string, value: T): boolean {
    const e = this.map.get(key);
    const now = this.clock.now();
    if (e !== undefined) {
      e.value = value;
      e.expires = now + this.lifetimeMs;
      return true;
    }
    if (this.map.size >= this.maxEntries || this.perPeer.of(peer) >= this.maxPerPeer) this.sweep(now);
    if (this.map.size >= this.maxEntries || this.perPeer.of(peer) >= this.maxPerPeer) return false;
    this.map.set(key, { peer, expires: now + this.lifetimeMs, value });
    this.perPeer.add(peer);
    return true;
  }

  delete(key: string): void {
    const e = this.map.get(key);
    if (e === undefined) return;
    this.map.delete(key);
    this.perPeer.subtract(e.peer);
  }

  private sweep(now: number): void {
    for (const [k, e] of this.map) if (e.expires <= now) this.delete(k);
  }
}

/** Concatenates the collected parts of a body. */
export function joinParts(parts: readonly Buffer[]): Buffer {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}
