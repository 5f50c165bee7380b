// coapkit's own server answering GET /hello with "world" (built from src/ into dist/).
import { CoapServer } from '../../dist/index.js';
import { portArg, ready, reportTo } from './report.mjs';

let requests = 0;
const server = new CoapServer();
server.get('/hello', () => {
  requests++;
  return { code: '2.05', payload: 'world' };
});

reportTo(() => requests);
await server.listen({ port: portArg(), host: '127.0.0.1' });
ready(server.addresses()[0]?.port ?? portArg());
