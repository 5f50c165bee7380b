/**
 * Amplification mitigation for plain-UDP servers (RFC 7252 §11.3, RFC 9175 §2.4 item 3).
 *
 * A server must not send an unverified address more than `factor` (3) times
 * the bytes it received from it: the source address of a UDP datagram can be
 * spoofed, and a small request with a victim's address would otherwise make
 * the server flood the victim. An address is verified when a request from it
 * carries an Echo value (option 252) the server handed out to that same IP
 * address a short while ago: only someone who receives datagrams there can
 * know it.
 *
 * Verification is per IP address, not per address + port (like QUIC's address
 * validation tokens): NATs rebind ports, node-coap opens a new socket (port)
 * for a repeated request, and every `coapkit get` starts from a new port. A
 * spoofer can only aim at addresses it cannot receive at; an attacker sharing
 * the victim's IP address (same host or NAT) is out of scope.
 *
 * Echo values are stateless: 1 byte of coarse time (slot number mod 256; a
 * slot is 1/200 of the lifetime) and a 5-byte HMAC-SHA-256 (per-server random
 * key) over that time slot and the peer's IP address. A value is valid for the
 * lifetime counted from the start of its slot: never longer than the
 * lifetime, and exactly the lifetime for one handed out at a slot's start. Six bytes keep the 4.01 challenge at 12 bytes, within 3x
 * of the smallest request (a 4-byte GET with no token and no options).
 *
 * Verified addresses are remembered in a bounded table (global bound, a share
 * per IPv6 /64, least recently used first out, expiry), so later requests from
 * them are not limited. A request carrying a valid Echo value is always served
 * in full, even when the table is full.
 */

import { Buffer } from 'node:buffer';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { type CoapMessage, type CoapOption, encodedLength, encodedLengthBound } from '../codec/message.js';
import { ResponseCode } from '../constants/codes.js';
import { OptionNumber } from '../constants/options.js';
import { InvalidArgumentError } from '../errors.js';
import type { OutgoingResponse } from '../exchange/exchange-layer.js';
import type { Peer } from '../transport/transport.js';
import { type Clock, realClock } from '../util/clock.js';
import { prefixOf } from '../util/ip-prefix.js';
import { Tally } from '../util/keyed.js';

/** Bounds of the Echo-based address verification (server option `echo`). */
export interface EchoOptions {
  /** How long an Echo value handed out in a 4.01 stays valid, in ms (default 60 000; 1 000..3 600 000). */
  lifetimeMs?: number;
  /** Verified IP addresses remembered at most (default 10 000); the least recently used go first. */
  maxVerifiedPeers?: number;
  /**
   * Verified addresses remembered per IPv6 /64 prefix (default 64; an IPv4
   * address is its own prefix); beyond, a client answers a challenge again.
   */
  maxVerifiedPerPrefix?: number;
  /** How long an address stays verified after its last large response, in ms (default 10 min). */
  verifiedTtlMs?: number;
  /** HMAC key for Echo values (default: 32 random bytes per server). Share it between servers behind one address. */
  key?: Uint8Array;
  /**
   * The source of time for the verified-address TTL and the Echo values'
   * time slots (default the real clock; a `CoapServer` passes its `clock`
   * option). With the real clock, Echo values use wall time (Date.now()), so
   * that servers sharing `key` agree on the slot; with another clock, its
   * `now()`.
   */
  clock?: Clock;
}

/** Length of the Echo values this server hands out. */
export const ECHO_LENGTH = 6;
const MAC_LENGTH = ECHO_LENGTH - 1;

/** Upper bound of the encoded size of a response with a token of `tokenLength` bytes. */
export function responseSize(tokenLength: number, res: OutgoingResponse): number {
  return encodedLengthBound(tokenLength, res.options, res.payload);
}

/** Decisions of the guard, for tests and logs. */
export interface AmplificationStats {
  /** 4.01 + Echo challenges sent. */
  challenges: number;
  /** Requests that carried a valid Echo value. */
  verifications: number;
  /** 2.xx responses to unsafe requests sent as a smaller first block (block-wise) to fit. */
  shrunk: number;
  /** 2.xx responses to POST/PATCH (or conditional requests) sent without their payload to fit. */
  stripped: number;
}

/**
 * Keeps responses to unverified plain-UDP peers within `factor` times the
 * request's size. One per CoapServer.
 */
export class AmplificationGuard {
  readonly factor: number;
  readonly lifetimeMs: number;
  readonly maxVerifiedPeers: number;
  readonly maxVerifiedPerPrefix: number;
  readonly verifiedTtlMs: number;
  private readonly key: Uint8Array;
  private readonly slotMs: number;
  private readonly time: Clock;
  /** The time Echo values carry: wall time with the real clock (see `EchoOptions.clock`). */
  private readonly echoNow: () => number;
  /** IP address → expiry (the clock's ms); Map order = least recently used first. */
  private readonly verified = new Map<string, number>();
  /** IPv6 /64 prefix (or IPv4 address) → number of its addresses in `verified`. */
  private readonly perPrefix = new Tally<string>();
  readonly stats: AmplificationStats = { challenges: 0, verifications: 0, shrunk: 0, stripped: 0 };

  constructor(factor: number, options: EchoOptions = {}) {
    if (!(factor >= 1) || !Number.isFinite(factor)) {
      throw new InvalidArgumentError(`amplificationFactor must be a number >= 1 or false, got ${factor}`);
    }
    this.factor = factor;
    const time = options.clock ?? realClock;
    this.time = time;
    this.echoNow = time === realClock ? Date.now : () => time.now();
    this.lifetimeMs = clamp(options.lifetimeMs ?? 60_000, 1000, 3_600_000, 'echo.lifetimeMs');
    this.maxVerifiedPeers = clamp(options.maxVerifiedPeers ?? 10_000, 0, 1e7, 'echo.maxVerifiedPeers');
    this.maxVerifiedPerPrefix = clamp(
      options.maxVerifiedPerPrefix ?? 64,
      0,
      1e7,
      'echo.maxVerifiedPerPrefix',
    );
    this.verifiedTtlMs = clamp(options.verifiedTtlMs ?? 600_000, 0, 864e5, 'echo.verifiedTtlMs');
    this.key = options.key ? Uint8Array.from(options.key) : randomBytes(32);
    // 1 byte of slot number: a value's age must stay below 255 slots (the lifetime is 200 at most).
    this.slotMs = Math.ceil(this.lifetimeMs / 200);
  }

  // ---- Echo values ---------------------------------------------------------

  private mac(slot: number, peer: Peer): Buffer {
    const h = createHmac('sha256', this.key);
    const head = Buffer.allocUnsafe(4);
    head.writeUInt32BE(slot >>> 0, 0);
    h.update(head);
    h.update(peer.address, 'latin1');
    return h.digest();
  }

  /** A fresh Echo value for `peer` (6 bytes). `now` defaults to the Echo time (see `EchoOptions.clock`). */
  echoValue(peer: Peer, now = this.echoNow()): Buffer {
    const slot = Math.floor(now / this.slotMs);
    const out = Buffer.allocUnsafe(ECHO_LENGTH);
    out[0] = slot & 0xff;
    this.mac(slot, peer).copy(out, 1, 0, MAC_LENGTH);
    return out;
  }

  /**
   * True when `value` was handed out to this peer's IP address less than the
   * lifetime ago, counted from the start of the value's time slot (so a value
   * never outlives the lifetime; it may expire up to one slot, 1/200 of the
   * lifetime, sooner).
   */
  validEcho(value: Uint8Array, peer: Peer, now = this.echoNow()): boolean {
    if (value.length !== ECHO_LENGTH) return false;
    const current = Math.floor(now / this.slotMs);
    const age = (current - value[0]!) & 0xff;
    const slot = current - age;
    if (now - slot * this.slotMs >= this.lifetimeMs) return false;
    const expected = this.mac(slot, peer).subarray(0, MAC_LENGTH);
    return timingSafeEqual(expected, Buffer.from(value.buffer, value.byteOffset + 1, MAC_LENGTH));
  }

  // ---- verified table ------------------------------------------------------

  /** Number of verified addresses remembered. */
  get verifiedPeers(): number {
    return this.verified.size;
  }

  isVerified(peer: Peer): boolean {
    const address = peer.address;
    const exp = this.verified.get(address);
    if (exp === undefined) return false;
    const now = this.time.now();
    if (exp < now) {
      this.forget(address);
      return false;
    }
    // Refresh (and move to the most recently used end) once half the TTL has gone.
    if (exp - now < this.verifiedTtlMs / 2) {
      this.verified.delete(address);
      this.verified.set(address, now + this.verifiedTtlMs);
    }
    return true;
  }

  /** Remembers a verified address, within the global bound and the per-prefix share. */
  markVerified(peer: Peer): void {
    const now = this.time.now();
    const address = peer.address;
    this.sweep(now);
    if (this.verified.delete(address)) {
      this.verified.set(address, now + this.verifiedTtlMs);
      return;
    }
    if (this.maxVerifiedPeers === 0) return;
    const prefix = prefixOf(address);
    // Over its share the address stays unverified; its requests with Echo are still served in full.
    if (this.perPrefix.of(prefix) >= this.maxVerifiedPerPrefix) return;
    if (this.verified.size >= this.maxVerifiedPeers) {
      const oldest = this.verified.keys().next().value;
      if (oldest !== undefined) this.forget(oldest);
    }
    this.verified.set(address, now + this.verifiedTtlMs);
    this.perPrefix.add(prefix);
  }

  /** Drops expired entries from the least recently used end (a few per call). */
  private sweep(now: number): void {
    for (let i = 0; i < 4; i++) {
      const first = this.verified.entries().next().value;
      if (first === undefined || first[1] >= now) return;
      this.forget(first[0]);
    }
  }

  private forget(address: string): void {
    if (!this.verified.delete(address)) return;
    this.perPrefix.subtract(prefixOf(address));
  }

  /** Forgets every verified address. */
  clear(): void {
    this.verified.clear();
    this.perPrefix.clear();
  }

  // ---- decisions -------------------------------------------------------------

  /** True when `peer` is verified, or `msg` carries a valid Echo value (which verifies it). */
  trusted(msg: CoapMessage, peer: Peer): boolean {
    if (this.isVerified(peer)) return true;
    const echo = echoOf(msg.options);
    if (echo === undefined || !this.validEcho(echo, peer)) return false;
    this.stats.verifications++;
    this.markVerified(peer);
    return true;
  }

  /** The 4.01 Unauthorized + Echo challenge (no payload: 4 + token + 8 bytes). */
  challenge(peer: Peer): OutgoingResponse {
    this.stats.challenges++;
    return {
      code: ResponseCode.Unauthorized,
      options: [{ number: OptionNumber.Echo, value: this.echoValue(peer) }],
    };
  }

  /**
   * Applies the rule to a response about to be sent to an unverified peer:
   * - fits within factor x request size → unchanged (no table lookup);
   * - peer verified, or the request has a valid Echo → unchanged;
   * - an error (4.xx/5.xx) → without its diagnostic payload when that fits;
   * - an error that still does not fit (the request was not performed), a safe method
   *   (GET, FETCH) or a later Block2 block → 4.01 + Echo (the client repeats
   *   the request with the value);
   * - a 2.xx to an unsafe method (the handler's change is kept) → `shrink`
   *   (the first block of a smaller Block2 size, from the block-wise layer)
   *   when it fits; else 4.01 + Echo for an idempotent request (PUT, DELETE,
   *   iPATCH) without If-Match/If-None-Match; else (POST, PATCH, conditional)
   *   the response without payload, or its bare code.
   */
  limit<C>(
    msg: CoapMessage,
    peer: Peer,
    res: OutgoingResponse | null,
    shrink?: (ctx: C, res: OutgoingResponse, budget: number) => OutgoingResponse | undefined,
    ctx?: C,
  ): OutgoingResponse | null {
    if (res === null) return null;
    const tkl = msg.token.length;
    // Cheap pre-check: a response no larger than 3x the smallest request with this token fits.
    const size = responseSize(tkl, res);
    if (size <= this.factor * (4 + tkl)) return res;
    const budget = Math.floor(this.factor * encodedLength(msg));
    if (size <= budget) return res;
    if (this.trusted(msg, peer)) return res;
    const code = msg.code;
    // An error's payload is only a diagnostic (RFC 7252 §5.5.2): the code and options tell the client
    // what went wrong without an extra round trip.
    if (res.code >> 5 >= 4 && res.payload !== undefined) {
      const bare: OutgoingResponse =
        res.options === undefined ? { code: res.code } : { code: res.code, options: res.options };
      if (responseSize(tkl, bare) <= budget) {
        this.stats.stripped++;
        return bare;
      }
    }
    // Errors mean the request was not performed (RFC 7252 §5.9.2, §5.9.3), so any method may be
    // repeated; GET and FETCH are safe; a later block of an unsafe request's response comes from
    // the block-wise cache (its handler does not run again).
    if (
      res.code >> 5 >= 4 ||
      code === 1 /* GET */ ||
      code === 5 /* FETCH */ ||
      (shrink !== undefined && laterBlock2(msg.options))
    ) {
      return this.challenge(peer);
    }
    const first = shrink?.(ctx as C, res, budget);
    if (first !== undefined && responseSize(tkl, first) <= budget) {
      this.stats.shrunk++;
      return first;
    }
    // No smaller block possible: an idempotent request (PUT, DELETE, iPATCH) without a
    // precondition gives the same result when repeated, so it can be challenged too.
    if ((code === 3 || code === 4 || code === 7) && !conditional(msg.options)) return this.challenge(peer);
    // POST, PATCH or a conditional request: the change is kept, the payload is not sent.
    this.stats.stripped++;
    if (res.options !== undefined) {
      const noPayload: OutgoingResponse = { code: res.code, options: res.options };
      if (responseSize(tkl, noPayload) <= budget) return noPayload;
    }
    return { code: res.code };
  }
}

/** True when a request carries If-Match or If-None-Match. */
function conditional(options: readonly CoapOption[]): boolean {
  for (let i = 0; i < options.length; i++) {
    const n = options[i]!.number;
    if (n === OptionNumber.IfMatch || n === OptionNumber.IfNoneMatch) return true;
    if (n > OptionNumber.IfNoneMatch) return false;
  }
  return false;
}

/** The Echo option's value in a request, if any. */
export function echoOf(options: readonly CoapOption[]): Buffer | undefined {
  for (let i = options.length - 1; i >= 0; i--) {
    const o = options[i]!;
    if (o.number === OptionNumber.Echo) return o.value;
    if (o.number < OptionNumber.Echo) return undefined;
  }
  return undefined;
}

/** True when a request asks for Block2 block number > 0 and carries no Block1. */
function laterBlock2(options: readonly CoapOption[]): boolean {
  let later = false;
  for (let i = 0; i < options.length; i++) {
    const o = options[i]!;
    if (o.number === OptionNumber.Block1) return false;
    if (o.number === OptionNumber.Block2) {
      let v = 0;
      for (let j = 0; j < o.value.length; j++) v = v * 256 + o.value[j]!;
      later = v >= 16;
    }
  }
  return later;
}

function clamp(v: number, min: number, max: number, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw new InvalidArgumentError(`${name} must be a number in ${min}..${max}, got ${String(v)}`);
  }
  return Math.floor(v);
}
