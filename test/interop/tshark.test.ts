/**
 * Our datagrams through Wireshark's CoAP dissector: a coapkit client↔server
 * exchange (CON/NON/ACK/RST, separate response, many options, extended
 * option deltas/lengths) is recorded from `coapkit:message:sent` into a pcap
 * (synthetic IPv4/UDP headers, server port mapped to 5683), then `tshark -r`
 * must find no malformed frame and decode the same type/MID/token/code/options.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoapClient } from '../../src/client/client.js';
import { decodeMessage } from '../../src/codec/message.js';
import { OptionNumber } from '../../src/constants/options.js';
import { CoapServer } from '../../src/server/server.js';
import { writePcap } from '../helpers/pcap.js';
import { hasTshark, recordSent, tsharkRows } from '../helpers/tshark.js';

const skip = hasTshark ? false : 'tshark not installed';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'coapkit-tshark-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

test('tshark decodes a coapkit exchange exactly as we encoded it, with no malformed frame', {
  skip,
}, async () => {
  const server = new CoapServer({ separateResponseDelayMs: 50 });
  server.get('/a/b', (req) => ({
    payload: `q=${req.query.join('&')}`,
    contentFormat: 0,
    etag: Buffer.from([1, 2, 3, 4]),
    maxAge: 3600,
  }));
  server.post('/items', () => ({ code: '2.01', locationPath: ['items', '42'], locationQuery: ['rev=1'] }));
  server.get('/slow', async () => {
    await sleep(150);
    return { payload: '{"slow":true}', contentFormat: 50 };
  });
  server.put('/blob', () => ({ code: '2.04' }));
  const ep = await server.listen({ host: '127.0.0.1', port: 0 });
  const serverPort = ep.transport.localAddress().port;
  const client = new CoapClient();
  const sent = recordSent();
  try {
    const base = `coap://127.0.0.1:${serverPort}`;
    await client.get(`${base}/a/b?x=1&long=${'y'.repeat(20)}`, {
      accept: 0,
      options: [{ number: OptionNumber.ETag, value: Buffer.from([9, 9]) }],
    });
    await client.post(`${base}/items`, {
      payload: 'new item',
      contentFormat: 'text/plain',
      confirmable: false,
    });
    await client.get(`${base}/slow`, { token: Buffer.from('tok') });
    await client.put(`${base}/blob`, {
      payload: Buffer.alloc(300, 0x42),
      contentFormat: 42,
      options: [{ number: OptionNumber.IfNoneMatch, value: null }],
    });
    await client.get(`${base}/a/b`, { options: [{ number: 9999, value: 'x' }] }); // 4.02, delta 14 encoding
    await client.get(`${base}/a/b`, {
      options: [{ number: OptionNumber.ProxyUri, value: `coap://h/${'p'.repeat(300)}` }],
    }); // 5.05, length 14 encoding
    await client.get(`${base}/a/b`, {
      options: [
        { number: OptionNumber.Observe, value: 0 },
        { number: OptionNumber.Block2, value: Buffer.from([0x02]) },
      ],
    });
    await client.ping(base); // empty CON → RST
    await sleep(100);
  } finally {
    sent.stop();
    await client.close();
    await server.close();
  }
  const packets = sent.packets(serverPort);
  const file = join(dir, 'exchange.pcap');
  writePcap(file, packets);

  const rows = await tsharkRows(
    file,
    [
      'frame.number',
      'coap.type',
      'coap.mid',
      'coap.token',
      'coap.code',
      'coap.opt.desc',
      'coap.payload_length',
      '_ws.malformed',
      '_ws.expert.message',
    ],
    { aggregator: '|' },
  );
  assert.equal(rows.length, packets.length, 'one decoded frame per datagram');
  const types = new Set<number>();
  let separate = false;
  for (const [i, row] of rows.entries()) {
    const [num, type, mid, token, code, optDesc, payloadLen, malformed, expert] = row;
    const ours = decodeMessage(packets[i]!.data);
    const ctx = `frame ${num}: ${row.join(' | ')}`;
    assert.equal(malformed ?? '', '', `malformed: ${ctx}`);
    for (const msg of (expert ?? '').split('|').filter(Boolean)) {
      assert.match(msg, /Unknown Option Number 9999/, `unexpected expert info: ${ctx}`);
    }
    assert.equal(Number(type), ours.type, ctx);
    assert.equal(Number(mid), ours.messageId, ctx);
    assert.equal(token ?? '', ours.token.toString('hex'), ctx);
    assert.equal(Number(code), ours.code, ctx);
    const numbers = (optDesc ?? '')
      .split('|')
      .filter(Boolean)
      .map((d) => Number(/Type (\d+)/.exec(d)?.[1]));
    assert.deepEqual(
      numbers,
      ours.options.map((o) => o.number),
      `options: ${ctx}`,
    );
    assert.equal(Number(payloadLen || 0), ours.payload.length, ctx);
    types.add(ours.type);
    if (ours.type === 0 && ours.code >> 5 === 2) separate = true;
  }
  assert.deepEqual([...types].sort(), [0, 1, 2, 3], 'CON, NON, ACK and RST all present');
  assert.ok(separate, 'a separate (CON) response is present');

  // Selected typed fields decoded by tshark equal ours.
  const typed = await tsharkRows(
    file,
    [
      'coap.opt.uri_path',
      'coap.opt.uri_query',
      'coap.opt.etag',
      'coap.opt.max_age',
      'coap.opt.location_path',
      'coap.opt.location_query',
      'coap.opt.ctype',
      'coap.opt.block_size',
    ],
    { aggregator: '|' },
  );
  assert.deepEqual(typed[0]!.slice(0, 3), ['a|b', `x=1|long=${'y'.repeat(20)}`, '0909']);
  assert.deepEqual(typed[1]!.slice(2, 4), ['01020304', '3600']);
  const created = typed.find((r) => r[4] === 'items|42')!;
  assert.equal(created[5], 'rev=1');
  assert.ok(typed.some((r) => r[6] === 'application/json'));
  assert.ok(
    typed.some((r) => r[7] === '64' || r[7] === '2'),
    'Block2 size decoded',
  );
});
