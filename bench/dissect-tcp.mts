/**
 * dissect() cost on CoAP over TCP against the same traffic over UDP: N request/response pairs
 * (a PUT with 64 B and its 2.04; on TCP every other PUT split across two segments), messages
 * decoded per second and heap after. Run: node --import tsx bench/dissect-tcp.mts [N]
 */
import { performance } from 'node:perf_hooks';
import { encodeMessage } from '../src/codec/message.js';
import { encodeFrame } from '../src/codec/reliable.js';
import { dissect } from '../src/dissect/dissect.js';
import { type PcapPacket, pcapBytes } from '../test/helpers/pcap.js';
import { TcpConversation, tcpPcap } from '../test/helpers/pcap-tcp.js';

const N = Number(process.argv[2] ?? 20000);
const token = (i: number): Buffer => Buffer.from([i >> 8, i & 255]);
const path = [{ number: 11, value: Buffer.from('r') }];
const body = Buffer.alloc(64, 65);

const c = new TcpConversation('10.0.0.1:40001', '10.0.0.2:5683').handshake();
const udp: PcapPacket[] = [];
const C = { address: '10.0.0.1', port: 40001 };
const S = { address: '10.0.0.2', port: 5683 };
for (let i = 0; i < N; i++) {
  const f = encodeFrame({ code: 3, token: token(i), options: path, payload: body });
  if (i % 2) c.c(f);
  else c.c(f.subarray(0, 10)).c(f.subarray(10));
  c.s(encodeFrame({ code: 68, token: token(i) }));
  udp.push({
    src: C,
    dst: S,
    timeMs: i,
    data: encodeMessage({ type: 0, code: 3, messageId: i, token: token(i), options: path, payload: body }),
  });
  udp.push({
    src: S,
    dst: C,
    timeMs: i,
    data: encodeMessage({
      type: 2,
      code: 68,
      messageId: i,
      token: token(i),
      options: [],
      payload: Buffer.alloc(0),
    }),
  });
}

for (const [name, file] of [
  ['TCP', tcpPcap(c.segments)],
  ['UDP', pcapBytes(udp)],
] as const) {
  const t = performance.now();
  const r = dissect(file);
  const ms = performance.now() - t;
  console.log(
    `${name}: ${r.frames.length} frames, ${file.length} B, ${r.coap.messages.length} messages in ${ms.toFixed(0)} ms = ${Math.round((r.coap.messages.length / ms) * 1000)} msg/s, heap ${(process.memoryUsage().heapUsed / 1048576).toFixed(0)} MiB`,
  );
}
