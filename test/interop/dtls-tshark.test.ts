/**
 * The NSS key log coapkit writes lets tshark decrypt a coapkit DTLS session:
 * datagrams are recorded by a relay, written as a pcap (test/helpers/pcap.ts), and
 * tshark must decode the CoAP request and response inside.
 */
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { findProgram } from '../helpers/proc.js';
import { tsharkFields } from '../helpers/tshark.js';
import { recordDtlsSession } from './dtls-peers.js';

const TSHARK = findProgram('tshark');

test('tshark decrypts a coapkit session with the key log coapkit wrote', async (t) => {
  if (!TSHARK) return t.skip('tshark not installed');
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-dtls-'));
  try {
    const psk = { identity: 'ts', key: 'tshark-key' };
    const { file, keylog } = await recordDtlsSession(dir, { psk }, { psk }, '</tshark>');
    const stdout = await tsharkFields(file, ['coap.code', 'coap.opt.uri_path'], {
      keylog,
      dtlsPort: 5684,
      filter: 'coap',
    });
    const lines = stdout.trim().split('\n');
    assert.deepEqual(lines[0]?.split('\t'), ['1', '.well-known,core']);
    assert.equal(lines[1]?.split('\t')[0], '69');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
