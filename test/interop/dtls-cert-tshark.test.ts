/**
 * A certificate-mode (ECDHE_ECDSA, mutual X.509) coapkit session recorded as a
 * pcap: tshark decrypts it with coapkit's key log, sees Certificate,
 * ServerKeyExchange, CertificateRequest and CertificateVerify, and flags no
 * frame as malformed; `coapkit dissect --keylog` shows the certificates and the CoAP inside.
 */
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { makePki } from '../helpers/pki.js';
import { findProgram } from '../helpers/proc.js';
import { tsharkFields } from '../helpers/tshark.js';
import { runCli } from '../integration/cli-helpers.js';
import { recordDtlsSession } from './dtls-peers.js';

const TSHARK = findProgram('tshark');

test('tshark decrypts a certificate-mode session with the key log; coapkit dissect shows it', async (t) => {
  if (!TSHARK) return t.skip('tshark not installed');
  const pki = makePki();
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-dtls-cert-'));
  try {
    const { file, keylog } = await recordDtlsSession(
      dir,
      { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca },
      { cert: pki.clientCert, key: pki.clientKey, ca: pki.ca },
      '</cert>',
    );
    const tshark = (filter: string, fields: string[]) =>
      tsharkFields(file, fields, { keylog, dtlsPort: 5684, filter }).then((out) => out.trim());
    const coap = (await tshark('coap', ['coap.code', 'coap.opt.uri_path'])).split('\n');
    assert.deepEqual(coap[0]?.split('\t'), ['1', '.well-known,core']);
    assert.equal(coap[1]?.split('\t')[0], '69');
    const types = new Set(
      (await tshark('dtls.handshake.type', ['dtls.handshake.type'])).split(/[\n,\t]/).map(Number),
    );
    for (const t of [1, 2, 3, 11, 12, 13, 14, 15, 16, 20])
      assert.ok(types.has(t), `handshake type ${t} seen`);
    assert.equal(await tshark('_ws.malformed || _ws.expert.severity == error', ['frame.number']), '');
    assert.match(await tshark('dtls.handshake.type == 11', ['x509sat.uTF8String']), /device-1/);

    const d = await runCli(['dissect', file, '--keylog', keylog, '--no-color']).catch((e) => e);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.out, /certificate: CN=localhost/);
    assert.match(d.out, /certificate: CN=device-1/);
    assert.match(d.out, /signature algorithm: 0x0403 ecdsa_secp256r1_sha256/);
    assert.match(d.out, /TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8/);
    assert.match(d.out, /\.well-known/);
    assert.doesNotMatch(d.out, /malformed/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(pki.dir, { recursive: true, force: true });
  }
});
