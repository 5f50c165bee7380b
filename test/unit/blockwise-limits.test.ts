/**
 * Block-wise server bounds (issue 10, items 3 and 6): block sizes are checked,
 * reassemblies have a per-address share, a global count and byte budget and an
 * idle expiry; the Block2 cache counts keys and options, never holds error
 * answers and has a per-address share.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { after, describe, it } from 'node:test';
import type { BlockwiseServerOptions } from '../../src/blockwise/server.js';
import type { CoapOption } from '../../src/codec/message.js';
import { encodeBlock, getUintOption } from '../../src/codec/options.js';
import { MessageType, Method, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import { CoapServer } from '../../src/server/server.js';
import type { Peer } from '../../src/transport/transport.js';
import { FAST, memorySetup, type RawPeer } from '../helpers/memory.js';
import { sleep } from '../helpers/timing.js';

const path = (p: string): CoapOption[] =>
  p
    .split('/')
    .filter(Boolean)
    .map((s) => ({ number: OptionNumber.UriPath, value: Buffer.from(s) }));

async function rig(bw: BlockwiseServerOptions = {}) {
  const mem = memorySetup();
  const server = new CoapServer({ transmission: FAST, maxPayloadSize: 1 << 20, blockwise: bw });
  const bodies = new Map<string, number>();
  server.put('/up/:n', (req) => {
    bodies.set(req.params.n!, req.payload.length);
    return { code: ResponseCode.Changed };
  });
  server.get('/big/:n', () => Buffer.alloc(3000, 0x61));
  server.get('/err', () => ({ code: ResponseCode.BadRequest, payload: Buffer.alloc(3000, 0x65) }));
  const st = mem.net.createTransport('10.0.0.1', 5683);
  await server.listen(st);
  let mid = 1;
  /** Sends one CON request from `raw` and waits for its response. */
  const ask = async (raw: RawPeer, code: number, options: CoapOption[], payload?: Buffer) => {
    const messageId = mid++ & 0xffff;
    const token = Buffer.from([messageId >> 8, messageId & 0xff]);
    raw.send(st.self, { type: MessageType.CON, code, messageId, token, options, payload });
    const r = await raw.until((x) => x.msg?.messageId === messageId && x.msg.type === MessageType.ACK, 3000);
    return r.msg!;
  };
  const block1 = (p: string, num: number, more: boolean, szx: number, extra: CoapOption[] = []) =>
    [...path(p), ...extra, { number: OptionNumber.Block1, value: encodeBlock(num, more, szx) }].sort(
      (a, b) => a.number - b.number,
    );
  return {
    mem,
    server,
    bw: server.blockwise!,
    st: st.self as Peer,
    bodies,
    ask,
    block1,
    close: async () => {
      await server.close();
      await mem.close();
    },
  };
}

describe('block-wise server limits', () => {
  const rigs: Array<Awaited<ReturnType<typeof rig>>> = [];
  after(async () => {
    for (const r of rigs) await r.close();
  });
  const make = async (o?: BlockwiseServerOptions) => {
    const r = await rig(o);
    rigs.push(r);
    return r;
  };

  it('answers 4.00 to a block larger than its SZX size, or not exactly that size with M=1 (RFC 7959 §2.2)', async () => {
    const r = await make();
    const a = r.mem.raw('10.0.1.1');
    const big = await r.ask(a, Method.PUT, r.block1('/up/a', 0, true, 6), Buffer.alloc(60_000));
    assert.equal(big.code, ResponseCode.BadRequest);
    assert.match(big.payload.toString(), /60000 bytes; its block size is 1024/);
    const short = await r.ask(a, Method.PUT, r.block1('/up/a', 0, true, 6), Buffer.alloc(500));
    assert.equal(short.code, ResponseCode.BadRequest);
    const lastTooBig = await r.ask(a, Method.PUT, r.block1('/up/a', 0, false, 0), Buffer.alloc(17));
    assert.equal(lastTooBig.code, ResponseCode.BadRequest);
    assert.equal(r.bw.transfersInProgress, 0, 'no state for malformed blocks');
    // A well-formed upload: two full blocks, then a shorter last one.
    assert.equal(
      (await r.ask(a, Method.PUT, r.block1('/up/a', 0, true, 2), Buffer.alloc(64))).code,
      ResponseCode.Continue,
    );
    assert.equal(
      (await r.ask(a, Method.PUT, r.block1('/up/a', 1, true, 2), Buffer.alloc(64))).code,
      ResponseCode.Continue,
    );
    assert.equal(
      (await r.ask(a, Method.PUT, r.block1('/up/a', 2, false, 2), Buffer.alloc(10))).code,
      ResponseCode.Changed,
    );
    assert.equal(r.bodies.get('a'), 138);
  });

  it('gives each source address a share of reassemblies: over it 5.03 + Max-Age, others keep uploading', async () => {
    const r = await make({ maxTransfersPerAddress: 2 });
    const attacker = r.mem.raw('10.0.1.1');
    for (const n of ['x1', 'x2']) {
      const res = await r.ask(attacker, Method.PUT, r.block1(`/up/${n}`, 0, true, 2), Buffer.alloc(64));
      assert.equal(res.code, ResponseCode.Continue);
    }
    const over = await r.ask(attacker, Method.PUT, r.block1('/up/x3', 0, true, 2), Buffer.alloc(64));
    assert.equal(over.code, ResponseCode.ServiceUnavailable);
    assert.ok((getUintOption(over.options, OptionNumber.MaxAge) ?? 0) > 0, 'Max-Age says when to retry');
    const legit = r.mem.raw('10.0.1.2');
    assert.equal(
      (await r.ask(legit, Method.PUT, r.block1('/up/ok', 0, true, 2), Buffer.alloc(64))).code,
      ResponseCode.Continue,
    );
    assert.equal(
      (await r.ask(legit, Method.PUT, r.block1('/up/ok', 1, false, 2), Buffer.alloc(5))).code,
      ResponseCode.Changed,
    );
    assert.equal(r.bodies.get('ok'), 69);
  });

  it('bounds reassemblies in all (count and bytes held) and expires idle ones', async () => {
    const r = await make({ maxTransfers: 2, maxTransferBytes: 4096, idleTimeoutMs: 150 });
    const peers = [1, 2, 3].map((i) => r.mem.raw(`10.0.2.${i}`));
    assert.equal(
      (await r.ask(peers[0]!, Method.PUT, r.block1('/up/a', 0, true, 6), Buffer.alloc(1024))).code,
      ResponseCode.Continue,
    );
    assert.equal(
      (await r.ask(peers[1]!, Method.PUT, r.block1('/up/b', 0, true, 6), Buffer.alloc(1024))).code,
      ResponseCode.Continue,
    );
    assert.equal(
      (await r.ask(peers[2]!, Method.PUT, r.block1('/up/c', 0, true, 6), Buffer.alloc(1024))).code,
      ResponseCode.ServiceUnavailable,
    );
    // Bytes: the next blocks of a and b overflow 4096 (keys and overhead count too).
    assert.equal(
      (await r.ask(peers[0]!, Method.PUT, r.block1('/up/a', 1, true, 6), Buffer.alloc(1024))).code,
      ResponseCode.Continue,
    );
    const full = await r.ask(peers[1]!, Method.PUT, r.block1('/up/b', 1, true, 6), Buffer.alloc(1024));
    assert.equal(full.code, ResponseCode.ServiceUnavailable);
    assert.ok(r.bw.transferBytesHeld <= 4096);
    // Idle ones go away and give their bytes back.
    for (let i = 0; i < 100 && r.bw.transfersInProgress > 0; i++) await sleep(20);
    assert.equal(r.bw.transfersInProgress, 0);
    assert.equal(r.bw.transferBytesHeld, 0);
    assert.equal(
      (await r.ask(peers[2]!, Method.PUT, r.block1('/up/c', 0, true, 6), Buffer.alloc(1024))).code,
      ResponseCode.Continue,
    );
  });

  it('never caches error answers; counts keys and options; per-address share of cache entries', async () => {
    const r = await make({ maxCacheEntriesPerAddress: 2 });
    const a = r.mem.raw('10.0.3.1');
    // Uri-Query options are at most 255 bytes each (RFC 7252 §5.10): four of 225.
    const q = [0, 1, 2, 3].map(() => ({ number: OptionNumber.UriQuery, value: Buffer.alloc(225, 0x71) }));
    const err = await r.ask(a, Method.GET, [...path('/err'), ...q]);
    assert.equal(err.code, ResponseCode.BadRequest, err.payload.toString());
    assert.equal(r.bw.cachedRepresentations, 0, 'a 4.00 is not cached');
    const ok = await r.ask(a, Method.GET, [...path('/big/1'), ...q]);
    assert.equal(ok.code, ResponseCode.Content);
    assert.equal(r.bw.cachedRepresentations, 1);
    assert.ok(r.bw.cacheBytesHeld >= 3000 + 900, `key bytes counted (${r.bw.cacheBytesHeld})`);
    for (const n of [2, 3, 4]) await r.ask(a, Method.GET, [...path(`/big/${n}`), ...q]);
    assert.equal(r.bw.cachedRepresentations, 2, "the address's oldest entries made room");
    const b = r.mem.raw('10.0.3.2');
    await r.ask(b, Method.GET, path('/big/1'));
    assert.equal(r.bw.cachedRepresentations, 3, 'another address has its own share');
  });

  it('configure() through enableBlockwise changes the built-in instance', async () => {
    const r = await make();
    const { enableBlockwise } = await import('../../src/blockwise/server.js');
    const same = enableBlockwise(r.server, { maxTransfersPerAddress: 9 });
    assert.equal(same, r.bw);
    assert.equal(r.bw.maxTransfersPerAddress, 9);
    assert.equal(r.bw.maxBodySize, 1 << 20, 'other settings kept');
  });
});
