/**
 * Client side of block-wise transfer (RFC 7959). Works on top of any
 * "one request, one response" function, so CoapClient, observations and
 * tests share it:
 *
 *   const { response, payload } = await blockwiseExchange(send, { code, options, payload }, { blockSize: 256 });
 *
 * Large request payloads go out with Block1 (honouring a smaller SZX in
 * 2.31 Continue and the Block1 hint of a 4.13), responses with Block2 M=1 are
 * fetched block by block, with the ETag checked across blocks (a changed
 * representation restarts the download, twice at most).
 *
 * A server is not trusted: the body is bounded by `maxBodySize` (BodyTooLargeError), every
 * block must continue at the expected offset with at most the size asked for and a number
 * that fits the option (BlockTransferError), and an upload needs a final response
 * (ProtocolError for 2.31 Continue to the last block). The time bound is the SendFn's:
 * CoapClient gives every round trip what is left of the request's one overall deadline.
 */

import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
// The global `performance` is an accessor: every use would call a getter; the module binding does not.
import { performance } from 'node:perf_hooks';
import type { CoapMessage, CoapOption } from '../codec/message.js';
import { decodeBlock, encodeBlock, encodeUint, getOption, getUintOption } from '../codec/options.js';
import { ResponseCode } from '../constants/codes.js';
import { OptionNumber } from '../constants/options.js';
import {
  AbortError,
  BlockTransferError,
  BodyTooLargeError,
  InvalidArgumentError,
  ProtocolError,
} from '../errors.js';
import type { InboundResponse } from '../exchange/exchange-layer.js';
import { randomToken } from '../exchange/tokens.js';
import {
  BERT_SZX,
  type BlockProgress,
  bertPayloadSize,
  blockLengthOk,
  MAX_SZX,
  szxToSize,
  withoutOptions,
} from './common.js';

/** One request/response exchange (a fresh token per call is fine). */
export type SendFn = (req: {
  code: number;
  options: CoapOption[];
  payload?: Buffer;
}) => Promise<InboundResponse>;

/** Block-wise transfer options of a request (RFC 7959), part of `RequestOptions`. */
export interface BlockwiseClientOptions {
  /** Preferred block size, a power of two 16..1024 (default 1024). Below 1024 it is negotiated early. */
  blockSize?: number;
  /** Called after every block in either direction. */
  onProgress?: (p: BlockProgress) => void;
  /**
   * Largest response body accepted, in bytes (default {@link DEFAULT_MAX_BODY_SIZE}, 16 MiB).
   * A Size2 above it, or more bytes received, stops the transfer with BodyTooLargeError.
   */
  maxBodySize?: number;
  /** Stops the transfer before the next block (AbortError); the SendFn cancels the block in flight. */
  signal?: AbortSignal;
  /**
   * Names the server the SendFn talks to (CoapClient: scheme and peer address),
   * so that uploads to different servers are never taken for concurrent
   * operations on one resource (RFC 9175 §3.4). Without it only the request's
   * code and options count, which may tag an upload that needed no tag.
   */
  target?: string;
  /**
   * @internal RFC 8323 transports: the peer's BERT state, asked before every block
   * (`Transport.bertMessageSize`): undefined when this side does not announce BERT,
   * 0 when the peer does not (yet), else the peer's Max-Message-Size. With it, SZX 7
   * blocks are understood, and uploads without an explicit `blockSize` use BERT.
   */
  bert?: () => number | undefined;
}

/** Default limit of a response body reassembled from blocks: 16 MiB. */
export const DEFAULT_MAX_BODY_SIZE = 16 << 20;

/**
 * RFC 9175 §3.4 bookkeeping of the Block1 uploads a process runs: which are
 * in progress and which ended without concluding (an error, timeout or abort
 * part-way), per "matchable" operation (same server, code and options but the
 * block-wise ones and NoCacheKey ones, §3.1). An upload gets a Request-Tag only
 * when a matchable one is in progress (§3.5.2: the server would otherwise mix
 * their blocks), or one failed part-way within EXCHANGE_LIFETIME (the server may
 * still hold its blocks: the new body must not continue the old one). Otherwise
 * it goes without, recycling the absent option as §3.4 allows ("clients are
 * encouraged to generate compact messages").
 */
class UploadRegistry {
  /** In-progress uploads by operation key (each holds an entry while it runs). */
  private readonly active = new Map<string, number>();
  /** Operations that failed part-way: key -> when the server may have forgotten them. */
  private readonly unfinished = new Map<string, number>();

  constructor(
    /** Most failed operations remembered (the oldest is forgotten first). */
    private readonly maxUnfinished = 1024,
    /** How long a failed operation is remembered: EXCHANGE_LIFETIME with the RFC parameters. */
    private readonly ttlMs = 247_000,
  ) {}

  /** Starts an upload; true when it must carry a (fresh) Request-Tag. */
  begin(key: string): boolean {
    const running = this.active.get(key) ?? 0;
    this.active.set(key, running + 1);
    const until = this.unfinished.get(key);
    if (until !== undefined && until <= performance.now()) this.unfinished.delete(key);
    return running > 0 || this.unfinished.has(key);
  }

  /** Ends an upload; `concluded` when the server gave its final answer. */
  end(key: string, concluded: boolean): void {
    const running = (this.active.get(key) ?? 1) - 1;
    if (running > 0) this.active.set(key, running);
    else this.active.delete(key);
    if (concluded) return;
    this.unfinished.delete(key);
    this.unfinished.set(key, performance.now() + this.ttlMs);
    if (this.unfinished.size > this.maxUnfinished) {
      const oldest = this.unfinished.keys().next().value;
      if (oldest !== undefined) this.unfinished.delete(oldest);
    }
  }
}

const uploads = new UploadRegistry();

/**
 * A fixed-size key naming a matchable operation (RFC 9175 §3.1): target, code
 * and every option but Block1, Block2, Request-Tag and the NoCacheKey ones
 * (Size1 among them).
 */
function operationKey(target: string, code: number, options: readonly CoapOption[]): string {
  const h = createHash('sha256').update(`${target}\0${code}`);
  const n = Buffer.alloc(4);
  for (const o of options) {
    if (
      o.number === OptionNumber.Block1 ||
      o.number === OptionNumber.Block2 ||
      o.number === OptionNumber.RequestTag ||
      (o.number & 0x1e) === 0x1c
    ) {
      continue;
    }
    n.writeUInt16BE(o.number, 0);
    n.writeUInt16BE(o.value.length, 2);
    h.update(n).update(o.value);
  }
  return h.digest('base64');
}

/** Largest block number a Block1/Block2 option can carry (20 bits, RFC 7959 §2.2). */
const MAX_BLOCK_NUM = 0xfffff;

/** Validates `maxBodySize` (a user argument: InvalidArgumentError). */
export function bodyLimit(max: number | undefined): number {
  if (max === undefined) return DEFAULT_MAX_BODY_SIZE;
  if (!Number.isSafeInteger(max) || max < 0) {
    throw new InvalidArgumentError(`maxBodySize must be a non-negative integer number of bytes, got ${max}`);
  }
  return max;
}

function tooLarge(what: string, limit: number): BodyTooLargeError {
  const e = new BodyTooLargeError(`${what} exceeds the limit of ${limit} bytes`, {
    hint: 'raise the limit (maxBodySize, or --max-body BYTES on the command line) if you trust the server',
  });
  e.limit = limit;
  return e;
}

function codeText(code: number): string {
  return `${code >> 5}.${String(code & 31).padStart(2, '0')}`;
}

export interface BlockwiseResult {
  /** The final response (of the last exchange), with options of the first Block2 block when any. */
  message: CoapMessage;
  last: InboundResponse;
  payload: Buffer;
}

/** Validates a block size and returns its SZX. */
export function blockSizeToSzx(size: number | undefined): number {
  if (size === undefined) return MAX_SZX;
  const szx = Math.log2(size) - 4;
  if (!Number.isInteger(szx) || szx < 0 || szx > MAX_SZX) {
    throw new InvalidArgumentError(`block size must be a power of two from 16 to 1024, got ${size}`);
  }
  return szx;
}

function blockOf(
  options: readonly CoapOption[],
  n: number,
  opts: BlockwiseClientOptions,
): ReturnType<typeof decodeBlock> | undefined {
  const raw = getOption(options, n);
  if (raw === undefined) return undefined;
  try {
    return decodeBlock(raw, opts.bert !== undefined && opts.bert() !== undefined);
  } catch (err) {
    throw new BlockTransferError(`malformed block option in response: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Sends a request, uploading with Block1 and downloading with Block2 as needed. */
export async function blockwiseExchange(
  send: SendFn,
  req: { code: number; options: CoapOption[]; payload?: Buffer | undefined },
  opts: BlockwiseClientOptions = {},
): Promise<BlockwiseResult> {
  let szx = blockSizeToSzx(opts.blockSize);
  const early = opts.blockSize !== undefined && szx < MAX_SZX;
  const payload = req.payload;
  let res: InboundResponse;
  if (payload === undefined || payload.length <= szxToSize(szx)) {
    const options = [...req.options];
    if (early && !options.some((o) => o.number === OptionNumber.Block2)) {
      options.push({ number: OptionNumber.Block2, value: encodeBlock(0, false, szx) });
    }
    res = await send({ code: req.code, options, ...(payload ? { payload } : {}) });
    if (res.message.code === ResponseCode.Continue) {
      throw new ProtocolError('server answered 2.31 Continue to a request that was not block-wise');
    }
  } else {
    // Request-Tag (RFC 9175 §3.4), only where it is needed (see UploadRegistry);
    // the follow-up Block2 requests carry it too, naming the same operation.
    const key = operationKey(opts.target ?? '', req.code, req.options);
    const tag = uploads.begin(key);
    let concluded = false;
    try {
      const tagged = tag
        ? { ...req, options: [...req.options, { number: OptionNumber.RequestTag, value: randomToken(4) }] }
        : req;
      res = await upload(send, req.code, tagged.options, payload, szx, early, opts);
      const b1 = blockOf(res.message.options, OptionNumber.Block1, opts);
      if (b1) szx = Math.min(szx, b1.szx);
      const result = await download(send, tagged, res, szx, opts);
      concluded = true;
      return result;
    } finally {
      uploads.end(key, concluded);
    }
  }
  return download(send, req, res, szx, opts);
}

async function upload(
  send: SendFn,
  code: number,
  baseOptions: CoapOption[],
  payload: Buffer,
  startSzx: number,
  early: boolean,
  opts: BlockwiseClientOptions,
): Promise<InboundResponse> {
  let szx = startSzx;
  let offset = 0;
  let blocks = 0;
  const total = payload.length;
  // Every round trip moves at least 16 bytes forward or shrinks the block size.
  let budget = Math.ceil(total / 16) + 16;
  // BERT (RFC 8323 §6) when the size is ours to choose and the peer's CSM allowed it for the
  // first block. Never from a later block: block sizes only shrink within a transfer (RFC 7959
  // §2.5), and a server that took 1024-byte blocks need not take larger ones (libcoap 4.3.1 does
  // not answer a BERT block after a 1024-byte one).
  let mayBert = opts.bert !== undefined && !early && startSzx === MAX_SZX;
  while (budget-- > 0) {
    if (opts.signal?.aborted) throw new AbortError('request aborted', { cause: opts.signal.reason });
    const bert = mayBert && szx >= MAX_SZX ? bertPayloadSize(opts.bert!(), baseOptions) : 0;
    if (bert === 0) mayBert = false;
    if (szx >= MAX_SZX) szx = bert > 0 ? BERT_SZX : MAX_SZX;
    const size = bert || szxToSize(szx);
    // Block numbers count 1024-byte units with BERT, as with SZX 6.
    const num = offset / (bert > 0 ? 1024 : size);
    if (num > MAX_BLOCK_NUM) {
      throw new BlockTransferError(`the payload needs more than 2^20 blocks of ${size} bytes`);
    }
    const chunk = payload.subarray(offset, offset + size);
    const more = offset + chunk.length < total;
    const options = [...baseOptions, { number: OptionNumber.Block1, value: encodeBlock(num, more, szx) }];
    if (num === 0) options.push({ number: OptionNumber.Size1, value: encodeUint(total) });
    if (!more && early) options.push({ number: OptionNumber.Block2, value: encodeBlock(0, false, szx) });
    const res = await send({ code, options, payload: chunk });
    const b1 = blockOf(res.message.options, OptionNumber.Block1, opts);
    if (res.message.code === ResponseCode.RequestEntityTooLarge) {
      // §2.9.3: a Block1 option in a 4.13 hints at a block size the server can take.
      if (b1 && b1.szx < szx) {
        szx = b1.szx;
        mayBert = false;
        offset = 0;
        blocks = 0;
        continue;
      }
      return res;
    }
    blocks++;
    if (res.message.code !== ResponseCode.Continue) {
      // The final response (or the server answered early, e.g. with an error).
      opts.onProgress?.({ direction: 'upload', bytes: offset + chunk.length, totalBytes: total, blocks });
      return res;
    }
    // 2.31 Continue (§2.3): it acknowledges the block just sent, in its Block1 option.
    if (b1 !== undefined) {
      if (b1.szx > szx) {
        throw new ProtocolError(
          `server acknowledged block ${num} of ${size} bytes with a Block1 of ${b1.size}-byte blocks`,
        );
      }
      const end = (b1.num + 1) * b1.size;
      // Same size: the same number. Smaller (late negotiation): a block within the one sent.
      if (b1.szx === szx ? b1.num !== num : b1.num * b1.size < offset || end > offset + chunk.length) {
        throw new ProtocolError(
          `server answered block ${num} (${size} bytes) with 2.31 Continue for block ${b1.num} of ${b1.size} bytes`,
        );
      }
    }
    const reduced = b1 !== undefined && b1.szx < szx;
    if (!more && !reduced) {
      throw new ProtocolError('server answered 2.31 Continue to the last block', {
        hint: 'the upload is complete but the server never sent a final response',
      });
    }
    if (reduced) {
      // Late negotiation (§2.3): the server kept block b1.num of the smaller size.
      szx = b1.szx;
      mayBert = false;
      offset = (b1.num + 1) * szxToSize(szx);
    } else offset += chunk.length;
    opts.onProgress?.({ direction: 'upload', bytes: offset, totalBytes: total, blocks });
  }
  throw new BlockTransferError('block-wise upload made no progress');
}

/**
 * Completes a Block2 download whose first block is `first` (also used for
 * observe notifications: the follow-up requests are `req` without Observe).
 */
export async function download(
  send: SendFn,
  req: { code: number; options: CoapOption[] },
  first: InboundResponse,
  szx: number,
  opts: BlockwiseClientOptions,
): Promise<BlockwiseResult> {
  const maxBody = bodyLimit(opts.maxBodySize);
  let head = first;
  let b2 = blockOf(head.message.options, OptionNumber.Block2, opts);
  if (b2 === undefined || (!b2.more && b2.num === 0)) return whole(head, maxBody);
  const baseOptions = withoutOptions(
    req.options,
    OptionNumber.Block1,
    OptionNumber.Block2,
    OptionNumber.Size1,
    OptionNumber.Observe,
  );
  let restarts = 0;
  for (;;) {
    if (b2.num !== 0) throw new BlockTransferError(`first response carries block ${b2.num}, not block 0`);
    if (!blockLengthOk(b2, head.message.payload.length, true)) {
      throw new BlockTransferError(
        `block 0 has ${head.message.payload.length} bytes, not the ${b2.size} of its Block2 option`,
      );
    }
    const etag = getOption(head.message.options, OptionNumber.ETag);
    const totalBytes = getUintOption(head.message.options, OptionNumber.Size2);
    if (totalBytes !== undefined && totalBytes > maxBody) {
      throw tooLarge(`response body of ${totalBytes} bytes (Size2)`, maxBody);
    }
    const firstLen = head.message.payload.length;
    if (firstLen > maxBody) throw tooLarge('response body', maxBody);
    // One growing buffer, not one Buffer per block: 16-byte blocks cost 16 bytes each.
    let body = Buffer.allocUnsafe(Math.min(maxBody, Math.max(totalBytes ?? 0, 4 * b2.size, firstLen)));
    head.message.payload.copy(body, 0);
    let bytes = head.message.payload.length;
    let blocks = 1;
    let cur = b2;
    let size = Math.min(szxToSize(szx), cur.size);
    let bert = cur.szx === BERT_SZX;
    let last = head;
    const progress = (): void =>
      opts.onProgress?.({
        direction: 'download',
        bytes,
        blocks,
        ...(totalBytes !== undefined ? { totalBytes } : {}),
      });
    progress();
    let changed = false;
    while (cur.more) {
      if (opts.signal?.aborted) throw new AbortError('transfer aborted', { cause: opts.signal.reason });
      // Every block so far had its full size and sizes only shrink: bytes is a whole number of blocks.
      const num = bytes / size;
      if (num > MAX_BLOCK_NUM) {
        throw new BlockTransferError(
          `block number out of range: ${bytes} bytes in ${size}-byte blocks and the server still announces more`,
        );
      }
      const options = [
        ...baseOptions,
        // After a BERT block the server chose BERT: ask for the next ones as BERT too.
        { number: OptionNumber.Block2, value: encodeBlock(num, false, bert ? BERT_SZX : sizeToSzxOf(size)) },
      ];
      const res = await send({ code: req.code, options });
      last = res;
      if (res.message.code >> 5 !== 2) {
        throw new BlockTransferError(`block ${num} failed with ${codeText(res.message.code)}`);
      }
      const tag = getOption(res.message.options, OptionNumber.ETag);
      if (etag !== undefined && (tag === undefined || Buffer.compare(tag, etag) !== 0)) {
        changed = true;
        break;
      }
      const b = blockOf(res.message.options, OptionNumber.Block2, opts);
      if (b === undefined) throw new BlockTransferError(`block ${num} came back without a Block2 option`);
      if (b.size > size) {
        throw new BlockTransferError(`asked for block ${num} of ${size} bytes, got ${b.size}-byte blocks`);
      }
      if (b.num * b.size !== bytes) {
        throw new BlockTransferError(`asked for offset ${bytes}, got block ${b.num} of size ${b.size}`);
      }
      const len = res.message.payload.length;
      if (!blockLengthOk(b, len, b.more)) {
        throw new BlockTransferError(`block ${b.num} has ${len} bytes for a block size of ${b.size}`);
      }
      if (bytes + len > maxBody) throw tooLarge('response body', maxBody);
      if (totalBytes !== undefined && bytes + len > totalBytes) {
        throw new BlockTransferError(`the server sent more than the ${totalBytes} bytes its Size2 announced`);
      }
      if (bytes + len > body.length) {
        const grown = Buffer.allocUnsafe(Math.min(maxBody, Math.max(body.length * 2, bytes + len)));
        body.copy(grown, 0, 0, bytes);
        body = grown;
      }
      res.message.payload.copy(body, bytes);
      bytes += len;
      blocks++;
      size = b.size;
      bert = b.szx === BERT_SZX;
      cur = b;
      progress();
    }
    if (!changed) {
      // Give back the spare capacity unless it is small.
      const payload =
        body.length - bytes > 4096 ? Buffer.from(body.subarray(0, bytes)) : body.subarray(0, bytes);
      return { message: strip(head.message, payload), last, payload };
    }
    // §2.4: the representation changed in the middle of the transfer; start over.
    if (++restarts > 2) throw new BlockTransferError('the representation kept changing during the transfer');
    if (opts.signal?.aborted) throw new AbortError('transfer aborted', { cause: opts.signal.reason });
    const options = [...baseOptions, { number: OptionNumber.Block2, value: encodeBlock(0, false, szx) }];
    head = await send({ code: req.code, options });
    const nb = blockOf(head.message.options, OptionNumber.Block2, opts);
    if (nb === undefined || !nb.more) {
      if (nb !== undefined && nb.num !== 0) {
        throw new BlockTransferError(`asked for block 0, got block ${nb.num}`);
      }
      return whole(head, maxBody);
    }
    b2 = nb;
  }
}

/** A response that is complete in one message (within the body limit). */
function whole(res: InboundResponse, maxBody: number): BlockwiseResult {
  const payload = res.message.payload;
  if (payload.length > maxBody) throw tooLarge(`response body of ${payload.length} bytes`, maxBody);
  return { message: strip(res.message, payload), last: res, payload };
}

function sizeToSzxOf(size: number): number {
  return Math.log2(size) - 4;
}

/** The response message with the full payload and without the Block2 bookkeeping. */
function strip(msg: CoapMessage, payload: Buffer): CoapMessage {
  return { ...msg, options: withoutOptions(msg.options, OptionNumber.Block2), payload };
}
