/**
 * Discovery by multicast (RFC 7252 §8, RFC 6690 §4): a request to the "All CoAP Nodes"
 * group 224.0.1.187 reaches every server that joined it; each answers after a random
 * delay (the leisure), and only if it has something matching (here: rt=light).
 *
 * Needs a network where multicast works and UDP port 5683 free (the group's port).
 *
 *   npx tsx examples/multicast.ts
 */
import { CoapClient, CoapServer } from 'coapkit';

const lamp = new CoapServer();
lamp.get('/lamp', () => 'on', { rt: 'light', title: 'Hall lamp' });
await lamp.listen({ port: Number(process.env.PORT ?? 0) }); // its unicast answers go out from here
await lamp.listenMulticast({ leisureMs: 500 }); // joins 224.0.1.187 port 5683

const client = new CoapClient();
const answers = await client.multicast('coap://224.0.1.187/.well-known/core?rt=light', { windowMs: 1500 });
for (const a of answers) console.log(`${a.peer.address}:${a.peer.port}`, a.codeText, a.text());
console.log(`${answers.length} answer(s)`);

await client.close();
await lamp.close();
