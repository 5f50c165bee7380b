/** runDissect(): argument parsing, output modes and exit codes. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runDissect } from '../../src/dissect/cli.js';
import { scenarioCapture } from '../vectors/captures/scenario.js';

const FILE = fileURLToPath(new URL('../vectors/captures/golioth_basics_psk.pcapng', import.meta.url));
const PSK = '69af1685ba9080be907922728c1e97c5';
const dir = mkdtempSync(join(tmpdir(), 'coapkit-dissect-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function run(argv: string[], isTTY = false): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => {
    out += d;
  });
  stderr.on('data', (d) => {
    err += d;
  });
  const code = await runDissect(argv, { stdout, stderr, isTTY });
  return { code, out, err };
}

describe('coapkit dissect CLI', () => {
  it('--help prints usage and exits 0', async () => {
    const r = await run(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.out, /Usage: coapkit dissect FILE/);
    assert.match(r.out, /--psk-hex/);
  });

  it('usage errors exit 64, an unreadable file 66', async () => {
    for (const argv of [
      [],
      [FILE, FILE],
      [FILE, '--bogus'],
      [FILE, '--port', 'x'],
      [FILE, '--psk-hex', 'abc'],
      [FILE, '--psk', 'a', '--psk-hex', '61'],
    ]) {
      const r = await run(argv);
      assert.equal(r.code, 64, argv.join(' '));
      assert.match(r.err, /coapkit dissect: /);
    }
    const missing = await run([join(dir, 'nope.pcap')]);
    assert.equal(missing.code, 66);
    assert.match(missing.err, /cannot read .*ENOENT/);
  });

  it('decodes the Golioth capture with --psk and with --psk-hex', async () => {
    const a = await run([FILE, '--psk', PSK]);
    assert.equal(a.code, 0);
    assert.match(a.out, /#15 0\.392758 CON MID=43156 TKN=7d5b825d POST \/logs/);
    assert.doesNotMatch(a.out, /\x1b\[/);
    const b = await run([FILE, '--psk-hex', Buffer.from(PSK).toString('hex')]);
    assert.equal(b.out, a.out);
  });

  it('colors only on a TTY unless --no-color', async () => {
    assert.match((await run([FILE, '--psk', PSK], true)).out, /\x1b\[/);
    assert.doesNotMatch((await run([FILE, '--psk', PSK, '--no-color'], true)).out, /\x1b\[/);
  });

  it('--json emits one object with frames and CoAP messages', async () => {
    const r = await run([FILE, '--psk', PSK, '--json']);
    assert.equal(r.code, 0);
    const j = JSON.parse(r.out);
    assert.equal(j.frames.length, 78);
    assert.equal(j.coap.messages.length, 64);
    assert.equal(j.dtls[0].cipherSuite.id, 0xa8);
    assert.equal(j.coap.messages[0].token, '7d5b825d');
  });

  it('truncated capture: partial output and exit 1', async () => {
    const bytes = readFileSync(FILE);
    const cut = join(dir, 'cut.pcapng');
    writeFileSync(cut, bytes.subarray(0, 6000));
    const r = await run([cut, '--psk', PSK]);
    assert.equal(r.code, 1);
    assert.match(r.out, /Capture error: truncated pcapng block/);
    assert.match(r.out, /CON MID=43156/);
    assert.match(r.err, /truncated/);
  });

  it('finds CoAP on another port by content; --port forces a port; --keylog reads a file', async () => {
    const moveTo = (port: number): Buffer => {
      const moved = scenarioCapture();
      // Rewrite server port 5683 -> port in every UDP header (Ethernet 14 + IPv4 20).
      let o = 24;
      while (o < moved.length) {
        const len = moved.readUInt32LE(o + 8);
        const udp = o + 16 + 34;
        for (const p of [udp, udp + 2]) if (moved.readUInt16BE(p) === 5683) moved.writeUInt16BE(port, p);
        o += 16 + len;
      }
      return moved;
    };
    const f = join(dir, 'moved.pcap');
    writeFileSync(f, moveTo(6000));
    const byContent = await run([f]);
    assert.equal(byContent.code, 0);
    assert.match(byContent.out, /CON MID=100 TKN=aa01 GET \/large/);
    assert.match(byContent.out, /CoAP recognised by content on UDP port\(s\) 6000/);
    // 443 belongs to another protocol (QUIC): only --port makes it CoAP.
    const q = join(dir, 'quic-port.pcap');
    writeFileSync(q, moveTo(443));
    assert.match((await run([q])).out, /no CoAP messages decoded/);
    const r = await run([q, '--port', '443']);
    assert.equal(r.code, 0);
    assert.match(r.out, /CON MID=100 TKN=aa01 GET \/large/);
    assert.doesNotMatch(r.out, /recognised by content/);
    const kl = join(dir, 'keys.log');
    writeFileSync(kl, 'CLIENT_RANDOM 00 11\n');
    const k = await run([FILE, '--keylog', kl]);
    assert.equal(k.code, 0);
    assert.match(k.out, /decryption: no-key/);
  });
});
