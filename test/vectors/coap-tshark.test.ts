/**
 * Cross-check of our encoder against an independent decoder: Wireshark's
 * CoAP dissector (tshark). The RFC 7252 Appendix A messages and the option
 * encoding boundary cases are encoded here, written to a pcap (raw IPv4/UDP to
 * port 5683) and dissected; tshark must see the same header, token, option
 * numbers and option values, and flag nothing as malformed.
 *
 * Skipped when tshark is not installed. One tshark run, 20 s timeout.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeMessage, type EncodableMessage, encodeMessage } from '../../src/codec/message.js';
import { decodeBlock, decodeUint, encodeBlock, encodeUint } from '../../src/codec/options.js';
import { pcapBytes } from '../helpers/pcap.js';

/** Classic pcap, LINKTYPE_RAW: each datagram from 127.0.0.1:40000 to 127.0.0.1:5683, 1 s apart. */
function pcap(datagrams: readonly Buffer[]): Buffer {
  const src = { address: '127.0.0.1', port: 40000 };
  const dst = { address: '127.0.0.1', port: 5683 };
  return pcapBytes(datagrams.map((data, i) => ({ src, dst, data, timeMs: (i + 1) * 1000 })));
}

const T = Buffer.from('temperature');
const P = Buffer.from('22.3 C');
const tok = (n: number) => Buffer.from([n]);
const opt = (number: number, value: Buffer | string) => ({
  number,
  value: typeof value === 'string' ? Buffer.from(value) : value,
});

const CASES: Array<[string, EncodableMessage]> = [
  ['fig16 req', { type: 0, code: 1, messageId: 0x7d34, options: [opt(11, T)] }],
  ['fig16 res', { type: 2, code: 0x45, messageId: 0x7d34, payload: P }],
  ['fig17 req', { type: 0, code: 1, messageId: 0x7d35, token: tok(0x20), options: [opt(11, T)] }],
  ['fig17 res', { type: 2, code: 0x45, messageId: 0x7d35, token: tok(0x20), payload: P }],
  ['fig20 empty ACK', { type: 2, code: 0, messageId: 0x7d38 }],
  ['fig20 CON res', { type: 0, code: 0x45, messageId: 0xad7b, token: tok(0x53), payload: P }],
  ['fig21 RST', { type: 3, code: 0, messageId: 0xad7c }],
  ['fig22 NON req', { type: 1, code: 1, messageId: 0x7d40, token: tok(0x75), options: [opt(11, T)] }],
  ['fig23 4.04', { type: 1, code: 0x84, messageId: 0x952a, token: tok(0x86) }],
  [
    'uri options',
    {
      type: 0,
      code: 1,
      messageId: 1,
      token: Buffer.from('0102030405060708', 'hex'),
      options: [
        opt(3, 'example.net'),
        opt(7, encodeUint(61616)),
        opt(11, 'a'),
        opt(11, 'b'),
        opt(15, 'x=1'),
        opt(15, 'y'),
        opt(17, encodeUint(50)),
      ],
    },
  ],
  [
    'response options',
    {
      type: 2,
      code: 0x45,
      messageId: 2,
      token: tok(9),
      options: [
        opt(4, Buffer.from([0x8f, 0x7e])),
        opt(6, encodeUint(0x123456)),
        opt(12, encodeUint(0)),
        opt(14, encodeUint(86400)),
        opt(23, encodeBlock(1, true, 6)),
        opt(28, encodeUint(5000)),
      ],
      payload: Buffer.from('x'),
    },
  ],
  [
    'location options',
    {
      type: 2,
      code: 0x41,
      messageId: 3,
      options: [opt(8, 'ls'), opt(8, '42'), opt(20, 'q=1')],
    },
  ],
  [
    'request block1/size1/proxy',
    {
      type: 0,
      code: 3,
      messageId: 4,
      options: [
        opt(1, Buffer.from([1, 2])),
        opt(5, Buffer.alloc(0)),
        opt(27, encodeBlock(300, false, 2)),
        opt(35, 'coap://example.com/x'),
        opt(60, encodeUint(70000)),
      ],
      payload: Buffer.alloc(64, 0x41),
    },
  ],
  ...[13, 14, 268, 269, 270, 1000, 65000].map((n): [string, EncodableMessage] => [
    `option ${n} after Uri-Path`,
    { type: 0, code: 1, messageId: 5, options: [opt(11, 'p'), opt(11 + n, Buffer.from([7]))] },
  ]),
  ...[12, 13, 14, 268, 269, 270, 1200].map((len): [string, EncodableMessage] => [
    `Uri-Path of ${len} bytes`,
    {
      type: 0,
      code: 1,
      messageId: 6,
      options: [opt(11, Buffer.alloc(Math.min(len, 255), 0x61)), opt(2048, Buffer.alloc(len, 0x62))],
    },
  ]),
];

function run(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'tshark',
      ['-n', '-r', file, '-T', 'json', '--no-duplicate-keys', '-J', 'coap'],
      { timeout: 20_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)),
    );
  });
}

const asArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const colonHex = (s: string | undefined) => (s ?? '').replace(/:/g, '');

type Layer = Record<string, unknown>;

let dir = '';
let layers: Layer[] | undefined;
let skipReason: string | undefined;

describe('tshark agrees with our encodings', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coapkit-tshark-'));
    const file = join(dir, 'vectors.pcap');
    await writeFile(file, pcap(CASES.map(([, m]) => encodeMessage(m))));
    try {
      const out = JSON.parse(await run(file)) as Array<{ _source: { layers: Layer } }>;
      layers = out.map((p) => p._source.layers);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || /ENOENT/.test(String(e)))
        skipReason = 'tshark not installed';
      else throw e;
    }
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('dissects every vector with the same fields', (t) => {
    if (skipReason) return t.skip(skipReason);
    assert.ok(layers);
    assert.equal(layers.length, CASES.length);
    CASES.forEach(([name, m], i) => {
      const all = layers![i]!;
      const coap = all.coap as Layer | undefined;
      assert.ok(coap, `${name}: no CoAP layer`);
      // Wireshark flags option numbers outside its registry as "Invalid Option Number"
      // (a registry policy, not a wire-format error); anything else malformed fails.
      const trees = asArray(coap['coap.opt.name_tree'] as Layer | Layer[] | undefined);
      const rest = { ...all, coap: { ...coap, 'coap.opt.name_tree': undefined } };
      assert.ok(
        !JSON.stringify(rest).includes('_ws.malformed'),
        `${name}: malformed: ${JSON.stringify(all)}`,
      );
      for (const tr of trees) {
        const s = JSON.stringify(tr);
        if (s.includes('_ws.malformed')) {
          assert.match(s, /coap\.invalid_option_number/, `${name}: malformed option: ${s}`);
        }
      }
      const d = decodeMessage(encodeMessage(m));
      assert.equal(Number(coap['coap.type']), d.type, `${name}: type`);
      assert.equal(Number(coap['coap.code']), d.code, `${name}: code`);
      assert.equal(Number(coap['coap.mid']), d.messageId, `${name}: MID`);
      assert.equal(Number(coap['coap.token_len']), d.token.length, `${name}: TKL`);
      assert.equal(
        colonHex(coap['coap.token'] as string | undefined),
        d.token.toString('hex'),
        `${name}: token`,
      );
      const numbers = trees.map((tr) => Number(/^Type (\d+)/.exec(String(tr['coap.opt.desc']))?.[1]));
      assert.deepEqual(
        numbers,
        d.options.map((o) => o.number),
        `${name}: option numbers`,
      );
      for (const [k, tr] of trees.entries()) {
        const o = d.options[k]!;
        const str = (f: string) => assert.equal(tr[f], o.value.toString('utf8'), `${name}: ${f}`);
        const uint = (f: string) => assert.equal(Number(tr[f]), decodeUint(o.value), `${name}: ${f}`);
        const bytes = (f: string) =>
          assert.equal(colonHex(tr[f] as string), o.value.toString('hex'), `${name}: ${f}`);
        switch (o.number) {
          case 3:
            str('coap.opt.uri_host');
            break;
          case 7:
            uint('coap.opt.uri_port');
            break;
          case 8:
            str('coap.opt.location_path');
            break;
          case 11:
            str('coap.opt.uri_path');
            break;
          case 15:
            str('coap.opt.uri_query');
            break;
          case 20:
            str('coap.opt.location_query');
            break;
          case 35:
            str('coap.opt.proxy_uri');
            break;
          case 1:
            bytes('coap.opt.if_match');
            break;
          case 4:
            bytes('coap.opt.etag');
            break;
          case 6:
            uint('coap.opt.observe');
            break;
          case 14:
            uint('coap.opt.max_age');
            break;
          case 60:
            uint('coap.opt.size1');
            break;
          case 23:
          case 27: {
            const b = decodeBlock(o.value);
            assert.equal(Number(tr['coap.opt.block_number']), b.num, `${name}: block num`);
            assert.equal(Number(tr['coap.opt.block_mflag']), b.more ? 1 : 0, `${name}: block M`);
            assert.equal(Number(tr['coap.opt.block_size']), b.szx, `${name}: block SZX`);
            break;
          }
          default:
            if (tr['coap.opt.unknown'] !== undefined) bytes('coap.opt.unknown');
        }
      }
    });
  });
});
