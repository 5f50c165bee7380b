/**
 * Two `coapkit serve` cluster nodes on loopback (no load balancer: the test's
 * rebinding relay plays the one that moves a device to another node): the
 * device's session is on node 1; after its NAT rebinds, the relay sends it to
 * node 2, which forwards its CID records to node 1 and relays node 1's answers.
 * One handshake, every request answered. (The same through nginx in network
 * namespaces: test/integration/cluster-netns.test.ts.)
 */
import * as assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { decodeClusterMessage, encodeClusterMessage, KIND_ANSWER } from '../../src/cluster/forward.js';
import { RebindRelay } from '../helpers/rebind-relay.js';
import { runCli, type ServeProcess, startServeCluster } from './cli-helpers.js';

const KEY = ['--identity', 'dev', '--psk', 'devkey'];
let n1: ServeProcess;
let n2: ServeProcess;

before(async () => {
  [n1, n2] = await startServeCluster([
    ...KEY,
    '--anonymous-writes', // the test's setup PUTs over plain coap://
  ]);
  assert.match(n1.banner, /Cluster node 1: node-to-node on 127\.0\.0\.1:\d+; peers 2=127\.0\.0\.1:\d+/);
  const put = await runCli(['put', `coap://127.0.0.1:${n1.port}/state`, '-p', 'n1;']);
  assert.equal(put.code, 0, put.stderr);
});
after(async () => {
  await Promise.all([n1?.stop(), n2?.stop()]);
});

test('node-to-node messages: the header carries the address; anything else is not one', () => {
  const m = encodeClusterMessage(KIND_ANSWER, '2001:db8::7', 5684, Buffer.from([25, 1, 2]));
  assert.deepEqual(decodeClusterMessage(m), {
    kind: KIND_ANSWER,
    address: '2001:db8::7',
    port: 5684,
    datagram: Buffer.from([25, 1, 2]),
  });
  const bad = [Buffer.from('CK'), Buffer.from([0x43, 0x4b, 2, 1, 0, 1, 1, 0x31, 0]), m.subarray(0, 9)];
  for (const b of bad) assert.equal(decodeClusterMessage(b), undefined);
  const notIp = Buffer.from(m);
  notIp[7] = 0x78; // 'x...'
  assert.equal(decodeClusterMessage(notIp), undefined);
});

test('a device moved to node 2 keeps its session on node 1: forwarded there and answered back', async () => {
  let app = 0;
  const relay = await RebindRelay.create({ target: { address: '127.0.0.1', port: n1.securePort! } });
  // Before the 4th request: the NAT rebinds and the "load balancer" sends the new address to node 2.
  const move = (d: Buffer) => {
    if (!(d[0] === 25 && ++app === 4)) return false;
    relay.target = { address: '127.0.0.1', port: n2.securePort! };
    return true;
  };
  relay.rebindBefore = move;
  try {
    const r = await runCli(
      ['get', `coaps://127.0.0.1:${relay.port}/state`, '--cid', '--repeat', '8', ...KEY, '-B', '20'],
      { timeoutMs: 60_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.out, 'n1;'.repeat(8));
    assert.equal(relay.handshakes, 1, 'one handshake');
    // The last answers came from node 2's socket (it relayed node 1's records).
    assert.equal(relay.downFrom.at(-1), n2.securePort);
  } finally {
    relay.close();
  }
});
