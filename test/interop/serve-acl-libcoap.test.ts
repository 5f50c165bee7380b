/**
 * libcoap's coap-client-openssl (PSK) against `coapkit serve --acl` (issue 12):
 * the identity it authenticates with is the one the rules match; it writes and
 * reads its own subtree, gets 4.03 elsewhere and does not discover other
 * devices' resources; coap-client-notls (anonymous) gets 4.01.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { parseMessages } from '../helpers/libcoap.js';
import { findProgram, runProcess } from '../helpers/proc.js';
import { LOOPBACK_PORTS, type ServeProcess, startServe } from '../integration/cli-helpers.js';

const OPENSSL = 'coap-client-openssl';
const NOTLS = 'coap-client-notls';
const skip =
  findProgram(OPENSSL) === undefined || findProgram(NOTLS) === undefined
    ? `${OPENSSL} / ${NOTLS} not installed (Debian libcoap3-bin)`
    : false;

/** Runs a libcoap client with message dumps; the response is the last message it received. */
async function libcoap(prog: string, args: string[]) {
  const r = await runProcess(prog, ['-v', '6', ...args], { timeoutMs: 20_000, encoding: 'latin1' });
  const msgs = parseMessages(`${r.stdout}\n${r.stderr}`).filter((m) => /^\d\.\d\d$/.test(m.code));
  return { ...r, response: msgs[msgs.length - 1] };
}

describe('coap-client-openssl (PSK) under an ACL rule', { skip, timeout: 120_000 }, () => {
  let dir = '';
  let srv: ServeProcess;
  let S = '';
  let U = '';
  const psk = ['-u', 'dev-7', '-k', 'seven-secret'];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coapkit-acl-'));
    writeFileSync(join(dir, 'keys.txt'), 'dev-7:seven-secret\ndev-8:eight-secret\n');
    writeFileSync(join(dir, 'rules.acl'), '* GET,PUT,DELETE /devices/{identity}/**\n');
    srv = await startServe([
      ...LOOPBACK_PORTS,
      '--psk-file',
      join(dir, 'keys.txt'),
      '--acl',
      join(dir, 'rules.acl'),
    ]);
    S = `coaps://127.0.0.1:${srv.securePort}`;
    U = `coap://127.0.0.1:${srv.port}`;
    const other = new CoapClient({ psk: { identity: 'dev-8', key: 'eight-secret' } });
    try {
      const r = await other.put(`${S}/devices/dev-8/state`, { payload: 'eight', timeout: 10_000 });
      assert.equal(r.codeText, '2.01 Created');
    } finally {
      await other.close();
    }
  });
  after(async () => {
    await srv?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes and reads its own subtree', async () => {
    const put = await libcoap(OPENSSL, [...psk, '-m', 'put', '-e', 'seven', `${S}/devices/dev-7/state`]);
    assert.equal(put.response?.code, '2.01', put.stderr);
    const get = await libcoap(OPENSSL, [...psk, '-m', 'get', `${S}/devices/dev-7/state`]);
    assert.equal(get.response?.code, '2.05', get.stderr);
    assert.equal(get.response?.payload, 'seven');
  });

  it("gets 4.03 on another device's subtree and does not discover it", async () => {
    const get = await libcoap(OPENSSL, [...psk, '-m', 'get', `${S}/devices/dev-8/state`]);
    assert.equal(get.response?.code, '4.03', get.stderr);
    const put = await libcoap(OPENSSL, [...psk, '-m', 'put', '-e', 'x', `${S}/devices/dev-8/state`]);
    assert.equal(put.response?.code, '4.03', put.stderr);
    const obs = await libcoap(OPENSSL, [...psk, '-s', '2', '-m', 'get', `${S}/devices/dev-8/state`]);
    assert.equal(obs.response?.code, '4.03', obs.stderr);
    const wk = await libcoap(OPENSSL, [...psk, '-m', 'get', `${S}/.well-known/core`]);
    assert.equal(wk.response?.code, '2.05', wk.stderr);
    const doc = wk.stdout;
    assert.match(doc, /<\/devices\/dev-7\/state>/);
    assert.doesNotMatch(doc, /dev-8/);
  });

  it('an anonymous coap-client-notls gets 4.01', async () => {
    const get = await libcoap(NOTLS, ['-m', 'get', `${U}/devices/dev-7/state`]);
    assert.equal(get.response?.code, '4.01', get.stderr);
    const del = await libcoap(NOTLS, ['-m', 'delete', `${U}/devices/dev-7/state`]);
    assert.equal(del.response?.code, '4.01', del.stderr);
  });
});
