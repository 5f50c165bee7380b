/**
 * Server side of block-wise transfer (RFC 7959), as a CoapServer middleware.
 * Every CoapServer has one built in (option `blockwise`, on by default);
 * `enableBlockwise(server, options)` configures and returns it:
 *
 *   const bw = enableBlockwise(server, { maxBodySize: 1 << 20 });
 *
 * Handlers never see blocks. Block1 request bodies are reassembled per
 * (peer endpoint, method, path, query, Content-Format) independent of the
 * token; non-final blocks get 2.31 Continue, gaps get 4.08, oversized bodies
 * get 4.13 with Size1 and a Block1 size hint. Responses larger than the
 * negotiated block size are split with Block2, an ETag (added when the
 * handler gave none) and Size2 in the first block; the full representation is
 * cached briefly per (peer, request) so every block comes from one
 * representation.
 *
 * Limits (all options, see BlockwiseServerOptions): reassemblies in progress
 * (64 in all, 4 per source address, 16 MiB held, 15 s idle) answer 5.03 with
 * Max-Age when full; a block whose payload is not its block size gets 4.00;
 * the Block2 cache (16 MiB counting keys and options, 16 entries per source
 * address, 30 s) never holds error answers.
 */

import { Buffer } from 'node:buffer';
import { type CoapMessage, type CoapOption, encodedLengthBound } from '../codec/message.js';
import { decodeBlock, encodeBlock, encodeUint, getOption, getUintOption } from '../codec/options.js';
import { Method, ResponseCode } from '../constants/codes.js';
import { OptionNumber } from '../constants/options.js';
import type { OutgoingResponse } from '../exchange/exchange-layer.js';
import { type Middleware, ServerRequest } from '../server/request.js';
import { type Clock, realClock, type TimerHandle } from '../util/clock.js';
import { Groups, Tally } from '../util/keyed.js';
import {
  BERT_SZX,
  bertPayloadSize,
  blockLengthOk,
  contentEtag,
  MAX_SZX,
  sizeToSzxFloor,
  szxToSize,
  withoutOptions,
} from './common.js';

export interface BlockwiseServerOptions {
  /**
   * The source of time for the idle expiry of reassemblies and the cache TTL
   * (default the real clock; a `CoapServer` passes its `clock` option).
   * Fixed at construction.
   */
  clock?: Clock;
  /** Largest block size this server sends and accepts, 16..1024 (default 1024). */
  maxBlockSize?: number;
  /** Largest reassembled Block1 body in bytes (default 1 MiB). Larger bodies get 4.13 with Size1. */
  maxBodySize?: number;
  /** How the 4.13 diagnostic names `maxBodySize` (coapkit serve: `--max-size`). Default: not named. */
  maxBodySizeName?: string;
  /** Most Block1 reassemblies in progress at once, all peers together (default 64); more get 5.03 + Max-Age. */
  maxTransfers?: number;
  /**
   * Most Block1 reassemblies in progress from one source address (default 4); a peer
   * over its share gets 5.03 + Max-Age while other peers keep uploading.
   */
  maxTransfersPerAddress?: number;
  /**
   * Bound on the bytes held by Block1 reassemblies, all peers together: received
   * blocks plus their keys (default 16 MiB, at least `maxBodySize`). A first block
   * that does not fit, or a later block that would overflow it, gets 5.03 + Max-Age.
   */
  maxTransferBytes?: number;
  /** A Block1 reassembly with no new block for this long is dropped (default 15 s). */
  idleTimeoutMs?: number;
  /** How long a Block2 representation is kept for follow-up block requests (default 30 s). */
  cacheTtlMs?: number;
  /**
   * Bound on the bytes held by the Block2 cache (default 16 MiB): payload, options and
   * key of each entry, plus a fixed overhead per entry. Oldest entries go first.
   * Only 2.xx representations are cached, never error answers.
   */
  maxCacheBytes?: number;
  /**
   * Most cached Block2 representations per source address (default 16); a peer's
   * oldest entry makes room for its newest, other peers' entries are untouched.
   */
  maxCacheEntriesPerAddress?: number;
}

interface Reassembly {
  chunks: Buffer[];
  received: number;
  lastOffset: number;
  lastLength: number;
  timer: TimerHandle;
  /** Source address whose share this reassembly counts against. */
  address: string;
  /** Bytes counted against `maxTransferBytes` (chunks + key). */
  bytes: number;
}

interface CachedRepresentation {
  res: OutgoingResponse;
  expires: number;
  bytes: number;
  address: string;
}

/** What one cache entry or reassembly costs beyond its bytes (Map entry, objects, timer). */
const ENTRY_OVERHEAD = 256;
/** What the block-wise layer needs of the server it serves (a CoapServer is one). */
export interface BlockwiseHost {
  /** Makes `layer` the server's block-wise layer (CoapServer.setBlockwise). */
  setBlockwise(layer: BlockwiseServer): unknown;
  /** The server's block-wise layer, configured with `options` (CoapServer.enableBlockwise). */
  enableBlockwise(options?: BlockwiseServerOptions): BlockwiseServer;
}

/** Max-Age (s) of a 5.03 for "too many transfers": retry soon. */
const RETRY_AFTER_S = 2;

type Result = OutgoingResponse | null | Promise<OutgoingResponse | null>;

function then(r: Result, f: (res: OutgoingResponse | null) => OutgoingResponse | null): Result {
  return r instanceof Promise ? r.then(f) : f(r);
}

function text(code: number, msg: string, options?: CoapOption[]): OutgoingResponse {
  const out: OutgoingResponse = { code, payload: Buffer.from(msg, 'utf8') };
  if (options) out.options = options;
  return out;
}

export class BlockwiseServer {
  readonly maxSzx: number;
  readonly maxBodySize: number;
  readonly maxTransfers: number;
  readonly maxTransfersPerAddress: number;
  readonly maxTransferBytes: number;
  readonly idleTimeoutMs: number;
  readonly cacheTtlMs: number;
  readonly maxCacheBytes: number;
  readonly maxCacheEntriesPerAddress: number;
  private readonly reassemblies = new Map<string, Reassembly>();
  /** Reassemblies in progress per source address. */
  private readonly transfersByAddress = new Tally<string>();
  private transferBytes = 0;
  private readonly cache = new Map<string, CachedRepresentation>();
  /** Cache keys per source address, oldest first. */
  private readonly cacheByAddress = new Groups<string, string>();
  private cacheBytes = 0;
  private sweepTimer: TimerHandle | undefined;
  private readonly time: Clock;
  /** The largest block size in bytes (responses up to this size pass through untouched). */
  private maxSize: number;
  /** The 4.13 diagnostic (built when the limit changes, not per request). */
  private tooLargeText = '';
  private maxBodySizeName: string | undefined;
  /** The middleware to pass to `server.use()` (done by `install`). */
  readonly middleware: Middleware = (req, next) => this.handle(req, next);

  constructor(options: BlockwiseServerOptions = {}) {
    this.time = options.clock ?? realClock;
    this.maxSzx = 6;
    this.maxBodySize = 1 << 20;
    this.maxTransfers = 64;
    this.maxTransfersPerAddress = 4;
    this.maxTransferBytes = 16 << 20;
    this.idleTimeoutMs = 15_000;
    this.cacheTtlMs = 30_000;
    this.maxCacheBytes = 16 << 20;
    this.maxCacheEntriesPerAddress = 16;
    this.maxSize = szxToSize(this.maxSzx);
    this.configure(options);
  }

  /**
   * Changes settings (only those given). `enableBlockwise(server, options)` uses
   * this on the server's built-in instance; transfers in progress keep going.
   */
  configure(options: BlockwiseServerOptions): this {
    const self = this as Mutable<BlockwiseServer>;
    if (options.maxBlockSize !== undefined) self.maxSzx = sizeToSzxFloor(options.maxBlockSize);
    if (options.maxBodySize !== undefined) self.maxBodySize = options.maxBodySize;
    if (options.maxBodySizeName !== undefined) this.maxBodySizeName = options.maxBodySizeName;
    this.tooLargeText = `request body exceeds ${this.maxBodySize} bytes${this.maxBodySizeName !== undefined ? ` (${this.maxBodySizeName})` : ''}`;
    if (options.maxTransfers !== undefined) self.maxTransfers = options.maxTransfers;
    if (options.maxTransfersPerAddress !== undefined)
      self.maxTransfersPerAddress = options.maxTransfersPerAddress;
    if (options.maxTransferBytes !== undefined) self.maxTransferBytes = options.maxTransferBytes;
    else self.maxTransferBytes = Math.max(self.maxTransferBytes, self.maxBodySize + ENTRY_OVERHEAD);
    if (options.idleTimeoutMs !== undefined) self.idleTimeoutMs = options.idleTimeoutMs;
    if (options.cacheTtlMs !== undefined) self.cacheTtlMs = options.cacheTtlMs;
    if (options.maxCacheBytes !== undefined) self.maxCacheBytes = options.maxCacheBytes;
    if (options.maxCacheEntriesPerAddress !== undefined)
      self.maxCacheEntriesPerAddress = options.maxCacheEntriesPerAddress;
    this.maxSize = szxToSize(this.maxSzx);
    return this;
  }

  /**
   * Makes this the block-wise layer of `server` (replacing its built-in one, at
   * the same place in the pipeline: before observe and any other middleware).
   */
  install(server: BlockwiseHost): this {
    server.setBlockwise(this);
    return this;
  }

  /**
   * The first block, of the largest block size whose response fits in
   * `budget` bytes, of a 2.xx response (whole, or already sliced from a
   * cached representation) to `req`; the representation is cached so the
   * client can fetch the rest with Block2. Undefined when nothing fits.
   * @internal the server calls it when a response does not fit the amplification budget.
   */
  fitFirstBlock(req: ServerRequest, res: OutgoingResponse, budget: number): OutgoingResponse | undefined {
    if (res.code >> 5 !== 2) return undefined;
    const msg = req.message;
    const key = this.cacheKey(req, msg);
    const b2 = getOption(res.options ?? [], OptionNumber.Block2);
    let full: OutgoingResponse | undefined = res;
    if (b2 !== undefined) {
      if (decodeBlock(b2).num !== 0) return undefined;
      full = this.cached(key);
    } else full = this.withEtag(res);
    if (full?.payload === undefined || full.payload.length === 0) return undefined;
    const b1 = getOption(res.options ?? [], OptionNumber.Block1);
    const tkl = msg.token.length;
    for (let szx = this.requestedSzx(msg); szx >= 0; szx--) {
      if (szxToSize(szx) >= full.payload.length) continue;
      const out = this.slice(full, 0, szx, true);
      if (b1 !== undefined) out.options!.push({ number: OptionNumber.Block1, value: b1 });
      if (encodedLengthBound(tkl, out.options, out.payload) <= budget) {
        if (b2 === undefined) this.store(key, req.peer.address, full);
        return out;
      }
    }
    return undefined;
  }

  /** Number of Block1 reassemblies in progress. */
  get transfersInProgress(): number {
    return this.reassemblies.size;
  }

  /** Bytes held by Block1 reassemblies (counted against `maxTransferBytes`). */
  get transferBytesHeld(): number {
    return this.transferBytes;
  }

  /** Number of cached Block2 representations. */
  get cachedRepresentations(): number {
    return this.cache.size;
  }

  /** Bytes held by the Block2 cache (counted against `maxCacheBytes`). */
  get cacheBytesHeld(): number {
    return this.cacheBytes;
  }

  /** Drops every buffer and timer. */
  close(): void {
    for (const r of this.reassemblies.values()) this.time.clearTimer(r.timer);
    this.reassemblies.clear();
    this.transfersByAddress.clear();
    this.transferBytes = 0;
    this.cache.clear();
    this.cacheByAddress.clear();
    this.cacheBytes = 0;
    this.time.clearTimer(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  /**
   * For Observe: turns a notification for the registration `req` into its
   * first block when it is too large, caching the representation so the
   * client's follow-up GETs (Block2, no Observe) are served from the same one.
   * @internal the observe layer calls it for each notification.
   */
  notificationBlock(req: ServerRequest, res: OutgoingResponse): OutgoingResponse {
    const szx = this.requestedSzx(req.message);
    if ((res.payload?.length ?? 0) <= szxToSize(szx)) return res;
    const full = this.withEtag(res);
    this.store(this.cacheKey(req, req.message), req.peer.address, full);
    return this.slice(full, 0, szx, true);
  }

  // ---- pipeline ----------------------------------------------------------

  private handle(req: ServerRequest, next: (r?: ServerRequest) => Result): Result {
    const msg = req.message;
    // One pass over the options (sorted by number): Block2 (23), Block1 (27), Size2 (28).
    let raw1: Buffer | undefined;
    let raw2: Buffer | undefined;
    let wantSize2 = false;
    for (const o of msg.options) {
      const n = o.number;
      if (n < OptionNumber.Block2) continue;
      if (n === OptionNumber.Block2) raw2 = o.value;
      else if (n === OptionNumber.Block1) raw1 = o.value;
      else if (n === OptionNumber.Size2) wantSize2 = true;
      else if (n > OptionNumber.Size2) break;
    }
    if (raw1 === undefined && raw2 === undefined && !wantSize2) {
      // The common case: no block-wise option. Small answers pass through untouched.
      const r = next();
      if (r === null) return r;
      if (!(r instanceof Promise)) {
        return (r.payload?.length ?? 0) <= this.maxSize
          ? r
          : this.respond(req, r, this.maxSzx, false, false, true);
      }
      return r.then((res) =>
        res === null || (res.payload?.length ?? 0) <= this.maxSize
          ? res
          : this.respond(req, res, this.maxSzx, false, false, true),
      );
    }
    let b1: ReturnType<typeof decodeBlock> | undefined;
    let b2: ReturnType<typeof decodeBlock> | undefined;
    // SZX 7 (BERT) is understood only where our CSM announced it (RFC 8323 §6).
    const bertOk = req.endpoint?.transport.bertMessageSize?.(req.peer) !== undefined;
    try {
      if (raw1 !== undefined) b1 = decodeBlock(raw1, bertOk);
      if (raw2 !== undefined) b2 = decodeBlock(raw2, bertOk);
    } catch (err) {
      return text(ResponseCode.BadOption, (err as Error).message);
    }
    // BERT answers only when the client asked for BERT blocks or left the size to us.
    const wantBert = b2 === undefined || b2.szx === BERT_SZX;
    if (b1 !== undefined) return this.block1(req, b1, b2 !== undefined, wantSize2, wantBert, next);
    const szx = b2 === undefined ? this.maxSzx : Math.min(b2.szx, this.maxSzx);
    if (b2 !== undefined && b2.num > 0) {
      const key = this.cacheKey(req, msg);
      const cached = this.cached(key);
      if (cached) {
        const bert = wantBert ? this.bertBytes(req, cached) : 0;
        return this.slice(cached, b2.num, bert > 0 ? BERT_SZX : szx, wantSize2, key, bert);
      }
      if (msg.code !== Method.GET && msg.code !== Method.FETCH) {
        // Never re-run an unsafe handler just to produce a later block of its old response.
        return text(
          ResponseCode.BadRequest,
          `no response of this request is cached to take block ${b2.num} from`,
        );
      }
      return then(next(), (res) => {
        if (res === null) return null;
        const full = this.withEtag(res);
        if ((full.payload?.length ?? 0) > szxToSize(szx)) this.store(key, req.peer.address, full);
        const bert = wantBert ? this.bertBytes(req, full) : 0;
        return this.slice(full, b2!.num, bert > 0 ? BERT_SZX : szx, wantSize2, key, bert);
      });
    }
    return then(next(), (res) => this.respond(req, res, szx, b2 !== undefined, wantSize2, wantBert));
  }

  /**
   * The payload of one BERT block (RFC 8323 §6) of `res` to `req`: both CSMs announced
   * Block-Wise-Transfer and the peer's Max-Message-Size holds at least two 1024-byte
   * blocks. 0 otherwise (UDP, DTLS, a smaller maximum block size, no BERT).
   */
  private bertBytes(req: ServerRequest, res: OutgoingResponse): number {
    if (this.maxSzx !== MAX_SZX) return 0;
    const mms = req.endpoint?.transport.bertMessageSize?.(req.peer);
    return mms ? bertPayloadSize(mms, res.options) : 0;
  }

  /** A fresh response to a request for block 0 (or without Block2). */
  private respond(
    req: ServerRequest,
    res: OutgoingResponse | null,
    szx: number,
    hadBlock2: boolean,
    wantSize2: boolean,
    wantBert = false,
  ): OutgoingResponse | null {
    if (res === null) return null;
    const len = res.payload?.length ?? 0;
    const bert = wantBert && len > this.maxSize ? this.bertBytes(req, res) : 0;
    if (bert > 0) szx = BERT_SZX;
    if (len <= (bert || szxToSize(szx))) {
      if (!hadBlock2 && !wantSize2) return res;
      if (!hadBlock2) return { ...res, options: [...(res.options ?? []), size2(len)] };
      return this.slice(res, 0, szx, wantSize2, undefined, bert);
    }
    const full = this.withEtag(res);
    this.store(this.cacheKey(req, req.message), req.peer.address, full);
    return this.slice(full, 0, szx, true, undefined, bert);
  }

  private requestedSzx(msg: CoapMessage): number {
    const raw = getOption(msg.options, OptionNumber.Block2);
    if (raw === undefined) return this.maxSzx;
    try {
      return Math.min(decodeBlock(raw).szx, this.maxSzx);
    } catch {
      return this.maxSzx;
    }
  }

  private slice(
    res: OutgoingResponse,
    num: number,
    szx: number,
    wantSize2: boolean,
    cacheKey?: string,
    /** With SZX 7: the payload of one BERT block (a multiple of 1024). */
    bert = 0,
  ): OutgoingResponse {
    const payload = res.payload ?? new Uint8Array(0);
    const size = szx === BERT_SZX ? bert : szxToSize(szx);
    const offset = num * (szx === BERT_SZX ? 1024 : size);
    if (num > 0 && offset >= payload.length) {
      return text(ResponseCode.BadOption, `block ${num} is beyond the end of the representation`);
    }
    const more = offset + size < payload.length;
    if (!more && cacheKey !== undefined) this.dropCached(cacheKey);
    const options = withoutOptions(res.options ?? [], OptionNumber.Block2, OptionNumber.Size2);
    options.push({ number: OptionNumber.Block2, value: encodeBlock(num, more, szx) });
    if (num === 0 || wantSize2) options.push(size2(payload.length));
    const out: OutgoingResponse = { code: res.code, options };
    const chunk = payload.subarray(offset, offset + size);
    if (chunk.length > 0) out.payload = chunk;
    return out;
  }

  private withEtag(res: OutgoingResponse): OutgoingResponse {
    if (res.code !== ResponseCode.Content || !res.payload) return res;
    if ((res.options ?? []).some((o) => o.number === OptionNumber.ETag)) return res;
    return {
      ...res,
      options: [...(res.options ?? []), { number: OptionNumber.ETag, value: contentEtag(res.payload) }],
    };
  }

  // ---- Block2 cache --------------------------------------------------------

  /**
   * The request's identity: transport (coap:// and coaps:// peers may share an
   * address and port), peer, method and the options naming the target.
   */
  private cacheKey(req: ServerRequest, msg: CoapMessage): string {
    let k = `${req.endpoint?.transport.scheme ?? ''}|${req.peer.key}|${msg.code}`;
    for (const o of msg.options) {
      if (
        o.number === OptionNumber.UriPath ||
        o.number === OptionNumber.UriQuery ||
        o.number === OptionNumber.Accept ||
        o.number === OptionNumber.UriHost ||
        o.number === OptionNumber.RequestTag
      ) {
        k += `|${o.number}=${o.value.toString('latin1')}`;
      }
    }
    return k;
  }

  private cached(key: string): OutgoingResponse | undefined {
    const c = this.cache.get(key);
    if (c === undefined) return undefined;
    if (c.expires < this.time.now()) {
      this.dropCached(key);
      return undefined;
    }
    return c.res;
  }

  private store(key: string, address: string, res: OutgoingResponse): void {
    this.dropCached(key);
    // Error answers are never cached (a client may re-run a GET to get a later block).
    if (res.code >> 5 !== 2) return;
    let bytes = ENTRY_OVERHEAD + key.length + (res.payload?.length ?? 0);
    for (const o of res.options ?? []) bytes += 16 + o.value.length;
    if (bytes > this.maxCacheBytes || this.maxCacheEntriesPerAddress <= 0) return;
    const now = this.time.now();
    const mine = this.cacheByAddress.get(address);
    if (mine !== undefined) {
      // The peer's share: its oldest entry makes room.
      for (const k of mine) {
        if (mine.size < this.maxCacheEntriesPerAddress) break;
        this.dropCached(k);
      }
    }
    for (const [k, c] of this.cache) {
      if (this.cacheBytes + bytes <= this.maxCacheBytes && c.expires >= now) break;
      this.dropCached(k);
    }
    // Own copies: never keep a slice of a received datagram or of a buffer the handler may reuse.
    const options = res.options?.map((o) => ({ number: o.number, value: Buffer.from(o.value) }));
    const copy: OutgoingResponse = { code: res.code };
    if (options) copy.options = options;
    if (res.payload) copy.payload = Buffer.from(res.payload);
    this.cache.set(key, { res: copy, expires: now + this.cacheTtlMs, bytes, address });
    this.cacheBytes += bytes;
    this.cacheByAddress.add(address, key);
    this.armSweep();
  }

  private dropCached(key: string): void {
    const c = this.cache.get(key);
    if (c === undefined) return;
    this.cache.delete(key);
    this.cacheBytes -= c.bytes;
    this.cacheByAddress.delete(c.address, key);
  }

  /** Expired cache entries are given back even when no new request comes to push them out. */
  private armSweep(): void {
    if (this.sweepTimer !== undefined) return;
    this.sweepTimer = this.time.setTimer(
      () => {
        this.sweepTimer = undefined;
        const now = this.time.now();
        for (const [k, c] of this.cache) {
          if (c.expires >= now) break;
          this.dropCached(k);
        }
        if (this.cache.size > 0) this.armSweep();
      },
      this.cacheTtlMs + 100,
      true,
    );
  }

  /** A reassembly made progress: its idle expiry starts again. */
  private rearm(key: string, entry: Reassembly): void {
    this.time.clearTimer(entry.timer);
    entry.timer = this.time.setTimer(() => this.dropReassembly(key), this.idleTimeoutMs, true);
  }

  // ---- Block1 --------------------------------------------------------------

  private block1(
    req: ServerRequest,
    b1: ReturnType<typeof decodeBlock>,
    hadBlock2: boolean,
    wantSize2: boolean,
    wantBert: boolean,
    next: (r?: ServerRequest) => Result,
  ): Result {
    const msg = req.message;
    let data = msg.payload;
    // RFC 7959 §2.2/§2.3: a block's payload is exactly its block size (SZX) unless it is
    // the last one (M=0), which may be shorter. Anything else is a malformed request:
    // 4.00 Bad Request, and no state is created for it. A BERT block (RFC 8323 §6) with
    // M=1 is a non-zero multiple of 1024 bytes; the transport bounds its length.
    const isBert = b1.szx === BERT_SZX;
    if (!blockLengthOk(b1, data.length, b1.more)) {
      if (isBert) {
        return text(
          ResponseCode.BadRequest,
          `BERT block ${b1.num} with M=1 carries ${data.length} bytes, not a multiple of 1024`,
        );
      }
      return text(
        ResponseCode.BadRequest,
        `block ${b1.num} carries ${data.length} bytes; its block size is ${b1.size}` +
          (b1.more ? ' and a block with M=1 must be exactly that size' : ''),
      );
    }
    // The key includes Request-Tag (RFC 9175): concurrent uploads from one endpoint stay apart.
    const key = `${this.cacheKey(req, msg)}|cf=${getUintOption(msg.options, OptionNumber.ContentFormat) ?? ''}`;
    const ourSzx = isBert && this.maxSzx === MAX_SZX ? BERT_SZX : Math.min(b1.szx, this.maxSzx);
    // The unit block numbers count in (1024 for BERT).
    const ourSize = ourSzx === BERT_SZX ? 1024 : szxToSize(ourSzx);
    const offset = b1.num * b1.size;
    let more = b1.more;
    if (b1.size > ourSize && data.length > ourSize) {
      // Late negotiation (§2.3): keep the first block of our size, ask for the rest in smaller blocks.
      data = data.subarray(0, ourSize);
      more = true;
    }
    const tooLarge = (): OutgoingResponse =>
      text(ResponseCode.RequestEntityTooLarge, this.tooLargeText, [
        { number: OptionNumber.Block1, value: encodeBlock(0, false, ourSzx) },
        { number: OptionNumber.Size1, value: encodeUint(this.maxBodySize) },
      ]);
    const address = req.peer.address;
    let entry = this.reassemblies.get(key);
    if (b1.num === 0) {
      const size1 = getUintOption(msg.options, OptionNumber.Size1);
      if (size1 !== undefined && size1 > this.maxBodySize) {
        if (entry) this.dropReassembly(key);
        return tooLarge();
      }
      if (entry) this.dropReassembly(key);
      entry = undefined;
      if (more) {
        if (this.transfersByAddress.of(address) >= this.maxTransfersPerAddress) {
          return busy(`too many block-wise transfers in progress from ${address}`);
        }
        if (
          this.reassemblies.size >= this.maxTransfers ||
          this.transferBytes + ENTRY_OVERHEAD + key.length + data.length > this.maxTransferBytes
        ) {
          return busy('too many block-wise transfers in progress');
        }
      }
    } else if (entry === undefined) {
      return text(ResponseCode.RequestEntityIncomplete, `block ${b1.num} without the blocks before it`);
    } else if (offset !== entry.received) {
      if (offset === entry.lastOffset && data.length === entry.lastLength && more) {
        // The same block again (a retried request with a new message ID): same answer.
        this.rearm(key, entry);
        return continueResponse(offset / ourSize, ourSzx);
      }
      this.dropReassembly(key);
      return text(
        ResponseCode.RequestEntityIncomplete,
        `expected the block at offset ${entry.received}, got offset ${offset}`,
      );
    }
    const received = (entry?.received ?? 0) + data.length;
    if (received > this.maxBodySize) {
      this.dropReassembly(key);
      return tooLarge();
    }
    if (more) {
      if (entry === undefined) {
        const timer = this.time.setTimer(() => this.dropReassembly(key), this.idleTimeoutMs, true);
        entry = {
          chunks: [],
          received: 0,
          lastOffset: 0,
          lastLength: 0,
          timer,
          address,
          bytes: ENTRY_OVERHEAD + key.length,
        };
        this.reassemblies.set(key, entry);
        this.transfersByAddress.add(address);
        this.transferBytes += entry.bytes;
      } else {
        if (this.transferBytes + data.length > this.maxTransferBytes) {
          this.dropReassembly(key);
          return busy('block-wise transfers hold too much data; try again later');
        }
        this.rearm(key, entry);
      }
      entry.chunks.push(Buffer.from(data));
      entry.received = received;
      entry.lastOffset = offset;
      entry.lastLength = data.length;
      entry.bytes += data.length;
      this.transferBytes += data.length;
      return continueResponse(offset / ourSize, ourSzx);
    }
    const body = entry ? Buffer.concat([...entry.chunks, data]) : Buffer.from(data);
    if (entry) this.dropReassembly(key);
    const full: CoapMessage = {
      ...msg,
      options: withoutOptions(msg.options, OptionNumber.Block1, OptionNumber.Size1),
      payload: body,
    };
    const fullReq = new ServerRequest(full, req.peer, req.path, req.pathSegments);
    fullReq.endpoint = req.endpoint;
    fullReq.amplification = req.amplification;
    const blockNum = offset / ourSize;
    const szx2 = this.requestedSzx(msg);
    return then(next(fullReq), (res) => {
      // Copy what the pipeline learned (route, params) back for outer middlewares.
      req.route = fullReq.route;
      req.params = fullReq.params;
      const out = this.respond(req, res, szx2, hadBlock2, wantSize2, wantBert);
      if (out === null) return null;
      const options = withoutOptions(out.options ?? [], OptionNumber.Block1);
      options.push({ number: OptionNumber.Block1, value: encodeBlock(blockNum, false, ourSzx) });
      return { ...out, options };
    });
  }

  private dropReassembly(key: string): void {
    const e = this.reassemblies.get(key);
    if (e === undefined) return;
    this.time.clearTimer(e.timer);
    this.reassemblies.delete(key);
    this.transferBytes -= e.bytes;
    this.transfersByAddress.subtract(e.address);
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** 5.03 Service Unavailable with Max-Age: the peer may retry after that many seconds (§5.9.3.4). */
function busy(msg: string): OutgoingResponse {
  return text(ResponseCode.ServiceUnavailable, msg, [
    { number: OptionNumber.MaxAge, value: encodeUint(RETRY_AFTER_S) },
  ]);
}

function continueResponse(num: number, szx: number): OutgoingResponse {
  return {
    code: ResponseCode.Continue,
    options: [{ number: OptionNumber.Block1, value: encodeBlock(num, true, szx) }],
  };
}

function size2(n: number): CoapOption {
  return { number: OptionNumber.Size2, value: encodeUint(n) };
}

/**
 * The server's block-wise layer, configured with `options` (a CoapServer has one
 * built in unless created with `blockwise: false`; this turns it on then).
 * Idempotent: calling it again returns the same instance and adds no middleware.
 */
export function enableBlockwise(server: BlockwiseHost, options?: BlockwiseServerOptions): BlockwiseServer {
  return server.enableBlockwise(options);
}

export { MAX_SZX };
