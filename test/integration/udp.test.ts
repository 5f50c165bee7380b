/**
 * Client and server over real UDP sockets: IPv4, IPv6 (::1) when available,
 * a dual-stack server, host names, separate responses and message sizes.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, test } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { CoapServer } from '../../src/server/server.js';
import { UdpTransport } from '../../src/transport/udp.js';

async function ipv6Available(): Promise<boolean> {
  const s = dgram.createSocket('udp6');
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(0, '::1', () => resolve());
    });
    return true;
  } catch {
    return false;
  } finally {
    try {
      s.close();
    } catch {}
  }
}
const v6 = await ipv6Available();

function makeServer(): CoapServer {
  const server = new CoapServer({ separateResponseDelayMs: 30 });
  server.get('/hello', (req) => `hello ${req.peer.family} ${req.peer.address}`);
  server.get('/slow', async () => {
    await new Promise((r) => setTimeout(r, 100));
    return 'slow';
  });
  server.post('/echo', (req) => ({ payload: req.payload, contentFormat: 42 }));
  return server;
}

let client: CoapClient;
before(() => {
  client = new CoapClient({ transmission: { ackTimeout: 200 } });
});
after(async () => {
  await client.close();
});

test('IPv4 loopback: piggybacked, separate and large responses', async () => {
  const server = makeServer();
  const ep = await server.listen({ host: '127.0.0.1', port: 0 });
  const base = `coap://127.0.0.1:${ep.transport.localAddress().port}`;
  try {
    assert.match((await client.get(`${base}/hello`)).text(), /^hello IPv4 127\.0\.0\.1$/);
    const slow = await client.get(`${base}/slow`);
    assert.equal(slow.text(), 'slow');
    assert.equal(slow.piggybacked, false);
    const big = Buffer.alloc(1024, 0x5a);
    const echoed = await client.post(`${base}/echo`, { payload: big });
    assert.deepEqual(echoed.payload, big);
    assert.equal(server.addresses()[0]!.address, '127.0.0.1');
  } finally {
    await server.close();
  }
});

test('IPv6 loopback [::1]', { skip: v6 ? false : 'no IPv6 loopback' }, async () => {
  const server = makeServer();
  const ep = await server.listen({ host: '::1', port: 0 });
  const base = `coap://[::1]:${ep.transport.localAddress().port}`;
  try {
    assert.equal((await client.get(`${base}/hello`)).text(), 'hello IPv6 ::1');
    assert.equal((await client.get(`${base}/slow`)).text(), 'slow');
    assert.ok((await client.ping(base)) >= 0);
  } finally {
    await server.close();
  }
});

test('a dual-stack server on :: answers IPv4 and IPv6 clients', {
  skip: v6 ? false : 'no IPv6',
}, async () => {
  const server = makeServer();
  const ep = await server.listen({ host: '::', port: 0 });
  const port = ep.transport.localAddress().port;
  try {
    const r4 = await client.get(`coap://127.0.0.1:${port}/hello`);
    assert.match(r4.text(), /127\.0\.0\.1/);
    assert.equal(r4.peer.address, '127.0.0.1');
    const r6 = await client.get(`coap://[::1]:${port}/hello`);
    assert.match(r6.text(), /::1/);
  } finally {
    await server.close();
  }
});

test('host name "localhost" resolves and works', async () => {
  const server = makeServer();
  const ep = await server.listen({ host: v6 ? '::' : '0.0.0.0', port: 0 });
  try {
    const r = await client.get(`coap://localhost:${ep.transport.localAddress().port}/hello`);
    assert.equal(r.codeText, '2.05 Content');
  } finally {
    await server.close();
  }
});

test('many clients in parallel against one server', async () => {
  const server = makeServer();
  const ep = await server.listen({ host: '127.0.0.1', port: 0 });
  const base = `coap://127.0.0.1:${ep.transport.localAddress().port}`;
  const clients = Array.from({ length: 10 }, () => new CoapClient());
  try {
    const rs = await Promise.all(
      clients.flatMap((c, i) =>
        Array.from({ length: 5 }, (_, j) => c.post(`${base}/echo`, { payload: `${i}-${j}` })),
      ),
    );
    assert.deepEqual(
      rs.map((r) => r.text()),
      clients.flatMap((_, i) => Array.from({ length: 5 }, (_, j) => `${i}-${j}`)),
    );
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await server.close();
  }
});

test('UdpTransport: binding errors are NetworkErrors with a hint', async () => {
  const a = await UdpTransport.create({ host: '127.0.0.1', port: 0 });
  try {
    const port = a.localAddress().port;
    await assert.rejects(
      UdpTransport.create({ host: '127.0.0.1', port }),
      (e: Error & { code?: string; hint?: string }) => {
        assert.equal(e.code, 'COAP_ERR_NETWORK');
        assert.match(e.hint ?? '', /another process/);
        return true;
      },
    );
  } finally {
    await a.close();
  }
});
