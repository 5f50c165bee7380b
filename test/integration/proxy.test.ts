import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CoapClient, CoapServer, OptionNumber } from '../../src/index.js';
import { ForwardProxy, proxyUriOption } from '../../src/proxy/proxy.js';

let origin: CoapServer;
let proxyServer: CoapServer;
let client: CoapClient;
let originPort = 0;
let proxyPort = 0;
let originHits = 0;

before(async () => {
  origin = new CoapServer();
  origin.get('/temp', () => {
    originHits++;
    return { payload: `22.${originHits}`, maxAge: 30, contentFormat: 0 };
  });
  origin.put('/store', (req) => ({ code: '2.04', payload: `got ${req.text()}` }));
  originPort = (await origin.listen({ host: '127.0.0.1', port: 0 })).transport.localAddress().port;
  proxyServer = new CoapServer();
  new ForwardProxy({ client: new CoapClient(), timeout: 1000 }).attach(proxyServer);
  proxyPort = (await proxyServer.listen({ host: '127.0.0.1', port: 0 })).transport.localAddress().port;
  client = new CoapClient();
});

after(async () => {
  await client.close();
  await proxyServer.close();
  await origin.close();
});

const viaProxy = (target: string, opts: Parameters<CoapClient['request']>[1] = {}) =>
  client.request(`coap://127.0.0.1:${proxyPort}`, {
    ...opts,
    options: [proxyUriOption(target), ...(opts.options ?? [])],
  });

test('§5.7.2 forwards Proxy-Uri requests and returns the origin response', async () => {
  const res = await viaProxy(`coap://127.0.0.1:${originPort}/temp`);
  assert.equal(res.codeText, '2.05 Content');
  assert.equal(res.text(), '22.1');
  assert.equal(originHits, 1);
});

test('§5.6 serves fresh responses from the cache with the remaining Max-Age', async () => {
  const res = await viaProxy(`coap://127.0.0.1:${originPort}/temp`);
  assert.equal(res.text(), '22.1');
  assert.equal(originHits, 1, 'second GET must not reach the origin');
  const maxAge = res.option(OptionNumber.MaxAge);
  assert.ok(maxAge !== undefined && maxAge.length <= 1 && (maxAge[0] ?? 0) <= 30);
});

test('non-safe methods are forwarded, not cached', async () => {
  const a = await viaProxy(`coap://127.0.0.1:${originPort}/store`, { method: 'PUT', payload: 'x' });
  assert.equal(a.codeText, '2.04 Changed');
  assert.equal(a.text(), 'got x');
});

test('5.04 Gateway Timeout when the origin does not answer', async () => {
  // A port where nothing listens: UDP gets no answer (or ICMP unreachable -> 5.02).
  const res = await viaProxy('coap://127.0.0.1:9/x', { timeout: 5000 });
  assert.ok(res.codeText === '5.04 Gateway Timeout' || res.codeText === '5.02 Bad Gateway', res.codeText);
});

test('5.05 from a server that is not a proxy; 4.00 for a bad Proxy-Uri', async () => {
  const res = await client.request(`coap://127.0.0.1:${originPort}`, {
    options: [proxyUriOption(`coap://127.0.0.1:${originPort}/temp`)],
  });
  assert.equal(res.codeText, '5.05 Proxying Not Supported');
  const bad = await viaProxy('coap://[::1/x');
  assert.equal(bad.codeText, '4.00 Bad Request');
  const scheme = await viaProxy('http://example.com/');
  assert.ok(['4.00 Bad Request', '5.05 Proxying Not Supported'].includes(scheme.codeText), scheme.codeText);
});
