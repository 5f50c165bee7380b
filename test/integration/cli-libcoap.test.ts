/**
 * The coapkit client commands against libcoap's coap-server (interop):
 * discover, PUT/GET/DELETE on its dynamic resources (-d), ping, Observe-free GET.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { haveLibcoap, type LibcoapServer, startServer } from '../helpers/libcoap.js';
import { runInProcess } from './cli-helpers.js';

describe('coapkit against libcoap coap-server-notls', () => {
  let server: LibcoapServer | undefined;
  let U = '';
  const available = haveLibcoap();

  before(async () => {
    if (!available) return;
    server = await startServer(['-d', '20']);
    U = `coap://127.0.0.1:${server.port}`;
  });

  after(async () => {
    await server?.stop();
  });

  it('discover parses its /.well-known/core', async (t) => {
    if (!available) return t.skip('coap-server-notls not installed');
    const r = await runInProcess(['discover', U, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const links = JSON.parse(r.out) as Array<{ href: string; rt?: string; obs?: boolean }>;
    const time = links.find((l) => l.href === '/time');
    assert.ok(time, r.out);
    assert.equal(time.obs, true);
    const byRt = await runInProcess(['discover', U, '--rt', 'ticks']);
    assert.match(byRt.out, /^<\/time> /m);
  });

  it('PUT creates (2.01), GET reads back, DELETE (2.02), GET 4.04 (exit 1)', async (t) => {
    if (!available) return t.skip('coap-server-notls not installed');
    const put = await runInProcess(['put', `${U}/interop`, '-p', 'hello libcoap', '-t', 'text', '-v']);
    assert.equal(put.code, 0, put.stderr);
    assert.match(put.stderr, /2\.01 Created/);
    const get = await runInProcess(['get', `${U}/interop`]);
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.out, 'hello libcoap');
    const del = await runInProcess(['delete', `${U}/interop`, '-v']);
    assert.match(del.stderr, /2\.02 Deleted/);
    const gone = await runInProcess(['get', `${U}/interop`]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /^coapkit: 4\.04 Not Found/);
  });

  it('ping gets RSTs', async (t) => {
    if (!available) return t.skip('coap-server-notls not installed');
    const r = await runInProcess(['ping', U, '-c', '2', '-i', '0.05']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.out, /2 sent, 2 received/);
  });
});
