/**
 * `coapkit get coap+tcp://... --trace` against libcoap's coap-server-notls (which
 * listens on TCP on its -p port too): its CSM by name with the options libcoap sends
 * (Max-Message-Size, Block-Wise-Transfer), frames with their length, no RFC 7252 words.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { haveLibcoap, type LibcoapServer, startServer } from '../helpers/libcoap.js';
import { runCli } from '../integration/cli-helpers.js';

const skip = haveLibcoap() ? false : 'libcoap3-bin (coap-server-notls) not installed';
let server: LibcoapServer | undefined;

before(async () => {
  if (!skip) server = await startServer();
});
after(async () => {
  await server?.stop();
});

test('coap+tcp to libcoap: its CSM named with its options, the response frame with its Extended Length', {
  skip,
}, async () => {
  const r = await runCli(['get', `coap+tcp://127.0.0.1:${server!.port}/`, '--trace'], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.out, /libcoap/);
  assert.match(
    r.stderr,
    /SIG +← \S+ +7\.01 CSM {2}Max-Message-Size: \d+(, Block-Wise-Transfer)? {2}\(\d+ B\)/,
  );
  assert.match(r.stderr, /CoAP +← \S+ +2\.05 Content {2}token [0-9a-f]+ {2}\((\d+) B\)/);
  assert.match(r.stderr, /coap\+tcp frame \d+ B = 3 hdr \(Len 13 \+ 1 B Extended Length: \d+, TKL 8, Code\)/);
  assert.doesNotMatch(r.stderr, /\bCON\b|\bNON\b|\bACK\b|\bMID\b|UDP 8/);
});
