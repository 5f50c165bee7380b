/**
 * Server side of block-wise transfer (RFC 7959), as a CoapServer middleware:
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
 */

import { Buffer } from 'node:buffer';
// The global `performance` is an accessor: every use would call a getter; the module binding does not.
import { performance } from 'node:perf_hooks';
import type { CoapMessage, CoapOption } from '../codec/message.js';
import { decodeBlock, encodeBlock, encodeUint, getOption, getUintOption } from '../codec/options.js';
import { Method, ResponseCode } from '../constants/codes.js';
import { OptionNumber } from '../constants/options.js';
import type { OutgoingResponse } from '../exchange/exchange-layer.js';
import { responseSize } from '../server/echo.js';
import type { CoapServer, Middleware } from '../server/server.js';
import { ServerRequest } from '../server/server.js';
import { contentEtag, MAX_SZX, sizeToSzxFloor, szxToSize, withoutOptions } from './common.js';

export interface BlockwiseServerOptions {
  /** Largest block size this server sends and accepts, 16..1024 (default 1024). */
  maxBlockSize?: number;
  /** Largest reassembled Block1 body in bytes (default 1 MiB). Larger bodies get 4.13. */
  maxBodySize?: number;
  /** Most Block1 reassemblies in progress at once (default 64); more get 5.03. */
  maxTransfers?: number;
  /** A Block1 reassembly with no new block for this long is dropped (default 30 s). */
  idleTimeoutMs?: number;
  /** How long a Block2 representation is kept for follow-up block requests (default 30 s). */
  cacheTtlMs?: number;
  /** Bound on the bytes held by the Block2 cache (default 16 MiB); oldest entries go first. */
  maxCacheBytes?: number;
}

interface Reassembly {
  chunks: Buffer[];
  received: number;
  lastOffset: number;
  lastLength: number;
  timer: NodeJS.Timeout;
}

interface CachedRepresentation {
  res: OutgoingResponse;
  expires: number;
  bytes: number;
}

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
  readonly idleTimeoutMs: number;
  readonly cacheTtlMs: number;
  readonly maxCacheBytes: number;
  private readonly reassemblies = new Map<string, Reassembly>();
  private readonly cache = new Map<string, CachedRepresentation>();
  private cacheBytes = 0;
  /** The middleware to pass to `server.use()` (done by `install`). */
  readonly middleware: Middleware = (req, next) => this.handle(req, next);

  constructor(options: BlockwiseServerOptions = {}) {
    this.maxSzx = sizeToSzxFloor(options.maxBlockSize ?? 1024);
    this.maxBodySize = options.maxBodySize ?? 1 << 20;
    this.maxTransfers = options.maxTransfers ?? 64;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
    this.cacheTtlMs = options.cacheTtlMs ?? 30_000;
    this.maxCacheBytes = options.maxCacheBytes ?? 16 << 20;
  }

  install(server: CoapServer): this {
    server.use(this.middleware);
    // Amplification rule: a large response to an unsafe request from an unverified address goes out as a small first block.
    server.shrinkResponse ??= (req, res, budget) => this.fitFirstBlock(req, res, budget);
    return this;
  }

  /**
   * The first block, of the largest block size whose response fits in
   * `budget` bytes, of a 2.xx response (whole, or already sliced from a
   * cached representation) to `req`; the representation is cached so the
   * client can fetch the rest with Block2. Undefined when nothing fits.
   */
  fitFirstBlock(req: ServerRequest, res: OutgoingResponse, budget: number): OutgoingResponse | undefined {
    if (res.code >> 5 !== 2) return undefined;
    const msg = req.message;
    const key = this.cacheKey(req.peer.key, msg);
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
      if (responseSize(tkl, out) <= budget) {
        if (b2 === undefined) this.store(key, full);
        return out;
      }
    }
    return undefined;
  }

  /** Number of Block1 reassemblies in progress. */
  get transfersInProgress(): number {
    return this.reassemblies.size;
  }

  /** Number of cached Block2 representations. */
  get cachedRepresentations(): number {
    return this.cache.size;
  }

  /** Drops every buffer and timer. */
  close(): void {
    for (const r of this.reassemblies.values()) clearTimeout(r.timer);
    this.reassemblies.clear();
    this.cache.clear();
    this.cacheBytes = 0;
  }

  /**
   * For Observe: turns a notification for the registration `req` into its
   * first block when it is too large, caching the representation so the
   * client's follow-up GETs (Block2, no Observe) are served from the same one.
   */
  notificationBlock(req: ServerRequest, res: OutgoingResponse): OutgoingResponse {
    const szx = this.requestedSzx(req.message);
    if ((res.payload?.length ?? 0) <= szxToSize(szx)) return res;
    const full = this.withEtag(res);
    this.store(this.cacheKey(req.peer.key, req.message), full);
    return this.slice(full, 0, szx, true);
  }

  // ---- pipeline ----------------------------------------------------------

  private handle(req: ServerRequest, next: (r?: ServerRequest) => Result): Result {
    const msg = req.message;
    let b1: ReturnType<typeof decodeBlock> | undefined;
    let b2: ReturnType<typeof decodeBlock> | undefined;
    try {
      const raw1 = getOption(msg.options, OptionNumber.Block1);
      const raw2 = getOption(msg.options, OptionNumber.Block2);
      if (raw1 !== undefined) b1 = decodeBlock(raw1);
      if (raw2 !== undefined) b2 = decodeBlock(raw2);
    } catch (err) {
      return text(ResponseCode.BadOption, (err as Error).message);
    }
    const wantSize2 = getOption(msg.options, OptionNumber.Size2) !== undefined;
    if (b1 !== undefined) return this.block1(req, b1, b2 !== undefined, wantSize2, next);
    const szx = this.requestedSzx(msg);
    if (b2 !== undefined && b2.num > 0) {
      const key = this.cacheKey(req.peer.key, msg);
      const cached = this.cached(key);
      if (cached) return this.slice(cached, b2.num, szx, wantSize2, key);
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
        if ((full.payload?.length ?? 0) > szxToSize(szx)) this.store(key, full);
        return this.slice(full, b2!.num, szx, wantSize2, key);
      });
    }
    return then(next(), (res) => this.respond(req.peer.key, msg, res, szx, b2 !== undefined, wantSize2));
  }

  /** A fresh response to a request for block 0 (or without Block2). */
  private respond(
    peerKey: string,
    msg: CoapMessage,
    res: OutgoingResponse | null,
    szx: number,
    hadBlock2: boolean,
    wantSize2: boolean,
  ): OutgoingResponse | null {
    if (res === null) return null;
    const len = res.payload?.length ?? 0;
    if (len <= szxToSize(szx)) {
      if (!hadBlock2 && !wantSize2) return res;
      if (!hadBlock2) return { ...res, options: [...(res.options ?? []), size2(len)] };
      return this.slice(res, 0, szx, wantSize2);
    }
    const full = this.withEtag(res);
    this.store(this.cacheKey(peerKey, msg), full);
    return this.slice(full, 0, szx, true);
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
  ): OutgoingResponse {
    const payload = res.payload ?? new Uint8Array(0);
    const size = szxToSize(szx);
    const offset = num * size;
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

  private cacheKey(peerKey: string, msg: CoapMessage): string {
    let k = `${peerKey}|${msg.code}`;
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
    if (c.expires < performance.now()) {
      this.dropCached(key);
      return undefined;
    }
    return c.res;
  }

  private store(key: string, res: OutgoingResponse): void {
    this.dropCached(key);
    const bytes = res.payload?.length ?? 0;
    if (bytes > this.maxCacheBytes) return;
    const now = performance.now();
    for (const [k, c] of this.cache) {
      if (this.cacheBytes + bytes <= this.maxCacheBytes && c.expires >= now) break;
      this.dropCached(k);
    }
    const payload = res.payload ? Buffer.from(res.payload) : undefined;
    this.cache.set(key, { res: payload ? { ...res, payload } : res, expires: now + this.cacheTtlMs, bytes });
    this.cacheBytes += bytes;
  }

  private dropCached(key: string): void {
    const c = this.cache.get(key);
    if (c === undefined) return;
    this.cache.delete(key);
    this.cacheBytes -= c.bytes;
  }

  // ---- Block1 --------------------------------------------------------------

  private block1(
    req: ServerRequest,
    b1: ReturnType<typeof decodeBlock>,
    hadBlock2: boolean,
    wantSize2: boolean,
    next: (r?: ServerRequest) => Result,
  ): Result {
    const msg = req.message;
    // The key includes Request-Tag (RFC 9175): concurrent uploads from one endpoint stay apart.
    const key = `${this.cacheKey(req.peer.key, msg)}|cf=${getUintOption(msg.options, OptionNumber.ContentFormat) ?? ''}`;
    const ourSzx = Math.min(b1.szx, this.maxSzx);
    const ourSize = szxToSize(ourSzx);
    const offset = b1.num * b1.size;
    let data = msg.payload;
    let more = b1.more;
    if (b1.size > ourSize && data.length > ourSize) {
      // Late negotiation (§2.3): keep the first block of our size, ask for the rest in smaller blocks.
      data = data.subarray(0, ourSize);
      more = true;
    }
    const tooLarge = (): OutgoingResponse =>
      text(ResponseCode.RequestEntityTooLarge, `request body exceeds ${this.maxBodySize} bytes`, [
        { number: OptionNumber.Block1, value: encodeBlock(0, false, ourSzx) },
        { number: OptionNumber.Size1, value: encodeUint(this.maxBodySize) },
      ]);
    let entry = this.reassemblies.get(key);
    if (b1.num === 0) {
      const size1 = getUintOption(msg.options, OptionNumber.Size1);
      if (size1 !== undefined && size1 > this.maxBodySize) {
        if (entry) this.dropReassembly(key);
        return tooLarge();
      }
      if (entry) this.dropReassembly(key);
      else if (this.reassemblies.size >= this.maxTransfers && more) {
        return text(ResponseCode.ServiceUnavailable, 'too many block-wise transfers in progress', [
          { number: OptionNumber.MaxAge, value: encodeUint(2) },
        ]);
      }
      entry = undefined;
    } else if (entry === undefined) {
      return text(ResponseCode.RequestEntityIncomplete, `block ${b1.num} without the blocks before it`);
    } else if (offset !== entry.received) {
      if (offset === entry.lastOffset && data.length === entry.lastLength && more) {
        // The same block again (a retried request with a new message ID): same answer.
        entry.timer.refresh();
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
        const timer = setTimeout(() => this.reassemblies.delete(key), this.idleTimeoutMs);
        timer.unref();
        entry = { chunks: [], received: 0, lastOffset: 0, lastLength: 0, timer };
        this.reassemblies.set(key, entry);
      } else entry.timer.refresh();
      entry.chunks.push(Buffer.from(data));
      entry.received = received;
      entry.lastOffset = offset;
      entry.lastLength = data.length;
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
      const out = this.respond(req.peer.key, msg, res, szx2, hadBlock2, wantSize2);
      if (out === null) return null;
      const options = withoutOptions(out.options ?? [], OptionNumber.Block1);
      options.push({ number: OptionNumber.Block1, value: encodeBlock(blockNum, false, ourSzx) });
      return { ...out, options };
    });
  }

  private dropReassembly(key: string): void {
    const e = this.reassemblies.get(key);
    if (e === undefined) return;
    clearTimeout(e.timer);
    this.reassemblies.delete(key);
  }
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

/** Adds block-wise transfer to a server (install once, before other middlewares such as Observe). */
export function enableBlockwise(server: CoapServer, options?: BlockwiseServerOptions): BlockwiseServer {
  return new BlockwiseServer(options).install(server);
}

export { MAX_SZX };
