// coapkit's library server as an application uses it: Observe and block-wise enabled the way the
// README shows (enableObserve / enableBlockwise), an observable GET /hello with a Content-Format and
// an ETag, and the seed's POST /logs handler (a JSON log line in, 2.04 Changed out).
import { CoapServer, enableBlockwise, enableObserve } from '../../dist/index.js';
import { portArg, ready, reportTo } from './report.mjs';

let requests = 0;
let logBytes = 0;
const server = new CoapServer();
enableObserve(server);
enableBlockwise(server);
const etag = Buffer.from('w0rld001');
server.get(
  '/hello',
  () => {
    requests++;
    return { code: '2.05', payload: 'world', contentFormat: 'text/plain', etag };
  },
  { obs: true, ct: 0 },
);
server.post(
  '/logs',
  (req) => {
    requests++;
    // A log sink: takes JSON (Content-Format 50) and keeps count of what it received.
    if (req.contentFormat !== 50) return { code: '4.15' };
    logBytes += req.payload.length;
    return { code: '2.04' };
  },
  { accepts: [50] },
);

reportTo(
  () => requests,
  () => ({ logBytes }),
);
await server.listen({ port: portArg(), host: '127.0.0.1' });
ready(server.addresses()[0]?.port ?? portArg());
