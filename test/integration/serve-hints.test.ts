/** Issue 18 item 8: serve's upload size, its 4.13 text, and --host NAME binding every address. */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { describe, it } from 'node:test';
import {
  DEFAULT_SERVE_MAX_SIZE,
  parseServeArgs,
  type ServeOptions,
  startServe,
} from '../../src/cli/commands/serve.js';
import { CoapClient } from '../../src/client/client.js';
import { UsageError } from '../../src/errors.js';

function options(args: string[]): ServeOptions {
  const o = parseServeArgs(['--port', '0', '--secure-port', '0', '-q', ...args], {});
  assert.notEqual(o, 'help');
  return o as ServeOptions;
}

/** Can this machine bind ::1? */
function haveIpv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket('udp6');
    s.once('error', () => resolve(false));
    s.bind(0, '::1', () => s.close(() => resolve(true)));
  });
}

describe('coapkit serve limits', () => {
  it('--max-size defaults to 4 MiB and must fit in --max-store-bytes', () => {
    assert.equal(options([]).maxSize, DEFAULT_SERVE_MAX_SIZE);
    assert.equal(DEFAULT_SERVE_MAX_SIZE, 4 * 1024 * 1024);
    assert.throws(() => options(['--max-size', '2000', '--max-store-bytes', '1000']), UsageError);
  });

  it('a 200 KB firmware upload is stored with the defaults; over --max-size the 4.13 names --max-size', async () => {
    const serve = await startServe(options(['--host', '127.0.0.1']));
    const small = await startServe(options(['--host', '127.0.0.1', '--max-size', '100000']));
    const client = new CoapClient();
    try {
      const image = Buffer.alloc(200 * 1024, 7);
      const url = (s: typeof serve) => `coap://127.0.0.1:${s.listeners[0]!.port}/fw/image.bin`;
      const put = await client.put(url(serve), { payload: image, timeout: 30_000 });
      assert.equal(put.codeText.startsWith('2.0'), true, put.codeText);
      const got = await client.get(url(serve), { timeout: 30_000 });
      assert.equal(Buffer.compare(got.payload, image), 0);
      const refused = await client.put(url(small), { payload: image, timeout: 30_000 });
      assert.equal(refused.code, 0x8d, refused.codeText); // 4.13
      assert.match(refused.text(), /100000 bytes \(--max-size\)/);
      // A payload in one datagram, over a --max-size below a datagram: the store's 4.13, same words.
      const tiny = await startServe(options(['--host', '127.0.0.1', '--max-size', '100']));
      try {
        const r = await client.put(url(tiny), { payload: Buffer.alloc(500), timeout: 10_000 });
        assert.equal(r.code, 0x8d, r.codeText);
        assert.match(r.text(), /limit of 100 bytes \(--max-size\)/);
      } finally {
        await tiny.close();
      }
    } finally {
      await client.close();
      await serve.close();
      await small.close();
    }
  });
});

describe('coapkit serve --host NAME', () => {
  it('binds every address the name resolves to (both families)', async (t) => {
    if (!(await haveIpv6Loopback())) {
      t.skip('no ::1 on this machine');
      return;
    }
    const o = options(['--host', 'localhost', '--generate-psk']);
    o.lookupHost = async () => ['127.0.0.1', '::1'];
    const serve = await startServe(o);
    const client = new CoapClient();
    try {
      const coap = serve.listeners.filter((l) => l.scheme === 'coap').map((l) => l.address);
      const coaps = serve.listeners.filter((l) => l.scheme === 'coaps').map((l) => l.address);
      assert.deepEqual(coap.sort(), ['127.0.0.1', '::1']);
      assert.deepEqual(coaps.sort(), ['127.0.0.1', '::1']);
      const ports = new Set(serve.listeners.filter((l) => l.scheme === 'coap').map((l) => l.port));
      assert.equal(ports.size, 1, 'one port on every address');
      const port = [...ports][0]!;
      for (const host of ['127.0.0.1', '[::1]']) {
        const r = await client.get(`coap://${host}:${port}/time`, { timeout: 5000 });
        assert.equal(r.code, 0x45);
      }
    } finally {
      await client.close();
      await serve.close();
    }
  });

  it('with the real resolver: localhost binds what dns.lookup returns for it', async () => {
    const expected = [...new Set((await lookup('localhost', { all: true })).map((a) => a.address))].sort();
    const serve = await startServe(options(['--host', 'localhost']));
    try {
      const got = serve.listeners.filter((l) => l.scheme === 'coap').map((l) => l.address);
      assert.deepEqual(got.sort(), expected);
    } finally {
      await serve.close();
    }
  });
});
