/**
 * coaps:// (DTLS 1.2 with a pre-shared key, RFC 7252 §9): the server looks the key up by the
 * identity the client presents; handlers see that identity as req.identity.
 *
 *   npx tsx examples/coaps-psk.ts
 */
import { randomBytes } from 'node:crypto';
import { CoapClient, CoapServer, DtlsServerTransport } from 'coapkit';

// In real life the keys come from a file or a database (coapkit serve: --psk-file).
const keys = new Map([['sensor-7', randomBytes(16)]]);

const server = new CoapServer();
server.get('/hello', (req) => `hello, ${req.identity}`);
const dtls = await DtlsServerTransport.create({
  port: Number(process.env.PORT ?? 0), // CoAP over DTLS's own port is 5684
  psk: (identity) => keys.get(identity), // undefined: unknown identity, the handshake fails
});
await server.listen(dtls);
const { port } = dtls.localAddress();

const client = new CoapClient({ psk: { identity: 'sensor-7', key: keys.get('sensor-7') ?? '' } });
const res = await client.get(`coaps://localhost:${port}/hello`);
console.log(res.codeText, res.text()); // 2.05 Content hello, sensor-7

await client.close();
await server.close();
