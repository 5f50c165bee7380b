/** In-memory (socket-free) client ↔ server tests of protocol corner cases. */
import * as assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { test } from 'node:test';
import { DtlsClientConnection } from '../../src/dtls/client.js';
import { parseDatagram } from '../../src/dtls/record/record.js';
import { DtlsServer, type DtlsServerConnection } from '../../src/dtls/server.js';
import { DtlsError } from '../../src/errors.js';
import { memClientOptions } from '../helpers/dtls-raw.js';

class RenegotiatingClient extends DtlsClientConnection {
  renegotiate(): void {
    // A ClientHello inside the established session (epoch 1).
    this.sendFlight([this.message(1, Buffer.from('renegotiation attempt'), 1)], false);
  }
}

function pair() {
  const queue: (() => void)[] = [];
  const serverEvents: string[] = [];
  const data: string[] = [];
  let client!: RenegotiatingClient;
  const server = new DtlsServer(
    { pskLookup: (id) => (id === 'mem' ? Buffer.from('k') : undefined) },
    {
      send: (d) => queue.push(() => parseDatagram(d).forEach((r) => void client.handleRecord(r))),
      established: () => serverEvents.push('established'),
      data: (d) => data.push(d.toString()),
      closed: (_c: DtlsServerConnection, _a, _p, e) => serverEvents.push(`closed:${e?.message ?? ''}`),
    },
  );
  const clientEvents: string[] = [];
  client = new RenegotiatingClient(memClientOptions(), {
    sendDatagram: (d) => queue.push(() => server.handleDatagram(d, '2001:db8::1', 1234)),
    established: () => clientEvents.push('established'),
    data: () => {},
    closed: (e) => clientEvents.push(`closed:${e?.message ?? ''}`),
  });
  const drain = () => {
    for (let i = 0; i < 1000 && queue.length > 0; i++) queue.shift()!();
  };
  return { server, client, drain, serverEvents, clientEvents, data };
}

test('renegotiation is refused with a no_renegotiation warning; the session keeps working', () => {
  const { server, client, drain, serverEvents, clientEvents, data } = pair();
  const alerts: unknown[] = [];
  const fn = (m: unknown) => {
    const ev = m as { role: string; alert?: unknown };
    if (ev.role === 'server' && ev.alert) alerts.push(ev.alert);
  };
  subscribe('coapkit:dtls:record:sent', fn);
  try {
    client.start();
    drain();
    assert.deepEqual(serverEvents, ['established']);
    assert.deepEqual(clientEvents, ['established']);
    client.renegotiate();
    drain();
    assert.deepEqual(alerts, [{ level: 1, description: 100 }]);
    client.sendApplicationData(Buffer.from('after'));
    drain();
    assert.deepEqual(data, ['after']);
    assert.equal(client.state, 'established');
    assert.equal(server.sessionCount, 1);
  } finally {
    unsubscribe('coapkit:dtls:record:sent', fn);
    client.destroy();
    server.close();
  }
});

test('close_notify from the client ends the server session cleanly', () => {
  const { server, client, drain, serverEvents } = pair();
  client.start();
  drain();
  client.close();
  drain();
  assert.deepEqual(serverEvents, ['established', 'closed:']);
  assert.equal(server.sessionCount, 0);
  server.close();
});

test('mutated handshake datagrams never throw out of the record layer (both sides)', async () => {
  const fc = await import('fast-check');
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(40), fc.nat(400), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 4,
      }),
      fc.constantFrom(0xc0a8, 0xccac, 0xc037),
      (mutations, suite) => {
        const queue: (() => void)[] = [];
        let index = 0;
        const mutate = (d: Buffer): Buffer => {
          const m = Buffer.from(d);
          for (const [which, pos, val] of mutations)
            if (which === index && m.length > 0) m[pos % m.length] = val;
          index++;
          return m;
        };
        const server = new DtlsServer(
          { pskLookup: () => Buffer.from('k'), cipherSuites: [suite], handshakeTimeoutMs: 1000 },
          {
            send: (d) =>
              queue.push(() => parseDatagram(mutate(d)).forEach((r) => void client.handleRecord(r))),
            established: () => {},
            data: () => {},
            closed: () => {},
          },
        );
        const client: DtlsClientConnection = new DtlsClientConnection(
          memClientOptions({
            handshakeTimeoutMs: 1000,
            peerLabel: 'fuzz',
            identity: Buffer.from('fuzz'),
            cipherSuites: [suite],
          }),
          {
            sendDatagram: (d) => queue.push(() => server.handleDatagram(mutate(d), '192.0.2.1', 1)),
            established: () => {},
            data: () => {},
            closed: (e) => {
              if (e !== undefined) assert.ok(e instanceof DtlsError, `closed with ${String(e)}`);
            },
          },
        );
        try {
          client.start();
          for (let i = 0; i < 200 && queue.length > 0; i++) queue.shift()!();
          assert.ok(['handshaking', 'established', 'closed'].includes(client.state), 'client state is sane');
        } finally {
          client.destroy();
          server.close();
        }
      },
    ),
    { numRuns: 300 },
  );
});
