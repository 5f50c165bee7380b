/**
 * `coapkit get coaps://... --cid --trace`: every size the trace prints for a datagram
 * (each DTLS flight, each CoAP message's "IPv4 20 + UDP 8 + DTLS ... = N B") is the
 * size of the datagram a relay between client and server really saw, the connection
 * ID and the inner content type byte of tls12_cid records (RFC 9146) included.
 */
import * as assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RebindRelay } from '../helpers/rebind-relay.js';
import { LOOPBACK_PORTS, runCli, type ServeProcess, startServe } from './cli-helpers.js';

let srv: ServeProcess;
const KEY = ['--identity', 'dev', '--psk', 'devkey'];
const IP_UDP = 20 + 8;

before(async () => {
  srv = await startServe([...LOOPBACK_PORTS, ...KEY]);
});
after(async () => {
  await srv?.stop();
});

/** The UDP payload sizes the trace claims, per direction, in order. */
function traceSizes(trace: string): { up: number[]; down: number[] } {
  const out = { up: [] as number[], down: [] as number[] };
  let dir: 'up' | 'down' | undefined;
  for (const line of trace.split('\n')) {
    const arrow = / (→|←) \S+ {2}/.exec(line);
    if (arrow) dir = arrow[1] === '→' ? 'up' : 'down';
    const flight = /flight: .*\(\d+ records?, (\d+) B \+ IPv4 20 \+ UDP 8 per datagram\)/.exec(line);
    if (flight && dir) out[dir].push(Number(flight[1]));
    const message = /^\s+IPv4 20 \+ UDP 8 \+ DTLS \d+ \+ CoAP .* = (\d+) B/.exec(line);
    if (message && dir) out[dir].push(Number(message[1]) - IP_UDP);
  }
  return out;
}

test('--cid --trace: the printed datagram sizes are the real ones, CID bytes included', async () => {
  const relay = await RebindRelay.create({
    target: { address: '127.0.0.1', port: srv.securePort! },
    rebindBefore: () => false,
  });
  try {
    const r = await runCli(
      ['get', `coaps://127.0.0.1:${relay.port}/time`, '--cid', '--repeat', '2', '--trace', ...KEY],
      { timeoutMs: 60_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    const cid = /tls12_cid\(25\) cid ([0-9a-f]{16}) carrying/.exec(r.stderr)?.[1];
    assert.ok(cid !== undefined, r.stderr);
    assert.ok(
      relay.upLog.some((d) => d[0] === 25),
      'the client sent tls12_cid records',
    );
    // The session's CIDs and what they cost, said once.
    assert.match(
      r.stderr,
      new RegExp(
        `connection ID: records we send carry CID ${cid} \\(\\+8 cid \\+ 1 type per record\\); records we receive carry no CID`,
      ),
    );
    // The request that waited for the handshake, and the next one, name the CID of their record.
    assert.match(
      r.stderr,
      new RegExp(
        `ApplicationData epoch 1 seq \\d+, connection ID ${cid} \\(\\+8 cid \\+ 1 type\\) carrying the queued CON GET`,
      ),
    );
    assert.match(
      r.stderr,
      new RegExp(`in DTLS ApplicationData record epoch 1 seq \\d+ \\(\\S+\\), connection ID ${cid}`),
    );
    const traced = traceSizes(r.stderr);
    const sorted = (a: number[]) => [...a].sort((x, y) => x - y);
    assert.deepEqual(sorted(traced.up), sorted(relay.upLog.map((d) => d.length)), r.stderr);
    assert.deepEqual(sorted(traced.down), sorted(relay.downLog.map((d) => d.length)), r.stderr);
  } finally {
    relay.close();
  }
});
