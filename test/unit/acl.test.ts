/**
 * Access control (issue 12): the rule parser (typed errors naming file:line),
 * the matcher (identity, methods, {identity}, `*`, `/**`, first match wins,
 * 4.01 vs 4.03), and the middleware and discovery filter on a CoapServer.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseLinkFormat } from '../../src/codec/link-format.js';
import type { CoapMessage, CoapOption } from '../../src/codec/message.js';
import { MessageType, Method, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import { CoapError, InvalidArgumentError } from '../../src/errors.js';
import type { OutgoingResponse } from '../../src/exchange/exchange-layer.js';
import { AccessControl, AclRuleError, aclIdentity, parseAcl } from '../../src/server/acl.js';
import type { ServerPeer } from '../../src/server/request.js';
import { CoapServer } from '../../src/server/server.js';
import { makePeer } from '../../src/transport/transport.js';

const { GET, POST, PUT, DELETE, FETCH, PATCH, iPATCH } = Method;
const segs = (p: string) => (p === '/' ? [] : p.slice(1).split('/'));

test('parser: fields, methods, quoting, comments, allow/deny', () => {
  const rules = parseAcl(
    [
      '# devices',
      '',
      '* GET,PUT,post /devices/{identity}/**   # own subtree',
      'anonymous GET /pub/*',
      '"Device 1" ipatch,FETCH /d1',
      'deny alice DELETE /**',
      '"anonymous" * /weird',
      '"say \\"hi\\"" * /q%20x',
    ].join('\n'),
    'acl.txt',
  );
  assert.equal(rules.length, 6);
  assert.deepEqual(
    rules.map((r) => [r.effect, r.identity, r.named, r.path, r.source]),
    [
      ['allow', '*', false, '/devices/{identity}/**', 'acl.txt:3'],
      ['allow', 'anonymous', false, '/pub/*', 'acl.txt:4'],
      ['allow', 'Device 1', true, '/d1', 'acl.txt:5'],
      ['deny', 'alice', true, '/**', 'acl.txt:6'],
      ['allow', 'anonymous', true, '/weird', 'acl.txt:7'],
      ['allow', 'say "hi"', true, '/q%20x', 'acl.txt:8'],
    ],
  );
  assert.equal(rules[0]!.methods, (1 << GET) | (1 << PUT) | (1 << POST));
  assert.equal(rules[2]!.methods, (1 << iPATCH) | (1 << FETCH));
  // A 3-field line whose identity is "deny" is a rule for that identity.
  assert.equal(parseAcl('deny GET /x')[0]!.identity, 'deny');
});

test('parser: bad rules are AclRuleError naming file and line', () => {
  const bad: Array<[string, RegExp]> = [
    ['alice GET', /2 fields/],
    ['alice GET /x extra', /4 fields/],
    ['alice GOT /x', /unknown method "GOT"/],
    ['alice GET,,PUT /x', /empty method/],
    ['alice GET x', /must start with \//],
    ['alice GET /a/**/b', /"\*\*" may only end/],
    ['alice GET /a//b', /empty segment/],
    ['alice GET /a*', /whole segment/],
    ['alice GET /{id}', /unknown placeholder/],
    ['alice GET /%zz', /bad %-escape/],
    ['"alice GET /x', /unterminated/],
    ['"al"ice GET /x', /followed by a space/],
    ['"a\\b" GET /x', /escapes only/],
    ['alice "GET" /x', /only the identity may be quoted/],
    ['anonymous GET /d/{identity}', /anonymous peers/],
    [`alice GET /${'a'.repeat(5000)}`, /longer than/],
  ];
  for (const [line, why] of bad) {
    const text = `# ok\n* GET /ok\n${line}\n`;
    assert.throws(
      () => parseAcl(text, 'rules.acl'),
      (err: unknown) => {
        assert.ok(err instanceof AclRuleError, line);
        assert.ok(err instanceof InvalidArgumentError);
        assert.ok(err instanceof CoapError);
        assert.equal(err.code, 'COAP_ERR_ACL_RULE');
        assert.equal(err.file, 'rules.acl');
        assert.equal(err.line, 3, line);
        assert.match(err.message, /^rules\.acl:3: /);
        assert.match(err.message, why, line);
        return true;
      },
    );
  }
  assert.throws(() => parseAcl('* GET /x\n'.repeat(10_001)), /more than 10000 rules/);
});

test('matcher: identities, {identity}, * segment, /** subtree', () => {
  const acl = AccessControl.parse(
    [
      '* GET,PUT,DELETE /devices/{identity}/**',
      '* GET /shared/*/status',
      'admin * /**',
      'anonymous GET /pub/**',
      '"Device 1" GET /dev-{identity}-x',
    ].join('\n'),
  );
  const d = (who: string | undefined, m: number, p: string) => acl.decide(who, m, segs(p));
  assert.equal(d('A', GET, '/devices/A'), 'allow'); // /** includes the path itself
  assert.equal(d('A', PUT, '/devices/A/temp'), 'allow');
  assert.equal(d('A', DELETE, '/devices/A/a/b/c'), 'allow');
  assert.equal(d('A', POST, '/devices/A/temp'), 'forbidden');
  assert.equal(d('A', GET, '/devices/B/temp'), 'forbidden');
  assert.equal(d('A', GET, '/devices'), 'forbidden');
  assert.equal(d('A', GET, '/shared/x/status'), 'allow');
  assert.equal(d('A', GET, '/shared/x/y/status'), 'forbidden');
  assert.equal(d('A', GET, '/shared/status'), 'forbidden');
  assert.equal(d('admin', DELETE, '/anything/at/all'), 'allow');
  assert.equal(d('admin', PATCH, '/'), 'allow');
  assert.equal(d('Device 1', GET, '/dev-Device 1-x'), 'allow');
  assert.equal(d('Device 2', GET, '/dev-Device 2-x'), 'forbidden');
  // Anonymous: allowed reads under /pub; 4.01 where an authenticated peer would get in; else 4.03.
  assert.equal(d(undefined, GET, '/pub/a'), 'allow');
  assert.equal(d(undefined, PUT, '/pub/a'), 'unauthorized'); // admin * /**
  assert.equal(d(undefined, GET, '/devices/A/temp'), 'unauthorized');
  assert.equal(d(undefined, GET, '/dev-zz-x'), 'unauthorized'); // a name rule: "Device 1" on its own path only
  const noAdmin = AccessControl.parse('* GET /devices/{identity}/**\nanonymous GET /pub/**');
  assert.equal(noAdmin.decide(undefined, PUT, segs('/pub/a')), 'forbidden');
  assert.equal(noAdmin.decide(undefined, GET, segs('/other')), 'forbidden');
  assert.equal(noAdmin.decide(undefined, GET, segs('/devices/A/x')), 'unauthorized');
  // A request code outside the method range matches only `*`.
  assert.equal(noAdmin.decide('A', 31, segs('/devices/A')), 'forbidden');
  assert.equal(acl.decide('admin', 31, segs('/x')), 'allow');
});

test('matcher: first match wins; deny stops, later allows are not reached', () => {
  const acl = AccessControl.parse(
    ['deny * DELETE /config/**', '* * /**', 'deny anonymous * /**', 'anonymous GET /**'].join('\n'),
  );
  assert.equal(acl.decide('A', DELETE, segs('/config/x')), 'forbidden');
  assert.equal(acl.decide('A', PUT, segs('/config/x')), 'allow');
  assert.equal(acl.decide(undefined, GET, segs('/x')), 'unauthorized');
  // The order matters: the same rules with the allow first let anonymous GETs in.
  const other = AccessControl.parse(['anonymous GET /**', 'deny anonymous * /**'].join('\n'));
  assert.equal(other.decide(undefined, GET, segs('/x')), 'allow');
  assert.equal(other.decide(undefined, PUT, segs('/x')), 'forbidden');
  // No rules: everyone refused.
  assert.equal(new AccessControl([]).decide('A', GET, []), 'forbidden');
});

function request(code: number, path: string, extra: CoapOption[] = []): CoapMessage {
  const options: CoapOption[] = segs(path).map((s) => ({
    number: OptionNumber.UriPath,
    value: Buffer.from(s),
  }));
  options.push(...extra);
  options.sort((a, b) => a.number - b.number);
  return {
    type: MessageType.CON,
    code,
    messageId: 1,
    token: Buffer.from([1]),
    options,
    payload: Buffer.alloc(0),
  };
}

async function ask(
  server: CoapServer,
  who: string | undefined,
  code: number,
  path: string,
  extra?: CoapOption[],
) {
  const peer = makePeer('10.0.0.9', 4000, who);
  const r = (await server.handle(request(code, path, extra), peer)) as OutgoingResponse;
  return r;
}

test('middleware on a CoapServer: 4.03 / 4.01 before routing; discovery filtered per peer', async () => {
  const server = new CoapServer({ amplificationFactor: false });
  let handled = 0;
  for (const p of ['/devices/A/temp', '/devices/B/temp', '/pub/info']) {
    server.get(
      p,
      () => {
        handled++;
        return 'v';
      },
      { title: p },
    );
    server.put(p, () => {
      handled++;
      return { code: '2.04' };
    });
  }
  AccessControl.parse('* GET,PUT /devices/{identity}/**\nanonymous GET /pub/**').install(server);
  let laterSeen = 0;
  server.use(() => {
    laterSeen++;
    return undefined;
  });
  assert.equal((await ask(server, 'A', GET, '/devices/A/temp')).code, ResponseCode.Content);
  assert.equal((await ask(server, 'A', PUT, '/devices/A/temp')).code, ResponseCode.Changed);
  assert.equal((await ask(server, 'A', GET, '/devices/B/temp')).code, ResponseCode.Forbidden);
  assert.equal((await ask(server, 'A', PUT, '/devices/B/temp')).code, ResponseCode.Forbidden);
  assert.equal((await ask(server, undefined, GET, '/devices/B/temp')).code, ResponseCode.Unauthorized);
  assert.equal((await ask(server, undefined, PUT, '/pub/info')).code, ResponseCode.Forbidden);
  assert.equal((await ask(server, undefined, GET, '/pub/info')).code, ResponseCode.Content);
  assert.equal(handled, 3);
  // A refused request never reached the middlewares after the ACL...
  assert.equal(laterSeen, 3);
  // ...and a refused Block1 upload is refused at its first block (nothing reassembled).
  const block1 = { number: OptionNumber.Block1, value: Buffer.from([0x0e]) }; // num 0, more, 1024
  assert.equal((await ask(server, 'A', PUT, '/devices/B/temp', [block1])).code, ResponseCode.Forbidden);

  const seen = async (who: string | undefined) => {
    const r = await ask(server, who, GET, '/.well-known/core');
    assert.equal(r.code, ResponseCode.Content);
    return r.payload === undefined
      ? []
      : parseLinkFormat(Buffer.from(r.payload).toString('utf8')).map((l) => l.target);
  };
  assert.deepEqual(await seen('A'), ['/devices/A/temp']);
  assert.deepEqual(await seen('B'), ['/devices/B/temp']);
  assert.deepEqual(await seen(undefined), ['/pub/info']);
  assert.deepEqual(await seen('C'), []);
  // Each peer's document has its own ETag.
  const etag = async (who: string) =>
    (await ask(server, who, GET, '/.well-known/core')).options?.find((o) => o.number === OptionNumber.ETag)
      ?.value;
  assert.notDeepEqual(await etag('A'), await etag('B'));
});

test('refusals carry their diagnostic payload only when the server gives diagnostics (diagnosticPayloads)', async () => {
  for (const diagnosticPayloads of [true, false]) {
    const server = new CoapServer({ amplificationFactor: false, diagnosticPayloads });
    server.get('/devices/A/temp', () => 'v');
    AccessControl.parse('* GET /devices/{identity}/**').install(server);
    const forbidden = await ask(server, 'B', GET, '/devices/A/temp');
    const unauthorized = await ask(server, undefined, GET, '/devices/A/temp');
    assert.equal(forbidden.code, ResponseCode.Forbidden);
    assert.equal(unauthorized.code, ResponseCode.Unauthorized);
    if (diagnosticPayloads) {
      assert.equal(Buffer.from(forbidden.payload!).toString(), 'not allowed by the access rules');
      assert.match(Buffer.from(unauthorized.payload!).toString(), /authenticate/);
    } else {
      assert.equal(forbidden.payload?.length ?? 0, 0);
      assert.equal(unauthorized.payload?.length ?? 0, 0);
    }
  }
});

test('aclIdentity: oscore:KID for an OSCORE-protected request, over the DTLS identity of a proxy', () => {
  const plain = makePeer('192.0.2.1', 5683);
  assert.equal(aclIdentity(plain), undefined);
  const viaProxy = { ...plain, auth: { identity: 'proxy' } } as ServerPeer;
  assert.equal(aclIdentity(viaProxy), 'proxy');
  const protectedPeer: ServerPeer = { ...viaProxy };
  Object.defineProperty(protectedPeer, 'oscore', {
    value: { kid: Buffer.from('c1'), kidContext: undefined, sequenceNumber: 0 },
  });
  assert.equal(aclIdentity(protectedPeer), 'oscore:6331');
  const acl = AccessControl.parse('oscore:6331 PUT /a\n"proxy" GET /a\n');
  assert.equal(acl.decide(aclIdentity(protectedPeer), Method.PUT, ['a']), 'allow');
  assert.equal(acl.decide(aclIdentity(viaProxy), Method.PUT, ['a']), 'forbidden');
});
