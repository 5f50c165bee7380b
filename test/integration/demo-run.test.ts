/**
 * `coapkit demo`: the whole scenario runs, exits 0 within its time limit,
 * shows every step, and leaves nothing open.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { runDemo } from '../../src/demo/demo.js';
import { runCli } from './cli-helpers.js';

async function coapkit(
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  const r = await runCli(args, { env: { NO_COLOR: '1' }, timeoutMs });
  return { code: r.code, stdout: r.out, stderr: r.stderr, ms: Date.now() - started };
}

function sink(): { stream: Writable; text(): string } {
  const chunks: string[] = [];
  return {
    stream: new Writable({
      write(c, _e, cb) {
        chunks.push(c.toString());
        cb();
      },
    }),
    text: () => chunks.join(''),
  };
}

/** Checks that `patterns` occur in `text` in this order. */
function inOrder(text: string, patterns: RegExp[]): void {
  let at = 0;
  for (const p of patterns) {
    const m = p.exec(text.slice(at));
    assert.ok(m, `expected ${p} after offset ${at}`);
    at += m.index + m[0].length;
  }
}

describe('coapkit demo', () => {
  it('plays every step over coaps and exits 0 in under 15 s', async () => {
    const r = await coapkit(['demo'], 20_000);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.ms < 15_000, `took ${r.ms} ms`);
    assert.doesNotMatch(r.stderr, /coapkit demo:/);
    const out = r.stdout;
    inOrder(out, [
      /── 1\. Setting up: the "cloud"/,
      /cloud listening on coaps:\/\/(127\.0\.0\.1|\[::1\]):\d+/,
      /PSK identity "device-[0-9a-f]{6}", key .*: [0-9a-f]{32}/,
      /── 2\. Address resolution \(DNS\)/,
      /DNS\s+localhost resolved in [\d.]+ ms → /,
      /── 3\. Establishing a secure channel \(DTLS 1\.2 handshake\)/,
      /client flight: ClientHello /,
      /server flight: HelloVerifyRequest /,
      /cookie: [0-9a-f]{16}… \(32 B\)/,
      /client flight: ClientHello /,
      /server flight: ServerHello, ServerHelloDone /,
      /client flight: ClientKeyExchange, ChangeCipherSpec, Finished /,
      /server flight: ChangeCipherSpec, Finished /,
      /secure channel up in [\d.]+ ms: TLS_PSK_WITH_AES_128_CCM_8/,
      /── 4\. Sending a CoAP message: POST \/logs/,
      /CoAP {2}→ cloud\s+CON POST {2}MID (\d+)/,
      /Content-Format: 50 \(application\/json\)/,
      /IPv[46] \d+ \+ UDP 8 \+ DTLS 29 \+ CoAP 4 hdr \+ 4 token/,
      /handling POST \/logs/,
      /CoAP {2}← cloud\s+ACK 2\.03 Valid {2}MID \d+/,
      /» 2\.03 Valid, piggybacked on the ACK/,
      /── 5\. Observing the device settings/,
      /Observe: 0/,
      /» registered, current settings \(Observe 2\)/,
      /CoAP {2}← cloud\s+CON 2\.05 Content .*\n\s+Observe: 3/,
      /» notification #1 \(Observe 3\): .*"logLevel":"debug"/,
      /» notification #2 \(Observe 4\): .*"ledBrightness":40/,
      /CON GET {2}MID \d+ {2}token [0-9a-f]+ .*\n.*\n\s+Observe: 1\n/,
      /» deregistered; the cloud now has 0 observers of \/\.d\/settings/,
      /── 6\. Firmware download, block-wise \(64 KiB in 1024 B blocks\)/,
      /Block2: 0\/1\/1024/,
      /progress: 100% \(65536\/65536 B, 64 blocks\)/,
      /» 64 KiB received, SHA-256 [0-9a-f]{16}… matches the image/,
      /── 7\. How does it stack up\?/,
      /» \d+ CoAP messages, \d+ B on the wire: IP \d+ .*DTLS \d+ .*payload \d+/,
      /» done in [\d.]+ s/,
    ]);
    // The same POST: the ACK echoes the request's MID and token (piggybacked).
    const req = out.match(/CON POST {2}MID (\d+) {2}token ([0-9a-f]+)/);
    assert.ok(req);
    assert.match(out, new RegExp(`ACK 2\\.03 Valid  MID ${req[1]}  token ${req[2]}`));
    // Blocks 2..61 are counted but not printed.
    assert.doesNotMatch(out, /Block2: 30\/0\/1024/);
    assert.match(out, /Block2: 63\/0\/1024/);
  });

  it('runs in-process over plain coap:// and closes every socket and timer', async () => {
    const out = sink();
    const err = sink();
    const code = await runDemo(
      { stdout: out.stream, stderr: err.stream, isTTY: false },
      { secure: false, firmwareSize: 3000, blockSize: 256, allBlocks: true },
    );
    assert.equal(code, 0, err.text());
    const text = out.text();
    assert.match(text, /cloud listening on coap:\/\//);
    assert.match(text, /Skipped: plain coap:\/\/ has no handshake/);
    assert.doesNotMatch(text, /DTLS \d+ \+/);
    assert.match(text, /Block2: 11\/0\/256/);
    assert.match(text, /Block2: 5\/1\/256/);
    assert.match(text, /» 3000 B received, SHA-256 .* matches the image/);
    await new Promise((r) => setImmediate(r));
    const sockets = process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap');
    assert.deepEqual(sockets, [], `left open: ${process.getActiveResourcesInfo().join(', ')}`);
  });

  it('--json: trace lines on stdout parse as JSON, headings go to stderr', async () => {
    const r = await coapkit(['demo', '--plain', '--json', '--size', '2048'], 20_000);
    assert.equal(r.code, 0, r.stderr);
    const events = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string });
    assert.ok(events.some((e) => e.event === 'dns:resolved'));
    assert.ok(events.some((e) => e.event === 'exchange:matched'));
    assert.match(r.stderr, /── 4\. Sending a CoAP message: POST \/logs/);
  });

  it('--help and bad options', async () => {
    const h = await coapkit(['demo', '--help'], 15_000);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /Usage: coapkit demo/);
    const bad = await coapkit(['demo', '--block-size', '100'], 15_000);
    assert.equal(bad.code, 64);
    assert.match(bad.stderr, /--block-size expects/);
  });
});
