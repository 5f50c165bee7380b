/**
 * Observe (RFC 7641): a client follows a resource; the server notifies its observers
 * whenever the value changes. The client stops after three notifications.
 *
 *   npx tsx examples/observe.ts
 */
import { CoapClient, CoapServer, enableObserve } from 'coapkit';

let celsius = 20;
const server = new CoapServer();
server.get('/temperature', () => `${celsius.toFixed(1)} C`, { obs: true, rt: 'temperature-c' });
const observe = enableObserve(server); // the server's built-in Observe layer (also server.observe)
const endpoint = await server.listen({ port: Number(process.env.PORT ?? 0) });
const { port } = endpoint.transport.localAddress();

const client = new CoapClient();
let seen = 0;
for await (const n of client.observe(`coap://localhost:${port}/temperature`)) {
  console.log(`notification ${n.observe}: ${n.text()}`);
  if (++seen === 3) break; // leaving the loop deregisters from the server
  celsius += 0.5; // the value changes...
  observe.notify('/temperature'); // ...and every observer gets the new state
}

await client.close();
await server.close();
