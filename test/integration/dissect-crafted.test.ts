/** dissect() on a crafted plain-CoAP capture: grouping of exchanges, blocks, observe. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeMessage } from '../../src/codec/message.js';
import { dissect } from '../../src/dissect/dissect.js';
import { renderJson, renderText } from '../../src/dissect/render.js';
import {
  epb,
  ether,
  idb,
  ipv4,
  ipv6,
  pcap,
  shb,
  sll,
  sll2,
  udp,
  udpFrame,
} from '../vectors/captures/build.js';
import { SCENARIO, scenarioCapture } from '../vectors/captures/scenario.js';

describe('dissect on a crafted plain CoAP capture', () => {
  const result = dissect(scenarioCapture());
  const msgs = result.coap.messages;
  const roles = (exId: number) => result.coap.exchanges[exId - 1]?.messages.map((m) => m.role);

  it('decodes every message over plain UDP', () => {
    assert.equal(result.error, undefined);
    assert.equal(msgs.length, SCENARIO.length);
    assert.ok(msgs.every((m) => m.transport === 'udp'));
    assert.deepEqual(
      msgs.map((m) => m.messageId),
      SCENARIO.map((s) => s.msg.messageId),
    );
    assert.equal(result.dtls.length, 0);
    assert.equal(result.dns.length, 0);
  });

  it('groups the block-wise download with separate responses', () => {
    assert.equal(result.coap.blockTransfers.length, 1);
    const bt = result.coap.blockTransfers[0];
    assert.ok(bt);
    assert.deepEqual(
      {
        option: bt.option,
        method: bt.method,
        uri: bt.uriPath,
        blocks: bt.blocks,
        size: bt.blockSize,
        bytes: bt.bytes,
        complete: bt.complete,
      },
      { option: 'Block2', method: 'GET', uri: '/large', blocks: 3, size: 64, bytes: 158, complete: true },
    );
    assert.deepEqual(bt.exchanges, [1, 2, 3]);
    assert.equal(result.coap.exchanges[0]?.kind, 'separate');
    assert.deepEqual(roles(1), [
      'request',
      'empty ACK (response will follow separately)',
      'separate response',
      'ACK of separate response',
    ]);
    assert.equal(result.coap.exchanges[1]?.kind, 'separate');
    assert.equal(result.coap.exchanges[2]?.kind, 'piggybacked');
    assert.deepEqual(roles(3), ['request', 'piggybacked response']);
    const third = msgs[9];
    assert.deepEqual(third?.block2, { num: 2, more: false, szx: 2, size: 64 });
    assert.equal(
      third?.summary,
      'ACK MID=102 TKN=aa03 2.05 Content /large Block2=2/0/64 (text/plain;charset=utf-8)',
    );
  });

  it('groups the observation and its notifications', () => {
    const ex = result.coap.exchanges[3];
    assert.equal(ex?.kind, 'observe');
    assert.equal(ex?.uriPath, '/sensors/temp');
    assert.deepEqual(roles(4), [
      'request (observe register)',
      'piggybacked response',
      'notification (Observe=6)',
      'notification (Observe=7)',
      'ACK of notification (Observe=7)',
    ]);
    const n = msgs[12];
    assert.equal(n?.typeName, 'NON');
    assert.equal(n?.observe, 6);
    assert.equal(n?.payload.kind, 'json');
    assert.equal(n?.payload.preview, '{"t":22.6}');
    assert.equal(n?.requestUriPath, '/sensors/temp');
  });

  it('recognises a CoAP ping and a retransmission', () => {
    assert.equal(result.coap.exchanges[4]?.kind, 'ping');
    assert.deepEqual(roles(5), ['CoAP ping', 'pong (reset to ping)']);
    assert.deepEqual(roles(6), ['request', 'retransmission', 'piggybacked response']);
    assert.equal(result.coap.exchanges.length, 6);
  });

  it('decodes options by format and renders one summary line per message', () => {
    const req = msgs[0];
    assert.equal(req?.summary, 'CON MID=100 TKN=aa01 GET /large');
    assert.deepEqual(req?.options[0], {
      number: 11,
      name: 'Uri-Path',
      format: 'string',
      value: 'large',
      raw: '6c61726765',
      display: '"large"',
    });
    const obs = msgs[10]?.options.find((o) => o.number === 6);
    assert.equal(obs?.value, 0);
    assert.equal(obs?.display, '0 (register)');
    const cf = msgs[11]?.options.find((o) => o.number === 12);
    assert.equal(cf?.display, '50 (application/json)');
    const text = renderText(result, { color: false });
    assert.match(
      text,
      /Block-wise transfer 1: GET \/large \(Block2, 3 block\(s\) of 64 B, 158 payload bytes, complete\)/,
    );
    assert.match(text, /#1 0\.000000 CON MID=100 TKN=aa01 GET \/large/);
    assert.match(text, /Block2 \(23, uint\): num=0 m=1 szx=2 \(64 B\)/);
    assert.match(text, /NON MID=502 TKN=bb01 2\.05 Content \/sensors\/temp Observe=6 \(application\/json\)/);
    assert.match(text, /link 14 \+ IPv4 20 \+ UDP 8 \+ CoAP header 10 \+ payload 64 = 116 B/);
    const colored = renderText(result, { color: true });
    assert.match(colored, /\x1b\[36mCON MID=100/);
    const json = JSON.parse(renderJson(result));
    assert.equal(json.coap.messages.length, SCENARIO.length);
    assert.equal(json.frames[0].protocol, 'coap');
  });
});

describe('dissect across link types and IP versions', () => {
  // CON GET /a, MID 1, token 01
  const coap = Buffer.from([0x41, 0x01, 0x00, 0x01, 0x01, 0xb1, 0x61]);
  const v4 = ipv4('10.1.1.1', '10.1.1.2', udp(5000, 5683, coap));
  const a6 = Buffer.from('20010db8000000000000000000000001', 'hex');
  const b6 = Buffer.from('20010db8000000000000000000000002', 'hex');
  const v6 = ipv6(a6, b6, udp(5000, 5683, coap), [{ type: 0, body: Buffer.from([0, 1, 4, 0, 0, 0, 0]) }]);

  const cases: [string, number, Buffer, boolean][] = [
    ['Ethernet + 802.1Q', 1, ether(v4, 0x0800, [42]), false],
    ['Ethernet IPv6', 1, ether(v6, 0x86dd), true],
    ['SLL', 113, sll(v4), false],
    ['SLL2', 276, sll2(v6, 0x86dd), true],
    ['raw 101', 101, v4, false],
    ['raw 12', 12, v6, true],
    ['raw 14', 14, v4, false],
    ['null LE', 0, Buffer.concat([Buffer.from([2, 0, 0, 0]), v4]), false],
    ['loop', 108, Buffer.concat([Buffer.from([0, 0, 0, 30]), v6]), true],
  ];
  for (const [name, linkType, frame, six] of cases) {
    it(`${name} (link type ${linkType})`, () => {
      for (const file of [
        pcap([{ data: frame }], { linkType, le: false, nano: true }),
        Buffer.concat([shb(true), idb(linkType, true, 9), epb(0, 1_000_000_000n, frame, true)]),
      ]) {
        const r = dissect(file);
        assert.equal(r.error, undefined);
        assert.equal(r.coap.messages.length, 1, name);
        assert.equal(r.coap.messages[0]?.summary, 'CON MID=1 TKN=01 GET /a');
        assert.equal(r.frames[0]?.ip?.version, six ? 6 : 4);
        assert.equal(r.coap.messages[0]?.src, six ? '[2001:db8::1]:5000' : '10.1.1.1:5000');
        if (six) assert.deepEqual(r.frames[0]?.ip?.extensionHeaders, [0]);
      }
    });
  }

  it('reports IPv4 fragments, non-UDP packets, non-IP frames and bad CoAP without failing', () => {
    const frag = ipv4('10.1.1.1', '10.1.1.2', udp(5000, 5683, coap), { id: 9, more: true });
    const tcp = ipv4('10.1.1.1', '10.1.1.2', Buffer.alloc(20), { protocol: 6 });
    const arp = ether(Buffer.alloc(28), 0x0806);
    const bad = ipv4('10.1.1.1', '10.1.1.2', udp(5000, 5683, Buffer.from([0x4f, 1, 0, 0])));
    const r = dissect(
      pcap(
        [
          { data: ether(frag) },
          { data: ether(tcp) },
          { data: arp },
          { data: ether(bad) },
          { data: Buffer.alloc(3) },
        ],
        { linkType: 1 },
      ),
    );
    assert.equal(r.error, undefined);
    assert.deepEqual(r.frames[0]?.ip?.fragment, { id: 9, offset: 0, moreFragments: true });
    assert.match(r.frames[0]?.summary ?? '', /IPv4 fragment id 9 offset 0 \(more\)/);
    // A zeroed TCP header has data offset 0: a malformed segment, reported (CoAP over TCP is decoded).
    assert.match(r.frames[1]?.errors[0] ?? '', /bad TCP data offset 0 \(minimum 5\)/);
    assert.match(r.frames[2]?.summary ?? '', /ethertype 0x0806/);
    assert.match(r.frames[3]?.errors[0] ?? '', /not a valid CoAP message: token length 15/);
    assert.match(r.frames[4]?.errors[0] ?? '', /truncated Ethernet header/);
    assert.equal(r.coap.messages.length, 0);
    const text = renderText(r, { color: false });
    assert.match(text, /4\. Other frames and problems/);
  });

  it('reassembles IPv4 and IPv6 fragments (out of order, duplicates)', () => {
    const big = Buffer.concat([
      Buffer.from([0x51, 0x02, 0x00, 0x07, 0x0f, 0xb1, 0x62, 0xff]),
      Buffer.alloc(100, 0x41),
    ]);
    const datagram = udp(5000, 5683, big); // 116 bytes: 8 UDP + 108 CoAP
    const f1 = datagram.subarray(0, 64);
    const f2 = datagram.subarray(64);
    const ip4 = (data: Buffer, off: number, more: boolean): Buffer =>
      ether(ipv4('10.1.1.1', '10.1.1.2', data, { id: 77, fragOffset: off, more }));
    const fragHeader = (off: number, more: boolean): { type: number; body: Buffer } => {
      const b = Buffer.alloc(7);
      b.writeUInt16BE(off | (more ? 1 : 0), 1);
      b.writeUInt32BE(5, 3);
      return { type: 44, body: b };
    };
    const ip6 = (data: Buffer, off: number, more: boolean): Buffer =>
      ether(ipv6(a6, b6, data, [fragHeader(off, more)]), 0x86dd);
    const r = dissect(
      pcap(
        [
          { data: ip4(f2, 64, false) },
          { data: ip4(f1, 0, true) },
          { data: ip6(f1, 0, true) },
          { data: ip6(f1, 0, true) },
          { data: ip6(f2, 64, false) },
        ],
        {
          linkType: 1,
        },
      ),
    );
    assert.equal(r.coap.messages.length, 2);
    assert.deepEqual(
      r.coap.messages.map((m) => [m.frame, m.summary, m.payload.length]),
      [
        [2, 'NON MID=7 TKN=0f POST /b', 100],
        [5, 'NON MID=7 TKN=0f POST /b', 100],
      ],
    );
    assert.deepEqual(r.frames[1]?.ip?.reassembledFrom, [1, 2]);
    assert.deepEqual(r.frames[4]?.ip?.reassembledFrom, [3, 4, 5]);
    assert.match(r.frames[0]?.summary ?? '', /fragment id 77 offset 64/);
    assert.match(renderText(r, { color: false }), /reassembled from frames #1, #2/);
  });
});

describe('dissect groups a Block1 upload', () => {
  it('PUT in three blocks answered 2.31 Continue, 2.31, 2.04', () => {
    const block1 = (num: number, more: boolean) => ({
      number: 27,
      value: Buffer.from([(num << 4) | (more ? 8 : 0) | 1]),
    });
    const path = { number: 11, value: Buffer.from('fw') };
    const msgs: [boolean, Parameters<typeof encodeMessage>[0]][] = [];
    const sizes = [32, 32, 10];
    sizes.forEach((n, i) => {
      const more = i < sizes.length - 1;
      const token = Buffer.from([0xd0, i]);
      msgs.push([
        true,
        {
          type: 0,
          code: 3,
          messageId: 200 + i,
          token,
          options: [path, block1(i, more)],
          payload: Buffer.alloc(n, 0x55),
        },
      ]);
      msgs.push([
        false,
        { type: 2, code: more ? 95 : 68, messageId: 200 + i, token, options: [block1(i, more)] },
      ]);
    });
    const file = pcap(
      msgs.map(([fromClient, m]) => ({
        data: fromClient
          ? udpFrame('10.0.0.1', 4000, '10.0.0.2', 5683, encodeMessage(m))
          : udpFrame('10.0.0.2', 5683, '10.0.0.1', 4000, encodeMessage(m)),
      })),
      { linkType: 1 },
    );
    const r = dissect(file);
    assert.equal(r.coap.messages.length, 6);
    assert.equal(r.coap.messages[1]?.codeName, '2.31 Continue');
    assert.equal(r.coap.blockTransfers.length, 1);
    const bt = r.coap.blockTransfers[0];
    assert.deepEqual(
      [
        bt?.option,
        bt?.method,
        bt?.uriPath,
        bt?.blocks,
        bt?.blockSize,
        bt?.bytes,
        bt?.complete,
        bt?.exchanges,
      ],
      ['Block1', 'PUT', '/fw', 3, 32, 74, true, [1, 2, 3]],
    );
    assert.match(
      renderText(r, { color: false }),
      /Block-wise transfer 1: PUT \/fw \(Block1, 3 block\(s\) of 32 B, 74 payload bytes, complete\)/,
    );
  });
});
