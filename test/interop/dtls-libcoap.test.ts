/**
 * Interop with libcoap (Debian libcoap3-bin): coapkit DTLS client carrying a raw
 * CoAP GET to coap-server-openssl / coap-server-gnutls, and coap-client-openssl /
 * coap-client-gnutls talking to a coapkit DTLS server that answers hand-built
 * CoAP responses. One case per peer × suite.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { DtlsAlertError } from '../../src/errors.js';
import { DtlsClientTransport, DtlsServerTransport } from '../../src/transport/dtls.js';
import { makePeer } from '../../src/transport/transport.js';
import { findProgram } from '../helpers/proc.js';
import { run, SUITES, startLibcoapDtls, WELL_KNOWN_CORE_GET, withTimeout } from './dtls-peers.js';

const KEY = 'libcoap-secret';
const IDENTITY = 'coapkit-id';

/** Suites each libcoap server accepts (coap-server-openssl's cipher list has no CBC suite). */
const SERVER_ACCEPTS: Record<string, number[]> = {
  'coap-server-openssl': [0xc0a8, 0xc0a4, 0x00a8, 0xccac],
  'coap-server-gnutls': [0xc0a8, 0xc0a4, 0x00a8, 0xccac, 0xc037],
};

for (const bin of ['coap-server-openssl', 'coap-server-gnutls']) {
  for (const suite of SUITES) {
    const accepted = SERVER_ACCEPTS[bin]!.includes(suite.id);
    test(`coapkit client → ${bin} (${suite.openssl})${accepted ? '' : ' is refused'}`, async (t) => {
      const path = findProgram(bin);
      if (!path) return t.skip(`${bin} not installed`);
      const { srv, port } = await startLibcoapDtls(path, (p) => [
        '-A',
        '127.0.0.1',
        '-p',
        String(p),
        '-k',
        KEY,
        '-h',
        'hint',
        '-v',
        '7',
      ]);
      const client = await DtlsClientTransport.create({
        psk: { identity: IDENTITY, key: KEY },
        cipherSuites: [suite.id],
        retransmitInitialMs: 200,
        handshakeTimeoutMs: 10_000,
      });
      try {
        const peer = makePeer('127.0.0.1', port + 1);
        const responses: Buffer[] = [];
        client.attach({ message: (d) => responses.push(d), peerError: () => {} });
        if (!accepted) {
          await assert.rejects(withTimeout(client.connect(peer), 10_000, 'handshake'), (e: unknown) => {
            assert.ok(e instanceof DtlsAlertError, String(e));
            assert.equal(e.alert, 40);
            return true;
          });
          return;
        }
        await withTimeout(client.connect(peer), 10_000, 'handshake');
        assert.equal(client.sessionInfo(peer)?.suiteId, suite.id);
        for (let i = 0; i < 30 && responses.length === 0; i++) {
          client.send(WELL_KNOWN_CORE_GET, peer);
          await new Promise((r) => setTimeout(r, 300));
        }
        const r = responses[0];
        assert.ok(r, 'got a CoAP response');
        assert.equal(r[1], 0x45, 'response code 2.05 Content');
        assert.equal(r.readUInt16BE(2), 0x1234, 'same message ID');
        assert.match(r.toString('latin1'), /<\/>/, 'link-format payload');
      } finally {
        await client.close();
        await srv.kill();
      }
    });
  }
}

for (const bin of ['coap-client-openssl', 'coap-client-gnutls']) {
  for (const suite of SUITES) {
    test(`${bin} → coapkit server (${suite.openssl})`, async (t) => {
      const path = findProgram(bin);
      if (!path) return t.skip(`${bin} not installed`);
      const server = await DtlsServerTransport.create({
        host: '127.0.0.1',
        port: 0,
        psk: (id) => (id === IDENTITY ? KEY : undefined),
        identityHint: 'coapkit',
        cipherSuites: [suite.id],
        retransmitInitialMs: 200,
      });
      const identities: (string | undefined)[] = [];
      server.attach({
        message: (d, peer) => {
          identities.push(peer.identity);
          const tkl = d[0]! & 0x0f;
          const type = (d[0]! >> 4) & 3;
          // piggybacked ACK 2.05 for a CON request, NON 2.05 for a NON request
          const first = (type === 0 ? 0x60 : 0x50) | tkl;
          const mid = type === 0 ? d.subarray(2, 4) : Buffer.from([0x77, 0x77]);
          server.send(
            Buffer.concat([
              Buffer.from([first, 0x45]),
              mid,
              d.subarray(4, 4 + tkl),
              Buffer.from([0xff]),
              Buffer.from(`payload via ${suite.openssl}`),
            ]),
            peer,
          );
        },
      });
      const cli = run(path, [
        '-k',
        KEY,
        '-u',
        IDENTITY,
        '-B',
        '8',
        `coaps://127.0.0.1:${server.localAddress().port}/x`,
      ]);
      try {
        const code = await withTimeout(cli.exited, 15_000, `${bin} exit`);
        assert.match(cli.output(), new RegExp(`payload via ${suite.openssl}`));
        assert.equal(code, 0);
        assert.equal(identities[0], IDENTITY);
      } finally {
        await cli.kill();
        await server.close();
      }
    });
  }
}
