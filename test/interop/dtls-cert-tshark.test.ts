/**
 * A certificate-mode (ECDHE_ECDSA, mutual X.509) coapkit session recorded as a
 * pcap: tshark decrypts it with coapkit's key log, sees Certificate,
 * ServerKeyExchange, CertificateRequest and CertificateVerify, and flags no
 * frame as malformed; `coapkit dissect --keylog` shows the certificates and the CoAP inside.
 */
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { DtlsClientTransport, DtlsServerTransport } from '../../src/transport/dtls.js';
import { makePeer } from '../../src/transport/transport.js';
import { LossyProxy } from '../helpers/lossy-proxy.js';
import { writePcap } from '../helpers/pcap.js';
import { makePki } from '../helpers/pki.js';
import { findProgram } from '../helpers/proc.js';
import { runCli } from '../integration/cli-helpers.js';
import { WELL_KNOWN_CORE_GET, withTimeout } from './dtls-peers.js';

const TSHARK = findProgram('tshark');

test('tshark decrypts a certificate-mode session with the key log; coapkit dissect shows it', async (t) => {
  if (!TSHARK) return t.skip('tshark not installed');
  const pki = makePki();
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-dtls-cert-'));
  const keylog = join(dir, 'keys.log');
  const server = await DtlsServerTransport.create({
    host: '127.0.0.1',
    port: 0,
    cert: pki.serverCert,
    key: pki.serverKey,
    ca: pki.ca,
  });
  server.attach({
    message: (d, p) => {
      server.send(
        Buffer.concat([Buffer.from([0x60, 0x45, d[2]!, d[3]!, 0xc1, 0x28, 0xff]), Buffer.from('</cert>')]),
        p,
      );
    },
  });
  const proxy = await LossyProxy.create({ target: server.localAddress().port });
  const client = await DtlsClientTransport.create({
    cert: pki.clientCert,
    key: pki.clientKey,
    ca: pki.ca,
    keyLogFile: keylog,
  });
  try {
    const peer = makePeer('127.0.0.1', proxy.port);
    const got = new Promise<Buffer>((resolve) => client.attach({ message: resolve }));
    client.send(WELL_KNOWN_CORE_GET, peer);
    const resp = await withTimeout(got, 5000, 'response');
    assert.equal(resp[1], 0x45);
    assert.match(readFileSync(keylog, 'utf8'), /^CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}\n$/);
    const file = join(dir, 'session.pcap');
    const from = { address: '127.0.0.1', port: 40000 };
    const to = { address: '127.0.0.1', port: 5684 };
    writePcap(
      file,
      proxy.stats.log.map((d, i) => ({
        src: d.dir === 'up' ? from : to,
        dst: d.dir === 'up' ? to : from,
        data: d.data,
        timeMs: (1_700_000_000 + i) * 1000,
      })),
    );
    const tshark = async (filter: string, fields: string[]) =>
      (
        await promisify(execFile)(
          TSHARK,
          [
            '-r',
            file,
            '-o',
            `tls.keylog_file:${keylog}`,
            '-d',
            'udp.port==5684,dtls',
            '-Y',
            filter,
            '-T',
            'fields',
            ...fields.flatMap((f) => ['-e', f]),
          ],
          { timeout: 20_000 },
        )
      ).stdout.trim();
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
    await client.close();
    await server.close();
    await proxy.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(pki.dir, { recursive: true, force: true });
  }
});
