/**
 * DynamicStore request logic (the resource behaviour of `coapkit serve`),
 * exercised through handle() without sockets.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseLinkFormat } from '../../src/codec/link-format.js';
import type { CoapOption } from '../../src/codec/message.js';
import { encodeUint } from '../../src/codec/options.js';
import { OptionNumber } from '../../src/constants/options.js';
import {
  type ChangeEvent,
  computeEtag,
  DynamicStore,
  type StoreRequest,
} from '../../src/server/dynamic-store.js';

const opt = (number: number, value: Buffer | string | number = Buffer.alloc(0)): CoapOption => ({
  number,
  value: typeof value === 'number' ? encodeUint(value) : Buffer.isBuffer(value) ? value : Buffer.from(value),
});

function req(method: string, path: string, payload = '', options: CoapOption[] = []): StoreRequest {
  return { method, path, payload: Buffer.from(payload), options };
}

const cf = (n: number) => opt(OptionNumber.ContentFormat, n);
const code = (s: string) => {
  const [c, d] = s.split('.');
  return (Number(c) << 5) | Number(d);
};

describe('DynamicStore', () => {
  it('PUT creates (2.01) then replaces (2.04), GET returns payload, Content-Format, ETag, Max-Age', () => {
    const s = new DynamicStore({ maxAge: 30 });
    const r1 = s.handle(req('PUT', '/a/b', '{"x":1}', [cf(50)]));
    assert.equal(r1.code, code('2.01'));
    const g1 = s.handle(req('GET', '/a/b'));
    assert.equal(g1.code, code('2.05'));
    assert.equal(g1.payload?.toString(), '{"x":1}');
    assert.equal(g1.contentFormat, 50);
    assert.equal(g1.maxAge, 30);
    assert.deepEqual(g1.etag, computeEtag(Buffer.from('{"x":1}'), 50));
    const r2 = s.handle(req('PUT', '/a/b', 'plain', [cf(0)]));
    assert.equal(r2.code, code('2.04'));
    const g2 = s.handle(req('GET', '/a/b'));
    assert.equal(g2.payload?.toString(), 'plain');
    assert.equal(g2.contentFormat, 0);
    assert.notDeepEqual(g2.etag, g1.etag);
    assert.equal(s.size, 1);
  });

  it('ETag changes with content and with Content-Format, is 8 bytes, stable for equal content', () => {
    const a = computeEtag(Buffer.from('x'), 0);
    assert.equal(a.length, 8);
    assert.deepEqual(a, computeEtag(Buffer.from('x'), 0));
    assert.notDeepEqual(a, computeEtag(Buffer.from('x'), 50));
    assert.notDeepEqual(a, computeEtag(Buffer.from('y'), 0));
    assert.notDeepEqual(a, computeEtag(Buffer.from('x'), undefined));
  });

  it('GET with a matching ETag answers 2.03 Valid without payload; a stale one gets 2.05', () => {
    const s = new DynamicStore();
    s.handle(req('PUT', '/r', 'v1'));
    const etag = s.get('/r')!.etag;
    const valid = s.handle(
      req('GET', '/r', '', [
        opt(OptionNumber.ETag, Buffer.from('00000000', 'hex')),
        opt(OptionNumber.ETag, etag),
      ]),
    );
    assert.equal(valid.code, code('2.03'));
    assert.equal(valid.payload, undefined);
    assert.deepEqual(valid.etag, etag);
    const stale = s.handle(req('GET', '/r', '', [opt(OptionNumber.ETag, Buffer.from('0102', 'hex'))]));
    assert.equal(stale.code, code('2.05'));
    assert.equal(stale.payload?.toString(), 'v1');
  });

  it('Accept mismatch gives 4.06; matching Accept gives 2.05; 4.04 for unknown paths', () => {
    const s = new DynamicStore();
    s.handle(req('PUT', '/j', '{}', [cf(50)]));
    assert.equal(s.handle(req('GET', '/j', '', [opt(OptionNumber.Accept, 0)])).code, code('4.06'));
    assert.equal(s.handle(req('GET', '/j', '', [opt(OptionNumber.Accept, 50)])).code, code('2.05'));
    assert.equal(s.handle(req('GET', '/nothing')).code, code('4.04'));
  });

  it('If-None-Match: create only when absent (else 4.12); If-Match: replace only when the ETag matches', () => {
    const s = new DynamicStore();
    const inm = opt(OptionNumber.IfNoneMatch);
    assert.equal(s.handle(req('PUT', '/p', 'one', [inm])).code, code('2.01'));
    assert.equal(s.handle(req('PUT', '/p', 'two', [inm])).code, code('4.12'));
    assert.equal(s.get('/p')!.payload.toString(), 'one');
    const etag = s.get('/p')!.etag;
    const wrong = opt(OptionNumber.IfMatch, Buffer.from('deadbeef', 'hex'));
    assert.equal(s.handle(req('PUT', '/p', 'three', [wrong])).code, code('4.12'));
    assert.equal(s.handle(req('PUT', '/p', 'four', [opt(OptionNumber.IfMatch, etag)])).code, code('2.04'));
    assert.equal(s.get('/p')!.payload.toString(), 'four');
    // Empty If-Match: "any current representation".
    assert.equal(s.handle(req('PUT', '/p', 'five', [opt(OptionNumber.IfMatch)])).code, code('2.04'));
    assert.equal(s.handle(req('PUT', '/absent', 'x', [opt(OptionNumber.IfMatch)])).code, code('4.12'));
    assert.equal(s.has('/absent'), false);
    // DELETE honours If-Match too.
    assert.equal(s.handle(req('DELETE', '/p', '', [wrong])).code, code('4.12'));
    assert.equal(s.has('/p'), true);
  });

  it('POST appends entries to a collection with Location-Path; GET on the collection lists them', () => {
    const s = new DynamicStore();
    const r1 = s.handle(req('POST', '/log', 'first', [cf(0)]));
    assert.equal(r1.code, code('2.01'));
    assert.deepEqual(r1.locationPath, ['log', '1']);
    const r2 = s.handle(req('POST', '/log', 'second'));
    assert.deepEqual(r2.locationPath, ['log', '2']);
    assert.equal(s.get('/log/2')!.payload.toString(), 'second');
    assert.equal(s.get('/log/1')!.contentFormat, 0);
    const list = s.handle(req('GET', '/log'));
    assert.equal(list.code, code('2.05'));
    assert.equal(list.contentFormat, 40);
    assert.deepEqual(
      parseLinkFormat(String(list.payload)).map((l) => l.target),
      ['/log/1', '/log/2'],
    );
    // A deleted entry number is not reused while the counter lives.
    s.handle(req('DELETE', '/log/2'));
    assert.deepEqual(s.handle(req('POST', '/log', 'third')).locationPath, ['log', '3']);
  });

  it('DELETE removes (2.02), also for absent resources, and removes the subtree', () => {
    const s = new DynamicStore();
    s.handle(req('PUT', '/d', 'x'));
    s.handle(req('PUT', '/d/child', 'y'));
    assert.equal(s.handle(req('DELETE', '/d')).code, code('2.02'));
    assert.equal(s.size, 0);
    assert.equal(s.handle(req('GET', '/d')).code, code('4.04'));
    assert.equal(s.handle(req('DELETE', '/never')).code, code('2.02'));
  });

  it('limits: 4.13 with Size1 above max-size; 5.03 with a diagnostic when full', () => {
    const s = new DynamicStore({ maxResources: 2, maxSize: 10 });
    const big = s.handle(req('PUT', '/big', 'x'.repeat(11)));
    assert.equal(big.code, code('4.13'));
    const size1 = big.options?.find((o) => o.number === OptionNumber.Size1);
    assert.deepEqual(size1?.value, encodeUint(10));
    assert.equal(s.handle(req('PUT', '/ok', 'x'.repeat(10))).code, code('2.01'));
    assert.equal(s.handle(req('PUT', '/two', 'x')).code, code('2.01'));
    const full = s.handle(req('PUT', '/three', 'x'));
    assert.equal(full.code, code('5.03'));
    assert.match(String(full.payload), /limit/);
    assert.equal(s.handle(req('POST', '/c', 'x')).code, code('5.03'));
    // Replacing an existing resource is still allowed when full.
    assert.equal(s.handle(req('PUT', '/two', 'y')).code, code('2.04'));
  });

  it('built-ins: / and /time are read-only, /echo echoes payload and Content-Format', () => {
    const now = new Date('2026-01-02T03:04:05.000Z');
    const s = new DynamicStore({ now: () => now });
    assert.match(String(s.handle(req('GET', '/')).payload), /coapkit/);
    assert.equal(String(s.handle(req('GET', '/time')).payload), '2026-01-02T03:04:05.000Z');
    assert.equal(s.handle(req('PUT', '/time', 'x')).code, code('4.05'));
    assert.equal(s.handle(req('DELETE', '/')).code, code('4.05'));
    const echo = s.handle(req('POST', '/echo', '{"a":1}', [cf(50)]));
    // RFC 7252 §5.8.2/§5.8.3: POST and PUT that create nothing answer 2.04, never 2.05.
    assert.equal(echo.code, code('2.04'));
    assert.equal(String(echo.payload), '{"a":1}');
    assert.equal(echo.contentFormat, 50);
    const put = s.handle(req('PUT', '/echo', 'x'));
    assert.equal(put.code, code('2.04'));
    assert.equal(String(put.payload), 'x');
    assert.equal(s.handle(req('GET', '/echo')).code, code('2.05'));
    assert.equal(s.size, 0);
  });

  it('/.well-known/core lists built-ins and resources with ct, sz, title, obs; filters per RFC 6690', () => {
    const s = new DynamicStore({ observable: true });
    s.handle(req('PUT', '/sensors/temp', '21.5', [cf(0)]));
    s.handle(req('PUT', '/sensors/cfg', '{"a":true}', [cf(50)]));
    const wk = s.handle(req('GET', '/.well-known/core'));
    assert.equal(wk.code, code('2.05'));
    assert.equal(wk.contentFormat, 40);
    const links = parseLinkFormat(String(wk.payload));
    const targets = links.map((l) => l.target);
    for (const t of ['/', '/time', '/echo', '/sensors/temp', '/sensors/cfg'])
      assert.ok(targets.includes(t), t);
    const temp = links.find((l) => l.target === '/sensors/temp')!;
    assert.deepEqual(
      temp.attributes.filter(([n]) => n !== 'title'),
      [
        ['ct', '0'],
        ['sz', '4'],
        ['obs', true],
      ],
    );
    const q = (query: string[]) =>
      parseLinkFormat(String(s.handle({ ...req('GET', '/.well-known/core'), query }).payload)).map(
        (l) => l.target,
      );
    assert.deepEqual(q(['ct=50']), ['/sensors/cfg']);
    assert.deepEqual(q(['href=/sensors*']), ['/sensors/cfg', '/sensors/temp']);
    // Filters given as Uri-Query options work too.
    const viaOpt = s.handle(req('GET', '/.well-known/core', '', [opt(OptionNumber.UriQuery, 'href=/time')]));
    assert.deepEqual(
      parseLinkFormat(String(viaOpt.payload)).map((l) => l.target),
      ['/time'],
    );
    assert.equal(s.handle(req('PUT', '/.well-known/core', 'x')).code, code('4.05'));
  });

  it('onChange reports created, updated and deleted for one path and can unsubscribe', () => {
    const s = new DynamicStore();
    const seen: ChangeEvent[] = [];
    const off = s.onChange('/w', (ev) => seen.push(ev));
    s.handle(req('PUT', '/w', '1'));
    s.handle(req('PUT', '/other', '1'));
    s.handle(req('PUT', '/w', '2'));
    s.handle(req('DELETE', '/w'));
    assert.deepEqual(
      seen.map((e) => [e.kind, e.path, e.resource?.payload.toString()]),
      [
        ['created', '/w', '1'],
        ['updated', '/w', '2'],
        ['deleted', '/w', undefined],
      ],
    );
    off();
    s.handle(req('PUT', '/w', '3'));
    assert.equal(seen.length, 3);
  });
});
