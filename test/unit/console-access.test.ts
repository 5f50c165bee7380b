/** Who may use `coapkit console` (src/console/access.ts): the loopback and token rule, Host and Origin checks. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { accessPolicy, checkRequest, hostOfHeader, isLoopbackHost } from '../../src/console/access.js';

const gen = () => 'generated-token-0123456789';

describe('console access rule', () => {
  it('knows loopback addresses and names', () => {
    for (const h of [
      '127.0.0.1',
      '127.8.9.10',
      '::1',
      '[::1]',
      'localhost',
      'LOCALHOST',
      'a.localhost',
      '::ffff:127.0.0.1',
    ])
      assert.ok(isLoopbackHost(h), h);
    for (const h of [
      '0.0.0.0',
      '::',
      '192.168.1.2',
      '10.0.0.1',
      'example.com',
      'localhost.example.com',
      '128.0.0.1',
    ])
      assert.ok(!isLoopbackHost(h), h);
  });

  it('needs no token on loopback, makes one for any other address', () => {
    assert.equal(accessPolicy('127.0.0.1', undefined, gen).token, undefined);
    assert.equal(accessPolicy('::1', undefined, gen).token, undefined);
    assert.equal(accessPolicy('0.0.0.0', undefined, gen).token, gen());
    assert.equal(accessPolicy('192.168.1.2', 'mine-mine-mine-mine', gen).token, 'mine-mine-mine-mine');
  });

  it('parses Host headers', () => {
    assert.equal(hostOfHeader('127.0.0.1:8080'), '127.0.0.1');
    assert.equal(hostOfHeader('[::1]:8080'), '::1');
    assert.equal(hostOfHeader('LocalHost'), 'localhost');
    assert.equal(hostOfHeader(undefined), undefined);
    assert.equal(hostOfHeader('a b'), undefined);
    assert.equal(hostOfHeader('evil.com@127.0.0.1'), undefined);
  });

  describe('on loopback', () => {
    const policy = accessPolicy('127.0.0.1', undefined, gen);
    const ok = { host: '127.0.0.1:8080', origin: 'http://127.0.0.1:8080' };

    it('serves the page and upgrades a same-origin WebSocket', () => {
      assert.equal(checkRequest(policy, { url: '/', headers: ok }, false), undefined);
      assert.equal(checkRequest(policy, { url: '/.well-known/coap', headers: ok }, true), undefined);
      const lh = { host: 'localhost:8080', origin: 'http://localhost:8080' };
      assert.equal(checkRequest(policy, { url: '/.well-known/coap', headers: lh }, true), undefined);
    });

    it('refuses a foreign Host (DNS rebinding), for the page and the upgrade', () => {
      const rebound = { host: 'attacker.example:8080', origin: 'http://attacker.example:8080' };
      assert.equal(checkRequest(policy, { url: '/', headers: rebound }, false)?.status, 403);
      assert.equal(checkRequest(policy, { url: '/.well-known/coap', headers: rebound }, true)?.status, 403);
      assert.equal(checkRequest(policy, { url: '/', headers: {} }, false)?.status, 400);
    });

    it('refuses a cross-site WebSocket and one without Origin', () => {
      const cross = { host: '127.0.0.1:8080', origin: 'https://evil.example' };
      assert.equal(checkRequest(policy, { url: '/.well-known/coap', headers: cross }, true)?.status, 403);
      const none = { host: '127.0.0.1:8080' };
      assert.equal(checkRequest(policy, { url: '/.well-known/coap', headers: none }, true)?.status, 403);
      const otherPort = { host: '127.0.0.1:8080', origin: 'http://127.0.0.1:9999' };
      assert.equal(checkRequest(policy, { url: '/.well-known/coap', headers: otherPort }, true)?.status, 403);
    });
  });

  describe('on another address', () => {
    const policy = accessPolicy('0.0.0.0', 'sixteen-chars-token', gen);
    const lan = { host: '192.168.1.2:8080', origin: 'http://192.168.1.2:8080' };

    it('serves the page to any Host, upgrades only with the token and the same origin', () => {
      assert.equal(checkRequest(policy, { url: '/', headers: lan }, false), undefined);
      assert.equal(
        checkRequest(policy, { url: '/.well-known/coap?token=sixteen-chars-token', headers: lan }, true),
        undefined,
      );
      assert.equal(checkRequest(policy, { url: '/.well-known/coap', headers: lan }, true)?.status, 403);
      assert.equal(
        checkRequest(policy, { url: '/.well-known/coap?token=sixteen-chars-tokeX', headers: lan }, true)
          ?.status,
        403,
      );
      assert.equal(
        checkRequest(policy, { url: '/.well-known/coap?token=short', headers: lan }, true)?.status,
        403,
      );
      const cross = { host: '192.168.1.2:8080', origin: 'http://evil.example' };
      assert.equal(
        checkRequest(policy, { url: '/.well-known/coap?token=sixteen-chars-token', headers: cross }, true)
          ?.status,
        403,
      );
    });
  });
});
