/**
 * A forward proxy (RFC 7252 §5.7): the client asks the proxy for a Proxy-Uri; the proxy
 * fetches it from the origin server and caches it for its Max-Age.
 *
 *   npx tsx examples/proxy.ts
 */
import { CoapClient, CoapServer, ForwardProxy, proxyUriOption } from 'coapkit';

let fetched = 0;
const origin = new CoapServer();
origin.get('/time', () => {
  fetched++;
  return { payload: new Date(0).toISOString(), maxAge: 60 };
});
const originPort = (await origin.listen({ port: 0 })).transport.localAddress().port;

const proxy = new CoapServer();
const upstream = new CoapClient();
new ForwardProxy({
  client: upstream,
  // Not an open relay: forward only to the origin this proxy is meant for.
  allow: (uri) => uri.host === 'localhost' && uri.port === originPort,
}).attach(proxy);
const proxyPort = (await proxy.listen({ port: Number(process.env.PORT ?? 0) })).transport.localAddress().port;

const client = new CoapClient();
const target = `coap://localhost:${originPort}/time`;
for (let i = 1; i <= 2; i++) {
  const res = await client.get(`coap://localhost:${proxyPort}`, { options: [proxyUriOption(target)] });
  console.log(`through the proxy (${i}):`, res.codeText, res.text(), `- origin asked ${fetched} time(s)`);
}
const refused = await client.get(`coap://localhost:${proxyPort}`, {
  options: [proxyUriOption('coap://example.com/')],
});
console.log('to another host:', refused.codeText); // 4.03 Forbidden

await client.close();
await upstream.close();
await proxy.close();
await origin.close();
