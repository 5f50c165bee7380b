/** The block-wise client against scripted servers (RFC 7959 §2.3, §2.4, §2.9.3). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { blockwiseExchange, type SendFn } from '../../src/blockwise/client.js';
import type { CoapOption } from '../../src/codec/message.js';
import { decodeBlock, encodeBlock, encodeUint, getOption } from '../../src/codec/options.js';
import { MessageType, Method, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import { BlockTransferError } from '../../src/errors.js';
import type { InboundResponse } from '../../src/exchange/exchange-layer.js';
import { makePeer } from '../../src/transport/transport.js';

const peer = makePeer('10.0.0.1', 5683);
function reply(code: number, options: CoapOption[] = [], payload = Buffer.alloc(0)): InboundResponse {
  return {
    message: { type: MessageType.ACK, code, messageId: 1, token: Buffer.alloc(0), options, payload },
    peer,
    piggybacked: true,
    rttMs: 1,
  };
}
const b1 = (num: number, more: boolean, szx: number): CoapOption => ({
  number: OptionNumber.Block1,
  value: encodeBlock(num, more, szx),
});
const b2 = (num: number, more: boolean, szx: number): CoapOption => ({
  number: OptionNumber.Block2,
  value: encodeBlock(num, more, szx),
});

describe('block-wise client', () => {
  it('follows a server that reduces the block size on what the client thought was the last block', async () => {
    const body = Buffer.from(Array.from({ length: 2000 }, (_, i) => i & 0xff));
    const got: Buffer[] = [];
    const send: SendFn = async (req) => {
      const blk = decodeBlock(getOption(req.options, OptionNumber.Block1)!);
      const off = blk.num * blk.size;
      if (blk.num === 1 && blk.size === 1024) {
        // Keep only 256 bytes of the last 1024-byte block: block 4 of 256.
        got.push(req.payload!.subarray(0, 256));
        assert.equal(off, 1024);
        return reply(ResponseCode.Continue, [b1(4, true, 4)]);
      }
      got.push(req.payload!);
      if (blk.more) return reply(ResponseCode.Continue, [b1(blk.num, true, blk.szx)]);
      return reply(ResponseCode.Changed, [b1(blk.num, false, blk.szx)]);
    };
    const res = await blockwiseExchange(send, { code: Method.PUT, options: [], payload: body });
    assert.equal(res.message.code, ResponseCode.Changed);
    assert.ok(Buffer.concat(got).equals(body));
  });

  it('BERT (RFC 8323 §6) only from the first block: a peer that allows it later gets 1024-byte blocks to the end', async () => {
    const szx: number[] = [];
    let csm = false;
    const send: SendFn = async (req) => {
      const blk = decodeBlock(getOption(req.options, OptionNumber.Block1)!, true);
      szx.push(blk.szx);
      // The peer's CSM (BERT, 64 KiB) arrives while the first block is on its way.
      csm = true;
      return blk.more
        ? reply(ResponseCode.Continue, [b1(blk.num, true, blk.szx)])
        : reply(ResponseCode.Changed, [b1(blk.num, false, blk.szx)]);
    };
    const bert = () => (csm ? 65536 : 0);
    const res = await blockwiseExchange(
      send,
      { code: Method.PUT, options: [], payload: Buffer.alloc(5000) },
      { bert },
    );
    assert.equal(res.message.code, ResponseCode.Changed);
    assert.deepEqual(szx, [6, 6, 6, 6, 6], 'the blocks of a transfer never grow');
    // Allowed from the start: BERT from the first block.
    szx.length = 0;
    const again = await blockwiseExchange(
      send,
      { code: Method.PUT, options: [], payload: Buffer.alloc(5000) },
      { bert },
    );
    assert.equal(again.message.code, ResponseCode.Changed);
    assert.deepEqual(szx, [7]);
  });

  it('restarts with the size hinted in the Block1 of a 4.13', async () => {
    const sizes: number[] = [];
    const send: SendFn = async (req) => {
      const blk = decodeBlock(getOption(req.options, OptionNumber.Block1)!);
      sizes.push(blk.size);
      if (blk.size > 64) return reply(ResponseCode.RequestEntityTooLarge, [b1(0, false, 2)]);
      return blk.more
        ? reply(ResponseCode.Continue, [b1(blk.num, true, 2)])
        : reply(ResponseCode.Changed, [b1(blk.num, false, 2)]);
    };
    const res = await blockwiseExchange(send, { code: Method.PUT, options: [], payload: Buffer.alloc(3000) });
    assert.equal(res.message.code, ResponseCode.Changed);
    assert.equal(sizes[0], 1024);
    assert.deepEqual(sizes.slice(1), new Array(Math.ceil(3000 / 64)).fill(64));
  });

  it('returns a 4.13 without a usable hint as the response', async () => {
    const send: SendFn = async () =>
      reply(ResponseCode.RequestEntityTooLarge, [{ number: OptionNumber.Size1, value: encodeUint(100) }]);
    const res = await blockwiseExchange(send, { code: Method.PUT, options: [], payload: Buffer.alloc(5000) });
    assert.equal(res.message.code, ResponseCode.RequestEntityTooLarge);
  });

  it('restarts a download whose ETag changes, then completes', async () => {
    let version = 0;
    let requests = 0;
    const rep = (v: number) => Buffer.alloc(100, 65 + v);
    const send: SendFn = async (req) => {
      requests++;
      const raw = getOption(req.options, OptionNumber.Block2);
      const blk = raw ? decodeBlock(raw) : { num: 0, szx: 4, size: 32, more: false };
      if (requests === 2) version = 1; // changes once, between block 0 and block 1
      const data = rep(version);
      const off = blk.num * 32;
      return reply(
        ResponseCode.Content,
        [{ number: OptionNumber.ETag, value: Buffer.from([version]) }, b2(blk.num, off + 32 < 100, 1)],
        data.subarray(off, off + 32),
      );
    };
    const res = await blockwiseExchange(send, { code: Method.GET, options: [] }, { blockSize: 32 });
    assert.ok(res.payload.equals(rep(1)));
    assert.equal(getOption(res.message.options, OptionNumber.Block2), undefined, 'Block2 stripped');
  });

  it('rejects a block that does not continue at the expected offset', async () => {
    const send: SendFn = async (req) => {
      const raw = getOption(req.options, OptionNumber.Block2);
      const num = raw ? decodeBlock(raw).num : 0;
      return reply(ResponseCode.Content, [b2(num === 0 ? 0 : num + 1, true, 6)], Buffer.alloc(1024));
    };
    await assert.rejects(blockwiseExchange(send, { code: Method.GET, options: [] }), BlockTransferError);
  });

  it('enforces maxBodySize (Size2 up front, or while downloading)', async () => {
    const send: SendFn = async () =>
      reply(
        ResponseCode.Content,
        [b2(0, true, 6), { number: OptionNumber.Size2, value: encodeUint(1 << 20) }],
        Buffer.alloc(1024),
      );
    await assert.rejects(
      blockwiseExchange(send, { code: Method.GET, options: [] }, { maxBodySize: 4096 }),
      /exceeds the limit/,
    );
  });
});
