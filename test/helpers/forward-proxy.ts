/**
 * coapkit's ForwardProxy on a loopback port of its own, for tests that send
 * through it. Every request it received is kept in `seen`, encoded as it came
 * (to check what a proxy gets to read).
 */
import { encodeMessage } from '../../src/codec/message.js';
import { CoapClient, CoapServer, ForwardProxy } from '../../src/index.js';

export interface TestForwardProxy {
  /** coap://127.0.0.1:PORT of the proxy. */
  url: string;
  /** The requests the proxy received, encoded. */
  seen: Buffer[];
  /** Closes the proxy's client, then its server. */
  close(): Promise<void>;
}

export async function startForwardProxy(timeout = 2000): Promise<TestForwardProxy> {
  const server = new CoapServer();
  const client = new CoapClient();
  new ForwardProxy({ client, timeout }).attach(server);
  const ep = await server.listen({ host: '127.0.0.1', port: 0 });
  const seen: Buffer[] = [];
  const inner = ep.handler!;
  ep.handler = (msg, peer) => {
    seen.push(encodeMessage(msg));
    return inner(msg, peer);
  };
  return {
    url: `coap://127.0.0.1:${ep.transport.localAddress().port}`,
    seen,
    async close() {
      await client.close();
      await server.close();
    },
  };
}
