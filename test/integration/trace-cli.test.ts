/**
 * `coapkit <command> --trace[=json]`: the CLI as a child process against an
 * in-process loopback server; the trace goes to stderr, the payload to stdout.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { UsageError } from '../../src/errors.js';
import { CoapServer } from '../../src/server/server.js';
import { extractTraceFlag } from '../../src/trace/cli.js';
import { runCli } from './cli-helpers.js';

async function coapkit(
  args: string[],
  timeoutMs = 20_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = await runCli(args, { env: { NO_COLOR: '1' }, timeoutMs });
  return { code: r.code, stdout: r.out, stderr: r.stderr };
}

describe('coapkit --trace', () => {
  const server = new CoapServer();
  server.get('/hello', () => ({ payload: 'world', contentFormat: 0 }));
  server.post('/logs', () => ({ code: '2.03' }));
  let port = 0;

  before(async () => {
    const ep = await server.listen({ host: '127.0.0.1', port: 0 });
    port = ep.transport.localAddress().port;
  });
  after(() => server.close());

  it('prints each layer on stderr and keeps stdout for the payload', async () => {
    const r = await coapkit(['get', `coap://127.0.0.1:${port}/hello`, '--trace', '--timeout', '5']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'world');
    const m = r.stderr.match(/CoAP {2}→ 127\.0\.0\.1:\d+\s+CON GET {2}MID (\d+) {2}token ([0-9a-f]+)/);
    assert.ok(m, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`CoAP  ← 127\\.0\\.0\\.1:${port}\\s+ACK 2\\.05 Content  MID ${m[1]}  token ${m[2]}`),
    );
    assert.match(r.stderr, /Uri-Path: "hello"/);
    assert.match(r.stderr, /IPv4 20 \+ UDP 8 \+ CoAP 4 hdr/);
    assert.match(r.stderr, /piggybacked on the ACK of MID/);
    assert.doesNotMatch(r.stderr, /\x1b\[/);
  });

  it('resolves localhost in the trace (DNS A/AAAA)', async () => {
    const r = await coapkit([
      'post',
      `coap://localhost:${port}/logs`,
      '-p',
      '{"a":1}',
      '-t',
      'json',
      '--trace',
    ]);
    // localhost may resolve to ::1 first where the server (127.0.0.1) is not listening:
    // the DNS step is traced either way.
    assert.match(r.stderr, /DNS\s+localhost resolved in [\d.]+ ms → (127\.0\.0\.1|::1) \(IPv[46]\)/);
    assert.match(r.stderr, /A {4}/);
    assert.match(r.stderr, /AAAA /);
    if (/→ 127\.0\.0\.1 /.test(r.stderr)) {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /ACK 2\.03 Valid/);
      assert.match(r.stderr, /payload 7 B application\/json: \{"a":1\}/);
    }
  });

  it('--trace=json writes one JSON object per line', async () => {
    const r = await coapkit(['get', `coap://127.0.0.1:${port}/hello`, '--trace=json']);
    assert.equal(r.code, 0, r.stderr);
    const events = r.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; coap?: { codeText: string; messageId: number } });
    const names = events.map((e) => e.event);
    assert.deepEqual(
      names.filter((n) => n.startsWith('message:')),
      ['message:sent', 'message:received'],
    );
    assert.ok(names.includes('exchange:matched'));
    assert.equal(events[0]?.coap?.codeText, 'GET');
    assert.equal(events[1]?.coap?.codeText, '2.05 Content');
    assert.equal(events[0]?.coap?.messageId, events[1]?.coap?.messageId);
  });

  it('rejects an unknown trace format as a usage error', async () => {
    const r = await coapkit(['get', `coap://127.0.0.1:${port}/hello`, '--trace=xml']);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /--trace expects "text" or "json", got "xml"/);
  });
});

describe('extractTraceFlag', () => {
  it('takes --trace / --trace=json out of the arguments, anywhere before --', () => {
    assert.equal(extractTraceFlag(['get', 'coap://h/']), undefined);
    assert.deepEqual(extractTraceFlag(['get', '--trace', 'coap://h/']), {
      format: 'text',
      argv: ['get', 'coap://h/'],
    });
    assert.deepEqual(extractTraceFlag(['--trace=json', 'ping', 'coap://h']), {
      format: 'json',
      argv: ['ping', 'coap://h'],
    });
    assert.deepEqual(extractTraceFlag(['post', 'coap://h/', '--', '--trace']), undefined);
    assert.deepEqual(extractTraceFlag(['post', '--trace', 'coap://h/', '--', '--trace']), {
      format: 'text',
      argv: ['post', 'coap://h/', '--', '--trace'],
    });
    assert.throws(() => extractTraceFlag(['get', '--trace=yaml']), UsageError);
  });
});
