/**
 * RFC 8323 transports: connection bounds (global, per address), the CSM and
 * idle timeouts, coaps+tcp:// with certificates and with TLS 1.2 PSK,
 * coaps+ws://, and the two WebSocket clients (built-in where Node has it, `ws`).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { encodeCsm, encodeFrame } from '../../src/codec/reliable.js';
import { Endpoint } from '../../src/endpoint/endpoint.js';
import { enableObserve } from '../../src/observe/server.js';
import { CoapServer } from '../../src/server/server.js';
import { TcpTransport } from '../../src/transport/tcp.js';
import { TlsTransport } from '../../src/transport/tls.js';
import { makePeer } from '../../src/transport/transport.js';
import { WsTransport } from '../../src/transport/ws.js';
import { opensslSelfSigned } from '../helpers/pki.js';
import { findProgram } from '../helpers/proc.js';
import { until } from '../helpers/timing.js';

const connect = async (port: number) => {
  const s = net.connect({ host: '127.0.0.1', port });
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  s.on('error', () => {});
  await new Promise<void>((r) => s.once('connect', () => r()));
  return { s, closed };
};

describe('connection bounds and timeouts', { timeout: 60_000 }, () => {
  it('at most maxConnectionsPerAddress from one address, maxConnections in all; given back on close', async () => {
    const server = new CoapServer();
    const t = await TcpTransport.create({
      host: '127.0.0.1',
      port: 0,
      maxConnections: 5,
      maxConnectionsPerAddress: 3,
    });
    await server.listen(t);
    const port = t.localAddress().port;
    try {
      const socks = [await connect(port), await connect(port), await connect(port)];
      await until(() => t.connectionCount === 3, 'three accepted');
      const fourth = await connect(port);
      await fourth.closed; // refused: the per-address share is used up
      assert.equal(t.connectionCount, 3);
      assert.equal(t.connectionsRefused, 1);
      socks[0]!.s.destroy();
      await until(() => t.connectionCount === 2, 'one given back');
      const again = await connect(port);
      await until(() => t.connectionCount === 3, 'accepted again');
      for (const c of [...socks, again]) c.s.destroy();
    } finally {
      await server.close();
    }
  });

  it('a peer that sends no CSM is aborted after csmTimeoutMs; an idle one released after idleTimeoutMs', async () => {
    const server = new CoapServer();
    const t = await TcpTransport.create({
      host: '127.0.0.1',
      port: 0,
      csmTimeoutMs: 200,
      idleTimeoutMs: 400,
    });
    await server.listen(t);
    const port = t.localAddress().port;
    try {
      const silent = await connect(port);
      let got = Buffer.alloc(0);
      silent.s.on('data', (d) => {
        got = Buffer.concat([got, d]);
      });
      await silent.closed;
      assert.ok(got.includes(Buffer.from('no CSM received')), got.toString('hex'));
      const idle = await connect(port);
      let rx = Buffer.alloc(0);
      idle.s.on('data', (d) => {
        rx = Buffer.concat([rx, d]);
      });
      idle.s.write(encodeCsm(undefined, false, false));
      await idle.closed;
      assert.ok(rx.includes(Buffer.from([0x00, 0xe4])), `Release (7.04) sent: ${rx.toString('hex')}`);
      assert.equal(t.connectionCount, 0);
    } finally {
      await server.close();
    }
  });

  it('a peer that sends requests but never reads is cut off at maxWriteBuffer', async () => {
    const server = new CoapServer();
    server.get('/kb', () => 'k'.repeat(1000));
    const t = await TcpTransport.create({ host: '127.0.0.1', port: 0, maxWriteBuffer: 64 * 1024 });
    await server.listen(t);
    try {
      const { s, closed } = await connect(t.localAddress().port);
      s.pause(); // never reads
      const req = encodeFrame({
        code: 1,
        token: Buffer.from([1]),
        options: [{ number: 11, value: Buffer.from('kb') }],
      });
      s.write(encodeCsm(undefined, false, false));
      let gone = false;
      void closed.then(() => {
        gone = true;
      });
      // At most 64 MB of responses asked for (bounded loop); the kernel buffers take a few MB.
      for (let i = 0; i < 64 && !gone; i++) {
        s.write(Buffer.concat(Array.from({ length: 1000 }, () => req)));
        await new Promise((r) => setImmediate(r));
      }
      await until(() => gone || t.connectionCount === 0, 'connection closed by the server', 30_000);
      assert.equal(t.connectionCount, 0);
    } finally {
      await server.close();
    }
  });

  it('observers of a closed connection are dropped (at the latest by the liveness probe)', async () => {
    const server = new CoapServer();
    const observe = enableObserve(server, { staleAfterMs: 300 });
    server.get('/n', () => 'n', { obs: true });
    const t = await TcpTransport.create({ host: '127.0.0.1', port: 0 });
    await server.listen(t);
    const c = new CoapClient();
    try {
      const obs = c.observe(`coap+tcp://127.0.0.1:${t.localAddress().port}/n`);
      await obs.registered;
      assert.equal(observe.observerCount('/n'), 1);
      await c.close();
      await until(() => t.connectionCount === 0, 'connection closed');
      observe.notify('/n'); // a NON notification to a closed connection goes nowhere
      await until(() => observe.observerCount('/n') === 0, 'observer removed', 20_000);
    } finally {
      await server.close();
    }
  });

  it('a client transport bounds its outgoing connections too', async () => {
    const t = await TcpTransport.create({ maxConnections: 1 });
    const ep = new Endpoint(t);
    const errors: string[] = [];
    t.attach({
      message: () => {},
      peerError: (_p, e) => errors.push(e.message),
    });
    t.send(Buffer.from([0x40, 1, 0, 1]), makePeer('127.0.0.1', 1));
    t.send(Buffer.from([0x40, 1, 0, 2]), makePeer('127.0.0.1', 2));
    assert.match(errors.join(), /too many connections/);
    await ep.close();
  });
});

const haveOpenssl = findProgram('openssl') !== undefined;
describe('TLS and secure WebSockets', {
  timeout: 60_000,
  skip: !haveOpenssl && 'openssl not installed',
}, () => {
  let dir = '';
  let cert = '';
  let key = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'coapkit-tls-'));
    opensslSelfSigned(join(dir, 'key.pem'), join(dir, 'cert.pem'));
    cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
    key = readFileSync(join(dir, 'key.pem'), 'utf8');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('coaps+tcp:// with a certificate (by IP and by name), TLS 1.2 and 1.3; refused without the CA', async () => {
    const server = new CoapServer();
    server.get('/who', (req) => `hello ${req.peer.auth?.mode ?? 'anonymous'}`);
    const t = await TlsTransport.create({ host: '127.0.0.1', port: 0, cert, key });
    await server.listen(t);
    const port = t.localAddress().port;
    const c = new CoapClient({ tls: { ca: cert } });
    const c12 = new CoapClient({ tls: { ca: cert }, reliable: {} });
    const bare = new CoapClient();
    try {
      assert.equal((await c.get(`coaps+tcp://127.0.0.1:${port}/who`)).text(), 'hello anonymous');
      assert.equal((await c.get(`coaps+tcp://localhost:${port}/who`)).text(), 'hello anonymous');
      assert.equal((await c12.get(`coaps+tcp://127.0.0.1:${port}/who`)).ok, true);
      await assert.rejects(bare.get(`coaps+tcp://127.0.0.1:${port}/who`), /self-signed|certificate/);
    } finally {
      await Promise.all([c.close(), c12.close(), bare.close()]);
      await server.close();
    }
  });

  it('coaps+tcp:// with a client certificate: the server sees PeerAuth x509', async () => {
    const server = new CoapServer();
    server.get('/who', (req) => `${req.peer.auth?.mode}:${req.peer.auth?.identity}`);
    const t = await TlsTransport.create({
      host: '127.0.0.1',
      port: 0,
      cert,
      key,
      ca: cert,
      requestCert: true,
    });
    await server.listen(t);
    const port = t.localAddress().port;
    const withCert = new CoapClient({ tls: { ca: cert, cert, key } });
    const without = new CoapClient({ tls: { ca: cert } });
    try {
      assert.equal((await withCert.get(`coaps+tcp://127.0.0.1:${port}/who`)).text(), 'x509:localhost');
      await assert.rejects(without.get(`coaps+tcp://127.0.0.1:${port}/who`, { timeout: 10_000 }));
    } finally {
      await Promise.all([withCert.close(), without.close()]);
      await server.close();
    }
  });

  it('coaps+tcp:// with a pre-shared key (TLS 1.2 PSK): the identity reaches the handler', async () => {
    const server = new CoapServer();
    server.get('/who', (req) => `hello ${req.peer.auth?.mode}:${req.peer.identity}`);
    const k = Buffer.from('0123456789abcdef');
    const t = await TlsTransport.create({
      host: '127.0.0.1',
      port: 0,
      psk: { keys: (id) => (id === 'dev1' ? k : undefined) },
    });
    await server.listen(t);
    const port = t.localAddress().port;
    const c = new CoapClient({ psk: { identity: 'dev1', key: k } });
    const wrong = new CoapClient({ psk: { identity: 'dev1', key: Buffer.from('wrong key 123456') } });
    try {
      assert.equal((await c.get(`coaps+tcp://127.0.0.1:${port}/who`)).text(), 'hello psk:dev1');
      await assert.rejects(wrong.get(`coaps+tcp://127.0.0.1:${port}/who`, { timeout: 10_000 }));
    } finally {
      await Promise.all([c.close(), wrong.close()]);
      await server.close();
    }
  });

  it('coaps+ws:// with the `ws` client and, where Node has one, the built-in WebSocket', async () => {
    const server = new CoapServer();
    server.get('/hello', () => 'over wss');
    const t = await WsTransport.create({ host: '127.0.0.1', port: 0, tls: { cert, key } });
    await server.listen(t);
    const port = t.localAddress().port;
    const c = new CoapClient({ tls: { ca: cert } });
    try {
      assert.equal((await c.get(`coaps+ws://localhost:${port}/hello`)).text(), 'over wss');
    } finally {
      await c.close();
      await server.close();
    }
  });

  it('coap+ws:// client (default): a message announced above maxMessageSize closes the connection before it is buffered', async () => {
    // A hand-written WebSocket server: the handshake, a CSM, then a frame header announcing
    // 16 MiB and 64 KiB of it. A client that buffered messages whole would wait for the rest.
    const closed: number[] = [];
    const server = http.createServer();
    const sockets: Duplex[] = [];
    server.on('upgrade', (req, socket) => {
      sockets.push(socket);
      const accept = createHash('sha1')
        .update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest('base64');
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: coap\r\n\r\n`,
      );
      const csm = encodeCsm(undefined, false, true);
      socket.write(Buffer.concat([Buffer.from([0x82, csm.length]), csm]));
      let requested = false;
      socket.on('data', (d: Buffer) => {
        const opcode = d[0]! & 0x0f;
        if (opcode === 0x8 && d.length >= 8) {
          // A masked close frame: the status code is the first two payload bytes, unmasked.
          const mask = d.subarray(2, 6);
          closed.push(((d[6]! ^ mask[0]!) << 8) | (d[7]! ^ mask[1]!));
        } else if (opcode === 0x2 && !requested && d.length > 10) {
          requested = true;
          const header = Buffer.from([0x82, 127, 0, 0, 0, 0, 0x01, 0, 0, 0]);
          socket.write(Buffer.concat([header, Buffer.alloc(64 * 1024)]));
        }
      });
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    const ct = await WsTransport.create();
    const ep = new Endpoint(ct);
    try {
      const outcome = await new Promise<string>((resolve) => {
        ep.request(
          makePeer('127.0.0.1', port),
          { code: 1, options: [{ number: 11, value: Buffer.from('hello') }] },
          {
            onResponse: () => {
              resolve('a response');
              return true;
            },
            onError: (e) => resolve(`error: ${e.message}`),
          },
        );
      });
      assert.match(outcome, /^error: /);
      await until(() => closed.length > 0, 'the client closes the WebSocket');
      assert.deepEqual(closed, [1009], 'close code 1009: message too big');
    } finally {
      await ep.close();
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('coap+ws:// through both WebSocket clients', async () => {
    const server = new CoapServer();
    server.get('/hello', () => 'over ws');
    const t = await WsTransport.create({ host: '127.0.0.1', port: 0 });
    await server.listen(t);
    const port = t.localAddress().port;
    const kinds: ('ws' | 'builtin')[] = ['ws'];
    if (typeof globalThis.WebSocket === 'function') kinds.push('builtin');
    try {
      for (const client of kinds) {
        const ct = await WsTransport.create({ client });
        const ep = new Endpoint(ct);
        const got = await new Promise<string>((resolve, reject) => {
          ep.request(
            makePeer('127.0.0.1', port),
            { code: 1, options: [{ number: 11, value: Buffer.from('hello') }] },
            {
              onResponse: (r) => {
                resolve(r.message.payload.toString());
                return true;
              },
              onError: reject,
            },
          );
        });
        assert.equal(got, 'over ws', client);
        await ep.close();
      }
    } finally {
      await server.close();
    }
  });
});
