/** Test helpers: run tshark and compare its CoAP decoding with dissect()'s, field by field. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { DissectResult } from '../../../src/dissect/dissect.js';

export { hasTshark } from '../../helpers/tshark.js';

// biome-ignore lint/suspicious/noExplicitAny: tshark JSON is untyped
export type J = any;
export const arr = (x: J): J[] => (Array.isArray(x) ? x : x === undefined ? [] : [x]);
export const unColon = (s: string | undefined): string => (s ?? '').replace(/:/g, '').toLowerCase();

/** `tshark -r FILE ARGS -T json -x --no-duplicate-keys`, parsed. */
export async function tsharkJson(file: string, args: string[]): Promise<J[]> {
  const { stdout } = await promisify(execFile)(
    'tshark',
    ['-r', file, ...args, '-T', 'json', '-x', '--no-duplicate-keys'],
    { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 },
  );
  return JSON.parse(stdout);
}

/** Option number and raw value hex for each option in tshark's coap.opt.name_tree. */
export function tsharkOptions(coap: J): { number: number; hex: string }[] {
  return arr(coap['coap.opt.name_tree']).map((o: J) => {
    const m = /Type (\d+)/.exec(o['coap.opt.desc']);
    assert.ok(m, `option description ${o['coap.opt.desc']}`);
    // coap.opt.desc_raw spans the whole option (header + value): the value is its last `length` bytes.
    // Its header is 1 byte plus the extended delta / length bytes given by the two nibbles.
    const whole = String(o['coap.opt.desc_raw'][0]).toLowerCase();
    const first = Number.parseInt(whole.slice(0, 2), 16);
    const ext = (nibble: number): number => (nibble === 13 ? 1 : nibble === 14 ? 2 : 0);
    const header = 1 + ext(first >> 4) + ext(first & 15);
    return { number: Number(m[1]), hex: whole.slice(2 * header) };
  });
}

/**
 * Every CoAP message tshark decodes must be in `result` with the same type,
 * MID, token, code, options (number + raw value), decoded Observe / Block /
 * Uri-Path / Content-Format, payload and total length; responses must be
 * matched to the request tshark matched them to. Returns how many were compared.
 */
export function compareCoapWithTshark(result: DissectResult, packets: J[]): number {
  const coapFrames = packets.filter((p) => p._source.layers.coap !== undefined);
  assert.equal(result.coap.messages.length, coapFrames.length, 'number of CoAP messages');
  for (const p of coapFrames) {
    const l = p._source.layers;
    const n = Number(l.frame['frame.number']);
    const c = l.coap;
    const ours = result.coap.messages.filter((m) => m.frame === n);
    assert.equal(ours.length, 1, `frame ${n}: one CoAP message`);
    const m = ours[0];
    assert.ok(m);
    const where = `frame ${n}`;
    assert.equal(m.type, Number(c['coap.type']), `${where} type`);
    assert.equal(m.messageId, Number(c['coap.mid']), `${where} MID`);
    assert.equal(m.token, unColon(c['coap.token']), `${where} token`);
    assert.equal(m.code, Number(c['coap.code']), `${where} code`);
    assert.deepEqual(
      m.options.map((o) => ({ number: o.number, hex: o.raw })),
      tsharkOptions(c),
      `${where} options`,
    );
    for (const o of arr(c['coap.opt.name_tree'])) {
      if (o['coap.opt.observe'] !== undefined)
        assert.equal(m.observe, Number(o['coap.opt.observe']), `${where} observe`);
      if (o['coap.opt.ctype'] !== undefined) {
        assert.equal(
          m.contentFormat?.name.replace(/\s/g, ''),
          String(o['coap.opt.ctype']).replace(/\s/g, ''),
        );
      }
      if (o['coap.opt.block_number'] !== undefined) {
        const b: { num: number; more: boolean; szx: number } | undefined = /Type 27\b/.test(
          o['coap.opt.desc'],
        )
          ? m.block1
          : m.block2;
        assert.equal(b?.num, Number(o['coap.opt.block_number']), `${where} block number`);
        assert.equal(b?.more, o['coap.opt.block_mflag'] === '1', `${where} block M`);
        assert.equal(b?.szx, Number(o['coap.opt.block_size']), `${where} block SZX`);
      }
    }
    const paths = arr(c['coap.opt.name_tree']).flatMap((o: J) => arr(o['coap.opt.uri_path']));
    assert.deepEqual(
      m.options.filter((o) => o.number === 11).map((o) => o.value),
      paths,
      `${where} Uri-Path`,
    );
    // Block-wise bodies are in coap.block_payload (coap.payload of the last block is the reassembled body).
    const raw = c['coap.block_payload_raw'] ?? c['coap.payload_raw'];
    const payloadHex = raw ? String(raw[0]) : '';
    assert.equal(m.payload.hex, payloadHex, `${where} payload`);
    assert.equal(m.headerLength + m.payload.length, String(l.coap_raw[0]).length / 2, `${where} CoAP length`);
    if (c['coap.response_to'] !== undefined) {
      const ex = result.coap.exchanges[(m.exchange ?? 0) - 1];
      const req = result.coap.messages[ex?.messages[0]?.index ?? -1];
      assert.equal(req?.frame, Number(c['coap.response_to']), `${where} response_to`);
    }
  }
  return coapFrames.length;
}
