/**
 * A full disk under `coapkit serve --data DIR` (issue 14): writes are answered
 * 5.03 (nothing acknowledged that is not stored), reads keep being served, the
 * server keeps running, and after a restart on the still-full disk every
 * acknowledged write is there. The disk is a 1 MiB tmpfs mounted for the test
 * (needs root; skipped with the reason otherwise).
 */

import assert from 'node:assert/strict';
import type { Buffer } from 'node:buffer';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RawCoapClient } from '../helpers/raw-coap.js';
import { LOOPBACK_PORTS, type ServeProcess, startServe } from './cli-helpers.js';

const PUT = 3;
const GET = 1;
const CREATED = 65;
const CONTENT = 69;
const UNAVAILABLE = 163;

test('disk full: writes 5.03, reads served, every acknowledged write kept', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('mounting a small tmpfs needs root');
  const mnt = mkdtempSync(join(tmpdir(), 'coapkit-full-'));
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
  if (m.status !== 0) {
    rmSync(mnt, { recursive: true, force: true });
    return t.skip(`cannot mount a tmpfs here: ${m.stderr.toString().trim()}`);
  }
  let serve: ServeProcess | undefined;
  const sockets: RawCoapClient[] = [];
  try {
    const data = ['--data', join(mnt, 'data'), '--max-resources', '10000'];
    serve = await startServe([...LOOPBACK_PORTS, ...data]);
    const client = await RawCoapClient.open(serve.port);
    sockets.push(client);
    const acked = new Map<string, Buffer>();
    let full = '';
    for (let i = 0; i < 5000 && full === ''; i++) {
      // One datagram each (GET answers larger ones block-wise).
      const payload = randomBytes(900);
      const r = await client.request({ code: PUT, path: `/f/r${i}`, payload });
      if (r.code === CREATED) acked.set(`/f/r${i}`, payload);
      else {
        assert.equal(r.code, UNAVAILABLE, 'a write the disk cannot take gets 5.03');
        full = r.payload.toString();
        const g = await client.request({ code: GET, path: `/f/r${i}` });
        assert.notEqual(g.code, CONTENT, 'the refused write is not served');
      }
    }
    assert.match(full, /disk full|full/i);
    assert.ok(acked.size > 5, `${acked.size} writes fit before the disk was full`);
    // Reads keep being served, and the server keeps answering writes (with 5.03).
    for (const [path, payload] of acked) {
      const g = await client.request({ code: GET, path });
      assert.equal(g.code, CONTENT, path);
      assert.deepEqual(g.payload, payload);
    }
    const again = await client.request({ code: PUT, path: '/f/more', payload: randomBytes(900) });
    assert.equal(again.code, UNAVAILABLE);
    assert.equal(await serve.stop(), 0);
    // Restart on the still-full disk: everything acknowledged is there.
    serve = await startServe([...LOOPBACK_PORTS, ...data]);
    const c2 = await RawCoapClient.open(serve.port);
    sockets.push(c2);
    for (const [path, payload] of acked) {
      const g = await c2.request({ code: GET, path });
      assert.equal(g.code, CONTENT, path);
      assert.deepEqual(g.payload, payload);
    }
  } finally {
    for (const c of sockets) c.socket.close();
    await serve?.stop();
    spawnSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
});
