import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { report } from '../../src/cli/cli.js';
import { DtlsAlertError, DtlsError } from '../../src/errors.js';

async function printed(err: unknown): Promise<{ status: number; text: string }> {
  const stderr = new PassThrough();
  const chunks: Buffer[] = [];
  stderr.on('data', (c: Buffer) => chunks.push(c));
  const io = { stdout: new PassThrough(), stderr, stdin: new PassThrough(), env: {} };
  const status = await report(err, io);
  return { status, text: Buffer.concat(chunks).toString('utf8') };
}

test('a DTLS failure without its own hint: the PSK hint only for the alerts a wrong key gives', async () => {
  for (const alert of [20, 51, 115]) {
    const e = new DtlsAlertError('received fatal alert');
    e.alert = alert;
    const { status, text } = await printed(e);
    assert.equal(status, 3);
    assert.match(text, /hint: check the PSK identity and key/, `alert ${alert}`);
  }
  const mismatch = new DtlsAlertError('received fatal alert handshake_failure (40)');
  mismatch.alert = 40;
  const m = await printed(mismatch);
  assert.doesNotMatch(m.text, /PSK identity and key/);
  assert.match(m.text, /cipher suite in common/);
  const plain = await printed(new DtlsError('server chose a cipher suite we did not offer'));
  assert.match(plain.text, /cipher suite in common/);
});
