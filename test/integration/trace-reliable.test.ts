/**
 * `--trace` over RFC 8323 transports against `coapkit serve --tcp-port/--ws-port`: what
 * is on the wire, in RFC 8323 words. No Type, no Message ID, no ACK or retransmission
 * (those are RFC 7252 datagram words); frames with their length, whose sum is the byte
 * count a TCP relay between the two saw; signaling messages by name (7.01 CSM, 7.02 Ping,
 * 7.03 Pong).
 */
import * as assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { until } from '../helpers/timing.js';
import { LOOPBACK_PORTS, runCli, type ServeProcess, startServe } from './cli-helpers.js';

let srv: ServeProcess;
let tcpPort = 0;
let wsPort = 0;

before(async () => {
  srv = await startServe([...LOOPBACK_PORTS, '--tcp-port', '0', '--ws-port', '0']);
  tcpPort = Number(/coap\+tcp:\/\/127\.0\.0\.1:(\d+)/.exec(srv.banner)?.[1]);
  wsPort = Number(/coap\+ws:\/\/127\.0\.0\.1:(\d+)/.exec(srv.banner)?.[1]);
  assert.ok(tcpPort > 0 && wsPort > 0, srv.banner);
});
after(async () => {
  await srv?.stop();
});

/** A TCP relay to `port` that counts the bytes of each direction. */
async function countingRelay(port: number) {
  const bytes = { up: 0, down: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inside) => {
    const outside = net.connect(port, '127.0.0.1');
    for (const s of [inside, outside]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    inside.on('data', (d: Buffer) => {
      bytes.up += d.length;
      outside.write(d);
    });
    outside.on('data', (d: Buffer) => {
      bytes.down += d.length;
      inside.write(d);
    });
    inside.on('end', () => outside.end());
    outside.on('end', () => inside.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    bytes,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** What no RFC 8323 trace may say: RFC 7252 datagram vocabulary and UDP sizes. */
function assertNoUdpWords(trace: string): void {
  for (const word of [
    /\bCON\b/,
    /\bNON\b/,
    /\bACK\b/,
    /\bRST\b/,
    /\bMID\b/,
    /retransmi/i,
    /piggybacked/,
    /UDP 8/,
  ]) {
    assert.doesNotMatch(trace, word, trace);
  }
}

/** Frame sizes the trace prints, per direction. */
function frameBytes(trace: string, scheme: string): { up: number; down: number; frames: number } {
  const out = { up: 0, down: 0, frames: 0 };
  let dir: 'up' | 'down' | undefined;
  for (const line of trace.split('\n')) {
    const arrow = / (→|←) \S+ {2}/.exec(line);
    if (arrow) dir = arrow[1] === '→' ? 'up' : 'down';
    const m = new RegExp(`^\\s+${scheme.replace('+', '\\+')} (?:frame|message) (\\d+) B = `).exec(line);
    if (m && dir) {
      out[dir] += Number(m[1]);
      out.frames++;
    }
  }
  return out;
}

test('coap+tcp: CSM both ways, the request and response frames, sizes that add up to the bytes on the wire', async () => {
  const relay = await countingRelay(tcpPort);
  try {
    const r = await runCli(['get', `coap+tcp://127.0.0.1:${relay.port}/time`, '--trace'], {
      timeoutMs: 30_000,
    });
    assert.equal(r.code, 0, r.stderr);
    const trace = r.stderr;
    assertNoUdpWords(trace);
    assert.match(trace, /SIG +→ \S+ +7\.01 CSM {2}no options \(Max-Message-Size 1152, no BERT\) {2}\(2 B\)/);
    assert.match(trace, /SIG +← \S+ +7\.01 CSM/);
    assert.match(trace, /CoAP +→ \S+ +GET {2}token [0-9a-f]+ {2}\(15 B\)/);
    assert.match(trace, /coap\+tcp frame 15 B = 2 hdr \(Len 5, TKL 8, Code\) \+ 8 token \+ 5 opts/);
    assert.match(trace, /CoAP +← \S+ +2\.05 Content {2}token [0-9a-f]+ {2}\(\d+ B\)/);
    assert.match(trace, /coap\+tcp frame \d+ B = 3 hdr \(Len 13 \+ 1 B Extended Length: \d+, TKL 8, Code\)/);
    assert.match(trace, /matched token [0-9a-f]+: response over coap\+tcp, RTT/);
    // Every byte each way is in a frame the trace printed (the connection closes after the exchange).
    const traced = frameBytes(trace, 'coap+tcp');
    assert.equal(traced.frames, 4, trace);
    await until(() => relay.bytes.up >= traced.up && relay.bytes.down >= traced.down, 'the relayed bytes');
    assert.deepEqual({ up: traced.up, down: traced.down }, relay.bytes, trace);
  } finally {
    relay.close();
  }
});

test('coap+tcp ping: 7.02 Ping and 7.03 Pong with their token', async () => {
  const r = await runCli(['ping', `coap+tcp://127.0.0.1:${tcpPort}`, '--trace'], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  assertNoUdpWords(r.stderr);
  const ping = /SIG +→ \S+ +7\.02 Ping {2}token ([0-9a-f]+) {2}\(\d+ B\)/.exec(r.stderr);
  assert.ok(ping, r.stderr);
  assert.match(r.stderr, new RegExp(`SIG +← \\S+ +7\\.03 Pong {2}token ${ping[1]} {2}\\(\\d+ B\\)`));
});

test('coap+ws: WebSocket messages (Len 0) and the WebSocket frame header, masked from the client', async () => {
  const r = await runCli(['get', `coap+ws://127.0.0.1:${wsPort}/time`, '--trace'], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  assertNoUdpWords(r.stderr);
  assert.match(r.stderr, /SIG +→ \S+ +7\.01 CSM/);
  assert.match(
    r.stderr,
    /coap\+ws message 15 B = 2 hdr \(Len 0, TKL 8, Code\) \+ 8 token \+ 5 opts; in a WebSocket binary frame: \+ 6 B frame header \(4 B mask: client to server\)/,
  );
  assert.match(r.stderr, /coap\+ws message \d+ B = 2 hdr \(Len 0, TKL 8, Code\) .* \+ 2 B frame header$/m);
  assert.equal(frameBytes(r.stderr, 'coap+ws').frames, 4, r.stderr);
});

test('--trace=json: frame events with the frame decoded (signaling named)', async () => {
  const r = await runCli(['get', `coap+tcp://127.0.0.1:${tcpPort}/time`, '--trace=json'], {
    timeoutMs: 30_000,
  });
  assert.equal(r.code, 0, r.stderr);
  const events = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { event: string; scheme?: string; frameSummary?: { codeText: string } });
  const frames = events.filter((e) => e.event.startsWith('frame:'));
  assert.deepEqual(
    frames.map((e) => [e.event, e.scheme, e.frameSummary?.codeText]),
    [
      ['frame:sent', 'coap+tcp', '7.01 CSM'],
      ['frame:sent', 'coap+tcp', 'GET'],
      ['frame:received', 'coap+tcp', '7.01 CSM'],
      ['frame:received', 'coap+tcp', '2.05 Content'],
    ],
  );
});
