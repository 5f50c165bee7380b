/**
 * Child of test/attack/client.test.ts (run with --expose-gc): a loopback UDP observe server
 * whose notifications each announce endless blocks, without an ETag (so the client cannot
 * tell the blocks of one notification from another's); every 40 block requests a newer
 * notification comes. Prints one JSON line: heapUsed + external (Buffers) after gc at baseline, its peak during
 * the flood, after it, and how much was sent.
 */
import { decodeMessage, encodeMessage } from '../../../src/codec/message.js';
import { decodeBlock, encodeBlock, encodeUint, getOption } from '../../../src/codec/options.js';
import { MessageType, Method, ResponseCode } from '../../../src/constants/codes.js';
import { OptionNumber } from '../../../src/constants/options.js';
import { Endpoint } from '../../../src/endpoint/endpoint.js';
import { Observation } from '../../../src/observe/client.js';
import { makePeer, type Peer } from '../../../src/transport/transport.js';
import { UdpTransport } from '../../../src/transport/udp.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
const heap = (): number => {
  gc();
  gc();
  const m = process.memoryUsage();
  // Buffers live outside the V8 heap: count them too.
  return m.heapUsed + m.external;
};

const TOTAL_BLOCKS = 50_000; // 50,000 blocks of 1024 bytes: ~49 MiB sent
const PER_NOTIFICATION = 40;

const ep = new Endpoint(await UdpTransport.create({ host: '127.0.0.1', port: 0 }), {
  transmission: { ackTimeout: 500, ackRandomFactor: 1, maxRetransmit: 2 },
});
const server = await UdpTransport.create({ host: '127.0.0.1', port: 0 });
let clientPeer: Peer;

let mid = 1;
let seq = 1;
let blocks = 0;
let token: Buffer = Buffer.alloc(0);
let peak = 0;
let done: () => void;
const finished = new Promise<void>((r) => {
  done = r;
});
const etag = (n: number) => ({ number: OptionNumber.ETag, value: encodeUint(n) });
const b2 = (num: number) => ({ number: OptionNumber.Block2, value: encodeBlock(num, true, 6) });
const observeOpt = (n: number) => ({ number: OptionNumber.Observe, value: encodeUint(n) });
const body = (n: number) => Buffer.alloc(1024, n & 0xff);
/** A NON notification on the observation's token. */
const notify = (options: { number: number; value: Buffer }[], payload: Buffer) =>
  server.send(
    encodeMessage({
      type: MessageType.NON,
      code: ResponseCode.Content,
      messageId: mid++ & 0xffff,
      token,
      options,
      payload,
    }),
    clientPeer,
  );

server.attach({
  message: (data, from) => {
    clientPeer = from;
    const req = decodeMessage(data);
    if (req.type !== MessageType.CON) return;
    const ack = (options: { number: number; value: Buffer }[], payload: Buffer) =>
      server.send(
        encodeMessage({
          type: MessageType.ACK,
          code: ResponseCode.Content,
          messageId: req.messageId,
          token: req.token,
          options,
          payload,
        }),
        clientPeer,
      );
    const obs = getOption(req.options, OptionNumber.Observe);
    if (obs !== undefined) {
      if (obs.length > 0) return ack([], Buffer.alloc(0));
      token = req.token;
      return ack([observeOpt(seq), b2(0)], body(seq));
    }
    const num = decodeBlock(getOption(req.options, OptionNumber.Block2)!).num;
    blocks++;
    if (blocks % 5000 === 0) peak = Math.max(peak, heap());
    if (blocks >= TOTAL_BLOCKS) {
      // The attack is over: one last, small notification.
      seq++;
      notify([observeOpt(seq), etag(seq)], Buffer.from('latest'));
      done();
      return;
    }
    ack([b2(num)], body(seq));
    if (blocks % PER_NOTIFICATION === 0) {
      seq++;
      notify([observeOpt(seq), b2(0)], body(seq));
    }
  },
});

const baseline = heap();
const obs = new Observation(
  Promise.resolve({
    endpoint: ep,
    peer: makePeer('127.0.0.1', server.localAddress().port),
    code: Method.GET,
    options: [{ number: OptionNumber.UriPath, value: Buffer.from('flood') }],
  }),
  { maxBodySize: 4 << 20 },
);
await finished;
const first = await obs.next();
const delivered = first.done ? '' : first.value.payload.toString();
await obs.cancel();
await ep.close();
await server.close();
const after = heap();
process.stdout.write(`${JSON.stringify({ baseline, peak, after, notifications: seq, blocks, delivered })}\n`);
