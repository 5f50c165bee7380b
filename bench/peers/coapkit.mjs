// coapkit's own server answering GET /hello with "world" (built from src/ into dist/).
import { CoapServer } from '../../dist/index.js';
import { portArg, ready, reportTo } from './report.mjs';

let requests = 0;
const server = new CoapServer();
server.get('/hello', () => {
  requests++;
  return { code: '2.05', payload: 'world' };
});

// The exchanges coapkit still remembers for deduplication (RFC 7252 §4.5), across its endpoints.
const dedup = () => {
  let entries = 0;
  let evictedEarly = 0;
  for (const ep of server.endpoints) {
    const store = ep.messageLayer?.dedup;
    entries += store?.size ?? 0;
    evictedEarly += store?.evictedEarly ?? 0;
  }
  return { dedupEntries: entries, dedupEvictedEarly: evictedEarly };
};
reportTo(() => requests, dedup);
await server.listen({ port: portArg(), host: '127.0.0.1' });
ready(server.addresses()[0]?.port ?? portArg());
