/**
 * OSCORE end to end over UDP loopback: client.request(uri, { oscore }) against
 * enableOscore(server): the handler sees the inner request and req.oscore.kid;
 * the RFC 8613 §8.2 refusals (unknown kid, failed decryption, replay of a
 * captured request) and 4.02 for an unprotected request to a required path;
 * inner block-wise; restart with persisted sequence numbers and the Echo
 * freshness round (Appendix B.1.2); through coapkit's forward proxy, which
 * never sees the plaintext.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import dc from 'node:diagnostics_channel';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { decodeMessage, encodeMessage } from '../../src/codec/message.js';
import {
  CoapClient,
  CoapServer,
  enableOscore,
  FileSequenceStore,
  OscoreContext,
  OscoreError,
  proxyUriOption,
  type ServerPeer,
  type ServerRequest,
} from '../../src/index.js';
import { decodeOscoreOption } from '../../src/oscore/option.js';
import { protectRequest } from '../../src/oscore/protect.js';
import { startTrace } from '../../src/trace/tracer.js';
import { startForwardProxy } from '../helpers/forward-proxy.js';
import { until, withTimeout } from '../helpers/timing.js';

const SECRET = Buffer.from('0102030405060708090a0b0c0d0e0f10', 'hex');
const SALT = Buffer.from('9e7ca92223786340', 'hex');
const C = Buffer.from('client');
const S = Buffer.from('server');

function clientCtx(extra: Partial<ConstructorParameters<typeof OscoreContext>[0]> = {}) {
  return new OscoreContext({ masterSecret: SECRET, masterSalt: SALT, senderId: C, recipientId: S, ...extra });
}
function serverCtx(extra: Partial<ConstructorParameters<typeof OscoreContext>[0]> = {}) {
  return new OscoreContext({ masterSecret: SECRET, masterSalt: SALT, senderId: S, recipientId: C, ...extra });
}

async function startServer(ctx: OscoreContext, port = 0) {
  const server = new CoapServer();
  server.get('/secure/hello', (req) => ({ payload: `hello ${req.oscore?.kid.toString() ?? 'nobody'}` }));
  server.get('/public', (req) => ({ payload: req.oscore ? 'protected' : 'plain' }));
  server.get('/secure/big', () => ({ payload: Buffer.alloc(3000, 'x') }));
  server.post('/secure/echo', (req) => ({ code: '2.04', payload: req.payload }));
  const layer = enableOscore(server, { contexts: [ctx], required: ['/secure/**'] });
  const ep = await server.listen({ host: '127.0.0.1', port });
  return { server, layer, port: ep.transport.localAddress().port };
}

/** Sends one datagram and waits for one answer. */
async function rawExchange(port: number, datagram: Buffer) {
  const sock = dgram.createSocket('udp4');
  try {
    const got = new Promise<Buffer>((resolve) => sock.once('message', (m) => resolve(m)));
    sock.send(datagram, port, '127.0.0.1');
    return decodeMessage(await withTimeout(got, 5000, 'answer'));
  } finally {
    sock.close();
  }
}

describe('OSCORE client and server', () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  let client: CoapClient;
  let cctx: OscoreContext;
  before(async () => {
    srv = await startServer(serverCtx());
    client = new CoapClient();
    cctx = clientCtx();
  });
  after(async () => {
    await client.close();
    await srv.server.close();
  });
  const url = (p: string) => `coap://127.0.0.1:${srv.port}${p}`;

  it('a protected GET reaches the handler with req.oscore.kid; the outer code is 2.04', async () => {
    const res = await client.get(url('/secure/hello'), { oscore: cctx });
    assert.equal(res.codeText, '2.05 Content');
    assert.equal(res.text(), 'hello client');
    const pub = await client.get(url('/public'), { oscore: cctx });
    assert.equal(pub.text(), 'protected');
  });

  it('an unprotected request to a required path gets 4.02 "OSCORE required"; other paths are served', async () => {
    const res = await client.get(url('/secure/hello'));
    assert.equal(res.codeText, '4.02 Bad Option');
    assert.equal(res.text(), 'OSCORE required');
    assert.equal((await client.get(url('/public'))).text(), 'plain');
  });

  it('unknown kid: 4.01 "Security context not found" as an OscoreError', async () => {
    const stranger = new OscoreContext({
      masterSecret: SECRET,
      senderId: Buffer.from('who'),
      recipientId: S,
    });
    await assert.rejects(client.get(url('/secure/hello'), { oscore: stranger }), (err: unknown) => {
      assert.ok(err instanceof OscoreError);
      assert.equal(err.responseCode, 0x81);
      assert.equal(err.diagnostic, 'Security context not found');
      return true;
    });
  });

  it('a wrong key: 4.00 "Decryption failed" (RFC 8613 §8.2 step 6)', async () => {
    const wrong = new OscoreContext({
      masterSecret: Buffer.alloc(16, 7),
      senderId: C,
      recipientId: S,
      senderSequenceNumber: 1000,
    });
    await assert.rejects(client.get(url('/secure/hello'), { oscore: wrong }), (err: unknown) => {
      assert.ok(err instanceof OscoreError);
      assert.equal(err.responseCode, 0x80);
      assert.equal(err.diagnostic, 'Decryption failed');
      return true;
    });
  });

  it('a captured protected request sent again (new Message ID and token) gets 4.01 "Replay detected"', async () => {
    const plain = {
      code: 1,
      options: [
        { number: 11, value: Buffer.from('secure') },
        { number: 11, value: Buffer.from('hello') },
      ],
    };
    const before = srv.layer.stats.refused['Replay detected'] ?? 0;
    const { message } = protectRequest(cctx, plain);
    const first = encodeMessage({ type: 0, messageId: 0x1234, token: Buffer.from('t1'), ...message });
    const a = await rawExchange(srv.port, first);
    assert.equal(a.code, 0x44, 'the first copy is answered (protected, outer 2.04)');
    const again = encodeMessage({ type: 0, messageId: 0x1235, token: Buffer.from('t2'), ...message });
    const b = await rawExchange(srv.port, again);
    assert.equal(b.code, 0x81);
    assert.equal(b.payload.toString(), 'Replay detected');
    assert.ok(!b.options.some((o) => o.number === 9), 'the refusal is not protected');
    assert.equal(srv.layer.stats.refused['Replay detected'], before + 1);
  });

  it('inner block-wise: a 3000-byte body in 64-byte blocks, each block protected', async () => {
    const res = await client.get(url('/secure/big'), { oscore: cctx, blockSize: 64 });
    assert.equal(res.payload.length, 3000);
    const up = await client.post(url('/secure/echo'), {
      oscore: cctx,
      blockSize: 64,
      payload: Buffer.alloc(1000, 'y'),
    });
    assert.equal(up.payload.length, 1000);
  });
});

describe('OSCORE sequence numbers across a restart (§7.5, Appendix B.1.2)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'coapkit-oscore-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('no sequence number is reused after a restart, and Echo brings the client back', async () => {
    const serverSeq = join(dir, 'server.json.seq');
    const clientSeq = join(dir, 'client.json.seq');
    const client = new CoapClient();
    const cctx = clientCtx({ sequenceStore: new FileSequenceStore(clientSeq), sequenceMargin: 8 });
    const s1 = await startServer(
      serverCtx({ sequenceStore: new FileSequenceStore(serverSeq), sequenceMargin: 8 }),
    );
    try {
      // The first request after start: replay state unknown, so 4.01 + Echo, answered by the client.
      const r1 = await client.get(`coap://127.0.0.1:${s1.port}/secure/hello`, { oscore: cctx });
      assert.equal(r1.text(), 'hello client');
      assert.equal(s1.layer.stats.echoChallenges, 1);
      for (let i = 0; i < 10; i++)
        await client.get(`coap://127.0.0.1:${s1.port}/secure/hello`, { oscore: cctx });
      assert.equal(s1.layer.stats.echoChallenges, 1, 'one challenge per context');
    } finally {
      await s1.server.close();
    }
    const used = cctx.senderSequenceNumber;
    assert.ok(
      Number(readFileSync(clientSeq, 'utf8')) >= used,
      'the stored bound is ahead of every number used',
    );
    // A new process: contexts loaded again from the same files (nothing else kept).
    const cctx2 = clientCtx({ sequenceStore: new FileSequenceStore(clientSeq), sequenceMargin: 8 });
    assert.ok(
      cctx2.senderSequenceNumber >= used,
      `restarted at ${cctx2.senderSequenceNumber}, used up to ${used - 1}`,
    );
    const sctx2 = serverCtx({ sequenceStore: new FileSequenceStore(serverSeq), sequenceMargin: 8 });
    const s2 = await startServer(sctx2);
    try {
      const r = await client.get(`coap://127.0.0.1:${s2.port}/secure/hello`, { oscore: cctx2 });
      assert.equal(r.text(), 'hello client');
      assert.equal(
        s2.layer.stats.echoChallenges,
        1,
        'the restarted server re-established freshness with Echo',
      );
    } finally {
      await s2.server.close();
      await client.close();
    }
  });
});

describe('OSCORE through the forward proxy', () => {
  it('client -> proxy -> server: forwarded, and the proxy never sees the plaintext', async () => {
    const srv = await startServer(serverCtx());
    const proxy = await startForwardProxy();
    const client = new CoapClient();
    try {
      const res = await client.get(proxy.url, {
        oscore: clientCtx(),
        options: [proxyUriOption(`coap://127.0.0.1:${srv.port}/secure/hello`)],
      });
      assert.equal(res.text(), 'hello client');
      assert.ok(proxy.seen.length >= 1);
      for (const d of proxy.seen) {
        assert.ok(!d.includes(Buffer.from('secure')), 'Uri-Path is inside the ciphertext');
        assert.ok(!d.includes(Buffer.from('hello')), 'the path and the answer stay encrypted');
      }
    } finally {
      await client.close();
      await proxy.close();
      await srv.server.close();
    }
  });
});

describe('Observe over OSCORE (§4.1.3.5)', () => {
  it('registration and every notification are protected, each with a Partial IV of its own', async () => {
    const server = new CoapServer();
    let counter = 0;
    server.get('/secure/counter', (req) => `n=${counter} kid=${req.oscore?.kid.toString()}`, { obs: true });
    enableOscore(server, { contexts: [serverCtx()], required: ['/secure/**'] });
    const ep = await server.listen({ host: '127.0.0.1', port: 0 });
    const sent: Buffer[] = [];
    const onSent = (m: unknown) => sent.push(Buffer.from((m as { data: Uint8Array }).data));
    dc.subscribe('coapkit:message:sent', onSent);
    const client = new CoapClient();
    try {
      const obs = client.observe(`coap://127.0.0.1:${ep.transport.localAddress().port}/secure/counter`, {
        oscore: clientCtx(),
      });
      const seen: string[] = [];
      for await (const n of obs) {
        assert.notEqual(n.observe, undefined);
        seen.push(n.text());
        if (seen.length === 4) break;
        counter++;
        server.observe!.notify('/secure/counter');
      }
      assert.deepEqual(seen, ['n=0 kid=client', 'n=1 kid=client', 'n=2 kid=client', 'n=3 kid=client']);
      await until(() => server.observe!.observerCount('/secure/counter') === 0, 'deregistered');
    } finally {
      dc.unsubscribe('coapkit:message:sent', onSent);
      await client.close();
      await server.close();
    }
    // The registration's response and the notifications carry an (outer) Observe option; the
    // deregistration's answer does not.
    const responses = sent
      .map((d) => decodeMessage(d))
      .filter((m) => m.code >> 5 === 2 && m.options.some((o) => o.number === 6));
    assert.ok(responses.length >= 4);
    const pivs = new Set<string>();
    for (const m of responses) {
      assert.ok(!m.payload.includes(Buffer.from('kid=')), 'no plaintext on the wire');
      const opt = m.options.find((o) => o.number === 9);
      assert.ok(opt !== undefined, 'protected');
      assert.equal(m.code, 0x45, 'outer 2.05 for a notification');
      const piv = decodeOscoreOption(opt.value).partialIv;
      assert.ok(piv !== undefined, 'each notification has its own Partial IV');
      pivs.add(piv.toString('hex'));
    }
    assert.equal(pivs.size, responses.length, 'no Partial IV used twice');
  });
});

describe('the OSCORE fields of a request peer (ServerPeer)', () => {
  it('typed on req.peer, hidden from diagnostics events; a verified request skips the amplification rule', async () => {
    const server = new CoapServer();
    const seen: { kid: string | undefined; guarded: boolean; protectsNotifications: boolean }[] = [];
    const handler = (req: ServerRequest) => {
      // Typed: no cast (ServerPeer declares the fields enableOscore sets).
      const peer: ServerPeer = req.peer;
      seen.push({
        kid: peer.oscore?.kid.toString(),
        guarded: req.amplification !== undefined,
        protectsNotifications: peer.oscoreProtect !== undefined,
      });
      return 'ok';
    };
    server.get('/both', handler);
    server.get('/watch', handler, { obs: true });
    enableOscore(server, { contexts: [serverCtx()] });
    const ep = await server.listen({ host: '127.0.0.1', port: 0 });
    const base = `coap://127.0.0.1:${ep.transport.localAddress().port}`;
    const published: unknown[] = [];
    const onRequest = (e: unknown) => published.push((e as { peer: unknown }).peer);
    dc.subscribe('coapkit:server:request', onRequest);
    const client = new CoapClient();
    try {
      assert.equal((await client.get(`${base}/both`, { oscore: clientCtx() })).text(), 'ok');
      assert.equal((await client.get(`${base}/both`)).text(), 'ok');
      const obs = client.observe(`${base}/watch`, { oscore: clientCtx({ senderSequenceNumber: 100 }) });
      for await (const n of obs) {
        assert.equal(n.text(), 'ok');
        break;
      }
    } finally {
      dc.unsubscribe('coapkit:server:request', onRequest);
      await client.close();
      await server.close();
    }
    // (A fourth: the deregistration, protected too.)
    assert.deepEqual(seen.slice(0, 3), [
      { kid: 'client', guarded: false, protectsNotifications: false },
      { kid: undefined, guarded: true, protectsNotifications: false },
      { kid: 'client', guarded: false, protectsNotifications: true },
    ]);
    assert.ok(published.length >= 3);
    for (const peer of published) {
      const text = JSON.stringify(peer);
      assert.ok(!text.includes('"oscore') && !text.includes('"kid'), `no OSCORE field published: ${text}`);
      assert.ok(!Object.keys(peer as object).some((k) => k.startsWith('oscore')));
    }
  });
});

describe('--trace shows the inner messages', () => {
  it('client and server sides: protected and decrypted inner requests and responses', async () => {
    const srv = await startServer(serverCtx());
    let text = '';
    const out = new Writable({
      write(chunk: Buffer, _enc, cb) {
        text += chunk.toString();
        cb();
      },
    });
    const trace = startTrace({ format: 'text', out, color: false });
    const client = new CoapClient();
    try {
      await client.get(`coap://127.0.0.1:${srv.port}/secure/hello`, { oscore: clientCtx() });
      await new Promise((r) => setImmediate(r));
    } finally {
      trace.stop();
      await client.close();
      await srv.server.close();
    }
    assert.match(text, /OSCO .* protected inner GET \/secure\/hello, kid 0x636c69656e74, Partial IV 0x00/);
    assert.match(text, /OSCO .* decrypted inner GET \/secure\/hello, kid 0x636c69656e74/);
    assert.match(text, /OSCO .* protected inner 2\.05 Content \(12 B payload\), kid 0x636c69656e74/);
    assert.match(text, /OSCO .* decrypted inner 2\.05 Content \(12 B payload\)/);
  });
});

describe('a server that cannot take a sequence number', () => {
  it('answers an unprotected 5.00 without payload instead of reusing a nonce', async () => {
    const store = {
      load: () => undefined,
      save: () => {
        throw new Error('read-only file system');
      },
    };
    const srv = await startServer(serverCtx({ sequenceStore: store, replayState: 'unknown' }));
    const client = new CoapClient();
    try {
      await assert.rejects(
        client.get(`coap://127.0.0.1:${srv.port}/secure/hello`, { oscore: clientCtx() }),
        (err: unknown) => {
          assert.ok(err instanceof OscoreError);
          assert.equal(err.responseCode, 0xa0);
          return true;
        },
      );
      assert.equal(srv.layer.stats.protectFailures, 1);
      assert.match(String(srv.layer.lastProtectError), /read-only file system/);
    } finally {
      await client.close();
      await srv.server.close();
    }
  });
});
