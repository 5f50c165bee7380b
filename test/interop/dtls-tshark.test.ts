/**
 * The NSS key log coapkit writes lets tshark decrypt a coapkit DTLS session:
 * datagrams are recorded by a relay, written as a pcap (test/helpers/pcap.ts), and
 * tshark must decode the CoAP request and response inside.
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
import { findProgram } from '../helpers/proc.js';
import { WELL_KNOWN_CORE_GET, withTimeout } from './dtls-peers.js';

const TSHARK = findProgram('tshark');

test('tshark decrypts a coapkit session with the key log coapkit wrote', async (t) => {
  if (!TSHARK) return t.skip('tshark not installed');
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-dtls-'));
  const keylog = join(dir, 'keys.log');
  const server = await DtlsServerTransport.create({
    host: '127.0.0.1',
    port: 0,
    psk: { identity: 'ts', key: 'tshark-key' },
  });
  server.attach({
    message: (d, p) => {
      server.send(
        Buffer.concat([Buffer.from([0x60, 0x45, d[2]!, d[3]!, 0xc1, 0x28, 0xff]), Buffer.from('</tshark>')]),
        p,
      );
    },
  });
  const proxy = await LossyProxy.create({ target: server.localAddress().port });
  const client = await DtlsClientTransport.create({
    psk: { identity: 'ts', key: 'tshark-key' },
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
    const { stdout } = await promisify(execFile)(
      TSHARK,
      [
        '-r',
        file,
        '-o',
        `tls.keylog_file:${keylog}`,
        '-d',
        'udp.port==5684,dtls',
        '-Y',
        'coap',
        '-T',
        'fields',
        '-e',
        'coap.code',
        '-e',
        'coap.opt.uri_path',
      ],
      { timeout: 20_000 },
    );
    const lines = stdout.trim().split('\n');
    assert.deepEqual(lines[0]?.split('\t'), ['1', '.well-known,core']);
    assert.equal(lines[1]?.split('\t')[0], '69');
  } finally {
    await client.close();
    await server.close();
    await proxy.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
