import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeDns, readName, summarizeDns } from '../../src/capture/dns.js';
import { CaptureFormatError } from '../../src/errors.js';

function name(n: string): Buffer {
  return Buffer.concat([
    ...n.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
    Buffer.from([0]),
  ]);
}
function rr(nameBytes: Buffer, type: number, ttl: number, rdata: Buffer): Buffer {
  const h = Buffer.alloc(10);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(1, 2);
  h.writeUInt32BE(ttl, 4);
  h.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([nameBytes, h, rdata]);
}
function header(id: number, flags: number, counts: [number, number, number, number]): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(flags, 2);
  for (let i = 0; i < 4; i++) h.writeUInt16BE(counts[i] as number, 4 + i * 2);
  return h;
}
const PTR_Q = Buffer.from([0xc0, 12]); // pointer to the question name

describe('DNS decoder', () => {
  it('decodes a query', () => {
    const msg = Buffer.concat([
      header(0x6dab, 0x0100, [1, 0, 0, 0]),
      name('coap.golioth.io'),
      Buffer.from([0, 1, 0, 1]),
    ]);
    const d = decodeDns(msg);
    assert.equal(d.id, 0x6dab);
    assert.equal(d.isResponse, false);
    assert.equal(d.recursionDesired, true);
    assert.deepEqual(d.questions, [{ name: 'coap.golioth.io', type: 1, typeName: 'A', class: 1 }]);
    assert.equal(summarizeDns(d), 'query 0x6dab A coap.golioth.io');
  });

  it('decodes A, AAAA, CNAME and SOA records with name compression', () => {
    const q = name('www.example.com');
    const soaName = Buffer.from([0xc0, 16]); // "example.com" inside the question name
    const soa = Buffer.concat([
      name('ns1.example.com'),
      Buffer.concat([Buffer.from([10]), Buffer.from('hostmaster'), Buffer.from([0xc0, 16])]),
      Buffer.from([0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5]),
    ]);
    const msg = Buffer.concat([
      header(7, 0x8180, [1, 3, 1, 0]),
      q,
      Buffer.from([0, 1, 0, 1]),
      rr(PTR_Q, 5, 60, Buffer.concat([Buffer.from([3]), Buffer.from('cdn'), Buffer.from([0xc0, 16])])),
      rr(Buffer.from([0xc0, 12]), 1, 300, Buffer.from([34, 135, 90, 112])),
      rr(PTR_Q, 28, 300, Buffer.from('20010db8000000000000000000000001', 'hex')),
      rr(soaName, 6, 30, soa),
    ]);
    const d = decodeDns(msg);
    assert.equal(d.isResponse, true);
    assert.equal(d.rcodeName, 'NoError');
    assert.deepEqual(
      d.answers.map((a) => [a.name, a.typeName, a.ttl, a.data]),
      [
        ['www.example.com', 'CNAME', 60, 'cdn.example.com'],
        ['www.example.com', 'A', 300, '34.135.90.112'],
        ['www.example.com', 'AAAA', 300, '2001:db8::1'],
      ],
    );
    assert.deepEqual(d.authority[0]?.data, {
      mname: 'ns1.example.com',
      rname: 'hostmaster.example.com',
      serial: 1,
      refresh: 2,
      retry: 3,
      expire: 4,
      minimum: 5,
    });
    assert.match(summarizeDns(d), /→ CNAME cdn\.example\.com, A 34\.135\.90\.112/);
  });

  it('rejects compression loops without hanging', () => {
    // Question name is a pointer to itself.
    const self = Buffer.concat([
      header(1, 0, [1, 0, 0, 0]),
      Buffer.from([0xc0, 12]),
      Buffer.from([0, 1, 0, 1]),
    ]);
    assert.throws(() => decodeDns(self), CaptureFormatError);
    // Two pointers pointing at each other.
    const pingPong = Buffer.concat([
      header(1, 0, [1, 0, 0, 0]),
      Buffer.from([0xc0, 14, 0xc0, 12]),
      Buffer.from([0, 1, 0, 1]),
    ]);
    assert.throws(() => decodeDns(pingPong), /compression loop/);
    // A label then a pointer back to the start of that label.
    const labelLoop = Buffer.concat([header(1, 0, [1, 0, 0, 0]), Buffer.from([1, 0x61, 0xc0, 12])]);
    assert.throws(() => readName(labelLoop, 12), CaptureFormatError);
  });

  it('rejects truncated messages and bad pointers', () => {
    assert.throws(() => decodeDns(Buffer.alloc(11)), CaptureFormatError);
    const noQuestion = header(1, 0, [1, 0, 0, 0]);
    assert.throws(() => decodeDns(noQuestion), CaptureFormatError);
    const farPtr = Buffer.concat([
      header(1, 0, [1, 0, 0, 0]),
      Buffer.from([0xc0, 200]),
      Buffer.from([0, 1, 0, 1]),
    ]);
    assert.throws(() => decodeDns(farPtr), CaptureFormatError);
    const badA = Buffer.concat([
      header(1, 0x8000, [0, 1, 0, 0]),
      rr(Buffer.from([0]), 1, 1, Buffer.from([1, 2, 3])),
    ]);
    assert.throws(() => decodeDns(badA), /bad A record/);
  });

  it('reports an NXDOMAIN response and the root name', () => {
    const msg = Buffer.concat([header(9, 0x8183, [1, 0, 0, 0]), Buffer.from([0]), Buffer.from([0, 2, 0, 1])]);
    const d = decodeDns(msg);
    assert.equal(d.rcodeName, 'NXDomain');
    assert.equal(d.questions[0]?.name, '<Root>');
    assert.match(summarizeDns(d), /NXDomain/);
  });
});
