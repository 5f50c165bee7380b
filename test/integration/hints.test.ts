/**
 * Issue 18 item 6: a wrong scheme, nothing listening and a wrong key are told
 * apart by what the server sent (or did not), fast, with addresses printed as
 * host:port / [v6]:port.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { DtlsError, DtlsHandshakeTimeoutError, NetworkError, TimeoutError } from '../../src/errors.js';
import { CoapServer } from '../../src/server/server.js';
import { DtlsServerTransport } from '../../src/transport/dtls.js';
import { runInProcess } from './cli-helpers.js';

const PSK = { identity: 'alice', key: 'secret-key' };

function udpSocket(type: 'udp4' | 'udp6' = 'udp4', host = '127.0.0.1'): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const s = createSocket(type);
    s.once('error', reject);
    s.bind(0, host, () => resolve(s));
  });
}

const portOf = (s: UdpSocket) => s.address().port;
const closeSocket = (s: UdpSocket) => new Promise<void>((r) => s.close(() => r()));

async function rejection(p: Promise<unknown>): Promise<{ err: Error & { hint?: string }; ms: number }> {
  const t = performance.now();
  try {
    await p;
  } catch (err) {
    return { err: err as Error & { hint?: string }, ms: performance.now() - t };
  }
  assert.fail('expected the request to fail');
}

/** A UDP relay to `target` that drops the client datagrams `drop` selects. */
async function relay(target: number, drop: (d: Buffer) => boolean) {
  const front = await udpSocket();
  const back = await udpSocket();
  let client: { address: string; port: number } | undefined;
  let dropped = 0;
  front.on('message', (d, r) => {
    client = { address: r.address, port: r.port };
    if (drop(d)) dropped++;
    else back.send(d, target, '127.0.0.1');
  });
  back.on('message', (d) => {
    if (client) front.send(d, client.port, client.address);
  });
  return {
    port: portOf(front),
    dropped: () => dropped,
    close: async () => {
      await closeSocket(front);
      await closeSocket(back);
    },
  };
}

/** Does any record of this datagram carry a ChangeCipherSpec (the client's Finished flight)? */
function hasChangeCipherSpec(d: Buffer): boolean {
  for (let off = 0; off + 13 <= d.length; off += 13 + d.readUInt16BE(off + 11))
    if (d[off] === 20) return true;
  return false;
}

describe('wrong scheme, nothing listening, wrong key: each gets its own error', () => {
  let plain: CoapServer;
  let plainPort: number;
  let secure: CoapServer;
  let securePort: number;

  before(async () => {
    plain = new CoapServer();
    plain.route('GET', '/x', () => ({ code: '2.05', payload: 'x' }));
    plainPort = (await plain.listen({ host: '127.0.0.1', port: 0 })).transport.localAddress().port;
    secure = new CoapServer();
    secure.route('GET', '/x', () => ({ code: '2.05', payload: 'x' }));
    const t = await DtlsServerTransport.create({
      host: '127.0.0.1',
      port: 0,
      psk: PSK,
      retransmitInitialMs: 100,
    });
    await secure.listen(t);
    securePort = t.localAddress().port;
  });
  after(async () => {
    await plain.close();
    await secure.close();
  });

  it('coaps:// to a plain CoAP port: "speaks plain CoAP: use coap://", in about a second', async () => {
    const client = new CoapClient({ psk: PSK });
    try {
      const { err, ms } = await rejection(client.get(`coaps://127.0.0.1:${plainPort}/x`));
      assert.ok(err instanceof NetworkError, String(err));
      assert.match(err.message, new RegExp(`^127\\.0\\.0\\.1:${plainPort} answered in plain CoAP`));
      assert.doesNotMatch(err.message, /%/);
      assert.match(err.hint ?? '', new RegExp(`use coap://127\\.0\\.0\\.1:${plainPort}/`));
      assert.ok(ms < 15_000, `took ${ms} ms (the handshake timeout is 30 s)`);
    } finally {
      await client.close();
    }
  });

  it('coap:// to a DTLS port: "speaks DTLS: use coaps://", in about a second', async () => {
    const client = new CoapClient();
    try {
      const { err, ms } = await rejection(client.get(`coap://127.0.0.1:${securePort}/x`));
      assert.ok(err instanceof NetworkError, String(err));
      assert.match(err.message, new RegExp(`^127\\.0\\.0\\.1:${securePort} answered with DTLS`));
      assert.match(err.hint ?? '', new RegExp(`use coaps://127\\.0\\.0\\.1:${securePort}/`));
      assert.ok(ms < 15_000, `took ${ms} ms (CoAP gives up after 93 s)`);
    } finally {
      await client.close();
    }
  });

  it('with detectWrongScheme: false, neither probe is sent', async () => {
    const client = new CoapClient({ detectWrongScheme: false });
    try {
      const { err } = await rejection(client.get(`coap://127.0.0.1:${securePort}/x`, { timeout: 1500 }));
      assert.ok(err instanceof TimeoutError, String(err));
    } finally {
      await client.close();
    }
  });

  it('coaps:// to a closed port: ICMP port unreachable fails the handshake at once', async () => {
    const s = await udpSocket();
    const port = portOf(s);
    await closeSocket(s);
    const client = new CoapClient({ psk: PSK });
    try {
      const { err } = await rejection(client.get(`coaps://127.0.0.1:${port}/x`));
      assert.ok(err instanceof NetworkError, String(err));
      assert.match(err.message, new RegExp(`ICMP port unreachable\\) from 127\\.0\\.0\\.1:${port}`));
      assert.match(err.hint ?? '', /coaps:\/\/ \(DTLS\) server/);
    } finally {
      await client.close();
    }
  });

  it('coaps:// to a silent port: the handshake timeout says nothing answered (not "check the key")', async () => {
    const silent = await udpSocket();
    let probes = 0;
    silent.on('message', (d) => {
      if ((d[0]! & 0xc0) === 0x40) probes++;
    });
    const client = new CoapClient({ psk: PSK, dtls: { handshakeTimeoutMs: 2500, retransmitInitialMs: 200 } });
    try {
      const { err } = await rejection(client.get(`coaps://127.0.0.1:${portOf(silent)}/x`));
      assert.ok(err instanceof DtlsHandshakeTimeoutError, String(err));
      assert.equal(err.message, `no answer from 127.0.0.1:${portOf(silent)} to the DTLS handshake`);
      assert.match(err.hint ?? '', /coaps:\/\/ \(DTLS\) server running/);
      assert.doesNotMatch(err.hint ?? '', /PSK/);
      assert.equal(probes, 1, 'one CoAP ping probe');
    } finally {
      await client.close();
      await closeSocket(silent);
    }
  });

  it('a request timeout shorter than the handshake carries the same diagnosis', async () => {
    const silent = await udpSocket();
    const client = new CoapClient({ psk: PSK, detectWrongScheme: false });
    try {
      const { err } = await rejection(client.get(`coaps://127.0.0.1:${portOf(silent)}/x`, { timeout: 500 }));
      assert.ok(err instanceof TimeoutError, String(err));
      assert.equal(err.message, `no answer from 127.0.0.1:${portOf(silent)} to the DTLS handshake`);
    } finally {
      await client.close();
      await closeSocket(silent);
    }
  });

  it('a wrong key against a server that answers with an alert: a PSK hint', async () => {
    const client = new CoapClient({ psk: { identity: 'alice', key: 'wrong' } });
    try {
      const { err } = await rejection(client.get(`coaps://127.0.0.1:${securePort}/x`));
      assert.ok(err instanceof DtlsError, String(err));
      assert.match(err.hint ?? '', /PSK identity and key/);
    } finally {
      await client.close();
    }
  });

  it('a server that drops our Finished (wrong key, libcoap style): "stalled after the server hello", fast', async () => {
    // The relay drops the client's second flight (ChangeCipherSpec + Finished), as a
    // server that cannot decrypt that Finished does: the server repeats its hello flight.
    const r = await relay(securePort, hasChangeCipherSpec);
    const client = new CoapClient({ psk: PSK });
    try {
      const { err, ms } = await rejection(client.get(`coaps://127.0.0.1:${r.port}/x`));
      assert.ok(err instanceof DtlsError, String(err));
      assert.match(
        err.message,
        new RegExp(`^DTLS handshake with 127\\.0\\.0\\.1:${r.port} stalled after the server's hello`),
      );
      assert.match(err.hint ?? '', /wrong|does not match/);
      assert.match(err.hint ?? '', /--identity/);
      assert.ok(r.dropped() >= 1, `dropped ${r.dropped()} client flights; ${err.message}`);
      assert.ok(ms < 25_000, `took ${ms} ms (the handshake timeout is 30 s): ${err.message}`);
    } finally {
      await client.close();
      await r.close();
    }
  });

  it('the CLI prints host:port, never address%port', async () => {
    const r = await runInProcess([
      'get',
      `coaps://127.0.0.1:${plainPort}/x`,
      '--identity',
      'a',
      '--psk',
      'b',
    ]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, new RegExp(`coapkit: 127\\.0\\.0\\.1:${plainPort} answered in plain CoAP`));
    assert.match(r.stderr, /hint: use coap:\/\//);
    assert.doesNotMatch(r.stderr, /%\d/);
  });
});

describe('IPv6 addresses are printed in brackets', () => {
  it('coaps:// over ::1 to a plain CoAP port', async (t) => {
    let server: CoapServer | undefined;
    try {
      server = new CoapServer();
      const port = (await server.listen({ host: '::1', port: 0 })).transport.localAddress().port;
      const client = new CoapClient({ psk: PSK });
      try {
        const { err } = await rejection(client.get(`coaps://[::1]:${port}/x`));
        assert.match(err.message, new RegExp(`^\\[::1\\]:${port} answered in plain CoAP`));
      } finally {
        await client.close();
      }
    } catch (e) {
      if ((e as Error).message.includes('EADDRNOTAVAIL') || (e as Error).message.includes('EAFNOSUPPORT')) {
        t.skip('no ::1 on this machine');
        return;
      }
      throw e;
    } finally {
      await server?.close();
    }
  });
});
