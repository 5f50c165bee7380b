/**
 * Child process for test/attack/dtls.test.ts: a coaps CoapServer with the
 * library's default DTLS bounds (halfOpenTimeoutMs from HALF_OPEN_MS so the
 * test need not wait 10 s). Started with --expose-gc; answers IPC 'mem' with
 * heapUsed after gc(), VmRSS and the DTLS server's counters.
 */
import { CoapServer } from '../../src/server/server.js';
import { DtlsServerTransport } from '../../src/transport/dtls.js';
import { rssKb } from '../helpers/proc.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined || process.send === undefined)
  throw new Error('start with --expose-gc and an IPC channel');

const server = new CoapServer();
server.get('/hello', () => 'world');
const transport = await DtlsServerTransport.create({
  host: '127.0.0.1',
  port: 0,
  psk: { identity: 'dev', key: 'k3y' },
  ...(process.env.HALF_OPEN_MS ? { halfOpenTimeoutMs: Number(process.env.HALF_OPEN_MS) } : {}),
});
await server.listen(transport);

process.on('message', (msg: unknown) => {
  if (msg === 'mem') {
    for (let i = 0; i < 3; i++) gc();
    const s = transport.server;
    process.send!({
      heapUsed: process.memoryUsage().heapUsed,
      rss: rssKb('self') * 1024,
      handshakes: s.handshakeCount,
      buffered: s.handshakeBufferBytes,
      stats: s.stats,
    });
  } else if (msg === 'exit') {
    void server.close().then(() => process.exit(0));
  }
});
process.send({ port: transport.localAddress().port });
