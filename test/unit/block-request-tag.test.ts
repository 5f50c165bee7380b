/**
 * When the block-wise client sends Request-Tag (RFC 9175 §3.4, §3.5.2): only
 * for an upload matchable with one in progress, or with one that failed
 * part-way; never for a lone upload (compact messages). Scripted servers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { blockwiseExchange, type SendFn } from '../../src/blockwise/client.js';
import type { CoapOption } from '../../src/codec/message.js';
import { decodeBlock, encodeBlock, getOption, getOptions } from '../../src/codec/options.js';
import { MessageType, Method, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import { TimeoutError } from '../../src/errors.js';
import type { InboundResponse } from '../../src/exchange/exchange-layer.js';
import { makePeer } from '../../src/transport/transport.js';

const peer = makePeer('10.0.0.1', 5683);
function reply(code: number, options: CoapOption[] = []): InboundResponse {
  return {
    message: {
      type: MessageType.ACK,
      code,
      messageId: 1,
      token: Buffer.alloc(0),
      options,
      payload: Buffer.alloc(0),
    },
    peer,
    piggybacked: true,
    rttMs: 1,
  };
}
const path = (p: string): CoapOption => ({ number: OptionNumber.UriPath, value: Buffer.from(p) });

/** A server that acknowledges every block and records the Request-Tags it saw, per request. */
function recorder(opts: { gate?: Promise<void>; failAt?: number } = {}) {
  const tags: Array<string | undefined> = [];
  const send: SendFn = async (req) => {
    const t = getOptions(req.options, OptionNumber.RequestTag);
    assert.ok(t.length <= 1);
    tags.push(t[0]?.toString('hex'));
    const blk = decodeBlock(getOption(req.options, OptionNumber.Block1)!);
    if (opts.failAt === blk.num) throw new TimeoutError('no answer');
    if (blk.num === 0 && opts.gate) await opts.gate;
    return blk.more
      ? reply(ResponseCode.Continue, [
          { number: OptionNumber.Block1, value: encodeBlock(blk.num, true, blk.szx) },
        ])
      : reply(ResponseCode.Changed, [
          { number: OptionNumber.Block1, value: encodeBlock(blk.num, false, blk.szx) },
        ]);
  };
  return { tags, send };
}

const BODY = Buffer.alloc(3 * 64, 7);
const put = (send: SendFn, options: CoapOption[], target = 'coap|10.0.0.1:5683') =>
  blockwiseExchange(send, { code: Method.PUT, options, payload: BODY }, { blockSize: 64, target });

describe('Request-Tag (RFC 9175 §3.4)', () => {
  it('a lone upload carries no Request-Tag (the absent option may be recycled)', async () => {
    const r = recorder();
    await put(r.send, [path('lone')]);
    await put(r.send, [path('lone')]);
    assert.deepEqual(r.tags, new Array(6).fill(undefined));
  });

  it('an upload matchable with one in progress gets a tag on every block; the first stays untagged', async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const a = recorder({ gate });
    const b = recorder();
    const first = put(a.send, [path('fw')]);
    await put(b.send, [path('fw')]);
    open();
    await first;
    assert.deepEqual(a.tags, [undefined, undefined, undefined]);
    assert.equal(new Set(b.tags).size, 1, 'the same tag on every block of the operation');
    assert.notEqual(b.tags[0], undefined);
  });

  it('uploads that are not matchable (other resource, other server, other method) need no tag', async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const a = recorder({ gate });
    const first = put(a.send, [path('x')]);
    const other = recorder();
    await put(other.send, [path('y')]);
    await put(other.send, [path('x')], 'coap|10.0.0.2:5683');
    await blockwiseExchange(
      other.send,
      { code: Method.POST, options: [path('x')], payload: BODY },
      { blockSize: 64, target: 'coap|10.0.0.1:5683' },
    );
    open();
    await first;
    assert.deepEqual(other.tags, new Array(9).fill(undefined));
  });

  it('after an upload that failed part-way, the next matchable one is tagged (a new body, not a continuation)', async () => {
    const failing = recorder({ failAt: 1 });
    await assert.rejects(put(failing.send, [path('after-failure')]), TimeoutError);
    const next = recorder();
    await put(next.send, [path('after-failure')]);
    assert.notEqual(next.tags[0], undefined);
    assert.equal(new Set(next.tags).size, 1);
    // The Block1 options of the two operations name the same blocks: the tag is what keeps them apart.
    assert.deepEqual(failing.tags, [undefined, undefined]);
  });

  it('Size1 (NoCacheKey) does not make uploads different operations', async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const a = recorder({ gate });
    const first = put(a.send, [path('s'), { number: OptionNumber.Size1, value: Buffer.from([1]) }]);
    const b = recorder();
    await put(b.send, [path('s')]);
    open();
    await first;
    assert.notEqual(b.tags[0], undefined);
  });
});
