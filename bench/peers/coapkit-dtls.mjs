// coapkit's server over DTLS 1.2 PSK (coaps) answering GET /hello with "world".
import { CoapServer } from '../../dist/index.js';
import { DtlsServerTransport } from '../../dist/transport/dtls.js';
import { BENCH_IDENTITY, BENCH_KEY } from './dtls-psk.mjs';
import { portArg, ready, reportTo } from './report.mjs';

let requests = 0;
const server = new CoapServer();
server.get('/hello', () => {
  requests++;
  return { code: '2.05', payload: 'world' };
});
const transport = await DtlsServerTransport.create({
  host: '127.0.0.1',
  port: portArg(),
  psk: { identity: BENCH_IDENTITY, key: BENCH_KEY },
  maxSessions: 50_000,
  maxHandshakes: 5_000,
  // The bench measures how many handshakes the server can do: no rate limit (one address drives them all).
  handshakeRate: false,
});
reportTo(
  () => requests,
  () => ({
    sessions: transport.server.sessionCount,
    helloVerifySent: transport.server.stats.helloVerifySent,
  }),
);
await server.listen(transport);
ready(transport.localAddress().port);
