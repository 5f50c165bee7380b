/**
 * Block-wise transfer (RFC 7959) end to end over the in-memory transport:
 * lossy links, early/late negotiation, 4.08 / 4.13, ETag changes, concurrency.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { type BlockwiseClientOptions, blockwiseExchange, type SendFn } from '../../src/blockwise/client.js';
import { type BlockwiseServerOptions, enableBlockwise } from '../../src/blockwise/server.js';
import type { CoapOption } from '../../src/codec/message.js';
import { decodeBlock, encodeBlock, encodeUint, getOption, getUintOption } from '../../src/codec/options.js';
import { Method, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import { Endpoint } from '../../src/endpoint/endpoint.js';
import { BlockTransferError } from '../../src/errors.js';
import { CoapServer } from '../../src/server/server.js';
import { MemoryNetwork } from '../../src/transport/memory.js';

const FAST = { ackTimeout: 15, ackRandomFactor: 1.0, maxRetransmit: 8 };

interface Rig {
  net: MemoryNetwork;
  server: CoapServer;
  clients: Endpoint[];
  send(i?: number): SendFn;
  close(): Promise<void>;
}

async function rig(
  bw: BlockwiseServerOptions = {},
  setup?: (s: CoapServer) => void,
  nClients = 1,
): Promise<Rig> {
  const net = new MemoryNetwork();
  const server = new CoapServer({ transmission: FAST, maxPayloadSize: 4 << 20 });
  const blockwise = enableBlockwise(server, bw);
  setup?.(server);
  const st = net.createTransport('10.0.0.1', 5683);
  await server.listen(st);
  const clients: Endpoint[] = [];
  for (let i = 0; i < nClients; i++)
    clients.push(new Endpoint(net.createTransport(`10.0.0.${i + 2}`), { transmission: FAST }));
  return {
    net,
    server,
    clients,
    send:
      (i = 0) =>
      (req) =>
        new Promise((resolve, reject) => {
          clients[i]!.request(st.self, req, {
            onResponse: (r) => {
              resolve(r);
              return true;
            },
            onError: reject,
            timeoutMs: 10_000,
          });
        }),
    close: async () => {
      blockwise.close();
      await Promise.all(clients.map((c) => c.close()));
      await server.close();
    },
  };
}

const path = (p: string): CoapOption[] =>
  p
    .split('/')
    .filter(Boolean)
    .map((s) => ({ number: OptionNumber.UriPath, value: Buffer.from(s) }));

function exchange(r: Rig, code: number, p: string, payload?: Buffer, opts?: BlockwiseClientOptions, i = 0) {
  return blockwiseExchange(r.send(i), { code, options: path(p), payload }, opts);
}

describe('block-wise over the in-memory transport', { timeout: 50_000 }, () => {
  const rigs: Rig[] = [];
  after(async () => {
    await Promise.all(rigs.map((r) => r.close()));
  });

  it('round-trips a 1 MB body both ways over a lossy, duplicating, reordering link', async () => {
    let stored = Buffer.alloc(0);
    const r = await rig({ maxBodySize: 2 << 20 }, (s) => {
      s.put('/big', (req) => {
        stored = Buffer.from(req.payload);
        return { code: ResponseCode.Changed };
      });
      s.get('/big', () => ({ payload: stored }));
    });
    rigs.push(r);
    let n = 0;
    r.net.conditions = {
      drop: () => ++n % 23 === 0,
      duplicate: () => n % 11 === 0,
      delay: () => (n % 5 === 0 ? 3 : 0),
    };
    const body = randomBytes(1 << 20);
    const progress: number[] = [];
    const up = await exchange(r, Method.PUT, '/big', body, {
      onProgress: (p) => {
        assert.equal(p.direction, 'upload');
        progress.push(p.bytes);
      },
    });
    assert.equal(up.message.code, ResponseCode.Changed);
    assert.ok(stored.equals(body), 'server got the body intact');
    assert.equal(progress.at(-1), body.length);
    assert.equal(progress.length, 1024);
    let total: number | undefined;
    const down = await exchange(r, Method.GET, '/big', undefined, {
      onProgress: (p) => {
        total = p.totalBytes;
      },
    });
    assert.equal(total, body.length, 'Size2 reported');
    assert.ok(down.payload.equals(body), 'client got the body intact');
    assert.equal(getOption(down.message.options, OptionNumber.Block2), undefined);
  });

  it('early negotiation: the client asks for 64-byte blocks, the server answers with its max when smaller', async () => {
    const body = randomBytes(1000);
    const r = await rig({ maxBlockSize: 32 }, (s) => s.get('/x', () => ({ payload: body })));
    rigs.push(r);
    const sizes: number[] = [];
    const send = r.send();
    const res = await blockwiseExchange(
      async (req) => {
        const out = await send(req);
        const b = getOption(out.message.options, OptionNumber.Block2);
        if (b) sizes.push(decodeBlock(b).size);
        return out;
      },
      { code: Method.GET, options: path('/x') },
      { blockSize: 64 },
    );
    assert.ok(res.payload.equals(body));
    assert.ok(
      sizes.every((s) => s === 32),
      `all blocks 32 bytes: ${sizes}`,
    );
    assert.equal(sizes.length, Math.ceil(1000 / 32));
  });

  it('late negotiation: client switches to smaller blocks after block 0 and Size2 is answered', async () => {
    const body = randomBytes(3000);
    const r = await rig({}, (s) => s.get('/x', () => ({ payload: body })));
    rigs.push(r);
    const send = r.send();
    const first = await send({
      code: Method.GET,
      options: [...path('/x'), { number: OptionNumber.Size2, value: encodeUint(0) }],
    });
    const b0 = decodeBlock(getOption(first.message.options, OptionNumber.Block2)!);
    assert.deepEqual([b0.num, b0.more, b0.size], [0, true, 1024]);
    assert.equal(getUintOption(first.message.options, OptionNumber.Size2), 3000);
    const etag = getOption(first.message.options, OptionNumber.ETag);
    assert.ok(etag && etag.length > 0, 'server added an ETag');
    // 1024 bytes = blocks 0-3 at 256; continue with block 4 of 256 bytes.
    const b4 = await send({
      code: Method.GET,
      options: [...path('/x'), { number: OptionNumber.Block2, value: encodeBlock(4, false, 4) }],
    });
    const blk = decodeBlock(getOption(b4.message.options, OptionNumber.Block2)!);
    assert.deepEqual([blk.num, blk.more, blk.size], [4, true, 256]);
    assert.ok(b4.message.payload.equals(body.subarray(1024, 1280)));
    assert.ok(getOption(b4.message.options, OptionNumber.ETag)!.equals(etag));
    const beyond = await send({
      code: Method.GET,
      options: [...path('/x'), { number: OptionNumber.Block2, value: encodeBlock(12, false, 4) }],
    });
    assert.equal(beyond.message.code, ResponseCode.BadOption);
  });

  it('serves all blocks from one cached representation even when the resource changes', async () => {
    let version = 0;
    const r = await rig({}, (s) =>
      s.get('/v', () => ({ payload: Buffer.alloc(2500, 65 + (version++ % 26)) })),
    );
    rigs.push(r);
    const res = await exchange(r, Method.GET, '/v');
    assert.equal(res.payload.length, 2500);
    assert.equal(new Set(res.payload).size, 1, 'one representation');
    assert.equal(version, 1, 'handler ran once');
  });

  it('restarts a download when the ETag changes between blocks, and gives up when it keeps changing', async () => {
    let version = 0;
    const r = await rig({ cacheTtlMs: 0 }, (s) =>
      s.get('/v', () => {
        version++;
        return { payload: Buffer.alloc(2500, 65 + (version % 26)) };
      }),
    );
    rigs.push(r);
    await assert.rejects(exchange(r, Method.GET, '/v'), BlockTransferError);
  });

  it('server reduces the Block1 size (late negotiation) and the client follows', async () => {
    let got = Buffer.alloc(0);
    const r = await rig({ maxBlockSize: 128 }, (s) =>
      s.post('/up', (req) => {
        got = Buffer.from(req.payload);
        return { code: ResponseCode.Changed, payload: 'ok' };
      }),
    );
    rigs.push(r);
    const body = randomBytes(5000);
    const seen: number[] = [];
    const send = r.send();
    const res = await blockwiseExchange(
      async (req) => {
        const b = getOption(req.options, OptionNumber.Block1);
        if (b) seen.push(decodeBlock(b).size);
        return send(req);
      },
      { code: Method.POST, options: path('/up'), payload: body },
      {},
    );
    assert.equal(res.message.code, ResponseCode.Changed);
    assert.ok(got.equals(body));
    assert.equal(seen[0], 1024);
    assert.ok(seen.slice(1).every((s) => s === 128));
    const b1 = decodeBlock(getOption(res.message.options, OptionNumber.Block1)!);
    assert.equal(b1.more, false);
    assert.equal(b1.size, 128);
  });

  it('answers 4.08 to a block without its predecessors and 4.13 (with Size1 and a Block1 hint) to too-large bodies', async () => {
    const r = await rig({ maxBodySize: 2048 }, (s) => s.put('/x', () => ({ code: ResponseCode.Changed })));
    rigs.push(r);
    const send = r.send();
    const b1 = (num: number, more: boolean, szx: number) => ({
      number: OptionNumber.Block1,
      value: encodeBlock(num, more, szx),
    });
    const gap = await send({
      code: Method.PUT,
      options: [...path('/x'), b1(3, true, 4)],
      payload: Buffer.alloc(256),
    });
    assert.equal(gap.message.code, ResponseCode.RequestEntityIncomplete);
    const c0 = await send({
      code: Method.PUT,
      options: [...path('/x'), b1(0, true, 4)],
      payload: Buffer.alloc(256),
    });
    assert.equal(c0.message.code, ResponseCode.Continue);
    assert.deepEqual(decodeBlock(getOption(c0.message.options, OptionNumber.Block1)!), {
      num: 0,
      more: true,
      szx: 4,
      size: 256,
    });
    const skip = await send({
      code: Method.PUT,
      options: [...path('/x'), b1(2, true, 4)],
      payload: Buffer.alloc(256),
    });
    assert.equal(skip.message.code, ResponseCode.RequestEntityIncomplete);
    const big = await send({
      code: Method.PUT,
      options: [...path('/x'), b1(0, true, 6), { number: OptionNumber.Size1, value: encodeUint(10_000) }],
      payload: Buffer.alloc(1024),
    });
    assert.equal(big.message.code, ResponseCode.RequestEntityTooLarge);
    assert.equal(getUintOption(big.message.options, OptionNumber.Size1), 2048);
    assert.ok(getOption(big.message.options, OptionNumber.Block1));
    // Without Size1 the limit is found while reassembling.
    const res = await exchange(r, Method.PUT, '/x', randomBytes(5000));
    assert.equal(res.message.code, ResponseCode.RequestEntityTooLarge);
  });

  it('reassembles concurrent uploads from several clients to the same resource separately', async () => {
    const got: Buffer[] = [];
    const r = await rig(
      {},
      (s) =>
        s.put('/same', (req) => {
          got.push(Buffer.from(req.payload));
          return { code: ResponseCode.Changed };
        }),
      4,
    );
    rigs.push(r);
    let n = 0;
    r.net.conditions = { delay: () => (n++ % 3) * 2 };
    const bodies = [0, 1, 2, 3].map(() => randomBytes(20_000));
    const results = await Promise.all(
      bodies.map((b, i) => exchange(r, Method.PUT, '/same', b, { blockSize: 256 }, i)),
    );
    for (const res of results) assert.equal(res.message.code, ResponseCode.Changed);
    assert.equal(got.length, 4);
    for (const b of bodies)
      assert.ok(
        got.some((g) => g.equals(b)),
        'each body arrived intact',
      );
  });

  it('limits concurrent reassemblies and drops idle ones', async () => {
    const r = await rig({ maxTransfers: 1, idleTimeoutMs: 100 }, (s) =>
      s.put('/x', () => ({ code: ResponseCode.Changed })),
    );
    rigs.push(r);
    const b1 = (num: number, more: boolean) => ({
      number: OptionNumber.Block1,
      value: encodeBlock(num, more, 4),
    });
    const a = await r.send()({
      code: Method.PUT,
      options: [...path('/x'), b1(0, true)],
      payload: Buffer.alloc(256),
    });
    assert.equal(a.message.code, ResponseCode.Continue);
    const b = await r.send()({
      code: Method.PUT,
      options: [...path('/y'), b1(0, true)],
      payload: Buffer.alloc(256),
    });
    assert.equal(b.message.code, ResponseCode.ServiceUnavailable);
    await new Promise((res) => setTimeout(res, 200));
    const c = await r.send()({
      code: Method.PUT,
      options: [...path('/x'), b1(1, true)],
      payload: Buffer.alloc(256),
    });
    assert.equal(c.message.code, ResponseCode.RequestEntityIncomplete, 'idle reassembly was dropped');
  });

  it('never re-runs an unsafe handler for a later block of an uncached response', async () => {
    let runs = 0;
    const r = await rig({}, (s) =>
      s.post('/act', () => {
        runs++;
        return { payload: Buffer.alloc(3000, 7) };
      }),
    );
    rigs.push(r);
    const res = await exchange(r, Method.POST, '/act', Buffer.from('go'));
    assert.equal(res.payload.length, 3000, 'later blocks came from the cached response');
    assert.equal(runs, 1);
    const late = await r.send()({
      code: Method.POST,
      options: [...path('/act'), { number: OptionNumber.Block2, value: encodeBlock(1, false, 6) }],
    });
    assert.equal(late.message.code, ResponseCode.BadRequest);
    assert.equal(runs, 1, 'handler not run again');
  });

  it('small responses pass untouched; Size2=0 in a request gets Size2', async () => {
    const r = await rig({}, (s) => s.get('/s', () => 'hello'));
    rigs.push(r);
    const plain = await r.send()({ code: Method.GET, options: path('/s') });
    assert.equal(getOption(plain.message.options, OptionNumber.Block2), undefined);
    assert.equal(getOption(plain.message.options, OptionNumber.ETag), undefined);
    const sized = await r.send()({
      code: Method.GET,
      options: [...path('/s'), { number: OptionNumber.Size2, value: encodeUint(0) }],
    });
    assert.equal(getUintOption(sized.message.options, OptionNumber.Size2), 5);
  });
});
