/**
 * BERT (RFC 8323 §6) in the block-wise layer: the payload of one BERT message
 * (a multiple of 1024 within the peer's Max-Message-Size), the server's checks of
 * BERT Block1 requests, and SZX 7 refused where BERT was not announced.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bertPayloadSize } from '../../src/blockwise/common.js';
import { BlockwiseServer } from '../../src/blockwise/server.js';
import type { CoapMessage } from '../../src/codec/message.js';
import { decodeBlock, encodeBlock, getOption } from '../../src/codec/options.js';
import { OptionNumber } from '../../src/constants/options.js';
import type { OutgoingResponse } from '../../src/exchange/exchange-layer.js';
import { ServerRequest } from '../../src/server/request.js';
import { makePeer } from '../../src/transport/transport.js';

describe('BERT block sizes', () => {
  it('a multiple of 1024 that keeps the message within Max-Message-Size, at least two blocks', () => {
    assert.equal(bertPayloadSize(undefined, []), 0);
    assert.equal(bertPayloadSize(1152, []), 0);
    assert.equal(bertPayloadSize(2048 + 78, []), 0);
    assert.equal(bertPayloadSize(3072, []), 2048);
    assert.equal(bertPayloadSize(65536, []), 63 * 1024);
    // Options count against the message: 1000 bytes of Uri-Path cost a block here.
    assert.equal(bertPayloadSize(3072 + 100, [{ number: 11, value: Buffer.alloc(100) }]), 2048);
    assert.equal(bertPayloadSize(3072, [{ number: 11, value: Buffer.alloc(1000) }]), 0);
    for (let mms = 0; mms < 70_000; mms += 997) {
      const n = bertPayloadSize(mms, [{ number: 11, value: Buffer.alloc(10) }]);
      assert.ok(n === 0 || (n % 1024 === 0 && n >= 2048 && n + 78 + 15 <= mms), `${mms}: ${n}`);
    }
  });
});

/** A request on a fake reliable endpoint whose peer's BERT state is `bert`. */
function request(options: CoapMessage['options'], payload: Buffer, bert: number | undefined): ServerRequest {
  const msg: CoapMessage = {
    type: 0,
    code: 3,
    messageId: 1,
    token: Buffer.from([1]),
    options,
    payload,
  };
  const req = new ServerRequest(msg, makePeer('127.0.0.1', 5000), '/x', ['x']);
  req.endpoint = {
    transport: { scheme: 'coap+tcp', bertMessageSize: () => bert },
  } as unknown as ServerRequest['endpoint'];
  return req;
}

describe('BERT on the server side', () => {
  const put = (num: number, more: boolean, len: number, bert: number | undefined) =>
    request(
      [
        { number: OptionNumber.UriPath, value: Buffer.from('x') },
        { number: OptionNumber.Block1, value: encodeBlock(num, more, 7) },
      ],
      Buffer.alloc(len, 1),
      bert,
    );

  it('reassembles BERT Block1 blocks and acknowledges each with its NUM and SZX 7', async () => {
    const bw = new BlockwiseServer();
    let body: Buffer | undefined;
    const next = (r?: ServerRequest): OutgoingResponse => {
      body = r?.message.payload;
      return { code: 0x44 };
    };
    const r1 = (await bw.middleware(put(0, true, 3072, 65536), next)) as OutgoingResponse;
    assert.equal(r1.code, 0x5f);
    assert.deepEqual(decodeBlock(getOption(r1.options!, OptionNumber.Block1)!, true), {
      num: 0,
      more: true,
      szx: 7,
      size: 1024,
    });
    const r2 = (await bw.middleware(put(3, false, 1500, 65536), next)) as OutgoingResponse;
    assert.equal(r2.code, 0x44);
    assert.equal(body?.length, 3072 + 1500);
    assert.equal(decodeBlock(getOption(r2.options!, OptionNumber.Block1)!, true).num, 3);
    bw.close();
  });

  it('a BERT block with M=1 that is not a multiple of 1024 is 4.00; SZX 7 without BERT is 4.02', async () => {
    const bw = new BlockwiseServer();
    const next = (): OutgoingResponse => ({ code: 0x44 });
    const bad = (await bw.middleware(put(0, true, 1500, 65536), next)) as OutgoingResponse;
    assert.equal(bad.code, 0x80);
    assert.equal(bw.transfersInProgress, 0);
    const none = (await bw.middleware(put(0, true, 2048, undefined), next)) as OutgoingResponse;
    assert.equal(none.code, 0x82);
    bw.close();
  });

  it('a large response to a BERT peer goes in BERT blocks; to a peer without BERT in 1024-byte blocks', async () => {
    const bw = new BlockwiseServer();
    const big = Buffer.alloc(10_000, 2);
    const get = (bert: number | undefined) => {
      const req = request([{ number: OptionNumber.UriPath, value: Buffer.from('x') }], Buffer.alloc(0), bert);
      req.message.code = 1;
      return req;
    };
    const next = (): OutgoingResponse => ({ code: 0x45, payload: big });
    const a = (await bw.middleware(get(4096), next)) as OutgoingResponse;
    assert.deepEqual(decodeBlock(getOption(a.options!, OptionNumber.Block2)!, true).szx, 7);
    assert.equal(a.payload?.length, 3072);
    const b = (await bw.middleware(get(0), next)) as OutgoingResponse;
    assert.deepEqual(decodeBlock(getOption(b.options!, OptionNumber.Block2)!).szx, 6);
    assert.equal(b.payload?.length, 1024);
    bw.close();
  });
});
