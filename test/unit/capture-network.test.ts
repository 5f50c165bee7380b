import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ipv6ToString } from '../../src/capture/bytes.js';
import { decodeIp, decodeLinkLayer, decodeUdp } from '../../src/capture/network.js';
import { CaptureFormatError } from '../../src/errors.js';
import { ether, ipv4, ipv6, sll, sll2, udp } from '../vectors/captures/build.js';

const payload = Buffer.from('hello');
const v4 = ipv4('10.0.0.1', '10.0.0.2', udp(1234, 5683, payload));
const src6 = Buffer.from('20010db8000000000000000000000001', 'hex');
const dst6 = Buffer.from('fe800000000000000000000000000002', 'hex');
const v6 = ipv6(src6, dst6, udp(1234, 5683, payload));

function checkV4(p: Uint8Array): void {
  const ip = decodeIp(p);
  assert.equal(ip.version, 4);
  assert.equal(ip.src, '10.0.0.1');
  assert.equal(ip.dst, '10.0.0.2');
  const u = decodeUdp(ip.payload);
  assert.equal(u.srcPort, 1234);
  assert.equal(u.dstPort, 5683);
  assert.deepEqual(Buffer.from(u.payload), payload);
}

describe('link layers', () => {
  it('Ethernet (1), with and without 802.1Q VLAN tags', () => {
    const plain = decodeLinkLayer(1, ether(v4));
    assert.equal(plain.headerLength, 14);
    assert.equal(plain.etherType, 0x0800);
    assert.equal(plain.src, '02:00:00:00:00:01');
    checkV4(plain.payload);
    const tagged = decodeLinkLayer(1, ether(v4, 0x0800, [100, 200]));
    assert.equal(tagged.headerLength, 22);
    assert.deepEqual(tagged.vlans, [100, 200]);
    checkV4(tagged.payload);
    const six = decodeLinkLayer(1, ether(v6, 0x86dd));
    assert.equal(six.etherType, 0x86dd);
  });

  it('Linux cooked v1 (113) and v2 (276)', () => {
    const a = decodeLinkLayer(113, sll(v4));
    assert.equal(a.headerLength, 16);
    assert.equal(a.packetType, 4);
    checkV4(a.payload);
    const b = decodeLinkLayer(276, sll2(v6, 0x86dd));
    assert.equal(b.headerLength, 20);
    assert.equal(b.etherType, 0x86dd);
    assert.equal(decodeIp(b.payload).version, 6);
  });

  it('raw IP (101, 12, 14, 228, 229)', () => {
    for (const lt of [101, 12, 14]) {
      assert.equal(decodeLinkLayer(lt, v4).etherType, 0x0800);
      assert.equal(decodeLinkLayer(lt, v6).etherType, 0x86dd);
      checkV4(decodeLinkLayer(lt, v4).payload);
    }
    assert.equal(decodeLinkLayer(228, v4).etherType, 0x0800);
    assert.equal(decodeLinkLayer(229, v6).etherType, 0x86dd);
  });

  it('loopback: null (0) in either byte order and OpenBSD loop (108)', () => {
    const le = Buffer.concat([Buffer.from([2, 0, 0, 0]), v4]);
    const be = Buffer.concat([Buffer.from([0, 0, 0, 2]), v4]);
    const le6 = Buffer.concat([Buffer.from([30, 0, 0, 0]), v6]);
    assert.equal(decodeLinkLayer(0, le).etherType, 0x0800);
    assert.equal(decodeLinkLayer(0, be).etherType, 0x0800);
    assert.equal(decodeLinkLayer(0, le6).etherType, 0x86dd);
    assert.equal(decodeLinkLayer(108, be).etherType, 0x0800);
    checkV4(decodeLinkLayer(108, be).payload);
  });

  it('rejects unknown link types and short headers', () => {
    assert.throws(() => decodeLinkLayer(147, v4), CaptureFormatError);
    assert.throws(() => decodeLinkLayer(1, Buffer.alloc(10)), CaptureFormatError);
    assert.throws(() => decodeLinkLayer(113, Buffer.alloc(15)), CaptureFormatError);
  });
});

describe('IP and UDP', () => {
  it('IPv4 with options', () => {
    const p = ipv4('1.2.3.4', '5.6.7.8', udp(1, 2, payload), { options: Buffer.from([0x94, 0x04, 0, 0]) });
    const ip = decodeIp(p);
    assert.equal(ip.headerLength, 24);
    assert.equal(ip.optionsLength, 4);
    assert.equal(decodeUdp(ip.payload).dstPort, 2);
  });

  it('IPv4 fragments are reported', () => {
    const first = decodeIp(ipv4('1.2.3.4', '5.6.7.8', udp(1, 2, payload), { id: 77, more: true }));
    assert.deepEqual(first.fragment, { id: 77, offset: 0, moreFragments: true });
    const later = decodeIp(ipv4('1.2.3.4', '5.6.7.8', Buffer.alloc(8), { id: 77, fragOffset: 1480 }));
    assert.deepEqual(later.fragment, { id: 77, offset: 1480, moreFragments: false });
    assert.equal(decodeIp(v4).fragment, undefined);
  });

  it('IPv6 with hop-by-hop, destination options and fragment headers', () => {
    const hbh = { type: 0, body: Buffer.from([0, 1, 4, 0, 0, 0, 0]) };
    const frag = { type: 44, body: Buffer.from([0, 0, 0, 0, 0, 0, 42]) };
    const dest = { type: 60, body: Buffer.from([0, 1, 4, 0, 0, 0, 0]) };
    const ip = decodeIp(ipv6(src6, dst6, udp(7, 5684, payload), [hbh, frag, dest]));
    assert.equal(ip.version, 6);
    assert.deepEqual(ip.extensionHeaders, [0, 44, 60]);
    assert.equal(ip.headerLength, 64);
    assert.equal(ip.protocol, 17);
    assert.equal(ip.fragment, undefined); // atomic fragment
    assert.equal(ip.src, '2001:db8::1');
    assert.equal(ip.dst, 'fe80::2');
    assert.equal(decodeUdp(ip.payload).dstPort, 5684);
    const fragmented = decodeIp(
      ipv6(src6, dst6, Buffer.alloc(16), [{ type: 44, body: Buffer.from([0, 0x05, 0x01, 0, 0, 0, 9]) }]),
    );
    assert.deepEqual(fragmented.fragment, { id: 9, offset: 1280, moreFragments: true });
  });

  it('formats IPv6 addresses per RFC 5952', () => {
    assert.equal(ipv6ToString(Buffer.alloc(16)), '::');
    assert.equal(ipv6ToString(Buffer.from('00000000000000000000000000000001', 'hex')), '::1');
    assert.equal(ipv6ToString(Buffer.from('20010db8000000010000000000000001', 'hex')), '2001:db8:0:1::1');
    assert.equal(ipv6ToString(Buffer.from('20010db8000000000001000000000001', 'hex')), '2001:db8::1:0:0:1');
    assert.equal(ipv6ToString(Buffer.from('00000000000000000000ffffc0000201', 'hex')), '::ffff:192.0.2.1');
  });

  it('marks truncated packets and rejects malformed headers', () => {
    const cut = v4.subarray(0, v4.length - 2);
    const ip = decodeIp(cut);
    assert.equal(ip.truncated, true);
    assert.equal(decodeUdp(ip.payload).truncated, true);
    assert.throws(() => decodeIp(Buffer.from([0x45, 0, 0])), CaptureFormatError);
    assert.throws(() => decodeIp(Buffer.from([0x75, 0, 0, 20])), CaptureFormatError);
    const badIhl = Buffer.from(v4);
    badIhl[0] = 0x43;
    assert.throws(() => decodeIp(badIhl), CaptureFormatError);
    assert.throws(() => decodeUdp(Buffer.from([0, 1, 0, 2, 0, 3, 0, 0])), CaptureFormatError);
  });
});
