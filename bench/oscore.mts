/**
 * OSCORE cost: protect + verify of a request and its response per second (one core), and the
 * bytes OSCORE adds to a small GET and its 2.05. Run: node --import tsx bench/oscore.mts
 */
import { performance } from 'node:perf_hooks';
import { decodeMessage, encodeMessage } from '../src/codec/message.js';
import { OscoreContext } from '../src/oscore/context.js';
import {
  protectRequest,
  protectResponse,
  unprotectRequest,
  unprotectResponse,
} from '../src/oscore/protect.js';

const S = Buffer.alloc(16, 1);
const c = new OscoreContext({ masterSecret: S, senderId: Buffer.from('c1'), recipientId: Buffer.from([1]) });
const s = new OscoreContext({ masterSecret: S, senderId: Buffer.from([1]), recipientId: Buffer.from('c1') });
const plain = {
  code: 1,
  options: [
    { number: 11, value: Buffer.from('sensors') },
    { number: 11, value: Buffer.from('temp') },
  ],
};
const res = { code: 0x45, options: [{ number: 12, value: Buffer.alloc(0) }], payload: Buffer.from('22.5') };
const N = 50_000;
const t0 = performance.now();
let reqBytes = 0,
  resBytes = 0,
  plainReq = 0,
  plainRes = 0;
for (let i = 0; i < N; i++) {
  const r = protectRequest(c, plain);
  const wire = encodeMessage({ type: 0, messageId: i & 0xffff, token: Buffer.from('tk'), ...r.message });
  const got = unprotectRequest(() => s, decodeMessage(wire));
  const out = protectResponse(got.binding, res);
  const w2 = encodeMessage({ type: 2, messageId: i & 0xffff, token: Buffer.from('tk'), ...out });
  unprotectResponse(r.binding, decodeMessage(w2));
  if (i === 0) {
    reqBytes = wire.length;
    resBytes = w2.length;
    plainReq = encodeMessage({ type: 0, messageId: 0, token: Buffer.from('tk'), ...plain }).length;
    plainRes = encodeMessage({ type: 2, messageId: 0, token: Buffer.from('tk'), ...res }).length;
  }
}
const ms = performance.now() - t0;
console.log(`round trips (protect+verify request and response): ${(N / (ms / 1000)).toFixed(0)}/s`);
console.log(
  `GET /sensors/temp: ${plainReq} B plain, ${reqBytes} B protected (+${reqBytes - plainReq}); 2.05 "22.5": ${plainRes} B plain, ${resBytes} B protected (+${resBytes - plainRes})`,
);
