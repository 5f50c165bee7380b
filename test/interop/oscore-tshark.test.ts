/**
 * Our OSCORE messages through Wireshark: a protected exchange (requests with
 * kid and kid context, responses with and without Partial IV, the Echo round
 * after a restart, inner block-wise) is recorded from `coapkit:message:sent`
 * into a pcap; tshark must flag no frame as malformed, read our OSCORE option
 * (Partial IV, kid, kid context) as we wrote it, and — given the security
 * context through its "oscore_contexts" table — decrypt every message to the
 * inner code we sent: an independent check of our AEAD, nonce and AAD.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { decodeMessage } from '../../src/codec/message.js';
import { OscoreContext } from '../../src/oscore/context.js';
import { decodeOscoreOption } from '../../src/oscore/option.js';
import { enableOscore } from '../../src/server/oscore.js';
import { CoapServer } from '../../src/server/server.js';
import { writePcap } from '../helpers/pcap.js';
import { hasTshark, recordSent, tsharkRows } from '../helpers/tshark.js';

const skip = hasTshark ? false : 'tshark not installed';

const SECRET = '0102030405060708090a0b0c0d0e0f10';
const SALT = '9e7ca92223786340';
const ID_CONTEXT = '37cbf3210017a2d3';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'coapkit-oscore-tshark-'));
});
after(() => (process.env.KEEP ? undefined : rmSync(dir, { recursive: true, force: true })));

test('tshark dissects our OSCORE messages without malformed frames and decrypts them', { skip }, async () => {
  const ctx = (sender: string, recipient: string, replayState: 'fresh' | 'unknown') =>
    new OscoreContext({
      masterSecret: Buffer.from(SECRET, 'hex'),
      masterSalt: Buffer.from(SALT, 'hex'),
      idContext: Buffer.from(ID_CONTEXT, 'hex'),
      senderId: Buffer.from(sender, 'hex'),
      recipientId: Buffer.from(recipient, 'hex'),
      replayState,
    });
  const server = new CoapServer();
  server.get('/hello', () => ({ payload: 'world', contentFormat: 0 }));
  server.get('/big', () => ({ payload: Buffer.alloc(300, 0x61) }));
  server.post('/items', () => ({ code: '2.01', locationPath: ['items', '1'] }));
  // 'unknown': the first request is answered with 4.01 + Echo and a Partial IV of the server's own.
  enableOscore(server, { contexts: [ctx('01', '', 'unknown')] });
  const ep = await server.listen({ host: '127.0.0.1', port: 0 });
  const serverPort = ep.transport.localAddress().port;
  const client = new CoapClient();
  const oscore = ctx('', '01', 'fresh');
  const sent = recordSent();
  try {
    const base = `coap://127.0.0.1:${serverPort}`;
    assert.equal((await client.get(`${base}/hello`, { oscore })).text(), 'world');
    await client.post(`${base}/items`, { oscore, payload: 'x', contentFormat: 0 });
    assert.equal((await client.get(`${base}/big`, { oscore, blockSize: 64 })).payload.length, 300);
  } finally {
    sent.stop();
    await client.close();
    await server.close();
  }
  const packets = sent.packets(serverPort);
  const file = join(dir, 'oscore.pcap');
  writePcap(file, packets);
  const fields = (args: string[]) =>
    tsharkRows(
      file,
      [
        'frame.number',
        'coap.code',
        'coap.opt.object_security_piv',
        'coap.opt.object_security_kid',
        'coap.opt.object_security_kid_context',
        'oscore.code',
        '_ws.malformed',
        '_ws.expert.message',
      ],
      { args, aggregator: '|' },
    );
  // 1. Without the keys: the outer messages and our OSCORE option, nothing malformed.
  const rows = await fields([]);
  assert.equal(rows.length, packets.length, 'one decoded frame per datagram');
  let ownPiv = 0;
  for (const [i, row] of rows.entries()) {
    const [num, code, piv, kid, kidContext, , malformed, expert] = row;
    const where = `frame ${num}: ${row.join(' | ')}`;
    assert.equal(malformed ?? '', '', `malformed: ${where}`);
    for (const m of (expert ?? '').split('|').filter(Boolean))
      assert.equal(m, "Security context not set - can't decrypt", `expert info: ${where}`);
    const ours = decodeMessage(packets[i]!.data);
    assert.equal(Number(code), ours.code, where);
    const raw = ours.options.find((o) => o.number === 9);
    if (raw === undefined) continue; // an empty ACK
    const opt = decodeOscoreOption(raw.value);
    assert.equal(
      (piv ?? '').replaceAll(':', ''),
      opt.partialIv?.toString('hex') ?? '',
      `Partial IV: ${where}`,
    );
    // tshark shows an empty kid (a Sender ID of 0 bytes) as "<MISSING>".
    if (opt.kid !== undefined)
      assert.equal((kid ?? '').replaceAll(':', '').replace('<MISSING>', ''), opt.kid.toString('hex'), where);
    if (opt.kidContext !== undefined)
      assert.equal((kidContext ?? '').replaceAll(':', ''), opt.kidContext.toString('hex'), where);
    if (ours.code >> 5 === 2 && opt.partialIv !== undefined) ownPiv++;
  }
  assert.ok(ownPiv >= 1, 'a response with a Partial IV of its own (the Echo challenge) is present');
  // 2. With the security context (Wireshark's table: sender ID, recipient ID, secret, salt,
  // ID context, algorithm; one entry per direction): every protected message decrypts.
  const uat = (s: string, r: string) =>
    `uat:oscore_contexts:"${s}","${r}","${SECRET}","${SALT}","${ID_CONTEXT}","AES-CCM-16-64-128 (CCM*)"`;
  const keyed = await fields(['-o', uat('', '01'), '-o', uat('01', '')]);
  let decrypted = 0;
  let protectedCount = 0;
  for (const [i, row] of keyed.entries()) {
    const where = `frame ${row[0]}: ${row.join(' | ')}`;
    if (!decodeMessage(packets[i]!.data).options.some((o) => o.number === 9)) continue;
    protectedCount++;
    if (row[5]) decrypted++;
    // tshark 4.0's option table predates Echo (252): inside a decrypted 4.01 + Echo it says
    // "Invalid Option Number 252"; nothing else may appear.
    for (const m of (row[7] ?? '').split('|').filter(Boolean))
      assert.equal(m, 'Invalid Option Number 252', `expert info: ${where}`);
  }
  assert.ok(protectedCount > 0);
  assert.equal(decrypted, protectedCount, 'tshark decrypted every protected message');
});
