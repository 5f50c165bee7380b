/**
 * OSCORE outer block-wise (RFC 8613 §4.1.3.4.2): a protected request cut into
 * outer Block1 blocks by hand (as a proxy that does not know OSCORE would) is
 * put back together, verified and answered; the large protected answer goes
 * out in outer Block2 blocks, the later ones served for the same protected
 * request; client.request reassembles outer Block2 before verifying; the
 * MAX_UNFRAGMENTED_SIZE bound refuses a larger request (4.13 + Size1) and
 * drops a larger response.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { outerReassemble } from '../../src/client/oscore.js';
import { type CoapMessage, decodeMessage, encodeMessage } from '../../src/codec/message.js';
import { decodeBlock, decodeUint, encodeBlock, getOption } from '../../src/codec/options.js';
import { MessageType, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import {
  CoapClient,
  CoapServer,
  enableOscore,
  OscoreContext,
  OscoreError,
  proxyUriOption,
} from '../../src/index.js';
import { type PlainMessage, protectRequest, unprotectResponse } from '../../src/oscore/protect.js';
import { startForwardProxy } from '../helpers/forward-proxy.js';
import { pathOptions } from '../helpers/raw-coap.js';
import { withTimeout } from '../helpers/timing.js';

const SECRET = Buffer.from('0102030405060708090a0b0c0d0e0f10', 'hex');
const SALT = Buffer.from('9e7ca92223786340', 'hex');
const C = Buffer.from('client');
const S = Buffer.from('server');
const clientCtx = () =>
  new OscoreContext({ masterSecret: SECRET, masterSalt: SALT, senderId: C, recipientId: S });
const serverCtx = () =>
  new OscoreContext({ masterSecret: SECRET, masterSalt: SALT, senderId: S, recipientId: C });

async function startServer(maxUnfragmentedSize?: number) {
  // No inner block-wise: the whole 3000-byte body is protected at once, as a proxy's peer may send it.
  const server = new CoapServer({ blockwise: false });
  server.post('/secure/echo', (req) => ({ code: '2.04', payload: req.payload }));
  server.get('/secure/big', () => ({ payload: Buffer.alloc(3000, 'x') }));
  const layer = enableOscore(server, {
    contexts: [serverCtx()],
    required: ['/secure/**'],
    ...(maxUnfragmentedSize ? { maxUnfragmentedSize } : {}),
  });
  const ep = await server.listen({ host: '127.0.0.1', port: 0 });
  return { server, layer, port: ep.transport.localAddress().port };
}

/** One socket for the whole transfer (a proxy's): sends a datagram, waits for the answer with its token. */
function rawPeer(port: number) {
  const sock = dgram.createSocket('udp4');
  let mid = 0x4000;
  return {
    async exchange(m: { code: number; options: CoapMessage['options']; payload?: Buffer }) {
      const token = Buffer.from([mid & 0xff, mid >> 8]);
      const got = new Promise<CoapMessage>((resolve) => {
        const on = (d: Buffer) => {
          const r = decodeMessage(d);
          if (r.token.equals(token)) {
            sock.off('message', on);
            resolve(r);
          }
        };
        sock.on('message', on);
      });
      sock.send(encodeMessage({ type: MessageType.CON, messageId: mid++, token, ...m }), port, '127.0.0.1');
      return withTimeout(got, 5000, 'answer');
    },
    close: () => sock.close(),
  };
}

/** Block NUM (1024 bytes, SZX 6) of a protected request's payload, with an outer Block1 option. */
function outerBlock1(message: PlainMessage, num: number, more: boolean) {
  return {
    code: message.code,
    options: [...message.options, { number: OptionNumber.Block1, value: encodeBlock(num, more, 6) }],
    payload: Buffer.from(message.payload!.subarray(num * 1024, (num + 1) * 1024)),
  };
}

function block(m: CoapMessage, n: number) {
  const v = getOption(m.options, n);
  return v === undefined ? undefined : decodeBlock(v);
}

describe('OSCORE outer block-wise (RFC 8613 §4.1.3.4.2)', () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  // One client context per server: each request a new sequence number.
  const cctx = clientCtx();
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    await srv.server.close();
  });

  it('a protected request cut into outer Block1 blocks is reassembled, decrypted and answered in outer Block2 blocks', async () => {
    const body = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251));
    const { message, binding } = protectRequest(cctx, {
      code: 0x02,
      options: pathOptions('/secure/echo'),
      payload: body,
    });
    const protectedPayload = message.payload!;
    assert.ok(protectedPayload.length > 2048 && protectedPayload.length < 3072);
    const peer = rawPeer(srv.port);
    try {
      let last: CoapMessage | undefined;
      for (let num = 0; num * 1024 < protectedPayload.length; num++) {
        const more = (num + 1) * 1024 < protectedPayload.length;
        const r = await peer.exchange(outerBlock1(message, num, more));
        if (more) {
          assert.equal(r.code, ResponseCode.Continue, `block ${num}: 2.31`);
          assert.deepEqual(block(r, OptionNumber.Block1), { num, more: true, szx: 6, size: 1024 });
        } else last = r;
      }
      assert.ok(last);
      // The final answer: protected (2.04 outside), Block1 echoed, first outer Block2 block + Size2.
      assert.equal(last.code, ResponseCode.Changed);
      assert.ok(getOption(last.options, OptionNumber.Oscore) !== undefined);
      assert.equal(block(last, OptionNumber.Block1)?.more, false);
      const b2 = block(last, OptionNumber.Block2);
      assert.deepEqual(b2, { num: 0, more: true, szx: 6, size: 1024 });
      const total = decodeUint(getOption(last.options, OptionNumber.Size2)!);
      assert.ok(total > 3000);
      // The later blocks: the same protected request with outer Block2 (as the proxy would ask).
      const parts = [last.payload];
      for (let num = 1; num * 1024 < total; num++) {
        const r = await peer.exchange({
          code: message.code,
          options: [...message.options, { number: OptionNumber.Block2, value: encodeBlock(num, false, 6) }],
        });
        assert.equal(r.code, ResponseCode.Changed);
        assert.equal(block(r, OptionNumber.Block2)?.num, num);
        parts.push(r.payload);
      }
      const whole = Buffer.concat(parts);
      assert.equal(whole.length, total);
      const inner = unprotectResponse(binding, {
        ...last,
        options: last.options.filter((o) => o.number === OptionNumber.Oscore),
        payload: whole,
      });
      assert.equal(inner.code, ResponseCode.Changed);
      assert.ok(inner.payload.equals(body), 'the echoed body decrypts whole');
      assert.equal(srv.layer.stats.outerReassembled, 1);
      assert.equal(srv.layer.stats.outerBlocksServed, 2);
    } finally {
      peer.close();
    }
  });

  it('client.request reassembles a protected response sent in outer Block2 blocks before verifying it', async () => {
    const client = new CoapClient();
    try {
      const before = srv.layer.stats.outerBlocksServed;
      const res = await client.request(`coap://127.0.0.1:${srv.port}/secure/big`, { oscore: cctx });
      assert.equal(res.code, ResponseCode.Content);
      assert.ok(res.payload.equals(Buffer.alloc(3000, 'x')));
      assert.equal(srv.layer.stats.outerBlocksServed - before, 2);
    } finally {
      await client.close();
    }
  });

  it("through coapkit's forward proxy (which fetches and serves the protected answer block-wise, unread): reassembled and verified", async () => {
    const proxy = await startForwardProxy();
    const client = new CoapClient();
    try {
      const before = srv.layer.stats.outerBlocksServed;
      const res = await client.get(proxy.url, {
        oscore: cctx,
        options: [proxyUriOption(`coap://127.0.0.1:${srv.port}/secure/big`)],
      });
      assert.equal(res.code, ResponseCode.Content);
      assert.ok(res.payload.equals(Buffer.alloc(3000, 'x')));
      // The proxy fetched the origin's outer blocks; the client fetched the proxy's.
      assert.equal(srv.layer.stats.outerBlocksServed - before, 2);
      assert.ok(
        proxy.seen.length >= 3,
        `the client asked the proxy for each outer block (${proxy.seen.length} requests)`,
      );
      for (const d of proxy.seen) assert.ok(!d.includes(Buffer.from('secure')), 'the path stays encrypted');
    } finally {
      await client.close();
      await proxy.close();
    }
  });

  it('a block out of order gets 4.08; a later outer Block2 block of an unknown response is refused as a replay', async () => {
    const { message } = protectRequest(cctx, {
      code: 0x02,
      options: pathOptions('/secure/echo'),
      payload: Buffer.alloc(2000, 1),
    });
    const peer = rawPeer(srv.port);
    try {
      const r = await peer.exchange(outerBlock1(message, 1, true));
      assert.equal(r.code, ResponseCode.RequestEntityIncomplete);
      // A small answer is not kept: asking again for its "block 1" is the same protected request
      // verified a second time, i.e. a replay.
      const small = protectRequest(cctx, {
        code: 0x02,
        options: pathOptions('/secure/echo'),
        payload: Buffer.from('hi'),
      });
      const req = {
        code: small.message.code,
        options: small.message.options,
        payload: small.message.payload!,
      };
      const ok = await peer.exchange(req);
      assert.equal(ok.code, ResponseCode.Changed);
      assert.equal(getOption(ok.options, OptionNumber.Block2), undefined);
      const again = await peer.exchange({
        ...req,
        options: [...req.options, { number: OptionNumber.Block2, value: encodeBlock(1, false, 6) }],
      });
      assert.equal(again.code, ResponseCode.Unauthorized);
      assert.equal(again.payload.toString(), 'Replay detected');
    } finally {
      peer.close();
    }
  });
});

describe('OSCORE outer block-wise: uploads through the forward proxy', () => {
  it('each protected inner block, larger than the proxy block size, reaches the server in outer Block1 blocks and is reassembled', async () => {
    const server = new CoapServer();
    server.post('/secure/echo', (req) => ({ code: '2.04', payload: req.payload }));
    const layer = enableOscore(server, { contexts: [serverCtx()], required: ['/secure/**'] });
    const ep = await server.listen({ host: '127.0.0.1', port: 0 });
    const proxy = await startForwardProxy();
    const client = new CoapClient();
    try {
      const body = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 253));
      const res = await client.post(proxy.url, {
        payload: body,
        oscore: clientCtx(),
        options: [proxyUriOption(`coap://127.0.0.1:${ep.transport.localAddress().port}/secure/echo`)],
      });
      assert.equal(res.code, ResponseCode.Changed);
      assert.ok(res.payload.equals(body));
      assert.ok(layer.stats.outerReassembled >= 1, `outer reassemblies: ${layer.stats.outerReassembled}`);
    } finally {
      await client.close();
      await proxy.close();
      await server.close();
    }
  });
});

describe('OSCORE outer block-wise: MAX_UNFRAGMENTED_SIZE', () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  // One client context per server: each request a new sequence number.
  const cctx = clientCtx();
  before(async () => {
    srv = await startServer(1500);
  });
  after(async () => {
    await srv.server.close();
  });

  it('a request whose outer blocks exceed the bound gets 4.13 with Size1, unprotected, and is not performed', async () => {
    let performed = 0;
    srv.server.post('/secure/count', () => {
      performed++;
      return { code: '2.04' };
    });
    const { message } = protectRequest(cctx, {
      code: 0x02,
      options: pathOptions('/secure/count'),
      payload: Buffer.alloc(3000, 2),
    });
    const peer = rawPeer(srv.port);
    try {
      const r0 = await peer.exchange(outerBlock1(message, 0, true));
      assert.equal(r0.code, ResponseCode.Continue);
      const r1 = await peer.exchange(outerBlock1(message, 1, true));
      assert.equal(r1.code, ResponseCode.RequestEntityTooLarge);
      assert.equal(decodeUint(getOption(r1.options, OptionNumber.Size1)!), 1500);
      assert.equal(getOption(r1.options, OptionNumber.Oscore), undefined);
      assert.equal(performed, 0);
    } finally {
      peer.close();
    }
  });

  it('a peer may have 4 outer Block1 transfers under way; a fifth gets 5.03', async () => {
    const peer = rawPeer(srv.port);
    try {
      const codes: number[] = [];
      for (let i = 0; i < 5; i++) {
        const { message } = protectRequest(cctx, {
          code: 0x02,
          options: pathOptions('/secure/echo'),
          payload: Buffer.alloc(1400, i),
        });
        const r = await peer.exchange(outerBlock1(message, 0, true));
        codes.push(r.code);
      }
      assert.deepEqual(codes, [0x5f, 0x5f, 0x5f, 0x5f, ResponseCode.ServiceUnavailable]);
    } finally {
      peer.close();
    }
  });

  it('a client drops a protected response larger than its bound (OscoreError)', async () => {
    const { message } = protectRequest(cctx, { code: 0x01, options: pathOptions('/secure/big') });
    const peer = rawPeer(srv.port);
    try {
      const req = { code: message.code, options: message.options, payload: message.payload! };
      const send = async (m: Parameters<typeof peer.exchange>[0]) =>
        ({ message: await peer.exchange(m) }) as never;
      const first = await peer.exchange(req);
      assert.equal(block(first, OptionNumber.Block2)?.more, true, `${first.code} ${first.payload}`);
      await assert.rejects(outerReassemble(req, { message: first } as never, send, 2000), (e: unknown) => {
        assert.ok(e instanceof OscoreError);
        assert.match((e as Error).message, /MAX_UNFRAGMENTED_SIZE/);
        return true;
      });
    } finally {
      peer.close();
    }
  });
});
