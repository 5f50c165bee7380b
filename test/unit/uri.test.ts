/**
 * CoAP URIs (RFC 7252 §6): parsing, §6.3 normalization and equivalence,
 * §6.4 decomposition into options, §6.5 composition and Appendix B.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CoapOption } from '../../src/codec/message.js';
import { decodeUint, encodeUint } from '../../src/codec/options.js';
import {
  type CoapUri,
  defaultPort,
  encodePathSegment,
  encodeQueryArg,
  formatUri,
  optionsToUri,
  parseUri,
  pathFromOptions,
  removeDotSegments,
  uriToOptions,
} from '../../src/codec/uri.js';
import { UriError } from '../../src/errors.js';

const H = 3;
const PORT = 7;
const PATH = 11;
const QUERY = 15;

function opt(number: number, value: string | number): CoapOption {
  return { number, value: typeof value === 'number' ? encodeUint(value) : Buffer.from(value, 'utf8') };
}

/** Options as readable strings: "Uri-Host=x", "Uri-Port=1234". */
function show(options: readonly CoapOption[]): string[] {
  const names: Record<number, string> = { 3: 'Uri-Host', 7: 'Uri-Port', 11: 'Uri-Path', 15: 'Uri-Query' };
  return options.map(
    (o) =>
      `${names[o.number] ?? o.number}=${o.number === PORT ? decodeUint(o.value) : o.value.toString('utf8')}`,
  );
}

const withoutExplicit = (u: CoapUri) => ({ ...u, explicitPort: undefined });

describe('parseUri: RFC 7252 §6.1/§6.2 syntax', () => {
  it('the §6.1 example', () => {
    assert.deepEqual(parseUri('coap://example.com:5683/~sensors/temp.xml'), {
      scheme: 'coap',
      host: 'example.com',
      hostType: 0,
      port: 5683,
      explicitPort: true,
      path: ['~sensors', 'temp.xml'],
      query: [],
    });
  });

  it('default ports: coap 5683, coaps 5684', () => {
    assert.equal(parseUri('coap://h/').port, 5683);
    assert.equal(parseUri('coaps://h/').port, 5684);
    assert.equal(parseUri('coaps://h/').explicitPort, false);
    assert.equal(parseUri('coaps://h:1234/').port, 1234);
    assert.equal(defaultPort('coap'), 5683);
    assert.equal(defaultPort('coaps'), 5684);
    assert.equal(defaultPort('http'), undefined);
  });

  it('scheme and host are case-insensitive', () => {
    const u = parseUri('COAP://Example.COM/Path');
    assert.equal(u.scheme, 'coap');
    assert.equal(u.host, 'example.com');
    assert.deepEqual(u.path, ['Path'], 'path stays case-sensitive');
  });

  it('IPv4 and IPv6 literals', () => {
    const v4 = parseUri('coap://192.0.2.1:61616/x');
    assert.equal(v4.hostType, 4);
    assert.equal(v4.host, '192.0.2.1');
    assert.equal(v4.port, 61616);
    const v6 = parseUri('coap://[2001:DB8::2:1]/measure/temperature/');
    assert.equal(v6.hostType, 6);
    assert.equal(v6.host, '2001:db8::2:1');
    assert.deepEqual(v6.path, ['measure', 'temperature', '']);
    const v6p = parseUri('coaps://[::1]:5685');
    assert.equal(v6p.port, 5685);
    assert.deepEqual(v6p.path, []);
  });

  it('IPv6 literal with a zone (RFC 6874): %25 in the URI, % in host', () => {
    const u = parseUri('coap://[fe80::1%25eth0]/x');
    assert.equal(u.host, 'fe80::1%eth0');
    assert.equal(u.hostType, 6);
    assert.equal(formatUri(u), 'coap://[fe80::1%25eth0]/x');
    assert.throws(() => parseUri('coap://[fe80::1%eth0]/x'), UriError, 'raw % is not a valid zone delimiter');
    assert.throws(() => parseUri('coap://[fe80::1%25]/x'), UriError, 'empty zone');
  });

  it('percent-encoding is decoded in host, path and query', () => {
    const u = parseUri('coap://h/a%20b/%E3%81%93?q=%26x&y');
    assert.deepEqual(u.path, ['a b', 'こ']);
    assert.deepEqual(u.query, ['q=&x', 'y']);
    assert.equal(formatUri(u), 'coap://h/a%20b/%E3%81%93?q=%26x&y');
  });

  it('malformed percent-encoding is rejected', () => {
    for (const s of [
      'coap://h/%zz',
      'coap://h/%4',
      'coap://h/a%',
      'coap://h/?%g0',
      'coap://h/%ff',
      'coap://h/%C3',
    ]) {
      assert.throws(() => parseUri(s), UriError, s);
    }
  });

  it('dot segments are removed (RFC 3986 §5.2.4)', () => {
    assert.deepEqual(parseUri('coap://h/a/b/../c/./d').path, ['a', 'c', 'd']);
    assert.deepEqual(parseUri('coap://h/..').path, []);
    assert.deepEqual(parseUri('coap://h/../../x').path, ['x']);
    assert.deepEqual(parseUri('coap://h/a/.').path, ['a', '']);
    assert.deepEqual(parseUri('coap://h/a/b/..').path, ['a', '']);
    assert.equal(removeDotSegments('/a/b/c/./../../g'), '/a/g');
    assert.equal(removeDotSegments('/mid/content=5/../6'), '/mid/6');
    assert.equal(removeDotSegments('/a//b'), '/a//b');
  });

  it('fragments are not allowed (§6.4 step 4)', () => {
    assert.throws(() => parseUri('coap://h/x#frag'), UriError);
    assert.throws(() => parseUri('coap://h/#'), UriError);
  });

  it('user information is not allowed', () => {
    assert.throws(() => parseUri('coap://user@h/'), UriError);
    assert.throws(() => parseUri('coap://user:pw@h:5683/'), UriError);
  });

  it('bad ports are rejected; an empty port means the default', () => {
    for (const s of [
      'coap://h:65536/',
      'coap://h:abc/',
      'coap://h:-1/',
      'coap://h:123456/',
      'coap://[::1]:x/',
    ]) {
      assert.throws(() => parseUri(s), UriError, s);
    }
    assert.equal(parseUri('coap://h:/').port, 5683);
    assert.equal(parseUri('coap://h:65535/').port, 65535);
  });

  it('non-CoAP and non-absolute URIs are rejected', () => {
    for (const s of [
      '',
      '   ',
      'http://h/',
      '/path',
      'h/path',
      'coap:h',
      'coap:/h',
      'coap:///x',
      'coap://',
      'coap://:5683/',
      'coap://[::1/',
      'coap://[::1]x/',
      'coap://[not-an-ip]/',
      'coap://1.2.3/',
      'coap://256.1.1.1/',
      'coap://h/a b',
      'coap://h/<x>',
      'coap://a:b:c/',
      // Object.prototype properties are not schemes.
      'constructor://h/',
      'tostring://h/',
    ]) {
      assert.throws(() => parseUri(s), UriError, JSON.stringify(s));
    }
  });

  it('host, path segments and query arguments are limited to 255 bytes (option length)', () => {
    assert.equal(parseUri(`coap://h/${'a'.repeat(255)}`).path[0]?.length, 255);
    assert.throws(() => parseUri(`coap://h/${'a'.repeat(256)}`), UriError);
    assert.throws(() => parseUri(`coap://h/?${'a'.repeat(256)}`), UriError);
    assert.equal(parseUri(`coap://${'a'.repeat(255)}/`).host.length, 255);
    assert.throws(() => parseUri(`coap://${'a'.repeat(256)}/`), UriError);
    // 128 × "ä" is 128 characters but 256 bytes: too long for Uri-Host (1-255 bytes).
    assert.throws(() => parseUri(`coap://${'%C3%A4'.repeat(128)}/`), UriError);
    assert.equal(parseUri(`coap://${'%C3%A4'.repeat(127)}/`).host, 'ä'.repeat(127));
  });
});

describe('§6.3 normalization and comparison', () => {
  it('the three equivalent URIs of §6.3 parse to the same resource', () => {
    const a = parseUri('coap://example.com:5683/~sensors/temp.xml');
    const b = parseUri('coap://EXAMPLE.com/%7Esensors/temp.xml');
    const c = parseUri('coap://EXAMPLE.com:/%7esensors/temp.xml');
    assert.deepEqual(withoutExplicit(b), withoutExplicit(a));
    assert.deepEqual(withoutExplicit(c), withoutExplicit(a));
    assert.equal(formatUri(a), 'coap://example.com/~sensors/temp.xml');
    assert.equal(formatUri(b), formatUri(a));
    assert.equal(formatUri(c), formatUri(a));
    assert.deepEqual(uriToOptions(b), uriToOptions(a));
    assert.deepEqual(uriToOptions(c), uriToOptions(a));
  });

  it('an empty path and "/" are equivalent', () => {
    assert.deepEqual(parseUri('coap://h').path, []);
    assert.deepEqual(parseUri('coap://h/').path, []);
    assert.deepEqual(parseUri('coap://h?x').path, []);
    assert.equal(formatUri(parseUri('coap://h')), 'coap://h/');
  });
});

describe('§6.4 decomposing a URI into options', () => {
  it('Uri-Host for a registered name (lowercased, percent-decoded); omitted for IP literals', () => {
    assert.deepEqual(show(uriToOptions(parseUri('coap://Example.NET/'))), ['Uri-Host=example.net']);
    assert.deepEqual(show(uriToOptions(parseUri('coap://ex%41mple.net/'))), ['Uri-Host=example.net']);
    assert.deepEqual(show(uriToOptions(parseUri('coap://192.0.2.1/'))), []);
    assert.deepEqual(show(uriToOptions(parseUri('coap://[2001:db8::1]/'))), []);
    assert.deepEqual(show(uriToOptions(parseUri('coap://[fe80::1%25eth0]/'))), []);
  });

  it('Uri-Port is omitted when it equals the destination port', () => {
    const u = parseUri('coap://example.com:61616/');
    assert.deepEqual(show(uriToOptions(u)), ['Uri-Host=example.com'], 'destination defaults to the URI port');
    assert.deepEqual(show(uriToOptions(u, 61616)), ['Uri-Host=example.com']);
    assert.deepEqual(show(uriToOptions(u, 5683)), ['Uri-Host=example.com', 'Uri-Port=61616']);
    assert.deepEqual(show(uriToOptions(parseUri('coap://192.0.2.1/'), 5684)), ['Uri-Port=5683']);
    assert.deepEqual(show(uriToOptions(parseUri('coap://192.0.2.1:5683/'))), []);
  });

  it('"/" and "" give no Uri-Path; a trailing slash gives an empty last segment', () => {
    assert.deepEqual(show(uriToOptions(parseUri('coap://192.0.2.1'))), []);
    assert.deepEqual(show(uriToOptions(parseUri('coap://192.0.2.1/'))), []);
    assert.deepEqual(show(uriToOptions(parseUri('coap://192.0.2.1/a/'))), ['Uri-Path=a', 'Uri-Path=']);
    assert.deepEqual(show(uriToOptions(parseUri('coap://192.0.2.1//'))), ['Uri-Path=', 'Uri-Path=']);
    assert.deepEqual(show(uriToOptions(parseUri('coap://[2001:db8::2:1]/measure/temperature/'))), [
      'Uri-Path=measure',
      'Uri-Path=temperature',
      'Uri-Path=',
    ]);
  });

  it('the query is split on "&" and percent-decoded', () => {
    assert.deepEqual(show(uriToOptions(parseUri('coap://192.0.2.1/s?rt=light-lux&if=sensor&x%26y=1'))), [
      'Uri-Path=s',
      'Uri-Query=rt=light-lux',
      'Uri-Query=if=sensor',
      'Uri-Query=x&y=1',
    ]);
    assert.deepEqual(show(uriToOptions(parseUri('coap://192.0.2.1/?a&&b'))), [
      'Uri-Query=a',
      'Uri-Query=',
      'Uri-Query=b',
    ]);
    assert.deepEqual(show(uriToOptions(parseUri('coap://192.0.2.1/?a/b?c'))), ['Uri-Query=a/b?c']);
  });

  it('options come out in option-number order', () => {
    const opts = uriToOptions(parseUri('coap://example.com:1234/a/b?c'), 5683);
    assert.deepEqual(
      opts.map((o) => o.number),
      [H, PORT, PATH, PATH, QUERY],
    );
  });
});

describe('§6.5 composing a URI from options', () => {
  const dst6 = { address: '2001:db8::2:1', port: 5683 };

  it('Appendix B examples', () => {
    assert.equal(optionsToUri([], 'coap', dst6), 'coap://[2001:db8::2:1]/');
    assert.equal(optionsToUri([opt(H, 'example.net')], 'coap', dst6), 'coap://example.net/');
    assert.equal(
      optionsToUri([opt(H, 'example.net'), opt(PATH, '.well-known'), opt(PATH, 'core')], 'coap', dst6),
      'coap://example.net/.well-known/core',
    );
    assert.equal(
      optionsToUri([opt(H, 'xn--18j4d.example'), opt(PATH, 'こんにちは')], 'coap', dst6),
      'coap://xn--18j4d.example/%E3%81%93%E3%82%93%E3%81%AB%E3%81%A1%E3%81%AF',
    );
  });

  it('Appendix B last example: empty and "/" path segments, "//" and "?&" queries', () => {
    const opts = [
      opt(PATH, ''),
      opt(PATH, '/'),
      opt(PATH, ''),
      opt(PATH, ''),
      opt(QUERY, '//'),
      opt(QUERY, '?&'),
    ];
    const dst = { address: '198.51.100.1', port: 61616 };
    const ours = optionsToUri(opts, 'coap', dst);
    // Appendix B prints "coap://198.51.100.1:61616//%2F//?%2F%2F&?%26". Step 8 of §6.5 lets "/" and "?"
    // stand unencoded in the query, which we follow; "&" inside an argument is always escaped.
    assert.equal(ours, 'coap://198.51.100.1:61616//%2F//?//&?%26');
    // Both spellings decompose back to exactly the same options.
    const rfc = 'coap://198.51.100.1:61616//%2F//?%2F%2F&?%26';
    assert.deepEqual(show(uriToOptions(parseUri(rfc), 61616)), show(opts));
    assert.deepEqual(show(uriToOptions(parseUri(ours), 61616)), show(opts));
  });

  it('Uri-Port overrides the destination port; default ports are omitted', () => {
    assert.equal(
      optionsToUri([opt(PORT, 5683)], 'coap', { address: '192.0.2.1', port: 9999 }),
      'coap://192.0.2.1/',
    );
    assert.equal(optionsToUri([], 'coap', { address: '192.0.2.1', port: 9999 }), 'coap://192.0.2.1:9999/');
    assert.equal(optionsToUri([], 'coaps', { address: '192.0.2.1', port: 5684 }), 'coaps://192.0.2.1/');
    assert.equal(optionsToUri([], 'coaps', { address: '192.0.2.1', port: 5683 }), 'coaps://192.0.2.1:5683/');
  });

  it('IPv6 destinations are bracketed; a zone is written %25', () => {
    assert.equal(
      optionsToUri([], 'coap', { address: 'fe80::1%eth0', port: 5683 }),
      'coap://[fe80::1%25eth0]/',
    );
    assert.equal(optionsToUri([], 'coap', { address: '::1', port: 1 }), 'coap://[::1]:1/');
  });

  it('a Uri-Host holding an IP-literal is written as-is', () => {
    assert.equal(
      optionsToUri([opt(H, '[2001:db8::1]')], 'coap', { address: '::1', port: 5683 }),
      'coap://[2001:db8::1]/',
    );
    assert.equal(
      optionsToUri([opt(H, '192.0.2.7')], 'coap', { address: '::1', port: 5683 }),
      'coap://192.0.2.7/',
    );
    assert.equal(
      optionsToUri([opt(H, '[fe80::1%eth0]')], 'coap', { address: '::1', port: 5683 }),
      'coap://[fe80::1%25eth0]/',
    );
    // A registered name is percent-encoded where needed.
    assert.equal(optionsToUri([opt(H, 'a b')], 'coap', { address: '::1', port: 5683 }), 'coap://a%20b/');
  });

  it('path and query characters are percent-encoded per §6.5 steps 6 and 8', () => {
    assert.equal(encodePathSegment("a b/c?d#e%f:@!$&'()*+,;=~"), "a%20b%2Fc%3Fd%23e%25f:@!$&'()*+,;=~");
    assert.equal(encodeQueryArg('a&b=c/d?e f#'), 'a%26b=c/d?e%20f%23');
  });

  it('decompose → compose → decompose is stable', () => {
    for (const s of [
      'coap://example.com/~sensors/temp.xml',
      'coap://example.com:61616/a/b/?x=1&y',
      'coaps://[2001:db8::1]:1234/a%2Fb',
      'coap://192.0.2.1/%20/?%3F',
      'coap://[fe80::1%25eth0]/x',
    ]) {
      const u = parseUri(s);
      const dst = { address: u.host, port: u.port };
      const opts = uriToOptions(u, u.port);
      const back = optionsToUri(opts, u.scheme, dst);
      assert.equal(back, formatUri(u), s);
      assert.deepEqual(uriToOptions(parseUri(back), u.port), opts, s);
    }
  });

  it('pathFromOptions', () => {
    assert.equal(pathFromOptions([]), '/');
    assert.equal(pathFromOptions([opt(PATH, 'a'), opt(QUERY, 'q'), opt(PATH, 'b')]), '/a/b');
  });
});

describe('formatUri is a fixed point of parseUri', () => {
  it('hosts that need percent-encoding survive formatting', () => {
    for (const s of ['coap://ex%20ample.com/a', 'coap://%C3%A4.example/', 'coap://a%2Fb/']) {
      const u = parseUri(s);
      const f = formatUri(u);
      assert.deepEqual(withoutExplicit(parseUri(f)), withoutExplicit(u), `${s} -> ${f}`);
    }
  });

  it('path segments "." and ".." coming from %2E survive formatting', () => {
    const u = parseUri('coap://h/%2E%2E/%2E/a');
    assert.deepEqual(u.path, ['..', '.', 'a']);
    const f = formatUri(u);
    assert.deepEqual(parseUri(f).path, ['..', '.', 'a'], f);
  });
});
