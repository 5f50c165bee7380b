/**
 * Defaults that never lose data (issue 10, item 11): block-wise and observe
 * are on in a plain CoapServer; switched off, Block1/Block2 (critical) get
 * 4.02 and Observe (elective) is ignored; enableBlockwise/enableObserve return
 * the built-in instances and add no second middleware.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { blockwiseExchange, type SendFn } from '../../src/blockwise/client.js';
import { BlockwiseServer, enableBlockwise } from '../../src/blockwise/server.js';
import type { CoapOption } from '../../src/codec/message.js';
import { encodeBlock, encodeUint, getOption } from '../../src/codec/options.js';
import { MessageType, Method, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import type { Endpoint } from '../../src/endpoint/endpoint.js';
import { enableObserve, ObserveServer } from '../../src/observe/server.js';
import { CoapServer, type ServerOptions } from '../../src/server/server.js';
import type { Peer } from '../../src/transport/transport.js';
import { FAST, memorySetup } from '../helpers/memory.js';

const path = (p: string): CoapOption[] =>
  p
    .split('/')
    .filter(Boolean)
    .map((s) => ({ number: OptionNumber.UriPath, value: Buffer.from(s) }));

async function rig(opts: ServerOptions = {}) {
  const mem = memorySetup();
  const server = new CoapServer({ transmission: FAST, ...opts });
  let stored = Buffer.alloc(0);
  let puts = 0;
  server.put('/data', (req) => {
    stored = Buffer.from(req.payload);
    puts++;
    return { code: ResponseCode.Changed };
  });
  server.get('/data', () => stored, { obs: true });
  const st = mem.net.createTransport('10.0.0.1', 5683);
  await server.listen(st);
  const client = mem.endpoint({}, '10.0.1.1');
  const send =
    (ep: Endpoint): SendFn =>
    (req) =>
      new Promise((resolve, reject) => {
        ep.request(st.self, req, {
          onResponse: (r) => {
            resolve(r);
            return true;
          },
          onError: reject,
          timeoutMs: 5000,
        });
      });
  return {
    mem,
    server,
    st: st.self as Peer,
    client,
    send: send(client),
    stored: () => stored,
    puts: () => puts,
    close: async () => {
      await server.close();
      await mem.close();
    },
  };
}

describe('CoapServer defaults: block-wise and observe built in', () => {
  const rigs: Array<Awaited<ReturnType<typeof rig>>> = [];
  after(async () => {
    for (const r of rigs) await r.close();
  });
  const make = async (o?: ServerOptions) => {
    const r = await rig(o);
    rigs.push(r);
    return r;
  };

  it('a plain new CoapServer() reassembles a 5,000-byte PUT and serves it back block-wise', async () => {
    const r = await make();
    const body = randomBytes(5000);
    const up = await blockwiseExchange(r.send, { code: Method.PUT, options: path('/data'), payload: body });
    assert.equal(up.message.code, ResponseCode.Changed);
    assert.ok(r.stored().equals(body), 'whole body, not the first block');
    assert.equal(r.puts(), 1);
    const down = await blockwiseExchange(r.send, { code: Method.GET, options: path('/data') });
    assert.ok(down.payload.equals(body));
  });

  it('obs: true works without enableObserve; server.observe.notify sends the new state', async () => {
    const r = await make();
    assert.ok(r.server.observe instanceof ObserveServer);
    const seen: string[] = [];
    let done!: () => void;
    const got = new Promise<void>((res) => {
      done = res;
    });
    r.client.request(
      r.st,
      {
        code: Method.GET,
        options: [{ number: OptionNumber.Observe, value: encodeUint(0) }, ...path('/data')],
      },
      {
        onResponse: (res) => {
          seen.push(res.message.payload.toString());
          assert.notEqual(getOption(res.message.options, OptionNumber.Observe), undefined);
          if (seen.length === 2) done();
          return false;
        },
        onError: () => undefined,
        timeoutMs: 5000,
      },
    );
    while (r.server.observe!.observerCount('/data') === 0) await new Promise((res) => setTimeout(res, 5));
    await blockwiseExchange(r.send, {
      code: Method.PUT,
      options: path('/data'),
      payload: Buffer.from('new'),
    });
    r.server.observe!.notify('/data');
    await got;
    assert.equal(seen[1], 'new');
  });

  it('enableBlockwise / enableObserve return the built-in instances (idempotent, no second middleware)', async () => {
    const r = await make();
    const bw = enableBlockwise(r.server, { maxBodySize: 1 << 16 });
    assert.equal(bw, r.server.blockwise);
    assert.equal(enableBlockwise(r.server), bw);
    assert.equal(bw.maxBodySize, 1 << 16);
    const obs = enableObserve(r.server, { confirmable: true, blockwise: bw });
    assert.equal(obs, r.server.observe);
    assert.equal(enableObserve(r.server), obs);
    // One block-wise layer: a 3,000-byte answer is cut once into 1024-byte blocks (not re-sliced).
    const body = randomBytes(3000);
    await blockwiseExchange(r.send, { code: Method.PUT, options: path('/data'), payload: body });
    const first = await r.send({ code: Method.GET, options: path('/data') });
    assert.equal(first.message.payload.length, 1024);
    const down = await blockwiseExchange(r.send, { code: Method.GET, options: path('/data') });
    assert.ok(down.payload.equals(body));
    // install() of another instance replaces the built-in one in place.
    const other = new BlockwiseServer({ maxBlockSize: 256 }).install(r.server);
    assert.equal(r.server.blockwise, other);
    const small = await r.send({ code: Method.GET, options: path('/data') });
    assert.equal(small.message.payload.length, 256);
  });

  it('blockwise: false answers Block1/Block2 with 4.02 (critical, RFC 7252 §5.4.1); observe: false ignores Observe', async () => {
    const r = await make({ blockwise: false, observe: false });
    assert.equal(r.server.blockwise, undefined);
    assert.equal(r.server.observe, undefined);
    const b1 = await r.send({
      code: Method.PUT,
      options: [...path('/data'), { number: OptionNumber.Block1, value: encodeBlock(0, true, 6) }],
      payload: Buffer.alloc(1024),
    });
    assert.equal(b1.message.code, ResponseCode.BadOption);
    assert.equal(r.puts(), 0, 'the first block is not taken for the whole body');
    const b2 = await r.send({
      code: Method.GET,
      options: [...path('/data'), { number: OptionNumber.Block2, value: encodeBlock(1, false, 6) }],
    });
    assert.equal(b2.message.code, ResponseCode.BadOption);
    const o = await r.send({
      code: Method.GET,
      options: [{ number: OptionNumber.Observe, value: encodeUint(0) }, ...path('/data')],
    });
    assert.equal(o.message.code, ResponseCode.Content);
    assert.equal(getOption(o.message.options, OptionNumber.Observe), undefined);
    // Turning them on later works, in the right order.
    enableObserve(r.server);
    enableBlockwise(r.server);
    const body = randomBytes(3000);
    const up = await blockwiseExchange(r.send, { code: Method.PUT, options: path('/data'), payload: body });
    assert.equal(up.message.code, ResponseCode.Changed);
    assert.ok(r.stored().equals(body));
    const o2 = await r.send({
      code: Method.GET,
      options: [{ number: OptionNumber.Observe, value: encodeUint(0) }, ...path('/data')],
    });
    assert.notEqual(getOption(o2.message.options, OptionNumber.Observe), undefined);
    assert.equal(o2.message.payload.length, 1024, 'observe runs inside block-wise: first block');
    assert.equal(o2.message.type === MessageType.ACK || o2.message.type === MessageType.CON, true);
  });
});
