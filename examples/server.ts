/**
 * A CoAP server with two resources, and a client that uses them. Everything is closed at
 * the end, so the program exits by itself.
 *
 *   npx tsx examples/server.ts           (PORT=5683 to use CoAP's own port; default: a free one)
 */
import { CoapClient, CoapServer, ResponseCodeError } from 'coapkit';

const server = new CoapServer();
server.get('/temperature', () => ({ payload: '22.5 C', contentFormat: 0, maxAge: 30 }), {
  rt: 'temperature-c',
  obs: true, // observable: Observe is built into every CoapServer (see observe.ts)
  title: 'Living room',
});
server.post('/logs', (req) => {
  if (req.contentFormat !== 50) throw new ResponseCodeError('4.15', 'JSON only');
  console.log('log:', req.text());
  return { code: '2.04' }; // Changed
});
const endpoint = await server.listen({ port: Number(process.env.PORT ?? 0) });
const { port } = endpoint.transport.localAddress();
console.log(`serving coap://localhost:${port}`);

const client = new CoapClient();
const res = await client.get(`coap://localhost:${port}/temperature`, { accept: 'text' });
console.log(res.codeText, res.text()); // 2.05 Content 22.5 C

const log = await client.post(`coap://localhost:${port}/logs`, {
  payload: JSON.stringify({ level: 'info', msg: 'hello' }),
  contentFormat: 'json',
});
console.log(log.codeText); // 2.04 Changed

// A 4.xx or 5.xx is an answer, not an exception (errors are for timeouts, DNS, DTLS...).
const wrong = await client.post(`coap://localhost:${port}/logs`, { payload: 'hi', contentFormat: 'text' });
console.log(wrong.codeText, wrong.text()); // 4.15 Unsupported Content-Format JSON only

await client.close();
await server.close();
