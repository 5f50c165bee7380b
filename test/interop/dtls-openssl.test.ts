/**
 * Interop: coapkit DTLS client ↔ `openssl s_server` and `openssl s_client` ↔
 * coapkit DTLS server, for every PSK suite, with application data both ways.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { DtlsClientTransport, DtlsServerTransport } from '../../src/transport/dtls.js';
import type { Peer } from '../../src/transport/transport.js';
import { freePort } from '../helpers/net.js';
import { findProgram } from '../helpers/proc.js';
import { opensslDtlsClient, opensslDtlsServer, pingPongSServer, SUITES } from './dtls-peers.js';

const OPENSSL = findProgram('openssl');
const PSK_HEX = Buffer.from('coapkit-interop-key').toString('hex');

for (const suite of SUITES) {
  test(`coapkit client → openssl s_server (${suite.openssl})`, async (t) => {
    if (!OPENSSL) return t.skip('openssl not installed');
    const port = await freePort();
    const srv = opensslDtlsServer(OPENSSL, port, {
      psk: { hex: PSK_HEX, identity: 'coapkit', hint: 'hint' },
      cipher: suite.openssl,
    });
    const client = await DtlsClientTransport.create({
      psk: { identity: 'coapkit', key: Buffer.from(PSK_HEX, 'hex') },
      cipherSuites: [suite.id],
      retransmitInitialMs: 200,
      handshakeTimeoutMs: 10_000,
    });
    try {
      await pingPongSServer(client, srv, port, suite);
    } finally {
      await client.close();
      await srv.kill();
    }
  });
}

for (const suite of SUITES) {
  test(`openssl s_client → coapkit server (${suite.openssl})`, async (t) => {
    if (!OPENSSL) return t.skip('openssl not installed');
    const server = await DtlsServerTransport.create({
      host: '127.0.0.1',
      port: 0,
      psk: (id) => (id === 'ossl-client' ? Buffer.from(PSK_HEX, 'hex') : undefined),
      identityHint: 'coapkit-hint',
      cipherSuites: [suite.id],
      retransmitInitialMs: 200,
    });
    const received: { data: string; peer: Peer }[] = [];
    server.attach({
      message: (data, peer) => {
        received.push({ data: data.toString(), peer });
        server.send(Buffer.from('reply from coapkit\n'), peer);
      },
    });
    const cli = opensslDtlsClient(OPENSSL, server.localAddress().port, {
      psk: { hex: PSK_HEX, identity: 'ossl-client' },
      cipher: suite.openssl,
    });
    try {
      await cli.waitFor(/Cipher is /, 10_000);
      assert.match(cli.output(), new RegExp(`Cipher is ${suite.openssl}`));
      assert.match(cli.output(), /Extended master secret: yes/);
      cli.child.stdin.write('hello from s_client\n');
      await cli.waitFor('reply from coapkit', 5000);
      assert.equal(received[0]?.data, 'hello from s_client\n');
      assert.equal(received[0]?.peer.identity, 'ossl-client');
    } finally {
      await cli.kill();
      await server.close();
    }
  });
}

test('openssl s_client with a wrong key is rejected; coapkit server reports bad_record_mac', async (t) => {
  if (!OPENSSL) return t.skip('openssl not installed');
  const server = await DtlsServerTransport.create({
    host: '127.0.0.1',
    port: 0,
    psk: { identity: 'ossl-client', key: Buffer.from(PSK_HEX, 'hex') },
    retransmitInitialMs: 200,
  });
  const errors: Error[] = [];
  server.attach({ message: () => {}, peerError: (_p, e) => errors.push(e) });
  const cli = opensslDtlsClient(OPENSSL, server.localAddress().port, {
    psk: { hex: '00112233', identity: 'ossl-client' },
    cipher: 'PSK-AES128-CCM8',
    ignEof: false,
  });
  try {
    await cli.waitFor(/alert bad record mac|bad record mac/i, 10_000);
    assert.ok(
      errors.some((e) => (e as { alert?: number }).alert === 20),
      'server saw bad_record_mac',
    );
  } finally {
    await cli.kill();
    await server.close();
  }
});
