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
 */

import { Buffer } from 'node:buffer';
import type { CoapMessage, CoapOption } from '../codec/message.js';
import { decodeBlock, encodeBlock, encodeUint, getOption, getUintOption } from '../codec/options.js';
import { ResponseCode } from '../constants/codes.js';
import { OptionNumber } from '../constants/options.js';
import { BlockTransferError, InvalidArgumentError } from '../errors.js';
import type { InboundResponse } from '../exchange/exchange-layer.js';
import { randomToken } from '../exchange/tokens.js';
import { type BlockProgress, MAX_SZX, szxToSize, withoutOptions } from './common.js';

/** One request/response exchange (a fresh token per call is fine). */
export type SendFn = (req: {
  code: number;
  options: CoapOption[];
  payload?: Buffer;
}) => Promise<InboundResponse>;

export interface BlockwiseClientOptions {
  /** Preferred block size, a power of two 16..1024 (default 1024). Below 1024 it is negotiated early. */
  blockSize?: number;
  /** Called after every block in either direction. */
  onProgress?: (p: BlockProgress) => void;
  /** Largest response body accepted in bytes (default 16 MiB). */
  maxBodySize?: number;
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

function blockOf(options: readonly CoapOption[], n: number): ReturnType<typeof decodeBlock> | undefined {
  const raw = getOption(options, n);
  if (raw === undefined) return undefined;
  try {
    return decodeBlock(raw);
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
  } else {
    // Request-Tag (RFC 9175 §3.4): concurrent uploads to one resource stay apart at the
    // server; the follow-up Block2 requests carry it too, naming the same operation.
    const tagged = {
      ...req,
      options: [...req.options, { number: OptionNumber.RequestTag, value: randomToken(4) }],
    };
    res = await upload(send, req.code, tagged.options, payload, szx, early, opts);
    const b1 = blockOf(res.message.options, OptionNumber.Block1);
    if (b1) szx = Math.min(szx, b1.szx);
    return download(send, tagged, res, szx, opts);
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
  while (budget-- > 0) {
    const size = szxToSize(szx);
    const num = offset / size;
    const chunk = payload.subarray(offset, offset + size);
    const more = offset + chunk.length < total;
    const options = [...baseOptions, { number: OptionNumber.Block1, value: encodeBlock(num, more, szx) }];
    if (num === 0) options.push({ number: OptionNumber.Size1, value: encodeUint(total) });
    if (!more && early) options.push({ number: OptionNumber.Block2, value: encodeBlock(0, false, szx) });
    const res = await send({ code, options, payload: chunk });
    const b1 = blockOf(res.message.options, OptionNumber.Block1);
    if (res.message.code === ResponseCode.RequestEntityTooLarge) {
      // §2.9.3: a Block1 option in a 4.13 hints at a block size the server can take.
      if (b1 && b1.szx < szx) {
        szx = b1.szx;
        offset = 0;
        blocks = 0;
        continue;
      }
      return res;
    }
    blocks++;
    const reduced = res.message.code === ResponseCode.Continue && b1 !== undefined && b1.szx < szx;
    if (res.message.code !== ResponseCode.Continue || (!more && !reduced)) {
      // The final response (or the server answered early, e.g. with an error).
      opts.onProgress?.({ direction: 'upload', bytes: offset + chunk.length, totalBytes: total, blocks });
      return res;
    }
    if (reduced) {
      // Late negotiation (§2.3): the server kept block b1.num of the smaller size.
      szx = b1!.szx;
      offset = (b1!.num + 1) * szxToSize(szx);
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
  const maxBody = opts.maxBodySize ?? 16 << 20;
  let head = first;
  let b2 = blockOf(head.message.options, OptionNumber.Block2);
  if (b2 === undefined || (!b2.more && b2.num === 0)) {
    return { message: strip(head.message, head.message.payload), last: head, payload: head.message.payload };
  }
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
    const etag = getOption(head.message.options, OptionNumber.ETag);
    const totalBytes = getUintOption(head.message.options, OptionNumber.Size2);
    if (totalBytes !== undefined && totalBytes > maxBody) {
      throw new BlockTransferError(`response body of ${totalBytes} bytes exceeds the limit of ${maxBody}`);
    }
    const chunks: Buffer[] = [head.message.payload];
    let bytes = head.message.payload.length;
    let blocks = 1;
    let cur = b2;
    let size = Math.min(szxToSize(szx), cur.size);
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
      if (bytes % size !== 0) throw new BlockTransferError(`block of ${bytes} bytes is not a whole block`);
      const num = bytes / size;
      const options = [
        ...baseOptions,
        { number: OptionNumber.Block2, value: encodeBlock(num, false, sizeToSzxOf(size)) },
      ];
      const res = await send({ code: req.code, options });
      last = res;
      if (res.message.code >> 5 !== 2) {
        throw new BlockTransferError(
          `block ${num} failed with ${res.message.code >> 5}.${String(res.message.code & 31).padStart(2, '0')}`,
        );
      }
      const tag = getOption(res.message.options, OptionNumber.ETag);
      if (etag !== undefined && (tag === undefined || Buffer.compare(tag, etag) !== 0)) {
        changed = true;
        break;
      }
      const b = blockOf(res.message.options, OptionNumber.Block2);
      if (b === undefined) throw new BlockTransferError(`block ${num} came back without a Block2 option`);
      if (b.num * b.size !== bytes) {
        throw new BlockTransferError(`asked for offset ${bytes}, got block ${b.num} of size ${b.size}`);
      }
      if (b.more && res.message.payload.length !== b.size) {
        throw new BlockTransferError(`block ${b.num} has ${res.message.payload.length} bytes, not ${b.size}`);
      }
      chunks.push(res.message.payload);
      bytes += res.message.payload.length;
      blocks++;
      if (bytes > maxBody)
        throw new BlockTransferError(`response body exceeds the limit of ${maxBody} bytes`);
      size = Math.min(size, b.size);
      cur = b;
      progress();
    }
    if (!changed) {
      const payload = Buffer.concat(chunks);
      void last;
      return { message: strip(head.message, payload), last, payload };
    }
    // §2.4: the representation changed in the middle of the transfer; start over.
    if (++restarts > 2) throw new BlockTransferError('the representation kept changing during the transfer');
    const options = [...baseOptions, { number: OptionNumber.Block2, value: encodeBlock(0, false, szx) }];
    head = await send({ code: req.code, options });
    const nb = blockOf(head.message.options, OptionNumber.Block2);
    if (nb === undefined || !nb.more) {
      return {
        message: strip(head.message, head.message.payload),
        last: head,
        payload: head.message.payload,
      };
    }
    b2 = nb;
  }
}

function sizeToSzxOf(size: number): number {
  return Math.log2(size) - 4;
}

/** The response message with the full payload and without the Block2 bookkeeping. */
function strip(msg: CoapMessage, payload: Buffer): CoapMessage {
  return { ...msg, options: withoutOptions(msg.options, OptionNumber.Block2), payload };
}
