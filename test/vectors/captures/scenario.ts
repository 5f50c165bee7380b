/**
 * A crafted plain-CoAP capture (pcap, Ethernet, IPv4/UDP 5683): a block-wise
 * download with separate responses, an observation with notifications, a CoAP
 * ping and a retransmitted request.
 */
import { encodeMessage } from '../../../src/codec/message.js';
import { pcap, udpFrame } from './build.js';

const C = '10.0.0.1';
const S = '10.0.0.2';
const CP = 40000;
const SP = 5683;

const uint = (n: number): Buffer => {
  if (n === 0) return Buffer.alloc(0);
  const bytes: number[] = [];
  while (n > 0) {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  }
  return Buffer.from(bytes);
};
const path = (...segs: string[]) => segs.map((s) => ({ number: 11, value: Buffer.from(s) }));
const block = (num: number, more: boolean, szx: number) => ({
  number: 23,
  value: uint(num * 16 + (more ? 8 : 0) + szx),
});
const opt = (number: number, v: number) => ({ number, value: uint(v) });

interface Step {
  from: 'c' | 's';
  msg: Parameters<typeof encodeMessage>[0];
}

const tok = (h: string): Buffer => Buffer.from(h, 'hex');
const body = (n: number, ch: string): Buffer => Buffer.from(ch.repeat(n));

export const SCENARIO: Step[] = [
  // Block 0: separate response
  { from: 'c', msg: { type: 0, code: 1, messageId: 100, token: tok('aa01'), options: path('large') } },
  { from: 's', msg: { type: 2, code: 0, messageId: 100 } },
  {
    from: 's',
    msg: {
      type: 0,
      code: 69,
      messageId: 500,
      token: tok('aa01'),
      options: [opt(12, 0), block(0, true, 2)],
      payload: body(64, 'a'),
    },
  },
  { from: 'c', msg: { type: 2, code: 0, messageId: 500 } },
  // Block 1: separate response
  {
    from: 'c',
    msg: {
      type: 0,
      code: 1,
      messageId: 101,
      token: tok('aa02'),
      options: [...path('large'), block(1, false, 2)],
    },
  },
  { from: 's', msg: { type: 2, code: 0, messageId: 101 } },
  {
    from: 's',
    msg: {
      type: 0,
      code: 69,
      messageId: 501,
      token: tok('aa02'),
      options: [opt(12, 0), block(1, true, 2)],
      payload: body(64, 'b'),
    },
  },
  { from: 'c', msg: { type: 2, code: 0, messageId: 501 } },
  // Block 2: piggybacked, last
  {
    from: 'c',
    msg: {
      type: 0,
      code: 1,
      messageId: 102,
      token: tok('aa03'),
      options: [...path('large'), block(2, false, 2)],
    },
  },
  {
    from: 's',
    msg: {
      type: 2,
      code: 69,
      messageId: 102,
      token: tok('aa03'),
      options: [opt(12, 0), block(2, false, 2)],
      payload: body(30, 'c'),
    },
  },
  // Observe
  {
    from: 'c',
    msg: {
      type: 0,
      code: 1,
      messageId: 103,
      token: tok('bb01'),
      options: [opt(6, 0), ...path('sensors', 'temp')],
    },
  },
  {
    from: 's',
    msg: {
      type: 2,
      code: 69,
      messageId: 103,
      token: tok('bb01'),
      options: [opt(6, 5), opt(12, 50)],
      payload: Buffer.from('{"t":22.5}'),
    },
  },
  {
    from: 's',
    msg: {
      type: 1,
      code: 69,
      messageId: 502,
      token: tok('bb01'),
      options: [opt(6, 6), opt(12, 50)],
      payload: Buffer.from('{"t":22.6}'),
    },
  },
  {
    from: 's',
    msg: {
      type: 0,
      code: 69,
      messageId: 503,
      token: tok('bb01'),
      options: [opt(6, 7), opt(12, 50)],
      payload: Buffer.from('{"t":22.7}'),
    },
  },
  { from: 'c', msg: { type: 2, code: 0, messageId: 503 } },
  // CoAP ping
  { from: 'c', msg: { type: 0, code: 0, messageId: 104 } },
  { from: 's', msg: { type: 3, code: 0, messageId: 104 } },
  // Retransmitted POST
  {
    from: 'c',
    msg: {
      type: 0,
      code: 2,
      messageId: 105,
      token: tok('cc01'),
      options: path('x'),
      payload: Buffer.from('hi'),
    },
  },
  {
    from: 'c',
    msg: {
      type: 0,
      code: 2,
      messageId: 105,
      token: tok('cc01'),
      options: path('x'),
      payload: Buffer.from('hi'),
    },
  },
  { from: 's', msg: { type: 2, code: 68, messageId: 105, token: tok('cc01') } },
];

export function scenarioCapture(): Buffer {
  return pcap(
    SCENARIO.map((s, i) => ({
      data:
        s.from === 'c'
          ? udpFrame(C, CP, S, SP, encodeMessage(s.msg))
          : udpFrame(S, SP, C, CP, encodeMessage(s.msg)),
      sec: 1_700_000_000,
      frac: i * 1000,
    })),
    { linkType: 1 },
  );
}
