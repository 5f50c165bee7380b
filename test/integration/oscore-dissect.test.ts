/**
 * `coapkit dissect FILE --oscore CTX`: a capture of a protected exchange shows
 * the OSCORE fields of every protected message and, with either side's
 * context file, the decrypted inner request and response beside the outer
 * ones; without a context nothing of the inner message appears.
 */
import assert from 'node:assert/strict';
import dc from 'node:diagnostics_channel';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CoapClient, CoapServer, enableOscore, OscoreContext } from '../../src/index.js';
import { type PcapPacket, writePcap } from '../helpers/pcap.js';
import { runInProcess } from './cli-helpers.js';

const SECRET = '0102030405060708090a0b0c0d0e0f10';
let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'coapkit-oscore-dissect-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('dissect shows OSCORE messages, decrypted with the context given', async () => {
  const mk = (s: string, r: string) =>
    new OscoreContext({
      masterSecret: Buffer.from(SECRET, 'hex'),
      senderId: Buffer.from(s),
      recipientId: Buffer.from(r),
    });
  const server = new CoapServer();
  server.get('/secret/door', () => ({ payload: 'code 4711', contentFormat: 0 }));
  enableOscore(server, { contexts: [mk('srv', 'cli')] });
  const ep = await server.listen({ host: '127.0.0.1', port: 0 });
  const port = ep.transport.localAddress().port;
  const captured: Array<{ port: number; data: Buffer; t: number }> = [];
  const onSent = (m: unknown) => {
    const e = m as { peer: { port: number }; data: Uint8Array };
    captured.push({ port: e.peer.port, data: Buffer.from(e.data), t: Date.now() });
  };
  const client = new CoapClient();
  dc.subscribe('coapkit:message:sent', onSent);
  try {
    const res = await client.get(`coap://127.0.0.1:${port}/secret/door`, { oscore: mk('cli', 'srv') });
    assert.equal(res.text(), 'code 4711');
  } finally {
    dc.unsubscribe('coapkit:message:sent', onSent);
    await client.close();
    await server.close();
  }
  const clientPort = captured.find((c) => c.port !== port)!.port;
  const packets: PcapPacket[] = captured.map((c) => ({
    src: { address: '127.0.0.1', port: c.port === port ? clientPort : 5683 },
    dst: { address: '127.0.0.1', port: c.port === port ? 5683 : clientPort },
    data: c.data,
    timeMs: c.t,
  }));
  const pcap = join(dir, 'o.pcap');
  writePcap(pcap, packets);
  const ctxFile = join(dir, 'server.json');
  writeFileSync(
    ctxFile,
    JSON.stringify({ secret_hex: SECRET, 'sender-id_ascii': 'srv', 'recipient-id_ascii': 'cli' }),
  );

  const plain = await runInProcess(['dissect', pcap, '--no-color']);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.out, /OSCORE: kid 0x636c69, Partial IV 0x00 \(encrypted \(give the security context/);
  assert.doesNotMatch(plain.out, /door|4711/, 'nothing of the inner message without the key');

  const keyed = await runInProcess(['dissect', pcap, '--no-color', '--oscore', ctxFile]);
  assert.equal(keyed.code, 0, keyed.stderr);
  assert.match(keyed.out, /POST \[OSCORE: GET \/secret\/door\]/);
  assert.match(keyed.out, /inner \(decrypted\): GET \/secret\/door/);
  assert.match(keyed.out, /2\.04 Changed \[OSCORE: 2\.05 Content\]/);
  assert.match(keyed.out, /payload \(9 B, text\): code 4711/);
  const json = await runInProcess(['dissect', pcap, '--json', '--oscore', ctxFile]);
  const doc = JSON.parse(json.out) as {
    coap: { messages: Array<{ oscore?: { inner?: { codeName: string } } }> };
  };
  assert.deepEqual(
    doc.coap.messages.filter((m) => m.oscore?.inner).map((m) => m.oscore!.inner!.codeName),
    ['GET', '2.05 Content'],
  );
  const bad = await runInProcess(['dissect', pcap, '--oscore', join(dir, 'nope.json')]);
  assert.equal(bad.code, 64);
});
