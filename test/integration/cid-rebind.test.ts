/**
 * DTLS Connection ID end to end: `coapkit get --cid --repeat` against
 * `coapkit serve` through a NAT that rebinds (test/helpers/rebind-relay.ts):
 * with a CID the session follows the client to each new source port (one
 * handshake, every request answered); without one, the request after the
 * rebinding gets no answer (the server has no session for the new address).
 */
import * as assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RebindRelay } from '../helpers/rebind-relay.js';
import { LOOPBACK_PORTS, runCli, type ServeProcess, startServe } from './cli-helpers.js';

let srv: ServeProcess;
const KEY = ['--identity', 'dev', '--psk', 'devkey'];

before(async () => {
  srv = await startServe([...LOOPBACK_PORTS, ...KEY, '--anonymous-writes']);
  const put = await runCli(['put', `coap://127.0.0.1:${srv.port}/state`, '-p', 'on;']);
  assert.equal(put.code, 0, put.stderr);
});
after(async () => {
  await srv?.stop();
});

/** Client datagrams that carry application data (tls12_cid, or plain epoch-1 application_data). */
const isAppData = (d: Buffer) => d[0] === 25 || (d[0] === 23 && d[4] === 1);

test('with --cid the session survives three rebindings: 12 requests, 12 answers, one handshake', async () => {
  let app = 0;
  const relay = await RebindRelay.create({
    target: { address: '127.0.0.1', port: srv.securePort! },
    // Rebind before the 3rd, 6th and 9th request.
    rebindBefore: (d) => isAppData(d) && [3, 6, 9].includes(++app),
  });
  try {
    const r = await runCli(
      [
        'get',
        `coaps://127.0.0.1:${relay.port}/state`,
        '--cid',
        '--repeat',
        '12',
        '--trace',
        ...KEY,
        '-B',
        '20',
      ],
      { timeoutMs: 60_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.out, 'on;'.repeat(12));
    assert.equal(relay.ports.length, 4, 'three rebindings');
    // --trace shows the CID records: the server's 8-byte CID, the inner type, the extra bytes.
    assert.match(
      r.stderr,
      /tls12_cid\(25\) cid [0-9a-f]{16} carrying handshake\(22\) epoch 1 seq 0: 13 hdr \+ 8 cid \+ 1 type/,
    );
    assert.equal(relay.handshakes, 1, 'one handshake');
    assert.ok(
      relay.upLog.filter(isAppData).every((d) => d[0] === 25),
      'every application record carries the CID',
    );
  } finally {
    relay.close();
  }
});

test('without --cid the request after a rebinding is not answered; the next one handshakes again', async () => {
  let app = 0;
  const relay = await RebindRelay.create({
    target: { address: '127.0.0.1', port: srv.securePort! },
    rebindBefore: (d) => isAppData(d) && ++app === 2,
  });
  try {
    const r = await runCli(
      ['get', `coaps://127.0.0.1:${relay.port}/state`, '--repeat', '3', ...KEY, '-B', '3'],
      { timeoutMs: 60_000 },
    );
    assert.equal(r.code, 3, r.stderr);
    assert.equal(
      r.out,
      'on;on;',
      'the request after the rebinding went unanswered, the next one was answered',
    );
    assert.match(r.stderr, /request 2\/3: no response/);
    assert.match(r.stderr, /DTLS session dropped: the next request handshakes again/);
    assert.equal(relay.handshakes, 2, 'two handshakes');
  } finally {
    relay.close();
  }
});
