/**
 * Quick measurement (not a test): the cost of a full DTLS handshake over loopback
 * UDP, client and server in one process, N sequential handshakes each with a new
 * client transport: PSK (TLS_PSK_WITH_AES_128_CCM_8), X.509 with mutual
 * authentication and raw public keys (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8).
 * Run: N=200 npx tsx test/vectors/dtls-cert-measure.mts
 */
import { rmSync } from 'node:fs';
import { DtlsClientTransport, DtlsServerTransport } from '../../src/transport/dtls.js';
import { makePeer } from '../../src/transport/transport.js';
import { makePki } from '../helpers/pki.js';

const pki = makePki();
process.on('exit', () => rmSync(pki.dir, { recursive: true, force: true }));
const N = Number(process.env.N ?? 100);
const modes: Record<string, [Record<string, unknown>, Record<string, unknown>]> = {
  psk: [{ psk: { identity: 'a', key: 'k' } }, { psk: { identity: 'a', key: 'k' } }],
  x509: [
    { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca },
    { cert: pki.clientCert, key: pki.clientKey, ca: pki.ca },
  ],
  rpk: [{ rpk: pki.rpkServerKey }, { rpk: pki.rpkClientKey }],
};
for (const [name, [so, co]] of Object.entries(modes)) {
  // No handshake rate limit: this measures what a handshake costs, all from one address.
  const server = await DtlsServerTransport.create({
    host: '127.0.0.1',
    port: 0,
    handshakeRate: false,
    ...so,
  } as never);
  server.attach({ message: () => {} });
  const peer = makePeer('127.0.0.1', server.localAddress().port);
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    const c = await DtlsClientTransport.create({ ...co, maxConnectedSockets: 0 } as never);
    c.attach({ message: () => {} });
    await c.connect(peer);
    await c.close();
  }
  const ms = (performance.now() - t0) / N;
  const cpu = process.cpuUsage(cpu0);
  console.log(
    `${name}: ${ms.toFixed(2)} ms per handshake (client+server in one process, CPU ${((cpu.user + cpu.system) / 1000 / N).toFixed(2)} ms)`,
  );
  await server.close();
}
process.exit(0);
