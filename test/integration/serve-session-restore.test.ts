/**
 * `coapkit serve --data DIR --state-key FILE`: the DTLS sessions outlive a graceful
 * restart (issue 14 item 4). One client, one DTLS session, two SIGTERM restarts of the
 * server on the same ports and data: every request is answered and the client never
 * handshakes again. Without the key (or after kill -9) the client must handshake again.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CoapClient } from '../../src/index.js';
import { freePort } from '../helpers/net.js';
import { type ServeProcess, startServe } from './cli-helpers.js';

const PSK = { identity: 'dev', key: 'devkey-restore' };

describe('serve --state-key: DTLS sessions across graceful restarts', () => {
  let dir: string;
  let keyFile: string;
  let port: number;
  let securePort: number;
  const handshakes: unknown[] = [];
  const onStart = (m: unknown) => handshakes.push(m);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coapkit-restore-'));
    keyFile = join(dir, 'state.key');
    writeFileSync(keyFile, randomBytes(32));
    port = await freePort();
    securePort = await freePort();
    subscribe('coapkit:dtls:handshake:start', onStart);
  });
  after(() => {
    unsubscribe('coapkit:dtls:handshake:start', onStart);
    rmSync(dir, { recursive: true, force: true });
  });

  const serve = (data: string, extra: string[] = []): Promise<ServeProcess> =>
    startServe([
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--secure-port',
      String(securePort),
      '--identity',
      PSK.identity,
      '--psk',
      PSK.key,
      '--data',
      data,
      ...extra,
    ]);

  it('one session, two SIGTERM restarts: answered every time, one handshake', async () => {
    handshakes.length = 0;
    const data = join(dir, 'a');
    const client = new CoapClient({ psk: PSK });
    let srv = await serve(data, ['--state-key', keyFile]);
    try {
      const uri = `coaps://127.0.0.1:${securePort}/kept`;
      const put = await client.request(uri, { method: 'PUT', payload: 'v0' });
      assert.equal(put.code, 0x41, 'the first PUT creates the resource (2.01)');
      for (let round = 1; round <= 2; round++) {
        assert.equal(await srv.stop('SIGTERM'), 0);
        srv = await serve(data, ['--state-key', keyFile]);
        assert.match(srv.banner, /DTLS sessions restored: 1/);
        const res = await client.request(uri, { method: 'PUT', payload: `v${round}` });
        assert.equal(res.code, 0x44, `round ${round}: answered on the restored session`);
      }
      const got = await client.request(uri);
      assert.equal(got.payload.toString(), 'v2');
      assert.equal(handshakes.length, 1, 'the client handshook once in all');
    } finally {
      await client.close();
      await srv.stop();
    }
  });

  it('without --state-key the sessions are not kept: the client handshakes again', async () => {
    handshakes.length = 0;
    const data = join(dir, 'b');
    const client = new CoapClient({ psk: PSK });
    let srv = await serve(data);
    try {
      const uri = `coaps://127.0.0.1:${securePort}/other`;
      assert.equal((await client.request(uri, { method: 'PUT', payload: 'x' })).code, 0x41);
      assert.equal(await srv.stop('SIGTERM'), 0);
      srv = await serve(data);
      assert.doesNotMatch(srv.banner, /DTLS sessions restored/);
      // The server closed the old session with close_notify: the client starts a new one.
      const res = await client.request(uri);
      assert.equal(res.payload.toString(), 'x', 'the data survived the restart');
      assert.equal(handshakes.length, 2);
    } finally {
      await client.close();
      await srv.stop();
    }
  });

  it('--state-key without a store, or a short key, is a usage error', async () => {
    const short = join(dir, 'short.key');
    writeFileSync(short, 'tiny');
    await assert.rejects(
      startServe(['--host', '127.0.0.1', '--port', '0', '--secure-port', '0', '--state-key', keyFile]),
      /--state-key needs --data DIR or --store URL/,
    );
    await assert.rejects(
      startServe(['--host', '127.0.0.1', '--port', '0', '--data', join(dir, 'c'), '--state-key', short]),
      /needs at least 16/,
    );
  });
});
