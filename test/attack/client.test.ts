/**
 * Issue 10, items 8-10: a malicious server must not hang or bloat the client.
 *
 * - endless Block2 (16-byte blocks): the request's timeout bounds the whole exchange
 *   (library: TimeoutError within timeout + 2 s; CLI: exit 3, one "coapkit:" line);
 * - the body limit (maxBodySize / --max-body) stops an endless or oversized body with
 *   BodyTooLargeError (CLI exit 3, never 64); malformed blocks are typed protocol errors;
 * - observe notifications that each announce more blocks: a newer notification cancels
 *   the download of the previous one, the body limit applies per notification, unread
 *   notifications are bounded (oldest dropped), and the heap of a child under a flood
 *   stays flat (test/attack/helpers/observe-flood.ts);
 * - endless 2.31 Continue, 2.31 to a request that was not block-wise, a Block1 that does
 *   not acknowledge the block sent: ProtocolError (CLI exit 3).
 *
 * Servers are raw UDP sockets on 127.0.0.1 (port 0) or in-memory peers; traffic is
 * bounded by the client's own limits, which is what is asserted.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { blockwiseExchange, type SendFn } from '../../src/blockwise/client.js';
import { exitCodeForError } from '../../src/cli/exit.js';
import { CoapClient } from '../../src/client/client.js';
import { type CoapMessage, type CoapOption, decodeMessage, encodeMessage } from '../../src/codec/message.js';
import { decodeBlock, encodeBlock, encodeUint, getOption } from '../../src/codec/options.js';
import { MessageType, Method, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import {
  BlockTransferError,
  BodyTooLargeError,
  CoapError,
  MessageFormatError,
  ProtocolError,
  TimeoutError,
} from '../../src/errors.js';
import type { InboundResponse } from '../../src/exchange/exchange-layer.js';
import { Observation } from '../../src/observe/client.js';
import type { MemoryTransport } from '../../src/transport/memory.js';
import { makePeer, type Peer } from '../../src/transport/transport.js';
import { memorySetup } from '../helpers/memory.js';
import { runProcess } from '../helpers/proc.js';
import { withTimeout } from '../helpers/timing.js';
import { runCli, runInProcess } from '../integration/cli-helpers.js';

type Reply = { code: number; options?: CoapOption[]; payload?: Buffer };

/** A UDP server on 127.0.0.1 that answers every CON request piggybacked with `answer(req)`. */
async function evilServer(answer: (req: CoapMessage, n: number) => Reply | undefined) {
  const sock = dgram.createSocket('udp4');
  let requests = 0;
  sock.on('message', (data, from) => {
    let req: CoapMessage;
    try {
      req = decodeMessage(data);
    } catch {
      return;
    }
    if (req.code === 0 || req.code >> 5 !== 0) return;
    const r = answer(req, requests++);
    if (r === undefined) return;
    const bytes = encodeMessage({
      type: req.type === MessageType.CON ? MessageType.ACK : MessageType.NON,
      code: r.code,
      messageId: req.messageId,
      token: req.token,
      options: r.options ?? [],
      ...(r.payload ? { payload: r.payload } : {}),
    });
    sock.send(bytes, from.port, from.address);
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
  return {
    url: `coap://127.0.0.1:${sock.address().port}`,
    get requests() {
      return requests;
    },
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}

const block2 = (num: number, more: boolean, szx: number): CoapOption => ({
  number: OptionNumber.Block2,
  value: encodeBlock(num, more, szx),
});
const block1 = (num: number, more: boolean, szx: number): CoapOption => ({
  number: OptionNumber.Block1,
  value: encodeBlock(num, more, szx),
});

/** Endless Block2 with blocks of 2^(szx+4) bytes: every block announces one more. */
function endlessBlock2(szx: number, extra: CoapOption[] = []) {
  return (req: CoapMessage): Reply => {
    const raw = getOption(req.options, OptionNumber.Block2);
    const num = raw ? decodeBlock(raw).num : 0;
    return {
      code: ResponseCode.Content,
      options: [block2(num, true, szx), ...(num === 0 ? extra : [])],
      payload: Buffer.alloc(16 << szx, num & 0xff),
    };
  };
}

/** Answers every Block1 with 2.31 Continue acknowledging it. */
function endlessContinue(req: CoapMessage): Reply {
  const raw = getOption(req.options, OptionNumber.Block1);
  if (raw === undefined) return { code: ResponseCode.Continue };
  const b = decodeBlock(raw);
  return { code: ResponseCode.Continue, options: [block1(b.num, true, b.szx)] };
}

describe('client against a malicious server (issue 10, items 8-10)', () => {
  let client: CoapClient;
  before(() => {
    client = new CoapClient({ transmission: { ackTimeout: 200, ackRandomFactor: 1, maxRetransmit: 2 } });
  });
  after(() => client.close());

  it('endless Block2 of 16-byte blocks: the timeout bounds the whole exchange', async () => {
    const srv = await evilServer(endlessBlock2(0));
    try {
      const timeout = 1500;
      const started = performance.now();
      const err = await withTimeout(
        client.get(`${srv.url}/big`, { timeout }).then(
          () => assert.fail('resolved'),
          (e: unknown) => e,
        ),
        timeout + 10_000,
        'request with timeout',
      );
      const elapsed = performance.now() - started;
      assert.ok(err instanceof TimeoutError, String(err));
      assert.ok(err instanceof CoapError);
      assert.match((err as Error).message, /within the 1500 ms timeout/);
      assert.ok(elapsed < timeout + 5000, `finished after ${elapsed.toFixed(0)} ms`);
      assert.ok(srv.requests > 10, `only ${srv.requests} block requests: the test did not exercise blocks`);
    } finally {
      await srv.close();
    }
  });

  it('endless Block2 without a timeout: the body limit stops it (BodyTooLargeError)', async () => {
    const srv = await evilServer(endlessBlock2(6));
    try {
      const limit = 64 * 1024;
      const err = await withTimeout(
        client.get(`${srv.url}/big`, { maxBodySize: limit }).then(
          () => assert.fail('resolved'),
          (e: unknown) => e,
        ),
        15_000,
        'request with maxBodySize',
      );
      assert.ok(err instanceof BodyTooLargeError, String(err));
      assert.ok(
        err instanceof BlockTransferError && err instanceof ProtocolError && err instanceof CoapError,
      );
      assert.equal((err as BodyTooLargeError).code, 'COAP_ERR_BODY_TOO_LARGE');
      assert.equal((err as BodyTooLargeError).limit, limit);
      // 64 blocks of 1024 bytes fit, the 65th is refused: nothing beyond is requested.
      assert.equal(srv.requests, 65);
    } finally {
      await srv.close();
    }
  });

  it('a Size2 over the limit is refused after the first block', async () => {
    const srv = await evilServer(
      endlessBlock2(6, [{ number: OptionNumber.Size2, value: encodeUint(1 << 30) }]),
    );
    try {
      await assert.rejects(client.get(`${srv.url}/big`, { timeout: 5000 }), (e: unknown) => {
        assert.ok(e instanceof BodyTooLargeError, String(e));
        assert.match((e as Error).message, /1073741824 bytes \(Size2\) exceeds the limit of 16777216/);
        return true;
      });
      assert.equal(srv.requests, 1);
    } finally {
      await srv.close();
    }
  });

  it('more bytes than Size2 announced, a larger SZX than asked, a short middle block: BlockTransferError', async () => {
    const cases: Array<[string, (req: CoapMessage) => Reply]> = [
      ['Size2', endlessBlock2(4, [{ number: OptionNumber.Size2, value: encodeUint(100) }])],
      [
        'larger SZX',
        (req) => {
          const raw = getOption(req.options, OptionNumber.Block2);
          const num = raw ? decodeBlock(raw).num : 0;
          // Block 0 of 64 bytes, then "block 1" of 1024 bytes (offset 1024, not 64).
          return num === 0
            ? { code: ResponseCode.Content, options: [block2(0, true, 2)], payload: Buffer.alloc(64) }
            : { code: ResponseCode.Content, options: [block2(num, true, 6)], payload: Buffer.alloc(1024) };
        },
      ],
      [
        'short block',
        (req) => {
          const raw = getOption(req.options, OptionNumber.Block2);
          const num = raw ? decodeBlock(raw).num : 0;
          return {
            code: ResponseCode.Content,
            options: [block2(num, true, 4)],
            payload: Buffer.alloc(num ? 5 : 256),
          };
        },
      ],
    ];
    for (const [name, answer] of cases) {
      const srv = await evilServer(answer);
      try {
        await assert.rejects(client.get(`${srv.url}/x`, { timeout: 5000 }), (e: unknown) => {
          assert.ok(e instanceof BlockTransferError, `${name}: ${String(e)}`);
          return true;
        });
        assert.ok(srv.requests <= 10, `${name}: ${srv.requests} requests`);
      } finally {
        await srv.close();
      }
    }
  });

  it('block number out of range (2^20 blocks of 16 bytes) is a BlockTransferError, not a usage error', async () => {
    // A SendFn server (no network): 1,048,576 blocks of 16 bytes take a few seconds.
    const peer = makePeer('10.0.0.1', 5683);
    let sends = 0;
    const send: SendFn = async (req) => {
      sends++;
      const raw = getOption(req.options, OptionNumber.Block2);
      const num = raw ? decodeBlock(raw).num : 0;
      const res: InboundResponse = {
        message: {
          type: MessageType.ACK,
          code: ResponseCode.Content,
          messageId: 1,
          token: Buffer.alloc(0),
          options: [block2(num, true, 0)],
          payload: Buffer.alloc(16),
        },
        peer,
        piggybacked: true,
        rttMs: 0,
      };
      return res;
    };
    await assert.rejects(
      blockwiseExchange(send, { code: Method.GET, options: [] }, { maxBodySize: 1 << 30 }),
      (e: unknown) => {
        assert.ok(e instanceof BlockTransferError, String(e));
        assert.match((e as Error).message, /block number out of range/);
        return true;
      },
    );
    assert.equal(sends, 1 << 20);
  });

  it('endless 2.31 Continue: running out of blocks without a final response is a ProtocolError', async () => {
    const srv = await evilServer(endlessContinue);
    try {
      await assert.rejects(
        client.put(`${srv.url}/up`, { payload: Buffer.alloc(5000), timeout: 5000 }),
        (e: unknown) => {
          assert.ok(e instanceof ProtocolError, String(e));
          assert.match((e as Error).message, /2\.31 Continue to the last block/);
          return true;
        },
      );
      assert.equal(srv.requests, 5, '5 blocks of 1024 bytes, nothing more');
      // 2.31 to a request that was not block-wise.
      await assert.rejects(client.put(`${srv.url}/up`, { payload: 'small', timeout: 5000 }), (e: unknown) => {
        assert.ok(e instanceof ProtocolError, String(e));
        assert.match((e as Error).message, /not block-wise/);
        return true;
      });
    } finally {
      await srv.close();
    }
  });

  it('a 2.31 whose Block1 does not acknowledge the block sent is a ProtocolError', async () => {
    const answers: Array<[string, (b: ReturnType<typeof decodeBlock>) => CoapOption]> = [
      ['another number', (b) => block1(b.num + 1, true, b.szx)],
      ['a larger SZX', (b) => block1(b.num, true, Math.min(6, b.szx + 1))],
      ['a smaller block outside the one sent', (b) => block1((b.num + 1) * 4 + 3, true, b.szx - 2)],
    ];
    for (const [name, ack] of answers) {
      const srv = await evilServer((req) => {
        const b = decodeBlock(getOption(req.options, OptionNumber.Block1)!);
        return { code: ResponseCode.Continue, options: [ack(b)] };
      });
      try {
        await assert.rejects(
          client.put(`${srv.url}/up`, { payload: Buffer.alloc(3000), blockSize: 512, timeout: 5000 }),
          (e: unknown) => {
            assert.ok(e instanceof ProtocolError, `${name}: ${String(e)}`);
            return true;
          },
        );
        assert.equal(srv.requests, 1, name);
      } finally {
        await srv.close();
      }
    }
  });
});

describe('CLI against a malicious server', () => {
  it('what a server does wrong maps to exit 3, never to usage (64)', () => {
    for (const e of [
      new ProtocolError('x'),
      new BlockTransferError('x'),
      new BodyTooLargeError('x'),
      new MessageFormatError('x'),
    ]) {
      assert.equal(exitCodeForError(e), 3, e.name);
    }
  });

  it('get with --timeout: endless Block2 ends with exit 3 and one error line', async () => {
    const srv = await evilServer(endlessBlock2(0));
    try {
      const started = performance.now();
      // A real process: startup (tsx) is included in the generous bound.
      const r = await runCli(['get', `${srv.url}/big`, '--timeout', '2'], { timeoutMs: 30_000 });
      const elapsed = performance.now() - started;
      assert.equal(r.code, 3, r.stderr);
      const lines = r.stderr.trimEnd().split('\n');
      assert.match(lines[0]!, /^coapkit: the exchange did not complete within the 2000 ms timeout/);
      assert.ok(lines.length <= 2 && (lines[1] === undefined || /^ {2}hint: /.test(lines[1])), r.stderr);
      assert.equal(r.out, '');
      assert.ok(elapsed < 2000 + 10_000, `took ${elapsed.toFixed(0)} ms`);
    } finally {
      await srv.close();
    }
  });

  it('get --max-body: over the limit is exit 3 (never 64)', async () => {
    const srv = await evilServer(endlessBlock2(4));
    try {
      const r = await runInProcess(['get', `${srv.url}/big`, '--max-body', '4096', '--timeout', '10']);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /^coapkit: response body exceeds the limit of 4096 bytes\n/);
      assert.equal(r.out, '');
      const bad = await runInProcess(['get', `${srv.url}/big`, '--max-body', 'lots']);
      assert.equal(bad.code, 64, bad.stderr);
      assert.match(bad.stderr, /--max-body expects a whole number of bytes/);
    } finally {
      await srv.close();
    }
  });

  it('put against endless 2.31 Continue exits 3', async () => {
    const srv = await evilServer(endlessContinue);
    try {
      const r = await runInProcess(['put', `${srv.url}/up`, '-p', 'x'.repeat(3000), '--timeout', '10']);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /^coapkit: server answered 2\.31 Continue to the last block\n/);
    } finally {
      await srv.close();
    }
  });
});

// ---- Observe (in memory) ------------------------------------------------------

const GET = Method.GET;

/** A scripted observe server on the in-memory network. */
function observeRig() {
  const m = memorySetup();
  const ep = m.endpoint();
  const server = m.net.createTransport('10.0.0.9', 5683) as MemoryTransport;
  const client = (ep.transport as MemoryTransport).self;
  let mid = 1000;
  const send = (to: Peer, msg: Parameters<typeof encodeMessage>[0]) => server.send(encodeMessage(msg), to);
  return {
    m,
    ep,
    server,
    client,
    /** A NON notification with this token. */
    notify(token: Buffer, seq: number, options: CoapOption[], payload: Buffer) {
      send(client, {
        type: MessageType.NON,
        code: ResponseCode.Content,
        messageId: mid++ & 0xffff,
        token,
        options: [{ number: OptionNumber.Observe, value: encodeUint(seq) }, ...options],
        payload,
      });
    },
    ack(req: CoapMessage, options: CoapOption[], payload: Buffer, code: number = ResponseCode.Content) {
      send(client, {
        type: MessageType.ACK,
        code,
        messageId: req.messageId,
        token: req.token,
        options,
        payload,
      });
    },
    observe(opts: ConstructorParameters<typeof Observation>[1] = {}) {
      return new Observation(
        Promise.resolve({
          endpoint: ep,
          peer: server.self,
          code: GET,
          options: [{ number: OptionNumber.UriPath, value: Buffer.from('obs') }],
        }),
        opts,
      );
    },
    async close() {
      server.close();
      await m.close();
    },
  };
}

const etag = (n: number): CoapOption => ({ number: OptionNumber.ETag, value: encodeUint(n) });

describe('observe against a malicious server (issue 10, item 9)', () => {
  it('a newer notification cancels the block download of the previous one', async () => {
    const rig = observeRig();
    const blockNums: number[] = [];
    const N = 200;
    let token: Buffer = Buffer.alloc(0);
    let seq = 1;
    rig.server.attach({
      message: (data) => {
        const req = decodeMessage(data);
        if (req.type !== MessageType.CON) return;
        const obs = getOption(req.options, OptionNumber.Observe);
        if (obs !== undefined) {
          if (obs.length > 0) return rig.ack(req, [], Buffer.alloc(0)); // deregistration
          token = req.token;
          return rig.ack(
            req,
            [{ number: OptionNumber.Observe, value: encodeUint(seq) }, etag(seq), block2(0, true, 6)],
            Buffer.alloc(1024, seq),
          );
        }
        const num = decodeBlock(getOption(req.options, OptionNumber.Block2)!).num;
        blockNums.push(num);
        const old = seq;
        seq++;
        // The next notification first, then (too late) the block the old download asked for.
        if (seq <= N) rig.notify(token, seq, [etag(seq), block2(0, true, 6)], Buffer.alloc(1024, seq));
        else rig.notify(token, seq, [etag(seq)], Buffer.from('latest'));
        rig.ack(req, [etag(old), block2(num, true, 6)], Buffer.alloc(1024, old));
      },
    });
    const obs = rig.observe();
    try {
      const first = await withTimeout(obs.next(), 15_000, 'the one notification that can complete');
      assert.equal(first.done, false);
      assert.equal(first.value!.payload.toString(), 'latest');
      assert.equal(first.value!.observe, N + 1);
      // Every download was cancelled after its first follow-up request: none went past block 1.
      assert.equal(blockNums.length, N);
      assert.deepEqual(new Set(blockNums), new Set([1]));
    } finally {
      await obs.cancel();
      await rig.close();
    }
  });

  it('the body limit applies per notification: an endless one fails with BodyTooLargeError', async () => {
    const rig = observeRig();
    let blockRequests = 0;
    rig.server.attach({
      message: (data) => {
        const req = decodeMessage(data);
        if (req.type !== MessageType.CON) return;
        const obs = getOption(req.options, OptionNumber.Observe);
        if (obs !== undefined) {
          if (obs.length > 0) return rig.ack(req, [], Buffer.alloc(0));
          return rig.ack(
            req,
            [{ number: OptionNumber.Observe, value: encodeUint(1) }, etag(1), block2(0, true, 6)],
            Buffer.alloc(1024),
          );
        }
        blockRequests++;
        const num = decodeBlock(getOption(req.options, OptionNumber.Block2)!).num;
        rig.ack(req, [etag(1), block2(num, true, 6)], Buffer.alloc(1024));
      },
    });
    const obs = rig.observe({ maxBodySize: 32 * 1024 });
    try {
      await assert.rejects(withTimeout(obs.next(), 15_000, 'observation failure'), BodyTooLargeError);
      assert.equal(blockRequests, 32);
    } finally {
      await obs.cancel();
      await rig.close();
    }
  });

  it('notifications a consumer does not read are bounded; the oldest are dropped', async () => {
    const rig = observeRig();
    let token: Buffer = Buffer.alloc(0);
    rig.server.attach({
      message: (data) => {
        const req = decodeMessage(data);
        const obs = getOption(req.options, OptionNumber.Observe);
        if (req.type !== MessageType.CON || obs === undefined) return;
        if (obs.length > 0) return rig.ack(req, [], Buffer.alloc(0));
        token = req.token;
        rig.ack(req, [{ number: OptionNumber.Observe, value: encodeUint(1) }], Buffer.alloc(1000, 1));
      },
    });
    const obs = rig.observe({ maxQueue: 500, maxQueueBytes: 20_000 });
    try {
      await withTimeout(obs.registered, 5000, 'registration');
      for (let s = 2; s <= 1000; s++) rig.notify(token, s, [], Buffer.alloc(1000, s & 0xff));
      await withTimeout(
        (async () => {
          while (obs.received < 1000) await new Promise((r) => setTimeout(r, 10));
        })(),
        15_000,
        'all notifications received',
      );
      // 20,000 bytes of 1000-byte payloads: 20 kept, the newest ones.
      assert.equal(obs.dropped, 1000 - 20);
      const seqs: number[] = [];
      for (let i = 0; i < 20; i++) seqs.push((await obs.next()).value!.observe!);
      assert.deepEqual(
        seqs,
        Array.from({ length: 20 }, (_, i) => 981 + i),
      );
    } finally {
      await obs.cancel();
      await rig.close();
    }
  });

  it('a flood of ever-growing block notifications keeps the heap flat (child with --expose-gc)', async () => {
    const script = fileURLToPath(new URL('./helpers/observe-flood.ts', import.meta.url));
    const {
      code,
      stdout: out,
      stderr: err,
    } = await runProcess(process.execPath, ['--expose-gc', '--import', 'tsx', script], {
      timeoutMs: 25_000,
      name: 'observe flood child',
    });
    assert.equal(code, 0, err);
    const r = JSON.parse(out.trim().split('\n').pop()!) as {
      baseline: number;
      peak: number;
      after: number;
      notifications: number;
      blocks: number;
      delivered: string;
    };
    // The attack moved far more than the margin (every notification announced more blocks)...
    assert.ok(r.blocks * 1024 > 40 << 20, `only ${r.blocks} blocks were sent`);
    // ...yet at most one download (<= maxBodySize, 4 MiB here) was held at a time.
    const MARGIN = 12 << 20;
    assert.ok(
      r.peak - r.baseline < MARGIN,
      `heap grew by ${((r.peak - r.baseline) / 1048576).toFixed(1)} MiB`,
    );
    assert.ok(
      r.after - r.baseline < 4 << 20,
      `heap after: +${((r.after - r.baseline) / 1048576).toFixed(1)} MiB`,
    );
    assert.equal(r.delivered, 'latest', 'the legitimate last notification was delivered');
  });
});
