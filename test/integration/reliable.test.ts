/**
 * RFC 8323 end to end on loopback: CoapServer on TcpTransport / WsTransport,
 * CoapClient with coap+tcp:// and coap+ws:// URIs: GET, PUT, block-wise both
 * ways, observe, ping (7.02/7.03), and connection close failing what is pending.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { enableBlockwise } from '../../src/blockwise/server.js';
import { CoapClient } from '../../src/client/client.js';
import { decodeFrame, encodeCsm, encodeFrame, SignalCode } from '../../src/codec/reliable.js';
import { enableObserve, type ObserveServer } from '../../src/observe/server.js';
import { ForwardProxy, proxyUriOption } from '../../src/proxy/proxy.js';
import { CoapServer } from '../../src/server/server.js';
import { TcpTransport } from '../../src/transport/tcp.js';
import { WsTransport } from '../../src/transport/ws.js';
import { until } from '../helpers/timing.js';

describe('CoAP over TCP and WebSockets (RFC 8323)', { timeout: 60_000 }, () => {
  const server = new CoapServer();
  let observe: ObserveServer;
  let tcpPort = 0;
  let wsPort = 0;
  let counter = 0;
  let stored = 'initial';
  const clients: CoapClient[] = [];
  const client = () => {
    const c = new CoapClient();
    clients.push(c);
    return c;
  };
  before(async () => {
    const bw = enableBlockwise(server);
    observe = enableObserve(server, { blockwise: bw });
    server.get('/hello', () => 'world');
    server.get('/counter', () => String(counter), { obs: true });
    server.get('/big', () => 'x'.repeat(5000));
    server.get('/value', () => stored);
    server.put('/value', (req) => {
      stored = req.payload.toString();
      return { code: '2.04' };
    });
    const tcp = await server.listen(await TcpTransport.create({ host: '127.0.0.1', port: 0 }));
    tcpPort = tcp.transport.localAddress().port;
    const ws = await server.listen(await WsTransport.create({ host: '127.0.0.1', port: 0 }));
    wsPort = ws.transport.localAddress().port;
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.close();
  });

  for (const scheme of ['coap+tcp', 'coap+ws'] as const) {
    const base = () => `${scheme}://127.0.0.1:${scheme === 'coap+tcp' ? tcpPort : wsPort}`;

    it(`${scheme}: GET, PUT then GET, and a 5000-byte body block-wise`, async () => {
      const c = client();
      const r = await c.get(`${base()}/hello`);
      assert.equal(r.code, 0x45);
      assert.equal(r.text(), 'world');
      const put = await c.put(`${base()}/value`, { payload: `via ${scheme}` });
      assert.equal(put.code, 0x44);
      assert.equal((await c.get(`${base()}/value`)).text(), `via ${scheme}`);
      const big = await c.get(`${base()}/big`);
      assert.equal(big.text(), 'x'.repeat(5000));
    });

    it(`${scheme}: ping is a 7.02 Ping answered by 7.03 Pong`, async () => {
      const rtt = await client().ping(base());
      assert.ok(rtt >= 0);
    });

    it(`${scheme}: observe sees notifications`, async () => {
      const c = client();
      const obs = c.observe(`${base()}/counter`);
      await obs.registered;
      const seen: string[] = [];
      const run = (async () => {
        for await (const n of obs) {
          seen.push(n.text());
          if (seen.length === 3) break;
        }
      })();
      await until(() => seen.length >= 1, 'first notification');
      for (let k = 1; k <= 2; k++) {
        counter++;
        observe.notify('/counter');
        await until(() => seen.length >= k + 1, `notification ${k}`);
      }
      await run;
      assert.deepEqual(seen.map(Number), [counter - 2, counter - 1, counter]);
    });

    it(`${scheme}: an observation ends with its connection (RFC 8323 §7), not at the next notification`, async () => {
      const c = new CoapClient();
      const obs = c.observe(`${base()}/counter`);
      await obs.registered;
      await until(() => observe.observerCount('/counter') === 1, 'registered on the server');
      const removed: string[] = [];
      const before = observe.onEvent;
      observe.onEvent = (e) => {
        if (e.type === 'removed') removed.push(e.reason);
        before?.(e);
      };
      try {
        // The client goes away: its connection closes; no notification is sent meanwhile.
        await c.close();
        await until(() => observe.observerCount('/counter') === 0, 'observer removed at the close');
        assert.deepEqual(removed, ['disconnected']);
      } finally {
        observe.onEvent = before;
      }
    });
  }

  it('TCP server: sends its CSM first, answers Ping with Pong, aborts a peer whose first message is not a CSM', async () => {
    const frames: Buffer[] = [];
    const sock = net.connect({ host: '127.0.0.1', port: tcpPort });
    let acc = Buffer.alloc(0);
    sock.on('data', (d) => {
      acc = Buffer.concat([acc, d]);
    });
    await new Promise((r) => sock.once('connect', r));
    sock.write(encodeFrame({ code: SignalCode.Ping, token: Buffer.from([7]) }));
    const closed = new Promise((r) => sock.once('close', r));
    await closed;
    // CSM first, then an Abort (the Ping came before our CSM).
    frames.push(acc);
    assert.equal(acc[1], SignalCode.CSM);
    const csm = decodeFrame(acc.subarray(0, 2 + (acc[0]! >> 4)));
    // Max-Message-Size 1152 is the default: not announced, nor Block-Wise-Transfer (no BERT at 1152).
    assert.equal(csm.options.length, 0);
    const rest = acc.subarray(2 + (acc[0]! >> 4));
    const abort = decodeFrame(rest);
    assert.equal(abort.code, SignalCode.Abort);
    assert.match(abort.payload.toString(), /CSM/);

    // With a CSM first: Ping is answered by a Pong with the same token.
    const s2 = net.connect({ host: '127.0.0.1', port: tcpPort });
    let got = Buffer.alloc(0);
    s2.on('data', (d) => {
      got = Buffer.concat([got, d]);
    });
    await new Promise((r) => s2.once('connect', r));
    s2.write(
      Buffer.concat([
        encodeCsm(1152, false, false),
        encodeFrame({ code: SignalCode.Ping, token: Buffer.from([7]) }),
      ]),
    );
    await until(() => got.includes(Buffer.from([0x01, SignalCode.Pong, 7])), 'Pong');
    s2.destroy();
  });

  it('TCP server: a frame announcing more than Max-Message-Size gets Abort and the connection closes', async () => {
    const sock = net.connect({ host: '127.0.0.1', port: tcpPort });
    let acc = Buffer.alloc(0);
    sock.on('data', (d) => {
      acc = Buffer.concat([acc, d]);
    });
    await new Promise((r) => sock.once('connect', r));
    // Len=15: 0x7fffffff + 65805 bytes announced.
    sock.write(
      Buffer.concat([encodeCsm(1152, false, false), Buffer.from([0xf0, 0x7f, 0xff, 0xff, 0xff, 0x01])]),
    );
    await new Promise((r) => sock.once('close', r));
    assert.ok(acc.includes(Buffer.from('Max-Message-Size')), acc.toString('hex'));
  });

  it('a request to a closed port fails at once with a network error', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise((r) => srv.close(r));
    const t0 = Date.now();
    await assert.rejects(client().get(`coap+tcp://127.0.0.1:${port}/x`), /ECONNREFUSED|closed/);
    assert.ok(Date.now() - t0 < 10_000);
  });
});

describe('forward proxy across transports (UDP <-> TCP, WebSockets -> UDP)', { timeout: 60_000 }, () => {
  const origin = new CoapServer();
  const tcpOrigin = new CoapServer();
  const proxy = new CoapServer();
  const proxyClient = new CoapClient();
  const client = new CoapClient();
  let udpOriginPort = 0;
  let tcpOriginPort = 0;
  let proxyUdp = 0;
  let proxyTcp = 0;
  let proxyWs = 0;
  before(async () => {
    enableBlockwise(origin);
    origin.get('/where', () => 'udp origin');
    origin.get('/big', () => 'b'.repeat(4000));
    tcpOrigin.get('/where', () => 'tcp origin');
    udpOriginPort = (await origin.listen({ host: '127.0.0.1', port: 0 })).transport.localAddress().port;
    tcpOriginPort = (
      await tcpOrigin.listen(await TcpTransport.create({ host: '127.0.0.1', port: 0 }))
    ).transport.localAddress().port;
    enableBlockwise(proxy);
    new ForwardProxy({ client: proxyClient, timeout: 5000 }).attach(proxy);
    proxyUdp = (await proxy.listen({ host: '127.0.0.1', port: 0 })).transport.localAddress().port;
    proxyTcp = (
      await proxy.listen(await TcpTransport.create({ host: '127.0.0.1', port: 0 }))
    ).transport.localAddress().port;
    proxyWs = (
      await proxy.listen(await WsTransport.create({ host: '127.0.0.1', port: 0 }))
    ).transport.localAddress().port;
  });
  after(async () => {
    await Promise.all([client.close(), proxyClient.close()]);
    await Promise.all([origin.close(), tcpOrigin.close(), proxy.close()]);
  });

  it('TCP client -> proxy -> UDP origin, and UDP client -> proxy -> TCP origin', async () => {
    const a = await client.get(`coap+tcp://127.0.0.1:${proxyTcp}`, {
      options: [proxyUriOption(`coap://127.0.0.1:${udpOriginPort}/where`)],
    });
    assert.equal(a.text(), 'udp origin');
    const b = await client.get(`coap://127.0.0.1:${proxyUdp}`, {
      options: [proxyUriOption(`coap+tcp://127.0.0.1:${tcpOriginPort}/where`)],
    });
    assert.equal(b.text(), 'tcp origin');
  });

  it('WebSocket client -> proxy -> UDP origin, with a block-wise body', async () => {
    const r = await client.get(`coap+ws://127.0.0.1:${proxyWs}`, {
      options: [proxyUriOption(`coap://127.0.0.1:${udpOriginPort}/big`)],
    });
    assert.equal(r.code, 0x45);
    assert.equal(r.text(), 'b'.repeat(4000));
  });
});
