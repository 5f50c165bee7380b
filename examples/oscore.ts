/**
 * OSCORE (RFC 8613): the request and the response are protected end to end, so they stay
 * secret and unaltered through proxies. Each side holds a security context: the same Master
 * Secret and Salt, and its own Sender ID (the other's Recipient ID). The handler sees the
 * client's Sender ID as req.oscore.kid; paths under `required` refuse unprotected requests.
 *
 *   npx tsx examples/oscore.ts
 */
import { randomBytes } from 'node:crypto';
import { CoapClient, CoapServer, enableOscore, OscoreContext } from 'coapkit';

// In real life the secret comes from a file (coapkit serve --oscore FILE) or a key exchange.
const masterSecret = randomBytes(16);
const masterSalt = randomBytes(8);

const server = new CoapServer();
server.get('/secure/door', (req) => `open for ${req.oscore?.kid.toString()}`);
enableOscore(server, {
  contexts: [
    new OscoreContext({
      masterSecret,
      masterSalt,
      senderId: Buffer.from('srv'),
      recipientId: Buffer.from('cli'),
    }),
  ],
  required: ['/secure/**'],
});
const ep = await server.listen({ port: Number(process.env.PORT ?? 0) });
const { port } = ep.transport.localAddress();

const client = new CoapClient();
const oscore = new OscoreContext({
  masterSecret,
  masterSalt,
  senderId: Buffer.from('cli'),
  recipientId: Buffer.from('srv'),
});
const res = await client.get(`coap://localhost:${port}/secure/door`, { oscore });
console.log(res.codeText, res.text()); // 2.05 Content open for cli

const plain = await client.get(`coap://localhost:${port}/secure/door`);
console.log(plain.codeText, plain.text()); // 4.02 Bad Option OSCORE required

await client.close();
await server.close();
