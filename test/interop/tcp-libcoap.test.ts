/**
 * RFC 8323 interop with libcoap 4.3 (Debian libcoap3-bin), both directions:
 *   A. coap-client-{notls,openssl,gnutls} → `coapkit serve --tcp-port/--tls-port`
 *      (coap+tcp://, coaps+tcp:// with a throwaway P-256 certificate)
 *   B. `coapkit get/put/ping` → coap-server-{notls,openssl,gnutls} (TCP on -p, TLS on -p + 1)
 * and tshark's CoAP-over-TCP dissector on a recorded coapkit TCP session: no
 * malformed frame, fields as we encoded them.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { FrameDecoder } from '../../src/codec/reliable.js';
import { CLIENT, haveLibcoap, startLibcoapServer } from '../helpers/libcoap.js';
import { type RawRecord, rawPcap } from '../helpers/pcap.js';
import { ipTcp, type TcpSegment } from '../helpers/pcap-tcp.js';
import { opensslSelfSigned } from '../helpers/pki.js';
import { findProgram, runProcess } from '../helpers/proc.js';
import { tsharkFields } from '../helpers/tshark.js';
import { runInProcess, type ServeProcess, startServe } from '../integration/cli-helpers.js';

const haveOpenssl = findProgram('openssl') !== undefined;
const skip = !haveLibcoap()
  ? 'libcoap3-bin (coap-client-notls, coap-server-notls) not installed'
  : !haveOpenssl
    ? 'openssl not installed'
    : false;
const tlsClients = ['coap-client-openssl', 'coap-client-gnutls'].filter((p) => findProgram(p) !== undefined);
const tlsServers = ['coap-server-openssl', 'coap-server-gnutls'].filter((p) => findProgram(p) !== undefined);

let dir = '';
let cert = '';
let key = '';

before(() => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'coapkit-tcp-'));
  cert = join(dir, 'cert.pem');
  key = join(dir, 'key.pem');
  opensslSelfSigned(key, cert);
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function portOf(banner: string, scheme: string): number {
  const m = new RegExp(`^\\s+${scheme.replace('+', '\\+')}://\\S+:(\\d+)`, 'm').exec(banner);
  assert.ok(m, `no ${scheme} listener in the banner:\n${banner}`);
  return Number(m[1]);
}

describe('A. libcoap clients against coapkit serve (coap+tcp, coaps+tcp)', { skip, timeout: 120_000 }, () => {
  let serve: ServeProcess;
  let tcp = 0;
  let tls = 0;
  before(async () => {
    serve = await startServe([
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--secure-port',
      '0',
      '--tcp-port',
      '0',
      '--tls-port',
      '0',
      '--tls-cert',
      cert,
      '--tls-key',
      key,
      '--identity',
      'dev1',
      '--psk',
      'secretkey123',
      // plain coap+tcp:// peers are anonymous: with keys given they may only read unless this
      '--anonymous-writes',
    ]);
    tcp = portOf(serve.banner, 'coap+tcp');
    tls = portOf(serve.banner, 'coaps+tcp');
  });
  after(async () => {
    await serve?.stop();
  });

  test('coap-client-notls: PUT, GET back (also a 3000-byte body), /.well-known/core', async () => {
    const body = 'tcp-'.repeat(750);
    const put = await runProcess(CLIENT, ['-m', 'put', '-e', body, `coap+tcp://127.0.0.1:${tcp}/lc/big`], {
      timeoutMs: 15_000,
    });
    assert.equal(put.code, 0, put.stderr);
    const get = await runProcess(CLIENT, ['-m', 'get', `coap+tcp://127.0.0.1:${tcp}/lc/big`], {
      timeoutMs: 15_000,
    });
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.stdout.trim(), body);
    const wk = await runProcess(CLIENT, ['-m', 'get', `coap+tcp://127.0.0.1:${tcp}/.well-known/core`], {
      timeoutMs: 15_000,
    });
    assert.match(wk.stdout, /<\/lc\/big>/);
  });

  for (const program of tlsClients) {
    test(`${program}: GET /time over coaps+tcp://, verifying our certificate (-R)`, async () => {
      const r = await runProcess(program, ['-R', cert, '-m', 'get', `coaps+tcp://127.0.0.1:${tls}/time`], {
        timeoutMs: 15_000,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /\d{4}-\d\d-\d\dT/);
    });

    test(`${program}: GET /time over coaps+tcp:// with a pre-shared key (TLS 1.2 PSK)`, async () => {
      const r = await runProcess(
        program,
        ['-u', 'dev1', '-k', 'secretkey123', '-m', 'get', `coaps+tcp://127.0.0.1:${tls}/time`],
        { timeoutMs: 15_000 },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /\d{4}-\d\d-\d\dT/);
      const wrong = await runProcess(
        program,
        ['-u', 'dev1', '-k', 'not-the-key', '-m', 'get', `coaps+tcp://127.0.0.1:${tls}/time`],
        { timeoutMs: 15_000 },
      );
      assert.doesNotMatch(wrong.stdout, /\d{4}-\d\d-\d\dT/);
    });
  }
});

describe('B. coapkit against libcoap servers (coap+tcp, coaps+tcp)', { skip, timeout: 120_000 }, () => {
  test('coapkit get/put/ping coap+tcp:// against coap-server-notls -d', async () => {
    const srv = await startLibcoapServer('coap-server-notls', ['-d', '10']);
    try {
      const base = `coap+tcp://127.0.0.1:${srv.port}`;
      const root = await runInProcess(['get', `${base}/`]);
      assert.equal(root.code, 0, root.stderr);
      assert.match(root.out, /libcoap/);
      const put = await runInProcess(['put', `${base}/from-coapkit`, '-p', 'over tcp']);
      assert.equal(put.code, 0, put.stderr);
      const back = await runInProcess(['get', `${base}/from-coapkit`]);
      assert.equal(back.out.trim(), 'over tcp');
      const ping = await runInProcess(['ping', base, '-B', '5']);
      assert.equal(ping.code, 0, ping.out + ping.stderr);
      assert.match(ping.out, /Pong from/);
      // Observe over TCP (RFC 8323 §7): /time notifies every second.
      const c = new CoapClient();
      try {
        const obs = c.observe(`${base}/time`);
        await obs.registered;
        let n = 0;
        for await (const _ of obs) if (++n === 2) break;
        assert.equal(n, 2);
      } finally {
        await c.close();
      }
    } finally {
      await srv.stop();
    }
  });

  for (const program of tlsServers) {
    test(`coapkit get coaps+tcp:// --ca against ${program} -c -j (TLS on port + 1)`, async () => {
      const srv = await startLibcoapServer(program, ['-c', cert, '-j', key]);
      try {
        const uri = `coaps+tcp://127.0.0.1:${srv.port + 1}/`;
        const ok = await runInProcess(['get', uri, '--ca', cert]);
        assert.equal(ok.code, 0, ok.stderr);
        assert.match(ok.out, /libcoap/);
        // Without the CA the self-signed certificate is refused, with a hint.
        const refused = await runInProcess(['get', uri]);
        assert.equal(refused.code, 3);
        assert.match(refused.stderr, /self-signed|certificate/);
        assert.match(refused.stderr, /--ca FILE/);
      } finally {
        await srv.stop();
      }
    });

    test(`coapkit get coaps+tcp:// -u -k against ${program} -k (TLS 1.2 PSK)`, async () => {
      const srv = await startLibcoapServer(program, ['-k', 'secretkey123']);
      try {
        const r = await runInProcess([
          'get',
          `coaps+tcp://127.0.0.1:${srv.port + 1}/`,
          '-u',
          'dev1',
          '-k',
          'secretkey123',
        ]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.out, /libcoap/);
      } finally {
        await srv.stop();
      }
    });
  }
});

describe('tshark dissects a coapkit TCP session without malformed frames', { skip, timeout: 60_000 }, () => {
  const haveTshark = findProgram('tshark') !== undefined;
  test('relay recording → pcap (server port as 5683) → tshark -V', {
    skip: !haveTshark && 'tshark not installed',
  }, async () => {
    const serve = await startServe(['--host', '127.0.0.1', '--port', '0', '--tcp-port', '0']);
    const chunks: { dir: 'c2s' | 's2c'; data: Buffer; t: number }[] = [];
    const relay = net.createServer((client) => {
      const upstream = net.connect({ host: '127.0.0.1', port: portOf(serve.banner, 'coap+tcp') });
      client.on('data', (d) => {
        chunks.push({ dir: 'c2s', data: Buffer.from(d), t: Date.now() });
        upstream.write(d);
      });
      upstream.on('data', (d) => {
        chunks.push({ dir: 's2c', data: Buffer.from(d), t: Date.now() });
        client.write(d);
      });
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const port = (relay.address() as net.AddressInfo).port;
    const c = new CoapClient();
    try {
      const base = `coap+tcp://127.0.0.1:${port}`;
      assert.equal((await c.put(`${base}/shark`, { payload: 'x'.repeat(300), contentFormat: 0 })).code, 0x41);
      assert.equal((await c.get(`${base}/shark`)).text(), 'x'.repeat(300));
      assert.equal((await c.get(`${base}/time`, { options: [{ number: 12, value: 0 }] })).ok, true);
      await c.ping(base);
    } finally {
      await c.close();
      relay.close();
      await serve.stop();
    }
    const file = join(dir, 'tcp.pcap');
    if (process.env.COAPKIT_KEEP_PCAP) writeFileSync(process.env.COAPKIT_KEEP_PCAP, tcpPcap(chunks));
    writeFileSync(file, tcpPcap(chunks));
    const out = execFileSync(
      'tshark',
      ['-r', file, '-d', 'tcp.port==5683,coap', '-V', '-o', 'tcp.analyze_sequence_numbers:TRUE'],
      {
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    assert.doesNotMatch(out, /Malformed|\[Expert Info \(Error/);
    const fields = await tsharkFields(file, ['coap.code'], {
      args: ['-d', 'tcp.port==5683,coap'],
      filter: 'coap',
    });
    const codes = fields
      .split(/[\s,]+/)
      .filter(Boolean)
      .map(Number);
    // CSM (225) both ways, PUT (3) and 2.01 (65), GET (1) and 2.05 (69), Ping (226) and Pong (227).
    for (const code of [225, 3, 65, 1, 69, 226, 227])
      assert.ok(codes.includes(code), `code ${code} in ${codes}`);
  });
});

/** A pcap (LINKTYPE_RAW) of one TCP connection: handshake, then the recorded chunks with real sequence numbers. */
function tcpPcap(chunks: { dir: 'c2s' | 's2c'; data: Buffer; t: number }[]): Buffer {
  const C = '127.0.0.1:40000';
  const S = '127.0.0.2:5683';
  let cseq = 1000;
  let sseq = 5000;
  const t0 = chunks[0]?.t ?? Date.now();
  const records: RawRecord[] = [];
  const seg = (fromClient: boolean, flags: string, data: Buffer, t: number) => {
    const segment: TcpSegment = {
      src: fromClient ? C : S,
      dst: fromClient ? S : C,
      seq: fromClient ? cseq : sseq,
      ...(flags === 'S' ? {} : { ack: fromClient ? sseq : cseq }),
      flags,
      data,
    };
    records.push({ frame: ipTcp(segment, records.length + 1), timeUs: t * 1000 });
    const adv = data.length + (flags.includes('S') || flags.includes('F') ? 1 : 0);
    if (fromClient) cseq += adv;
    else sseq += adv;
  };
  seg(true, 'S', Buffer.alloc(0), t0);
  seg(false, 'SA', Buffer.alloc(0), t0);
  seg(true, 'A', Buffer.alloc(0), t0);
  // One segment per CoAP frame: tshark 4.0's CoAP-over-TCP dissector decodes only the
  // first frame of a segment (a CSM and a request written together arrive as one).
  const decoders = { c2s: new FrameDecoder(1 << 20), s2c: new FrameDecoder(1 << 20) };
  for (const c of chunks)
    decoders[c.dir].push(c.data, (f) => seg(c.dir === 'c2s', 'PA', Buffer.from(f), c.t));
  return rawPcap(records);
}
