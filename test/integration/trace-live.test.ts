/**
 * --trace on live exchanges: in-process client/server over loopback UDP,
 * DTLS and the in-memory transport (drop / duplicate conditions), in text
 * and JSON.
 */
import assert from 'node:assert/strict';
import dc from 'node:diagnostics_channel';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { Method } from '../../src/constants/codes.js';
import { Endpoint } from '../../src/endpoint/endpoint.js';
import type { InboundResponse } from '../../src/exchange/exchange-layer.js';
import { CoapServer } from '../../src/server/server.js';
import { startTrace, TRACE_CHANNELS, type Trace } from '../../src/trace/tracer.js';
import { DtlsServerTransport } from '../../src/transport/dtls.js';
import { MemoryNetwork } from '../../src/transport/memory.js';

/** A writable that keeps what the tracer printed. */
function sink(): { stream: Writable; text(): string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return { stream, text: () => chunks.join('') };
}

const settle = () => new Promise((r) => setTimeout(r, 20));

/** Lines of a text trace with ANSI codes removed. */
const lines = (s: string) => s.split('\n');

const cleanups: Array<() => Promise<unknown> | unknown> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function track(trace: Trace): Trace {
  cleanups.push(() => trace.stop());
  return trace;
}

/** Client and server on the in-memory network, short timeouts. */
function memoryPair(serverSetup: (s: CoapServer) => void, separateResponseDelayMs = 1000) {
  const net = new MemoryNetwork();
  const st = net.createTransport('10.0.0.1', 5683);
  const ct = net.createTransport('10.0.0.2', 40000);
  const server = new CoapServer({ separateResponseDelayMs });
  serverSetup(server);
  const client = new Endpoint(ct, { transmission: { ackTimeout: 60, ackRandomFactor: 1 } });
  const ready = server.listen(st);
  cleanups.push(async () => {
    await client.close();
    await server.close();
  });
  const get = async (path: string): Promise<InboundResponse & { messageId: number; token: Buffer }> => {
    await ready;
    return new Promise((resolve, reject) => {
      const ex = client.request(
        st.self,
        { code: Method.GET, options: [{ number: 11, value: Buffer.from(path) }] },
        {
          timeoutMs: 3000,
          onError: reject,
          onResponse: (r) => {
            resolve({ ...r, messageId: ex.messageId, token: ex.token });
            return true;
          },
        },
      );
    });
  };
  return { net, get, serverPeer: st.self };
}

describe('trace: tracing is off until started', () => {
  it('has no subscribers before start and after stop', () => {
    for (const name of TRACE_CHANNELS) assert.equal(dc.channel(name).hasSubscribers, false, name);
    const t = startTrace({ format: 'text', out: sink().stream, color: false });
    for (const name of TRACE_CHANNELS) assert.equal(dc.channel(name).hasSubscribers, true, name);
    t.stop();
    t.stop();
    for (const name of TRACE_CHANNELS) assert.equal(dc.channel(name).hasSubscribers, false, name);
  });

  it('never throws into the publisher (bad payloads, failing output)', async () => {
    const broken = new Writable({
      write() {
        throw new Error('output gone');
      },
    });
    const t = track(startTrace({ format: 'text', out: broken, color: false }));
    const t2 = track(startTrace({ format: 'json', out: broken, color: false }));
    assert.doesNotThrow(() => {
      dc.channel('coapkit:message:sent').publish({ peer: null, data: 'not a buffer' });
      dc.channel('coapkit:message:received').publish(undefined);
      dc.channel('coapkit:dtls:record:sent').publish({ nonsense: true });
      dc.channel('coapkit:dns:resolved').publish(42);
    });
    await settle();
    t.stop();
    t2.stop();
  });

  it('renders an undecodable datagram instead of failing', async () => {
    const out = sink();
    const t = track(startTrace({ format: 'text', out: out.stream, color: false }));
    dc.channel('coapkit:message:received').publish({
      peer: { address: '192.0.2.1', port: 5683, family: 'IPv4', key: '192.0.2.1%5683' },
      data: Buffer.from([0x80, 1, 2]),
    });
    await settle();
    t.stop();
    assert.match(out.text(), /CoAP {2}← 192\.0\.2\.1:5683\s+undecodable 3 B/);
  });
});

describe('trace: loopback UDP client ↔ server', () => {
  it('shows DNS for localhost, the request and the piggybacked response with MID, token, code, options and bytes', async () => {
    const server = new CoapServer();
    server.get('/hello', () => ({ payload: 'world', contentFormat: 0 }));
    const ep = await server.listen({ host: '127.0.0.1', port: 0 });
    const port = ep.transport.localAddress().port;
    const client = new CoapClient({ preferFamily: 4 });
    cleanups.push(
      () => client.close(),
      () => server.close(),
    );

    const out = sink();
    const t = track(startTrace({ format: 'text', out: out.stream, color: false }));
    const res = await client.get(`coap://localhost:${port}/hello`, { timeout: 5000 });
    await settle();
    t.stop();
    const text = out.text();
    const mid = res.messageId;
    const tok = res.token.toString('hex');

    assert.match(text, /DNS\s+localhost resolved in [\d.]+ ms → 127\.0\.0\.1 \(IPv4\)/);
    assert.match(text, /A {4}.*127\.0\.0\.1/);
    // Client sends, server receives: both directions of the same request.
    assert.match(
      text,
      new RegExp(`CoAP  → 127\\.0\\.0\\.1:${port}\\s+CON GET  MID ${mid}  token ${tok}  \\(\\d+ B\\)`),
    );
    assert.match(text, new RegExp(`CoAP  ← 127\\.0\\.0\\.1:\\d+\\s+CON GET  MID ${mid}  token ${tok}`));
    assert.match(text, /Uri-Host: "localhost"/);
    assert.match(text, /Uri-Path: "hello"/);
    assert.match(text, new RegExp(`ACK 2\\.05 Content  MID ${mid}  token ${tok}`));
    assert.match(text, /Content-Format: 0 \(text\/plain;charset=utf-8\)/);
    assert.match(text, /payload 5 B text\/plain;charset=utf-8: world/);
    assert.match(
      text,
      new RegExp(`2\\.05 Content matched token ${tok}: piggybacked on the ACK of MID ${mid}, RTT`),
    );
    assert.match(text, /SERV {2}← .*handling GET \/hello/);
    // Per-layer bytes: the request is 4 + 8 (token) + options; IPv4 20 + UDP 8 on top.
    const reqBytes = text.match(
      /IPv4 20 \+ UDP 8 \+ CoAP 4 hdr \+ 8 token \+ (\d+) opts = (\d+) B \(payload 0%\)/,
    );
    assert.ok(reqBytes, 'request byte breakdown');
    assert.equal(Number(reqBytes[2]), 20 + 8 + 4 + 8 + Number(reqBytes[1]));
    assert.match(text, /IPv4 20 \+ UDP 8 \+ CoAP 4 hdr \+ 8 token \+ \d+ opts \+ 1\+5 payload = \d+ B/);
    // Columns: every event line starts with a right-aligned time.
    for (const l of lines(text).filter((x) => /^\s*\+\d/.test(x))) {
      assert.match(l, /^ {0,10}\+[\d.]+ m?s {2}/, l);
    }
    const s = t.summary();
    assert.equal(s.coapMessages, 4);
    assert.equal(s.dnsLookups, 1);
  });

  it('uses ANSI colours only when asked', async () => {
    const plain = sink();
    const colored = sink();
    const t1 = track(startTrace({ format: 'text', out: plain.stream, color: false }));
    const t2 = track(startTrace({ format: 'text', out: colored.stream, color: true }));
    dc.channel('coapkit:dns:resolved').publish({
      host: 'example.test',
      address: '192.0.2.7',
      family: 4,
      addresses: [
        { address: '192.0.2.7', family: 4 },
        { address: '2001:db8::7', family: 6 },
      ],
      durationMs: 1.5,
    });
    await settle();
    t1.stop();
    t2.stop();
    assert.doesNotMatch(plain.text(), /\x1b\[/);
    assert.match(colored.text(), /\x1b\[36mDNS/);
    assert.match(plain.text(), /AAAA 2001:db8::7/);
  });
});

describe('trace: retransmission, duplicates, separate responses (in-memory transport)', () => {
  it('shows a retransmission when the first datagram is dropped, with the same MID and the next timeout', async () => {
    const pair = memoryPair((s) => s.get('/r', () => 'ok'));
    let dropped = false;
    pair.net.conditions.drop = () => {
      if (dropped) return false;
      dropped = true;
      return true;
    };
    const out = sink();
    const t = track(startTrace({ format: 'text', out: out.stream, color: false }));
    const res = await pair.get('r');
    await settle();
    t.stop();
    const text = out.text();
    assert.equal(res.message.code, 0x45);
    const mid = res.messageId;
    assert.match(
      text,
      new RegExp(
        `RETX  → 10\\.0\\.0\\.1:5683\\s+CON GET  MID ${mid}  token [0-9a-f]{16}  \\(\\d+ B\\)  retransmission #1, next timeout 120\\.0 ms`,
      ),
    );
    // The original went out once, the retransmission once, the server saw it once.
    assert.equal(
      text.match(new RegExp(`CoAP  → 10\\.0\\.0\\.1:5683\\s+CON GET  MID ${mid}`, 'g'))?.length,
      1,
    );
    assert.equal(t.summary().retransmissions, 1);
  });

  it('shows duplicate suppression when a request arrives twice', async () => {
    const pair = memoryPair((s) => s.get('/d', () => 'ok'));
    let first = true;
    pair.net.conditions.duplicate = (_d, from) => {
      if (first && from.address === '10.0.0.2') {
        first = false;
        return true;
      }
      return false;
    };
    const out = sink();
    const t = track(startTrace({ format: 'text', out: out.stream, color: false }));
    const res = await pair.get('d');
    await settle();
    t.stop();
    const text = out.text();
    assert.match(
      text,
      new RegExp(
        `DUP   ← 10\\.0\\.0\\.2:40000\\s+duplicate CON GET MID ${res.messageId}: answered again with the stored reply`,
      ),
    );
    assert.equal(t.summary().duplicates, 1);
  });

  it('tells a separate response (empty ACK first) from a piggybacked one', async () => {
    const pair = memoryPair((s) => {
      s.get('/slow', () => new Promise((r) => setTimeout(() => r('late'), 80)));
      s.get('/fast', () => 'now');
    }, 20);
    const out = sink();
    const t = track(startTrace({ format: 'text', out: out.stream, color: false }));
    const slow = await pair.get('slow');
    const fast = await pair.get('fast');
    await settle();
    t.stop();
    const text = out.text();
    assert.equal(slow.piggybacked, false);
    assert.equal(fast.piggybacked, true);
    assert.match(text, new RegExp(`ACK Empty  MID ${slow.messageId}  no token  \\(4 B\\)`));
    assert.match(
      text,
      new RegExp(
        `2\\.05 Content matched token ${slow.token.toString('hex')}: separate response \\(MID \\d+, request MID ${slow.messageId}\\)`,
      ),
    );
    assert.match(
      text,
      new RegExp(`CON 2\\.05 Content  MID ${slow.message.messageId}  token ${slow.token.toString('hex')}`),
    );
    assert.match(
      text,
      new RegExp(
        `2\\.05 Content matched token ${fast.token.toString('hex')}: piggybacked on the ACK of MID ${fast.messageId}`,
      ),
    );
  });

  it('shows an RST for a CoAP ping', async () => {
    const net = new MemoryNetwork();
    const a = new Endpoint(net.createTransport('10.0.0.1', 5683));
    const b = new Endpoint(net.createTransport('10.0.0.2', 40000));
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    a.handler = () => null;
    const out = sink();
    const t = track(startTrace({ format: 'text', out: out.stream, color: false }));
    await b.ping({ address: '10.0.0.1', port: 5683, family: 'IPv4', key: '10.0.0.1%5683' });
    await settle();
    t.stop();
    assert.match(out.text(), /RST {3}→ 10\.0\.0\.2:40000\s+reset CON Empty MID \d+: CoAP ping/);
    assert.match(out.text(), /CoAP {2}← 10\.0\.0\.1:5683\s+RST Empty {2}MID \d+ {2}no token {2}\(4 B\)/);
  });
});

describe('trace: JSON lines', () => {
  it('writes one parseable JSON object per event, Buffers as hex', async () => {
    const pair = memoryPair((s) => s.get('/j', () => 'json'));
    let dropped = false;
    pair.net.conditions.drop = () => {
      if (dropped) return false;
      dropped = true;
      return true;
    };
    const out = sink();
    const t = track(startTrace({ format: 'json', out: out.stream, color: false }));
    const res = await pair.get('j');
    await settle();
    t.stop();
    const events = out
      .text()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(events.length >= 5);
    for (const e of events) {
      assert.equal(typeof e.t, 'number');
      assert.equal(typeof e.event, 'string');
    }
    const sent = events.filter((e) => e.event === 'message:sent');
    const req = sent.find((e) => (e.coap as { messageId: number }).messageId === res.messageId);
    assert.ok(req, 'request event');
    assert.match(req.data as string, /^[0-9a-f]+$/);
    assert.equal((req.coap as { token: string }).token, res.token.toString('hex'));
    assert.equal((req.coap as { codeText: string }).codeText, 'GET');
    assert.deepEqual((req.coap as { options: unknown[] }).options, [
      { number: 11, name: 'Uri-Path', value: '"j"' },
    ]);
    const retx = events.find((e) => e.event === 'message:retransmitted');
    assert.ok(retx);
    assert.equal(retx.messageId, res.messageId);
    assert.equal(retx.nextTimeoutMs, 120);
    const matched = events.find((e) => e.event === 'exchange:matched');
    assert.equal(matched?.piggybacked, true);
    assert.equal(matched?.token, res.token.toString('hex'));
  });
});

describe('trace: coaps (DTLS 1.2 PSK) on loopback', () => {
  it('renders each flight, the cookie, the suite and the DTLS bytes of every CoAP message', async () => {
    const server = new CoapServer();
    server.post('/logs', () => ({ code: '2.03' }));
    const transport = await DtlsServerTransport.create({
      host: '127.0.0.1',
      port: 0,
      psk: { identity: 'trace-test', key: 'secret-psk' },
    });
    await server.listen(transport);
    const port = transport.localAddress().port;
    const client = new CoapClient({ psk: { identity: 'trace-test', key: 'secret-psk' }, preferFamily: 4 });
    cleanups.push(
      () => client.close(),
      () => server.close(),
    );
    const key = `127.0.0.1%${port}`;
    const out = sink();
    const t = track(
      startTrace({
        format: 'text',
        out: out.stream,
        color: false,
        names: { [key]: 'cloud' },
        // The client's view of the wire only.
        filter: (_ch, ev) => {
          const p = (ev as { peer?: unknown }).peer;
          if (p === undefined) return true;
          return (typeof p === 'string' ? p : (p as { key: string }).key) === key;
        },
      }),
    );
    const res = await client.post(`coaps://localhost:${port}/logs`, {
      payload: '{"msg":"hello"}',
      contentFormat: 'json',
      timeout: 10_000,
    });
    await settle();
    t.stop();
    const text = out.text();
    assert.equal(res.codeText, '2.03 Valid');
    const flights = [
      /DTLS {2}→ cloud\s+client flight: ClientHello {2}\(1 record, 102 B/,
      /DTLS {2}← cloud\s+server flight: HelloVerifyRequest {2}\(1 record, 60 B/,
      /DTLS {2}→ cloud\s+client flight: ClientHello {2}\(1 record, 134 B/,
      /DTLS {2}← cloud\s+server flight: ServerHello, ServerHelloDone {2}\(2 records/,
      /DTLS {2}→ cloud\s+client flight: ClientKeyExchange, ChangeCipherSpec, Finished {2}\(3 records/,
      /DTLS {2}← cloud\s+server flight: ChangeCipherSpec, Finished {2}\(2 records/,
    ];
    let at = 0;
    for (const f of flights) {
      const m = f.exec(text.slice(at));
      assert.ok(m, `flight ${f} in order`);
      at += m.index + m[0].length;
    }
    assert.match(text, /HelloVerifyRequest: message_seq 0, 35 B\n\s+cookie: [0-9a-f]{16}… \(32 B\)/);
    assert.match(text, /PSK identity: "trace-test"/);
    assert.match(text, /chosen suite: TLS_PSK_WITH_AES_128_CCM_8/);
    assert.match(text, /handshake\(22\) epoch 1 seq 0: 13 hdr \+ 24 \+ 16 nonce\/tag = 53 B/);
    assert.match(text, /handshake done in .*secure channel up/);
    // The POST was queued during the handshake, then sent in an ApplicationData record.
    const mid = res.messageId;
    assert.match(text, new RegExp(`CoAP  → cloud\\s+CON POST  MID ${mid}`));
    assert.match(text, /queued: it leaves in a DTLS ApplicationData record once the session is up/);
    const carried = text.match(
      new RegExp(
        `ApplicationData epoch 1 seq \\d+ carrying the queued CON POST MID ${mid}\\n\\s+IPv4 20 \\+ UDP 8 \\+ DTLS 29 \\+ CoAP 4 hdr \\+ 8 token \\+ (\\d+) opts \\+ 1\\+15 payload = (\\d+) B`,
      ),
    );
    assert.ok(carried, 'application data record carrying the queued POST');
    assert.equal(Number(carried[2]), 20 + 8 + 13 + 16 + 4 + 8 + Number(carried[1]) + 1 + 15);
    assert.match(
      text,
      new RegExp(
        `CoAP  ← cloud\\s+ACK 2\\.03 Valid  MID ${mid}[^\\n]*\\n\\s+in DTLS ApplicationData record epoch 1 seq \\d+ \\(TLS_PSK_WITH_AES_128_CCM_8\\)\\n\\s+IPv4 20 \\+ UDP 8 \\+ DTLS 29 \\+ CoAP 4 hdr \\+ 8 token = 69 B`,
      ),
    );
    assert.match(text, /piggybacked on the ACK of MID/);
  });
});

describe('trace: DTLS details', () => {
  it('shows handshake fragmentation (offset..end of length) and the record layout', async () => {
    const out = sink();
    const t = track(startTrace({ format: 'text', out: out.stream, color: false }));
    const frag = (fragmentOffset: number, fragmentLength: number, seq: number) => ({
      peer: '192.0.2.9%5684',
      role: 'client',
      type: 22,
      typeName: 'handshake',
      epoch: 0,
      seq,
      length: 12 + fragmentLength,
      handshake: [
        { type: 1, typeName: 'client_hello', length: 120, messageSeq: 1, fragmentOffset, fragmentLength },
      ],
    });
    dc.channel('coapkit:dtls:record:sent').publish(frag(0, 60, 4));
    dc.channel('coapkit:dtls:record:sent').publish(frag(60, 60, 5));
    await settle();
    t.stop();
    const text = out.text();
    assert.match(
      text,
      /DTLS {2}→ 192\.0\.2\.9:5684\s+client flight: ClientHello, ClientHello {2}\(2 records, 170 B/,
    );
    assert.match(
      text,
      /handshake\(22\) epoch 0 seq 4: 13 hdr \+ 72 = 85 B\n\s+ClientHello: message_seq 1, fragment 0\.\.60 of 120 B/,
    );
    assert.match(
      text,
      /epoch 0 seq 5: 13 hdr \+ 72 = 85 B\n\s+ClientHello: message_seq 1, fragment 60\.\.120 of 120 B/,
    );
    assert.equal(t.summary().dtlsRecords, 2);
  });

  it('shows a failed handshake (wrong PSK)', async () => {
    const server = new CoapServer();
    server.get('/x', () => 'x');
    const transport = await DtlsServerTransport.create({
      host: '127.0.0.1',
      port: 0,
      psk: { identity: 'dev', key: 'right key' },
      handshakeTimeoutMs: 3000,
    });
    await server.listen(transport);
    const port = transport.localAddress().port;
    const client = new CoapClient({
      psk: { identity: 'dev', key: 'wrong key' },
      dtls: { handshakeTimeoutMs: 3000 },
    });
    cleanups.push(
      () => client.close(),
      () => server.close(),
    );
    const out = sink();
    const t = track(startTrace({ format: 'text', out: out.stream, color: false }));
    await assert.rejects(client.get(`coaps://127.0.0.1:${port}/x`, { timeout: 5000 }));
    await settle();
    t.stop();
    assert.match(out.text(), /DTLS {4}127\.0\.0\.1:\d+\s+handshake failed \(client\): .+/);
    assert.match(
      out.text(),
      /DTLS {2}← 127\.0\.0\.1:\d+\s+server flight: Alert (bad_record_mac|decrypt_error|handshake_failure) {2}\(1 record/,
    );
    assert.match(out.text(), /alert\(21\) epoch 0 seq \d+: 13 hdr \+ 2 = 15 B\n\s+level fatal/);
  });
});
