/**
 * A client for a running server: start one first with `npm start` (coap://localhost), or
 * point COAP_SERVER at another one.
 *
 *   npx tsx examples/client.ts
 *   COAP_SERVER=coap://[::1]:5683 npx tsx examples/client.ts
 */
import { CoapClient, CoapError, linkAttr, parseLinkFormat } from 'coapkit';

const base = process.env.COAP_SERVER ?? 'coap://localhost';
const client = new CoapClient();
try {
  const put = await client.put(`${base}/greeting`, { payload: 'hello', contentFormat: 'text' });
  console.log('PUT /greeting:', put.codeText); // 2.01 Created, then 2.04 Changed

  const get = await client.get(`${base}/greeting`, { accept: 'text' });
  console.log('GET /greeting:', get.codeText, get.text());

  const missing = await client.get(`${base}/no/such/thing`);
  console.log('GET /no/such/thing:', missing.codeText, `(ok: ${missing.ok})`); // 4.04 Not Found

  const core = await client.get(`${base}/.well-known/core`);
  for (const link of parseLinkFormat(core.text())) {
    console.log('resource:', link.target, linkAttr(link, 'obs') === true ? '(observable)' : '');
  }
} catch (err) {
  // Timeouts, an unreachable port, DNS and DTLS failures are typed errors with a hint.
  if (!(err instanceof CoapError)) throw err;
  console.error(`${err.code}: ${err.message}${err.hint ? ` (${err.hint})` : ''}`);
  process.exitCode = 3;
} finally {
  await client.close();
}
