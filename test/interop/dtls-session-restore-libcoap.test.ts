/**
 * libcoap's coap-client-openssl keeps its DTLS session across a server
 * restart done with DtlsServerTransport.exportSessions / importSessions
 * (issue 14 item 4): a CON notification from the new server (new transport,
 * same port) is decrypted and acknowledged by libcoap, and no second
 * ClientHello reaches the server.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { encodeUint } from '../../src/codec/options.js';
import { OptionNumber } from '../../src/constants/options.js';
import { CoapServer } from '../../src/server/server.js';
import { DtlsServerTransport } from '../../src/transport/dtls.js';
import { makePeer } from '../../src/transport/transport.js';
import { countHandshakes } from '../helpers/dtls-events.js';
import { parseMessages } from '../helpers/libcoap.js';
import { findProgram, runProcess } from '../helpers/proc.js';
import { until, withTimeout } from '../helpers/timing.js';

const PSK = { identity: 'dev-1', key: 'restart-secret' };
const STATE_KEY = randomBytes(32);

const OPENSSL = 'coap-client-openssl';
describe('libcoap coap-client-openssl keeps its session across the restart', {
  skip: findProgram(OPENSSL) === undefined ? `${OPENSSL} not installed (Debian libcoap3-bin)` : false,
  timeout: 90_000,
}, () => {
  let hs: ReturnType<typeof countHandshakes>;
  before(() => {
    hs = countHandshakes();
  });
  after(() => hs.stop());

  it('an observer gets a CON notification from the new server and acknowledges it, no ClientHello', async () => {
    let registration: { token: Buffer; address: string; port: number } | undefined;
    const one = new CoapServer();
    one.get(
      '/obs',
      (req) => {
        registration = { token: Buffer.from(req.token), address: req.peer.address, port: req.peer.port };
        return 'before restart';
      },
      { obs: true },
    );
    const t1 = await DtlsServerTransport.create({ host: '127.0.0.1', port: 0, psk: PSK });
    await one.listen(t1);
    const port = t1.localAddress().port;
    const observer = runProcess(
      OPENSSL,
      [
        '-v',
        '6',
        '-u',
        PSK.identity,
        '-k',
        PSK.key,
        '-s',
        '12',
        '-m',
        'get',
        `coaps://127.0.0.1:${port}/obs`,
      ],
      { timeoutMs: 40_000, encoding: 'latin1' },
    );
    await until(() => registration !== undefined, 'the observe registration', 20_000);
    await until(() => t1.server.sessionCount === 1 && hs.counts.server === 1, 'the session', 10_000);
    const sealed = t1.exportSessions(STATE_KEY);
    await one.close();

    const two = new CoapServer();
    const t2 = await DtlsServerTransport.create({ host: '127.0.0.1', port, psk: PSK });
    const ep = await two.listen(t2);
    try {
      assert.deepEqual(await t2.importSessions(sealed, STATE_KEY), { imported: 1, skipped: 0 });
      const reg = registration!;
      const acked = new Promise<void>((resolve, reject) => {
        ep.exchangeLayer.sendUnsolicited(
          makePeer(reg.address, reg.port, PSK.identity),
          {
            confirmable: true,
            code: 0x45,
            token: reg.token,
            options: [{ number: OptionNumber.Observe, value: encodeUint(1000) }],
            payload: Buffer.from('after restart'),
          },
          {
            onAck: () => resolve(),
            onReset: () => reject(new Error('RST')),
            onTimeout: () => reject(new Error('no ACK')),
          },
        );
      });
      await withTimeout(acked, 30_000, "libcoap's ACK of the notification from the new server");
      const r = await observer;
      const got = parseMessages(`${r.stdout}\n${r.stderr}`).filter((m) => m.payload === 'after restart');
      assert.ok(got.length >= 1 || r.stdout.includes('after restart'), `${r.stdout}\n${r.stderr}`);
      assert.equal(hs.counts.server, 1, 'no second handshake');
    } finally {
      await two.close();
    }
  });
});
