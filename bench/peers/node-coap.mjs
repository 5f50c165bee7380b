// node-coap (npm `coap`) answering GET /hello with "world".
import coap from 'coap';
import { portArg, ready, reportTo } from './report.mjs';

let requests = 0;
const server = coap.createServer({ type: 'udp4' }, (req, res) => {
  requests++;
  if (req.url === '/hello' && req.method === 'GET') {
    res.code = '2.05';
    res.end('world');
  } else {
    res.code = '4.04';
    res.end();
  }
});

reportTo(() => requests);
server.listen(portArg(), '127.0.0.1', () => ready(server._sock.address().port));
