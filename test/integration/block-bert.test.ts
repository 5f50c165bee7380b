/**
 * BERT (RFC 8323 §6) end to end over coap+tcp: a 200 KB PUT and GET between a
 * CoapClient and a CoapServer that both announce Block-Wise-Transfer in their
 * CSM and a Max-Message-Size of 64 KiB go in BERT blocks (SZX 7, several
 * 1024-byte blocks per message), seen on the wire through the diagnostics
 * channels (also over coap+ws); a peer that does not announce BERT gets ordinary
 * 1024-byte blocks.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { decodeMessage } from '../../src/codec/message.js';
import { decodeBlock, getOption } from '../../src/codec/options.js';
import { OptionNumber } from '../../src/constants/options.js';
import { channels, type MessageSentEvent } from '../../src/diagnostics.js';
import { CoapServer } from '../../src/server/server.js';
import { TcpTransport } from '../../src/transport/tcp.js';
import { WsTransport } from '../../src/transport/ws.js';

const MMS = 64 * 1024;
const BODY = Buffer.alloc(200 * 1024);
for (let i = 0; i < BODY.length; i++) BODY[i] = (i * 7 + (i >> 10)) & 0xff;

interface Seen {
  block1: { szx: number; num: number; len: number }[];
  block2: { szx: number; num: number; len: number }[];
  messages: number;
}

/** Records the Block1 requests and Block2 responses sent while `f` runs. */
async function onTheWire(f: () => Promise<void>): Promise<Seen> {
  const seen: Seen = { block1: [], block2: [], messages: 0 };
  const listener = (ev: MessageSentEvent): void => {
    seen.messages++;
    const m = decodeMessage(ev.data);
    const b1 = getOption(m.options, OptionNumber.Block1);
    const b2 = getOption(m.options, OptionNumber.Block2);
    // Block1 with a payload: a request block; Block2 with a payload: a response block.
    if (b1 !== undefined && m.code < 32) {
      const b = decodeBlock(b1, true);
      seen.block1.push({ szx: b.szx, num: b.num, len: m.payload.length });
    }
    if (b2 !== undefined && m.code >= 64) {
      const b = decodeBlock(b2, true);
      seen.block2.push({ szx: b.szx, num: b.num, len: m.payload.length });
    }
  };
  channels.messageSent.subscribe(listener);
  try {
    await f();
  } finally {
    channels.messageSent.unsubscribe(listener);
  }
  return seen;
}

describe('BERT (RFC 8323 §6) over coap+tcp', { timeout: 60_000 }, () => {
  const server = new CoapServer({ maxPayloadSize: 1 << 20 });
  let stored = Buffer.alloc(0);
  let base = '';
  const clients: CoapClient[] = [];
  before(async () => {
    server.get('/blob', () => ({ code: '2.05', payload: stored }));
    server.put('/blob', (req) => {
      stored = Buffer.from(req.payload);
      return { code: '2.04' };
    });
    const tcp = await server.listen(
      await TcpTransport.create({ host: '127.0.0.1', port: 0, maxMessageSize: MMS }),
    );
    base = `coap+tcp://127.0.0.1:${tcp.transport.localAddress().port}`;
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.close();
  });

  it('a 200 KB PUT and GET go in BERT blocks bounded by Max-Message-Size', async () => {
    const c = new CoapClient({ reliable: { maxMessageSize: MMS } });
    clients.push(c);
    const put = await onTheWire(async () => {
      const r = await c.put(`${base}/blob`, { payload: BODY });
      assert.equal(r.code, 0x44, r.text());
    });
    assert.ok(stored.equals(BODY), 'the server reassembled the body');
    // A new connection: the client awaits the server's CSM, so even the first block is BERT
    // (the blocks of a transfer never grow: libcoap does not take BERT after a 1024-byte block).
    const bert1 = put.block1.filter((b) => b.szx === 7);
    assert.equal(
      bert1.length,
      put.block1.length,
      `every upload block is BERT: ${JSON.stringify(put.block1)}`,
    );
    let offset = 0;
    for (const b of put.block1) {
      assert.equal(b.num * 1024, offset, 'NUM counts 1024-byte units');
      assert.ok(b.len + 200 <= MMS, 'a block fits the peer Max-Message-Size');
      offset += b.len;
    }
    assert.equal(offset, BODY.length);
    for (const b of bert1.slice(0, -1)) assert.ok(b.len >= 2048 && b.len % 1024 === 0);
    if (process.env.BERT_LOG) console.log(JSON.stringify(put.block1));
    assert.ok(put.block1.length <= 6, `${put.block1.length} upload blocks, not 200`);

    let got: Buffer | undefined;
    const get = await onTheWire(async () => {
      const r = await c.get(`${base}/blob`);
      got = r.payload;
    });
    assert.ok(got?.equals(BODY), 'the client reassembled the body');
    if (process.env.BERT_LOG) console.log(JSON.stringify(get.block2));
    assert.ok(get.block2.length >= 2 && get.block2.length <= 6, JSON.stringify(get.block2));
    offset = 0;
    for (const b of get.block2) {
      assert.equal(b.szx, 7);
      assert.equal(b.num * 1024, offset);
      offset += b.len;
    }
    assert.equal(offset, BODY.length);
  });

  it('coap+ws: the same PUT and GET in BERT blocks', async () => {
    const ws = await server.listen(
      await WsTransport.create({ host: '127.0.0.1', port: 0, maxMessageSize: MMS }),
    );
    const url = `coap+ws://127.0.0.1:${ws.transport.localAddress().port}/blob`;
    const c = new CoapClient({ reliable: { maxMessageSize: MMS } });
    clients.push(c);
    const put = await onTheWire(async () => {
      assert.equal((await c.put(url, { payload: BODY })).code, 0x44);
    });
    assert.ok(stored.equals(BODY));
    assert.ok(put.block1.length <= 6 && put.block1.some((b) => b.szx === 7), JSON.stringify(put.block1));
    let got: Buffer | undefined;
    const get = await onTheWire(async () => {
      got = (await c.get(url)).payload;
    });
    assert.ok(got?.equals(BODY));
    assert.ok(get.block2.length <= 6 && get.block2.every((b) => b.szx === 7), JSON.stringify(get.block2));
  });

  it('a client that does not announce BERT gets ordinary 1024-byte blocks', async () => {
    const c = new CoapClient({ reliable: { maxMessageSize: MMS, bert: false } });
    clients.push(c);
    const put = await onTheWire(async () => {
      const r = await c.put(`${base}/blob`, { payload: BODY.subarray(0, 20 * 1024) });
      assert.equal(r.code, 0x44);
    });
    assert.equal(put.block1.length, 20);
    assert.ok(put.block1.every((b) => b.szx === 6 && b.len === 1024));
    let got: Buffer | undefined;
    const get = await onTheWire(async () => {
      got = (await c.get(`${base}/blob`)).payload;
    });
    assert.ok(got?.equals(BODY.subarray(0, 20 * 1024)));
    assert.equal(get.block2.length, 20);
    assert.ok(get.block2.every((b) => b.szx === 6 && b.len === 1024));
  });

  it('a server that does not announce BERT gets ordinary blocks from a BERT client', async () => {
    const plain = new CoapServer({ maxPayloadSize: 1 << 20 });
    let got = Buffer.alloc(0);
    plain.put('/blob', (req) => {
      got = Buffer.from(req.payload);
      return { code: '2.04' };
    });
    const tcp = await plain.listen(
      await TcpTransport.create({ host: '127.0.0.1', port: 0, maxMessageSize: MMS, bert: false }),
    );
    const c = new CoapClient({ reliable: { maxMessageSize: MMS } });
    clients.push(c);
    try {
      const put = await onTheWire(async () => {
        const url = `coap+tcp://127.0.0.1:${tcp.transport.localAddress().port}/blob`;
        assert.equal((await c.put(url, { payload: BODY.subarray(0, 10 * 1024) })).code, 0x44);
      });
      assert.ok(got.equals(BODY.subarray(0, 10 * 1024)));
      assert.equal(put.block1.length, 10);
      assert.ok(put.block1.every((b) => b.szx === 6 && b.len === 1024));
    } finally {
      await plain.close();
    }
  });

  it('with the default Max-Message-Size (1152) BERT carries one block: ordinary blocks are used', async () => {
    const small = new CoapServer();
    small.get('/blob', () => ({ code: '2.05', payload: BODY.subarray(0, 8192) }));
    const tcp = await small.listen(await TcpTransport.create({ host: '127.0.0.1', port: 0 }));
    const c = new CoapClient();
    clients.push(c);
    try {
      const get = await onTheWire(async () => {
        const r = await c.get(`coap+tcp://127.0.0.1:${tcp.transport.localAddress().port}/blob`);
        assert.equal(r.payload.length, 8192);
      });
      assert.equal(get.block2.length, 8);
      assert.ok(get.block2.every((b) => b.szx === 6));
    } finally {
      await small.close();
    }
  });
});
