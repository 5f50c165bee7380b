/**
 * The console's DTLS credentials (src/console/credentials.ts and the session
 * that keeps them): PSK, certificate and raw-public-key messages from the
 * page are checked at once and answered with a summary or the typed error's
 * message, never with key material; certificate clients have their own
 * per-page bound; closing the page forgets the credentials.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import type { WebSocket } from 'ws';
import type { CoapClient } from '../../src/client/client.js';
import { parseCredentials } from '../../src/console/credentials.js';
import { LadderHub } from '../../src/console/ladder.js';
import { ConsoleSession, DEFAULT_SESSION_LIMITS } from '../../src/console/session.js';
import { makePki } from '../helpers/pki.js';

/** Enough of a `ws` WebSocket for a session: what it sends is kept. */
class FakeWs extends EventEmitter {
  readyState = 1;
  readonly sent: Array<string | Uint8Array> = [];
  send(data: string | Uint8Array): void {
    this.sent.push(data);
  }
  close(): void {
    this.readyState = 3;
    this.emit('close');
  }
  json(): Array<Record<string, unknown>> {
    return this.sent.filter((d) => typeof d === 'string').map((d) => JSON.parse(d as string));
  }
  control(o: Record<string, unknown>): void {
    this.emit('message', Buffer.from(JSON.stringify({ type: 'credentials', ...o })), false);
  }
}

describe('console credentials', () => {
  const pki = makePki();
  after(() => rmSync(pki.dir, { recursive: true, force: true }));
  const keyBody = (pem: string) => pem.split('\n')[1]!;

  it('PSK: identity with a text or hex key; an empty identity is none', () => {
    assert.deepEqual(parseCredentials({ identity: 'a', key: 'secret' }), {
      kind: 'psk',
      identity: 'a',
      key: Buffer.from('secret'),
    });
    const hex = parseCredentials({ identity: 'a', keyHex: '0aff' });
    assert.ok(hex.kind === 'psk' && hex.key.equals(Buffer.from([0x0a, 0xff])));
    assert.deepEqual(parseCredentials({ identity: '', key: 'x' }), { kind: 'none' });
  });

  it('certificate: a summary naming the certificate and the CA, nothing of the key', () => {
    const c = parseCredentials({ mode: 'cert', cert: pki.clientCert, key: pki.clientKey, ca: pki.ca });
    assert.equal(c.kind, 'cert');
    if (c.kind !== 'cert') return;
    assert.equal(c.summary, 'certificate CN=device-1; server checked against CN=coapkit test CA');
    assert.equal(c.dtls.verifyPeer, undefined);
    const noCa = parseCredentials({ mode: 'cert', cert: pki.clientCert, key: pki.clientKey, ca: '  ' });
    assert.ok(noCa.kind === 'cert' && noCa.dtls.verifyPeer === false);
    assert.match(
      noCa.kind === 'cert' ? noCa.summary : '',
      /no CA given: over coaps:\/\/ the server's certificate is not verified/,
    );
    assert.notEqual(noCa.kind === 'cert' && noCa.id, c.id, 'other material, another id');
    const expired = parseCredentials({
      mode: 'cert',
      cert: pki.expiredClientCert,
      key: pki.expiredClientKey,
      ca: pki.ca,
    });
    assert.match(expired.kind === 'cert' ? expired.summary : '', /^certificate CN=old-device \(expired on /);
  });

  it('certificate errors are the DtlsCredentialError messages, without the key', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [
        { cert: pki.clientKey, key: pki.clientKey },
        /^cert is not a certificate: .*\(this is a private key\)$/,
      ],
      [
        { cert: pki.clientCert, key: pki.serverKey, ca: pki.ca },
        /^key does not match cert \(subject CN=device-1\)$/,
      ],
      [{ cert: pki.clientCert, key: 'not a key' }, /^key is not a private key/],
      [
        { cert: pki.clientCert, key: pki.clientKey, ca: pki.clientCert },
        /^ca certificate CN=device-1 is not a CA/,
      ],
      [{ cert: pki.clientCert }, /needs the private key/],
      [{ key: pki.clientKey }, /needs the client certificate/],
      [{ cert: 'x'.repeat(40_000), key: pki.clientKey }, /over 32768 characters/],
    ];
    for (const [fields, re] of cases) {
      const r = parseCredentials({ mode: 'cert', ...fields });
      assert.equal(r.kind, 'error', JSON.stringify(fields).slice(0, 80));
      if (r.kind !== 'error') continue;
      assert.match(r.message, re);
      assert.ok(!r.message.includes(keyBody(pki.clientKey)) && !r.message.includes(keyBody(pki.serverKey)));
    }
    const mode = parseCredentials({ mode: 'x' });
    assert.ok(mode.kind === 'error' && /unknown credentials mode/.test(mode.message));
  });

  it('raw public key: with and without trusted server keys; a bad trust entry', () => {
    const any = parseCredentials({ mode: 'rpk', rpk: pki.rpkClientKey });
    assert.match(
      any.kind === 'rpk' ? any.summary : '',
      /^raw public key [0-9a-f]{16}…; any server key accepted/,
    );
    assert.ok(pki.rpkClientFingerprint.startsWith(any.kind === 'rpk' ? any.summary.slice(15, 31) : '-'));
    const trusted = parseCredentials({
      mode: 'rpk',
      rpk: pki.rpkClientKey,
      rpkTrust: `${pki.rpkServerFingerprint}\n# a comment\n${pki.rpkServerKey}`,
    });
    assert.match(trusted.kind === 'rpk' ? trusted.summary : '', /server key must be one of 1 trusted$/);
    const bad = parseCredentials({ mode: 'rpk', rpk: pki.rpkClientKey, rpkTrust: 'nonsense' });
    assert.ok(bad.kind === 'error' && /neither a SHA-256 fingerprint/.test(bad.message));
    const none = parseCredentials({ mode: 'rpk', rpk: '' });
    assert.ok(none.kind === 'error' && /needs a P-256 private key/.test(none.message));
  });

  it('a session answers, bounds its certificate clients and forgets everything on close', async () => {
    const ws = new FakeWs();
    const hub = new LadderHub();
    const session = new ConsoleSession(ws as unknown as WebSocket, hub, {
      ...DEFAULT_SESSION_LIMITS,
      maxCertClients: 2,
    });
    const s = session as unknown as {
      certClients: Map<string, CoapClient>;
      creds: { kind: string };
      client(uri: unknown): CoapClient;
    };
    const target = { scheme: 'coaps', host: '127.0.0.1', port: 5684, hostType: 1, path: [], query: [] };
    const keys = [pki.clientKey, pki.serverKey, pki.otherCaClientKey];
    const certs = [pki.clientCert, pki.serverCert, pki.otherCaClientCert];
    const made: CoapClient[] = [];
    for (let i = 0; i < 3; i++) {
      ws.control({ mode: 'cert', cert: certs[i], key: keys[i] });
      made.push(s.client(target));
    }
    assert.equal(s.certClients.size, 2, 'the oldest certificate client is closed past the bound');
    assert.deepEqual([...s.certClients.values()], [made[1], made[2]]);
    assert.equal(s.client(target), made[2], 'the same credentials reuse their client');
    // The same message again is not parsed or answered again.
    const answers = ws.json().filter((j) => j.type === 'credentials');
    ws.control({ mode: 'cert', cert: certs[2], key: keys[2] });
    assert.equal(ws.json().filter((j) => j.type === 'credentials').length, answers.length);
    assert.equal(answers.length, 3);
    for (const a of answers) assert.match(String(a.summary), /^certificate CN=/);
    ws.control({ mode: 'cert', cert: pki.clientKey, key: pki.clientKey });
    assert.match(String(ws.json().at(-1)?.error), /cert is not a certificate/);
    for (const text of ws.sent) {
      const t = typeof text === 'string' ? text : Buffer.from(text).toString('latin1');
      for (const k of keys) assert.ok(!t.includes(keyBody(k)), 'no key material goes back to the page');
    }
    // An oversized control message aborts the page's connection.
    ws.emit('message', Buffer.from('x'.repeat(200_000)), false);
    assert.equal(ws.readyState, 3);
    await session.close();
    assert.equal(s.certClients.size, 0);
    assert.equal(s.creds.kind, 'none');
    hub.close();
  });
});
