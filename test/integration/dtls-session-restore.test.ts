/**
 * DTLS sessions that outlive a graceful restart (issue 14 item 4):
 * `DtlsServerTransport.exportSessions(key)` seals the established sessions,
 * `importSessions(buf, key)` takes them over in a new transport on the same
 * port, and the client's next request is answered without a new ClientHello
 * (the coapkit client here; libcoap in test/interop/dtls-session-restore-libcoap.test.ts).
 * Wrong key, damaged, foreign and future-version data are refused with a typed
 * error and import nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { CoapServer } from '../../src/server/server.js';
import { DtlsServerTransport } from '../../src/transport/dtls.js';
import { DtlsSessionStateError, openSessions } from '../../src/transport/dtls-sessions.js';
import { countHandshakes } from '../helpers/dtls-events.js';
import { makePki } from '../helpers/pki.js';

const PSK = { identity: 'dev-1', key: 'restart-secret' };
const STATE_KEY = randomBytes(32);

async function serverOn(port: number) {
  const server = new CoapServer();
  server.get('/hello', (req) => `hello ${req.identity}`);
  const transport = await DtlsServerTransport.create({ host: '127.0.0.1', port, psk: PSK });
  await server.listen(transport);
  return { server, transport, port: transport.localAddress().port };
}

describe('DTLS sessions across a restart (export / import)', { timeout: 60_000 }, () => {
  const hs = countHandshakes();
  after(() => hs.stop());

  it('a coapkit client is answered by the new server without a new handshake', async () => {
    const one = await serverOn(0);
    const client = new CoapClient({ psk: PSK });
    try {
      const url = `coaps://127.0.0.1:${one.port}/hello`;
      assert.equal((await client.get(url, { timeout: 10_000 })).payload.toString(), 'hello dev-1');
      assert.deepEqual(hs.counts, { server: 1, client: 1 });
      const sealed = one.transport.exportSessions(STATE_KEY);
      assert.equal(one.transport.server.sessionCount, 0, 'exported sessions leave the transport');
      // Nothing of the session in the clear.
      assert.ok(!sealed.includes(Buffer.from('dev-1')));
      const keys = openSessions(sealed, STATE_KEY, 10)[0]!.snapshot.keys;
      assert.ok(keys.length >= 32 && !sealed.includes(keys.subarray(0, 16)), 'no key bytes in the clear');
      assert.equal(sealed.subarray(0, 4).toString(), 'CKDS');
      await one.server.close();

      const two = await serverOn(one.port);
      try {
        assert.deepEqual(await two.transport.importSessions(sealed, STATE_KEY), { imported: 1, skipped: 0 });
        for (let i = 0; i < 3; i++) {
          const r = await client.get(url, { timeout: 10_000 });
          assert.equal(r.payload.toString(), 'hello dev-1', 'the identity came along');
        }
        assert.deepEqual(hs.counts, { server: 1, client: 1 }, 'no new ClientHello');
      } finally {
        await two.server.close();
      }
    } finally {
      await client.close();
      hs.counts.server = 0;
      hs.counts.client = 0;
    }
  });

  it('certificate and raw-public-key sessions are taken over only while their peer is still trusted', async () => {
    const pki = makePki();
    const otherPki = makePki();
    const x509Server = (port: number, ca: string) =>
      DtlsServerTransport.create({ host: '127.0.0.1', port, cert: pki.serverCert, key: pki.serverKey, ca });
    const rpkServer = (port: number, trusted: string) =>
      DtlsServerTransport.create({ host: '127.0.0.1', port, rpk: pki.rpkServerKey, rpkTrust: [trusted] });
    // One session of each mode, exported twice (an import takes over the sessions it is given once).
    const sealedFrom = async (
      make: (port: number) => Promise<DtlsServerTransport>,
      dtls: Record<string, unknown>,
    ) => {
      const server = new CoapServer();
      server.get('/who', (req) => String(req.peer.auth?.mode));
      const transport = await make(0);
      await server.listen(transport);
      const client = new CoapClient({ dtls });
      try {
        const url = `coaps://127.0.0.1:${transport.localAddress().port}/who`;
        const mode = (await client.get(url, { timeout: 10_000 })).payload.toString();
        const sealed = transport.exportSessions(STATE_KEY, { keep: true });
        return { mode, sealed, port: transport.localAddress().port };
      } finally {
        await client.close();
        await server.close();
      }
    };
    const importInto = async (transport: DtlsServerTransport, sealed: Buffer) => {
      try {
        return await transport.importSessions(sealed, STATE_KEY);
      } finally {
        await transport.close();
      }
    };
    const x = await sealedFrom((port) => x509Server(port, pki.ca), {
      cert: pki.clientCert,
      key: pki.clientKey,
      ca: pki.ca,
    });
    assert.equal(x.mode, 'x509');
    assert.deepEqual(await importInto(await x509Server(0, pki.ca), x.sealed), { imported: 1, skipped: 0 });
    // Other trust anchors: the session is revoked, like a PSK identity without a key.
    assert.deepEqual(await importInto(await x509Server(0, otherPki.ca), x.sealed), {
      imported: 0,
      skipped: 1,
    });
    // No certificates at all (PSK only): revoked too.
    const pskOnly = await DtlsServerTransport.create({ host: '127.0.0.1', port: 0, psk: PSK });
    assert.deepEqual(await importInto(pskOnly, x.sealed), { imported: 0, skipped: 1 });

    const r = await sealedFrom((port) => rpkServer(port, pki.rpkClientFingerprint), {
      rpk: pki.rpkClientKey,
      rpkTrust: [pki.rpkServerFingerprint],
    });
    assert.equal(r.mode, 'rpk');
    assert.deepEqual(await importInto(await rpkServer(0, pki.rpkClientFingerprint), r.sealed), {
      imported: 1,
      skipped: 0,
    });
    // The client's key taken out of the trust list: its session is revoked at the restart.
    assert.deepEqual(await importInto(await rpkServer(0, otherPki.rpkClientFingerprint), r.sealed), {
      imported: 0,
      skipped: 1,
    });
  });

  it('wrong key, damaged, foreign and future data: typed error, nothing imported', async () => {
    const one = await serverOn(0);
    const client = new CoapClient({ psk: PSK });
    const two = await serverOn(0);
    try {
      await client.get(`coaps://127.0.0.1:${one.port}/hello`, { timeout: 10_000 });
      const sealed = one.transport.exportSessions(STATE_KEY, { keep: true });
      assert.equal(one.transport.server.sessionCount, 1, 'keep: true keeps serving');
      const damaged = Buffer.from(sealed);
      damaged[damaged.length - 20]! ^= 1;
      const future = Buffer.from(sealed);
      future[4] = 2;
      const cases: Array<[Buffer, Uint8Array | string, string]> = [
        [sealed, randomBytes(32), 'key'],
        [damaged, STATE_KEY, 'key'],
        [Buffer.from('SQLite format 3\0 and more bytes than a header'), STATE_KEY, 'foreign'],
        [Buffer.alloc(0), STATE_KEY, 'foreign'],
        [sealed.subarray(0, 30), STATE_KEY, 'corrupt'],
        [future, STATE_KEY, 'version'],
        [sealed, 'short', 'key'],
      ];
      for (const [buf, key, problem] of cases) {
        await assert.rejects(two.transport.importSessions(buf, key), (err: unknown) => {
          assert.ok(err instanceof DtlsSessionStateError, String(err));
          assert.equal(err.code, 'COAP_ERR_DTLS_SESSION_STATE');
          assert.equal(err.problem, problem);
          return true;
        });
        assert.equal(two.transport.server.sessionCount, 0);
      }
      // A session whose PSK identity is gone is not imported.
      const other = await DtlsServerTransport.create({
        host: '127.0.0.1',
        port: 0,
        psk: (id) => (id === 'someone-else' ? 'k' : undefined),
      });
      try {
        assert.deepEqual(await other.importSessions(sealed, STATE_KEY), { imported: 0, skipped: 1 });
        assert.equal(other.server.sessionCount, 0);
      } finally {
        await other.close();
      }
      // maxSessions: all or nothing.
      const tiny = await DtlsServerTransport.create({ host: '127.0.0.1', port: 0, psk: PSK, maxSessions: 1 });
      try {
        const two2 = await tiny.importSessions(sealed, STATE_KEY);
        assert.equal(two2.imported, 1);
        assert.deepEqual(await tiny.importSessions(sealed, STATE_KEY), { imported: 0, skipped: 1 });
      } finally {
        await tiny.close();
      }
      assert.throws(() => one.transport.exportSessions('too short'), DtlsSessionStateError);
    } finally {
      await client.close();
      await one.server.close();
      await two.server.close();
    }
  });
});
