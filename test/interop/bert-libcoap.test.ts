/**
 * BERT (RFC 8323 §6) against libcoap 4.3.1 over coap+tcp. libcoap's coap-client
 * has no flag for BERT (-b takes 16..1024) but its library uses SZX 7 when the
 * peer's CSM announces Block-Wise-Transfer and a Max-Message-Size above 1152:
 * its 200 KB PUT to a coapkit server (Max-Message-Size 64 KiB) arrives in BERT
 * blocks, and a GET of it comes back whole or in BERT blocks. coapkit's client
 * against coap-server-notls -d goes the other way.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { decodeMessage } from '../../src/codec/message.js';
import { decodeBlock, getOption } from '../../src/codec/options.js';
import { OptionNumber } from '../../src/constants/options.js';
import { channels, type MessageReceivedEvent, type MessageSentEvent } from '../../src/diagnostics.js';
import { CoapServer } from '../../src/server/server.js';
import { TcpTransport } from '../../src/transport/tcp.js';
import { CLIENT, haveLibcoap, SERVER, startLibcoapServer } from '../helpers/libcoap.js';
import { runProcess } from '../helpers/proc.js';

const skip = haveLibcoap() ? false : 'libcoap3-bin (coap-client-notls, coap-server-notls) not installed';
const MMS = 64 * 1024;
const BODY = Buffer.alloc(200 * 1024);
for (let i = 0; i < BODY.length; i++) BODY[i] = 0x41 + (i % 26);

interface Block {
  dir: 'in' | 'out';
  option: number;
  szx: number;
  num: number;
  len: number;
}

/** Block options of the messages sent and received while `f` runs. */
async function record<T>(f: () => Promise<T>): Promise<{ result: T; blocks: Block[]; messages: number }> {
  const blocks: Block[] = [];
  let messages = 0;
  const see = (dir: 'in' | 'out', data: Uint8Array): void => {
    messages++;
    const m = decodeMessage(data);
    for (const option of [OptionNumber.Block1, OptionNumber.Block2]) {
      const raw = getOption(m.options, option);
      if (raw === undefined || m.payload.length === 0) continue;
      const b = decodeBlock(raw, true);
      blocks.push({ dir, option, szx: b.szx, num: b.num, len: m.payload.length });
    }
  };
  const sent = (ev: MessageSentEvent): void => see('out', ev.data);
  const received = (ev: MessageReceivedEvent): void => see('in', ev.data);
  channels.messageSent.subscribe(sent);
  channels.messageReceived.subscribe(received);
  try {
    return { result: await f(), blocks, messages };
  } finally {
    channels.messageSent.unsubscribe(sent);
    channels.messageReceived.unsubscribe(received);
  }
}

describe('BERT with libcoap 4.3.1 over coap+tcp', { skip, timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-bert-'));
  const file = join(dir, 'body');
  writeFileSync(file, BODY);
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('coap-client-notls against a coapkit server', () => {
    const server = new CoapServer({ maxPayloadSize: 1 << 20 });
    let stored = Buffer.alloc(0);
    let base = '';
    before(async () => {
      server.get('/blob', () => ({ code: '2.05', payload: stored }));
      server.put('/blob', (req) => {
        stored = Buffer.from(req.payload);
        return { code: '2.04' };
      });
      const l = await server.listen(
        await TcpTransport.create({ host: '127.0.0.1', port: 0, maxMessageSize: MMS }),
      );
      base = `coap+tcp://127.0.0.1:${l.transport.localAddress().port}`;
    });
    after(() => server.close());

    it('a 200 KB PUT arrives in BERT Block1 blocks; GET returns it', async () => {
      const put = await record(() =>
        runProcess(CLIENT, ['-m', 'put', '-f', file, '-B', '20', `${base}/blob`]),
      );
      assert.equal(put.result.code, 0, put.result.stderr);
      assert.ok(stored.equals(BODY), `stored ${stored.length} bytes`);
      const inBlocks = put.blocks.filter((b) => b.dir === 'in' && b.option === OptionNumber.Block1);
      assert.ok(inBlocks.length >= 2 && inBlocks.length <= 8, JSON.stringify(inBlocks));
      assert.ok(
        inBlocks.every((b) => b.szx === 7),
        `libcoap used BERT: ${JSON.stringify(inBlocks)}`,
      );
      const get = await record(() => runProcess(CLIENT, ['-m', 'get', '-B', '20', `${base}/blob`]));
      assert.equal(get.result.code, 0, get.result.stderr);
      // coap-client prints the body and a newline.
      assert.ok(
        get.result.bytes.subarray(0, BODY.length).equals(BODY),
        `got ${get.result.bytes.length} bytes`,
      );
      assert.equal(get.result.bytes.length, BODY.length + 1);
      // Whole (libcoap's Max-Message-Size allows it) or BERT blocks: never 200 blocks of 1024.
      const out = get.blocks.filter((b) => b.dir === 'out');
      assert.ok(out.length <= 8 && out.every((b) => b.szx === 7), JSON.stringify(out));
    });
  });

  describe('a coapkit client against coap-server-notls -d', () => {
    let srv: { port: number; stop(): Promise<void> } | undefined;
    let port = 0;
    const client = new CoapClient({ reliable: { maxMessageSize: MMS } });
    before(async () => {
      srv = await startLibcoapServer(SERVER, ['-d', '10']);
      port = srv.port;
    });
    after(async () => {
      await client.close();
      await srv?.stop();
    });

    it('a 200 KB PUT and GET with libcoap', async () => {
      const base = `coap+tcp://127.0.0.1:${port}`;
      const put = await record(() => client.put(`${base}/bert`, { payload: BODY }));
      assert.equal(put.result.code >> 5, 2, put.result.text());
      const get = await record(() => client.get(`${base}/bert`));
      assert.ok(get.result.payload.equals(BODY), `got ${get.result.payload.length} bytes`);
      const up = put.blocks.filter((b) => b.dir === 'out');
      const down = get.blocks.filter((b) => b.dir === 'in');
      if (process.env.BERT_LOG) console.log(JSON.stringify({ up, down }));
      // libcoap's CSM announces a Max-Message-Size far above 200 KB: few, large BERT blocks both ways.
      assert.ok(up.length >= 1 && up.every((b) => b.szx === 7), JSON.stringify(up));
      assert.ok(down.length >= 2 && down.every((b) => b.szx === 7 && b.len <= MMS), JSON.stringify(down));
      assert.ok(up.length <= 8, `upload in ${up.length} blocks: ${JSON.stringify(up.slice(0, 4))}`);
      assert.ok(down.length <= 8, `download in ${down.length} blocks: ${JSON.stringify(down.slice(0, 4))}`);
    });
  });
});
