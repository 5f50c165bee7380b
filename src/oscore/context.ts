/**
 * The OSCORE security context (RFC 8613 §3): Common, Sender and Recipient
 * parts derived with HKDF-SHA-256 from the Master Secret and Salt, the sender
 * sequence number (never reused, §7.5: persisted ahead with a margin K_SSN
 * through a SequenceStore, or taken in reserved ranges from a SequenceSource
 * shared by several servers) and the replay window of the recipient (§7.4).
 */
import { Buffer } from 'node:buffer';
import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import {
  InvalidArgumentError,
  OscoreDecryptError,
  OscoreSequenceError,
  OscoreSequenceUnavailableError,
} from '../errors.js';
import { cborEncode } from './cbor.js';

/** An AEAD algorithm OSCORE can use (COSE algorithm number, RFC 9053). */
export interface OscoreAlgorithm {
  /** COSE algorithm number (10 = AES-CCM-16-64-128). */
  readonly id: number;
  /** The name aiocoap's context files use. */
  readonly name: string;
  /** node:crypto cipher name. */
  readonly cipher: 'aes-128-ccm' | 'aes-128-gcm' | 'chacha20-poly1305';
  /** Key length in bytes. */
  readonly keyLength: number;
  /** Nonce (and Common IV) length in bytes. */
  readonly nonceLength: number;
  /** Authentication tag length in bytes. */
  readonly tagLength: number;
}

/** The AEAD algorithms supported: AES-CCM-16-64-128 (mandatory), A128GCM, ChaCha20/Poly1305. */
export const OSCORE_ALGORITHMS: readonly OscoreAlgorithm[] = [
  { id: 10, name: 'AES-CCM-16-64-128', cipher: 'aes-128-ccm', keyLength: 16, nonceLength: 13, tagLength: 8 },
  { id: 1, name: 'A128GCM', cipher: 'aes-128-gcm', keyLength: 16, nonceLength: 12, tagLength: 16 },
  {
    id: 24,
    name: 'ChaCha20/Poly1305',
    cipher: 'chacha20-poly1305',
    keyLength: 32,
    nonceLength: 12,
    tagLength: 16,
  },
];

/** Looks an algorithm up by COSE number or name. */
function oscoreAlgorithm(a: number | string): OscoreAlgorithm {
  const found = OSCORE_ALGORITHMS.find((x) => x.id === a || x.name === a);
  if (found === undefined) {
    throw new InvalidArgumentError(
      `unsupported OSCORE algorithm ${JSON.stringify(a)} (supported: ${OSCORE_ALGORITHMS.map((x) => x.name).join(', ')})`,
    );
  }
  return found;
}

/** Largest sender sequence number: the Partial IV is at most 5 bytes (§7.2.1). */
export const MAX_SEQUENCE_NUMBER = 2 ** 40 - 1;

/**
 * Where a sender sequence number survives a restart (§7.5.1). `load` returns
 * the value stored last (undefined: never stored); `save` must make `next`
 * durable before it returns (the context never uses a number at or above
 * the stored one).
 */
export interface SequenceStore {
  /** The bound stored last; undefined when nothing was stored yet. */
  load(): number | undefined;
  /** Stores `next` durably before returning. */
  save(next: number): void;
}

/**
 * Where a context takes its sender sequence numbers in ranges (§7.5.1), when
 * several servers share one context (a fleet on one PostgreSQL store):
 * `reserve(count)` resolves with the first number of a range [first, first +
 * count) that no other caller ever receives, durable before it resolves.
 * The context asks for the next range when the current one is half used, so
 * protecting a message never waits.
 */
export interface SequenceSource {
  /** Reserves `count` numbers; resolves with the first one (durable, given to no one else). */
  reserve(count: number): Promise<number>;
}

/** Largest range a context asks a SequenceSource for after running dry (it doubles each time). */
const MAX_SEQUENCE_RANGE = 65_536;

/** Options of {@link OscoreContext}. */
export interface OscoreContextOptions {
  /** Master Secret (§3.1), at least 16 bytes recommended. */
  masterSecret: Uint8Array;
  /** Master Salt (default empty). */
  masterSalt?: Uint8Array | undefined;
  /** Our Sender ID (the peer's Recipient ID); at most nonce length - 6 bytes (7 for AES-CCM). */
  senderId: Uint8Array;
  /** Our Recipient ID (the peer's Sender ID). */
  recipientId: Uint8Array;
  /** ID Context (default none). */
  idContext?: Uint8Array | undefined;
  /** AEAD algorithm: COSE number or name (default AES-CCM-16-64-128). */
  algorithm?: number | string;
  /** HKDF hash: only "sha256" (the default). */
  kdf?: 'sha256';
  /** First sender sequence number when there is no store (default 0; tests and vectors). */
  senderSequenceNumber?: number;
  /** Persistence of the sender sequence number (§7.5.1); default none (in memory). */
  sequenceStore?: SequenceStore | undefined;
  /**
   * Sender sequence numbers in reserved ranges from a shared source (instead of
   * `sequenceStore`); `await ctx.ready()` before the first message. When a
   * range runs out before the next one is committed, that message fails with
   * OscoreSequenceUnavailableError (nothing is reused, nothing waits).
   */
  sequenceSource?: SequenceSource | undefined;
  /**
   * How far ahead the stored sequence number runs, K_SSN (default 256); with a
   * `sequenceSource`, the size of the first range (doubled, up to 65 536, each
   * time a range runs out before the next one arrives).
   */
  sequenceMargin?: number;
  /**
   * The replay state of the recipient: 'fresh' (a new context: every sequence number
   * is accepted once) or 'unknown' (a restart: the server first re-establishes
   * freshness with Echo, RFC 8613 Appendix B.1.2). Default 'unknown' with a
   * sequenceStore or sequenceSource, else 'fresh'.
   */
  replayState?: 'fresh' | 'unknown';
  /** Replay window size in sequence numbers, 1..64 (default 32, §7.4). */
  replayWindow?: number;
}

function bytes(v: Uint8Array | undefined, name: string): Buffer {
  if (v === undefined) return Buffer.alloc(0);
  if (!(v instanceof Uint8Array)) throw new InvalidArgumentError(`OSCORE ${name} must be bytes`);
  return Buffer.from(v);
}

/** The §3.2.1 `info` structure: [id, id_context / nil, alg_aead, type, L]. */
export function derivationInfo(
  id: Uint8Array,
  idContext: Uint8Array | undefined,
  alg: number,
  type: 'Key' | 'IV',
  length: number,
): Buffer {
  return cborEncode([id, idContext ?? null, alg, type, length]);
}

/** One security context: our sender part, the peer's recipient part, and the common part. */
export class OscoreContext {
  /** The AEAD algorithm. */
  readonly algorithm: OscoreAlgorithm;
  /** Our Sender ID (the kid of our requests). */
  readonly senderId: Buffer;
  /** The peer's Sender ID. */
  readonly recipientId: Buffer;
  /** The ID Context, if any (sent as kid context in requests). */
  readonly idContext: Buffer | undefined;
  /** Derived Sender Key (§3.2.1). */
  readonly senderKey: Buffer;
  /** Derived Recipient Key. */
  readonly recipientKey: Buffer;
  /** Derived Common IV. */
  readonly commonIv: Buffer;
  private seq: number;
  private readonly store: SequenceStore | undefined;
  private readonly margin: number;
  /** The stored bound (or the end of the reserved range): sequence numbers below it may be used. */
  private persisted: number;
  private readonly source: SequenceSource | undefined;
  /** With a source: the number at which the next range is asked for (Infinity: asked, or held). */
  private refillAt = Number.POSITIVE_INFINITY;
  /** With a source: the next range, reserved and not begun yet. */
  private spare: { first: number; end: number } | undefined;
  /** With a source: the reservation in flight. */
  private refilling: Promise<void> | undefined;
  /** With a source: the size of the next range asked for. */
  private rangeSize: number;
  /** With a source: the current range ran out and the next has not arrived yet. */
  private dry = false;
  /** With a source: the end of the highest range received (ranges only go up). */
  private highestEnd = 0;
  /** With a source: why the last reservation failed (cleared by the next success). */
  private lastReserveError: unknown;
  /** With a source: ranges received so far. */
  reservations = 0;
  /** With a source: messages refused because no number was reserved (OscoreSequenceUnavailableError). */
  sequenceUnavailable = 0;
  /** Replay window (§7.4): highest sequence number received and a bitmap of the ones below. */
  private replayHigh = -1;
  private replayBits = 0n;
  private readonly windowSize: number;
  /** False after a restart until freshness is re-established (Echo, Appendix B.1.2). */
  replayKnown: boolean;

  constructor(opts: OscoreContextOptions) {
    if (opts === null || typeof opts !== 'object')
      throw new InvalidArgumentError('OSCORE context options missing');
    this.algorithm = oscoreAlgorithm(opts.algorithm ?? 10);
    if (opts.kdf !== undefined && opts.kdf !== 'sha256')
      throw new InvalidArgumentError(`unsupported OSCORE kdf ${JSON.stringify(opts.kdf)} (only sha256)`);
    const secret = bytes(opts.masterSecret, 'masterSecret');
    if (secret.length === 0) throw new InvalidArgumentError('OSCORE masterSecret is empty');
    const salt = bytes(opts.masterSalt, 'masterSalt');
    this.senderId = bytes(opts.senderId, 'senderId');
    this.recipientId = bytes(opts.recipientId, 'recipientId');
    const maxId = this.algorithm.nonceLength - 6;
    for (const [n, id] of [
      ['senderId', this.senderId],
      ['recipientId', this.recipientId],
    ] as const) {
      if (id.length > maxId)
        throw new InvalidArgumentError(
          `OSCORE ${n} is ${id.length} bytes: at most ${maxId} with ${this.algorithm.name}`,
        );
    }
    if (this.senderId.equals(this.recipientId))
      throw new InvalidArgumentError('OSCORE senderId and recipientId must differ (§3.3)');
    this.idContext = opts.idContext === undefined ? undefined : bytes(opts.idContext, 'idContext');
    if (this.idContext !== undefined && this.idContext.length > 255)
      throw new InvalidArgumentError('OSCORE idContext is longer than 255 bytes');
    const a = this.algorithm;
    const derive = (id: Uint8Array, type: 'Key' | 'IV', len: number) =>
      Buffer.from(hkdfSync('sha256', secret, salt, derivationInfo(id, this.idContext, a.id, type, len), len));
    this.senderKey = derive(this.senderId, 'Key', a.keyLength);
    this.recipientKey = derive(this.recipientId, 'Key', a.keyLength);
    this.commonIv = derive(Buffer.alloc(0), 'IV', a.nonceLength);
    this.windowSize = opts.replayWindow ?? 32;
    if (!Number.isInteger(this.windowSize) || this.windowSize < 1 || this.windowSize > 64)
      throw new InvalidArgumentError('OSCORE replayWindow must be an integer in 1..64');
    this.margin = opts.sequenceMargin ?? 256;
    if (!Number.isInteger(this.margin) || this.margin < 1 || this.margin > 1e9)
      throw new InvalidArgumentError('OSCORE sequenceMargin must be an integer in 1..1e9');
    this.store = opts.sequenceStore;
    this.source = opts.sequenceSource;
    this.rangeSize = this.margin;
    if (this.store !== undefined && this.source !== undefined)
      throw new InvalidArgumentError('OSCORE sequenceStore and sequenceSource exclude each other');
    if (this.source !== undefined && typeof this.source.reserve !== 'function')
      throw new InvalidArgumentError('OSCORE sequenceSource needs a reserve(count) method');
    this.replayKnown = (opts.replayState ?? (this.store || this.source ? 'unknown' : 'fresh')) === 'fresh';
    if (this.source !== undefined) {
      // Nothing may be used before the first range is reserved (ready()).
      this.seq = 0;
      this.persisted = 0;
    } else if (this.store !== undefined) {
      const stored = this.store.load();
      if (
        stored !== undefined &&
        (!Number.isSafeInteger(stored) || stored < 0 || stored > MAX_SEQUENCE_NUMBER + 1)
      )
        throw new OscoreSequenceError(`stored OSCORE sequence number ${stored} is invalid`);
      // Everything below the stored bound may have been used before the restart.
      this.seq = stored ?? opts.senderSequenceNumber ?? 0;
      this.persisted = this.seq;
    } else {
      this.seq = opts.senderSequenceNumber ?? 0;
      this.persisted = Number.POSITIVE_INFINITY;
    }
    if (!Number.isSafeInteger(this.seq) || this.seq < 0)
      throw new InvalidArgumentError('OSCORE senderSequenceNumber must be a non-negative integer');
  }

  /** The next sender sequence number that would be used. */
  get senderSequenceNumber(): number {
    return this.seq;
  }

  /**
   * Resolves once sender sequence numbers can be taken: with a `sequenceSource`,
   * when the first range is reserved (rejects with OscoreSequenceError when the
   * source fails); at once otherwise. A server calls it before it listens.
   */
  async ready(): Promise<void> {
    if (this.source === undefined || this.seq < this.persisted) return;
    if (this.spare === undefined) {
      this.refill();
      await this.refilling;
    }
    // A message sent meanwhile may have begun the range already.
    if (this.seq < this.persisted) return;
    if (this.spare === undefined) {
      const err = this.lastReserveError;
      throw new OscoreSequenceError(
        `could not reserve OSCORE sequence numbers: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
    this.beginSpare();
  }

  /** Takes the next sender sequence number, persisting the bound ahead first when needed (§7.5.1). */
  nextSequenceNumber(): number {
    let n = this.seq;
    if (n >= this.persisted && this.source !== undefined) n = this.nextRange();
    if (n > MAX_SEQUENCE_NUMBER)
      throw new OscoreSequenceError('OSCORE sender sequence number exhausted: derive a new context (§7.2.1)');
    if (n >= this.refillAt) this.refill();
    else if (n >= this.persisted) {
      const next = Math.min(n + this.margin, MAX_SEQUENCE_NUMBER + 1);
      try {
        this.store!.save(next);
      } catch (err) {
        throw new OscoreSequenceError(
          `could not persist the OSCORE sequence number: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
      this.persisted = next;
    }
    this.seq = n + 1;
    return n;
  }

  /** The current range is used up: the reserved next one begins, or this message fails (never waits). */
  private nextRange(): number {
    if (this.spare === undefined) {
      this.sequenceUnavailable++;
      // It ran dry before the next range arrived: ask for larger ranges from now on (once per dry spell).
      if (!this.dry)
        this.rangeSize = Math.max(this.rangeSize, Math.min(this.rangeSize * 2, MAX_SEQUENCE_RANGE));
      this.dry = true;
      this.refill();
      const why = this.lastReserveError;
      throw new OscoreSequenceUnavailableError(
        why === undefined
          ? 'no OSCORE sequence number reserved yet: the next range is being reserved'
          : `no OSCORE sequence number reserved: ${why instanceof Error ? why.message : String(why)}`,
        why === undefined ? {} : { cause: why },
      );
    }
    this.beginSpare();
    return this.seq;
  }

  private beginSpare(): void {
    const r = this.spare!;
    this.spare = undefined;
    this.dry = false;
    this.seq = r.first;
    this.persisted = r.end;
    // The next range is asked for when this one is half used.
    this.refillAt = r.first + Math.ceil((r.end - r.first) / 2);
  }

  /** Asks the source for the next range (one request at a time), unless one is held or on its way. */
  private refill(): void {
    const source = this.source;
    if (source === undefined || this.refilling !== undefined || this.spare !== undefined) return;
    this.refillAt = Number.POSITIVE_INFINITY;
    const count = this.rangeSize;
    let p: Promise<number>;
    try {
      p = Promise.resolve(source.reserve(count));
    } catch (err) {
      p = Promise.reject(err);
    }
    this.refilling = p.then(
      (first) => {
        this.refilling = undefined;
        // A store that answers a number below a range already received would make a nonce repeat.
        if (!Number.isSafeInteger(first) || first < this.highestEnd) {
          this.failed(
            new OscoreSequenceError(
              `the sequence number store answered ${first}, below ${this.highestEnd} (already reserved): refusing to reuse numbers`,
            ),
          );
          return;
        }
        const end = Math.min(first + count, MAX_SEQUENCE_NUMBER + 1);
        this.highestEnd = Math.max(this.highestEnd, end);
        this.lastReserveError = undefined;
        this.reservations++;
        this.spare = { first, end };
      },
      (err: unknown) => {
        this.refilling = undefined;
        this.failed(err);
      },
    );
  }

  private failed(err: unknown): void {
    this.lastReserveError = err;
    // The next message asks again (one request at a time).
    this.refillAt = this.seq;
  }

  /** The AEAD nonce (§5.2) for a Partial IV and the ID of the endpoint that chose it. */
  nonce(idPiv: Uint8Array, partialIv: Uint8Array): Buffer {
    const len = this.algorithm.nonceLength;
    const out = Buffer.alloc(len);
    out[0] = idPiv.length;
    out.set(idPiv, len - 5 - idPiv.length);
    out.set(partialIv, len - partialIv.length);
    for (let i = 0; i < len; i++) out[i]! ^= this.commonIv[i]!;
    return out;
  }

  /** AEAD encryption: ciphertext followed by the tag. */
  seal(key: Buffer, nonce: Buffer, aad: Buffer, plaintext: Buffer): Buffer {
    const a = this.algorithm;
    const c = createCipheriv(a.cipher as 'aes-128-ccm', key, nonce, { authTagLength: a.tagLength });
    c.setAAD(aad, { plaintextLength: plaintext.length });
    const body = Buffer.concat([c.update(plaintext), c.final()]);
    return Buffer.concat([body, c.getAuthTag()]);
  }

  /** AEAD decryption; OscoreDecryptError when the tag does not verify. */
  open(key: Buffer, nonce: Buffer, aad: Buffer, sealed: Uint8Array): Buffer {
    const a = this.algorithm;
    if (sealed.length < a.tagLength)
      throw new OscoreDecryptError('Decryption failed: ciphertext shorter than the tag');
    const n = sealed.length - a.tagLength;
    const body = Buffer.from(sealed.buffer, sealed.byteOffset, n);
    const tag = Buffer.from(sealed.buffer, sealed.byteOffset + n, a.tagLength);
    try {
      const d = createDecipheriv(a.cipher as 'aes-128-ccm', key, nonce, { authTagLength: a.tagLength });
      d.setAuthTag(tag);
      d.setAAD(aad, { plaintextLength: n });
      return Buffer.concat([d.update(body), d.final()]);
    } catch (err) {
      throw new OscoreDecryptError('Decryption failed', { cause: err });
    }
  }

  /** True when `seq` would be accepted by the replay window (§7.4); does not change it. */
  replayOk(seq: number): boolean {
    if (seq > this.replayHigh) return true;
    const back = this.replayHigh - seq;
    if (back >= this.windowSize) return false;
    return ((this.replayBits >> BigInt(back)) & 1n) === 0n;
  }

  /** Records `seq` as received (after the message verified). */
  replayAccept(seq: number): void {
    const mask = (1n << BigInt(this.windowSize)) - 1n;
    if (seq > this.replayHigh) {
      const shift = seq - this.replayHigh;
      this.replayBits = shift >= 64 ? 1n : ((this.replayBits << BigInt(shift)) | 1n) & mask;
      this.replayHigh = seq;
    } else this.replayBits |= 1n << BigInt(this.replayHigh - seq);
  }

  /** After a verified Echo (Appendix B.1.2): the window starts at `seq`, nothing older is accepted. */
  replayReset(seq: number): void {
    this.replayHigh = seq;
    this.replayBits = (1n << BigInt(this.windowSize)) - 1n;
    this.replayKnown = true;
  }
}
