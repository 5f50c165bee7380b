/**
 * The console's CoAP-over-WebSockets proxy without a browser: a `ws` client
 * speaks to startConsole() in this process, which forwards to a
 * `coapkit serve`. CSM first, Ping/Pong, a GET through Proxy-Uri with its
 * ladder steps, block-wise progress, errors as 4.xx/5.xx, Abort on a malformed
 * message, and the Host/Origin checks of the upgrade.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import {
  decodeWsMessage,
  encodeWsMessage,
  Opt,
  readUint,
  SignalCode,
  type WsMessage,
} from '../../src/console/frame.js';
import { type RunningConsole, startConsole } from '../../src/console/server.js';
import { LossyProxy } from '../helpers/lossy-proxy.js';
import { makePki } from '../helpers/pki.js';
import { until } from '../helpers/timing.js';
import { LOOPBACK_PORTS, runInProcess, type ServeProcess, startServe } from './cli-helpers.js';

const enc = new TextEncoder();

interface Peer {
  ws: WebSocket;
  frames: WsMessage[];
  json: Array<Record<string, unknown>>;
}

async function open(con: RunningConsole, headers: Record<string, string> = {}): Promise<Peer> {
  const origin = `http://127.0.0.1:${con.port}`;
  const ws = new WebSocket(`ws://127.0.0.1:${con.port}/.well-known/coap`, 'coap', {
    headers: { origin, ...headers },
  });
  const p: Peer = { ws, frames: [], json: [] };
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) p.frames.push(decodeWsMessage(data));
    else p.json.push(JSON.parse(data.toString()) as Record<string, unknown>);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return p;
}

function request(p: Peer, token: number, code: number, target: string, payload = new Uint8Array(0)): void {
  p.ws.send(
    encodeWsMessage({
      code,
      token: Uint8Array.of(token),
      options: [{ number: Opt.ProxyUri, value: enc.encode(target) }],
      payload,
    }),
  );
}

/** The side channel's certificate-mode credentials message (PEM texts). */
function sendCert(p: Peer, cert: string, key: string, ca: string): void {
  p.ws.send(JSON.stringify({ type: 'credentials', mode: 'cert', cert, key, ca }));
}

async function response(p: Peer, token: number): Promise<WsMessage> {
  await until(
    () => p.frames.some((f) => f.token[0] === token && f.code >> 5 !== 7),
    `response ${token}`,
    30_000,
  );
  return p.frames.find((f) => f.token[0] === token && f.code >> 5 !== 7)!;
}

describe('console proxy over WebSockets', () => {
  let serve: ServeProcess;
  let con: RunningConsole;
  let base: string;

  before(async () => {
    serve = await startServe([...LOOPBACK_PORTS, '--tcp-port', '0', '--ws-port', '0']);
    base = `coap://127.0.0.1:${serve.port}`;
    con = await startConsole({ host: '127.0.0.1', port: 0, staticDir: '/nonexistent' });
  });
  after(async () => {
    await con?.close();
    await serve?.stop();
  });

  it('starts with a CSM, answers Ping with Pong', async () => {
    const p = await open(con);
    await until(() => p.frames.length > 0, 'CSM');
    const csm = p.frames[0]!;
    assert.equal(csm.code, SignalCode.CSM);
    const mms = csm.options.find((o) => o.number === Opt.MaxMessageSize);
    assert.ok(mms && readUint(mms.value) > 1024 * 1024);
    p.ws.send(
      encodeWsMessage({
        code: SignalCode.Ping,
        token: Uint8Array.of(7),
        options: [],
        payload: new Uint8Array(0),
      }),
    );
    await until(() => p.frames.some((f) => f.code === SignalCode.Pong), 'Pong');
    assert.equal(p.frames.find((f) => f.code === SignalCode.Pong)!.token[0], 7);
    p.ws.close();
  });

  it('forwards PUT and GET to the Proxy-Uri and streams the ladder steps', async () => {
    const p = await open(con);
    request(p, 1, 3, `${base}/ws-value`, enc.encode('over websockets'));
    assert.equal((await response(p, 1)).code, 65 /* 2.01 */);
    request(p, 2, 1, `${base}/ws-value`);
    const r = await response(p, 2);
    assert.equal(r.code, 69);
    assert.equal(new TextDecoder().decode(r.payload), 'over websockets');
    const steps = p.json.filter((j) => j.token === '02' && j.type === 'step');
    assert.ok(
      steps.some((s) => s.dir === 'out' && /^CON GET MID \d+$/.test(String(s.label))),
      JSON.stringify(steps),
    );
    assert.ok(steps.some((s) => s.dir === 'in' && /^ACK 2\.05 Content/.test(String(s.label))));
    assert.ok(p.json.some((j) => j.token === '02' && j.type === 'end' && j.code === 69));
    p.ws.close();
  });

  it('puts the DNS lookup of a host name on the ladder', async () => {
    const p = await open(con);
    request(p, 11, 1, `coap://localhost:${serve.port}/ws-value`);
    await response(p, 11);
    const dns = p.json.find((j) => j.token === '0b' && j.type === 'step' && j.kind === 'dns');
    assert.ok(dns, JSON.stringify(p.json.filter((j) => j.token === '0b')));
    assert.match(String(dns.label), /^DNS localhost → (127\.0\.0\.1|::1) \(\d+\.\d ms\)$/);
    // The resolved address is followed: the messages to it are on the same ladder.
    assert.ok(p.json.some((j) => j.token === '0b' && j.type === 'step' && /^CON GET/.test(String(j.label))));
    p.ws.close();
  });

  it('draws a retransmission when the first CON is lost', async () => {
    let dropped = false;
    const lossy = await LossyProxy.create({
      target: serve.port,
      drop: (d) => {
        if (d.dir !== 'up' || dropped) return false;
        dropped = true;
        return true;
      },
    });
    try {
      const p = await open(con);
      request(p, 10, 1, `coap://127.0.0.1:${lossy.port}/ws-value`);
      assert.equal((await response(p, 10)).code, 69);
      const steps = p.json.filter((j) => j.token === '0a' && j.type === 'step');
      const retx = steps.find((s) => s.kind === 'retransmit');
      assert.ok(retx, JSON.stringify(steps));
      assert.match(String(retx.label), /^CON GET MID \d+ \(retransmission 1\)$/);
      assert.match(String(retx.detail), /next timeout \d+ ms/);
      p.ws.close();
    } finally {
      await lossy.close();
    }
  });

  it('reports Block1 progress up to the whole body', async () => {
    const p = await open(con);
    const body = randomBytes(20 * 1024);
    request(p, 3, 3, `${base}/ws-big`, body);
    assert.ok([65, 68].includes((await response(p, 3)).code));
    const progress = p.json.filter((j) => j.token === '03' && j.type === 'progress');
    const last = progress[progress.length - 1]!;
    assert.equal(last.direction, 'upload');
    assert.equal(last.bytes, body.length);
    assert.equal(last.totalBytes, body.length);
    p.ws.close();
  });

  it('forwards to coap+tcp:// and coap+ws:// too (RFC 8323), without Type or Message ID on the ladder', async () => {
    const p = await open(con);
    const tcp = /coap\+tcp:\/\/\S+/.exec(serve.banner)?.[0];
    const ws = /coap\+ws:\/\/\S+/.exec(serve.banner)?.[0];
    assert.ok(tcp && ws, serve.banner);
    request(p, 8, 1, `${tcp}/ws-value`);
    assert.equal(new TextDecoder().decode((await response(p, 8)).payload), 'over websockets');
    const steps = p.json.filter((j) => j.token === '08' && j.type === 'step');
    assert.ok(
      steps.some((s) => s.dir === 'out' && s.label === 'GET'),
      JSON.stringify(steps),
    );
    assert.ok(
      steps.some((s) => s.dir === 'in' && s.label === '2.05 Content'),
      JSON.stringify(steps),
    );
    request(p, 9, 1, `${ws.replace(/\/\.well-known\/coap$/, '')}/ws-value`);
    assert.equal(new TextDecoder().decode((await response(p, 9)).payload), 'over websockets');
    p.ws.close();
  });

  it('answers what it cannot forward with 4.xx/5.xx and a diagnostic', async () => {
    const p = await open(con);
    request(p, 4, 1, 'http://example.com/');
    assert.equal((await response(p, 4)).code, 165 /* 5.05 */);
    request(p, 5, 1, 'coaps://127.0.0.1/x');
    const noKey = await response(p, 5);
    assert.equal(noKey.code, 128 /* 4.00 */);
    assert.match(new TextDecoder().decode(noKey.payload), /PSK/);
    p.ws.send(encodeWsMessage({ code: 1, token: Uint8Array.of(6), options: [], payload: new Uint8Array(0) }));
    assert.equal((await response(p, 6)).code, 132 /* 4.04: no resources of its own */);
    p.ws.close();
  });

  it('aborts on a malformed message (7.05)', async () => {
    const p = await open(con);
    const closed = new Promise<number>((r) => p.ws.once('close', (code) => r(code)));
    p.ws.send(Uint8Array.of(0x10, 0x01));
    assert.equal(await closed, 1002);
    assert.ok(p.frames.some((f) => f.code === SignalCode.Abort));
  });

  it('refuses a cross-site upgrade and a rebound Host', async () => {
    await assert.rejects(open(con, { origin: 'https://evil.example' }), /403/);
    await assert.rejects(
      open(con, { host: `attacker.example:${con.port}`, origin: `http://attacker.example:${con.port}` }),
      /403/,
    );
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const req = httpRequest(
        { host: '127.0.0.1', port: con.port, path: '/', headers: { host: 'attacker.example' } },
        (res) => {
          res.resume();
          resolve(res.statusCode);
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 403);
  });
});

describe('coapkit console command line', () => {
  it('--help describes the command and its flags', async () => {
    const r = await runInProcess(['console', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.out, /^Usage: coapkit console \[--port 8080\] \[--host ADDR\]/);
    for (const flag of ['--port N', '--host ADDR', '--token TOKEN', '-q, --quiet'])
      assert.ok(r.out.includes(flag), flag);
    const main = await runInProcess(['--help']);
    assert.match(main.out, /coapkit console \[--port 8080\]/);
  });

  it('refuses bad flags with exit 64', async () => {
    for (const args of [['--port', '70000'], ['--token', 'short'], ['--port', 'x'], ['extra']]) {
      const r = await runInProcess(['console', ...args]);
      assert.equal(r.code, 64, args.join(' '));
    }
  });

  it('exits 3 when the port is taken', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as { port: number }).port;
    try {
      const r = await runInProcess(['console', '--port', String(port)]);
      assert.equal(r.code, 3);
      assert.match(r.stderr, /cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/);
      assert.match(r.stderr, /hint: choose another port with --port/);
    } finally {
      busy.close();
    }
  });
});

describe('console proxy: certificate credentials over TLS (coaps+tcp://, coaps+ws://)', () => {
  const pki = makePki();
  let serve: ServeProcess;
  let con: RunningConsole;

  before(async () => {
    serve = await startServe([
      ...LOOPBACK_PORTS,
      '--cert',
      pki.file('serverCert'),
      '--key',
      pki.file('serverKey'),
      '--tls-port',
      '0',
      '--wss-port',
      '0',
    ]);
    con = await startConsole({ host: '127.0.0.1', port: 0, staticDir: '/nonexistent' });
  });
  after(async () => {
    await con?.close();
    await serve?.stop();
    rmSync(pki.dir, { recursive: true, force: true });
  });

  it("the page's CA verifies the server's TLS certificate; without it the system's CAs refuse it", async () => {
    const tls = /coaps\+tcp:\/\/\S+/.exec(serve.banner)?.[0];
    const wss = /coaps\+ws:\/\/\S+/.exec(serve.banner)?.[0];
    assert.ok(tls && wss, serve.banner);
    const tlsTime = `${tls.replace(/\/$/, '')}/time`;
    const p = await open(con);
    /** The page's certificate fields: this client's certificate and key, and CA. */
    const certCredentials = (ca: string) => sendCert(p, pki.clientCert, pki.clientKey, ca);
    // PSK mode (no certificate fields): the system's CAs do not know this server's CA.
    request(p, 1, 1, tlsTime);
    const refused = await response(p, 1);
    assert.equal(refused.code, 162 /* 5.02 */);
    assert.match(new TextDecoder().decode(refused.payload), /certificate/i);
    certCredentials(pki.ca);
    request(p, 2, 1, tlsTime);
    const ok = await response(p, 2);
    assert.equal(ok.code, 69, new TextDecoder().decode(ok.payload));
    request(p, 3, 1, `${wss.replace(/\/$/, '')}/time`);
    assert.equal((await response(p, 3)).code, 69);
    const answer = p.json.find((j) => j.type === 'credentials');
    assert.match(
      String(answer?.summary),
      /^certificate CN=device-1; server checked against CN=coapkit test CA$/,
    );
    // Another CA: refused again.
    const other = makePki();
    try {
      certCredentials(other.ca);
      request(p, 4, 1, tlsTime);
      const wrong = await response(p, 4);
      assert.equal(wrong.code, 162);
      assert.match(new TextDecoder().decode(wrong.payload), /certificate/i);
    } finally {
      rmSync(other.dir, { recursive: true, force: true });
    }
    p.ws.close();
  });
});
