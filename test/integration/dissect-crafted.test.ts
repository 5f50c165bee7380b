/** dissect() on a crafted plain-CoAP capture: grouping of exchanges, blocks, observe. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dissect } from '../../src/dissect/dissect.js';
import { renderJson, renderText } from '../../src/dissect/render.js';
import { SCENARIO, scenarioCapture } from '../vectors/captures/scenario.js';

describe('dissect on a crafted plain CoAP capture', () => {
  const result = dissect(scenarioCapture());
  const msgs = result.coap.messages;
  const roles = (exId: number) => result.coap.exchanges[exId - 1]?.messages.map((m) => m.role);

  it('decodes every message over plain UDP', () => {
    assert.equal(result.error, undefined);
    assert.equal(msgs.length, SCENARIO.length);
    assert.ok(msgs.every((m) => m.transport === 'udp'));
    assert.deepEqual(
      msgs.map((m) => m.messageId),
      SCENARIO.map((s) => s.msg.messageId),
    );
    assert.equal(result.dtls.length, 0);
    assert.equal(result.dns.length, 0);
  });

  it('groups the block-wise download with separate responses', () => {
    assert.equal(result.coap.blockTransfers.length, 1);
    const bt = result.coap.blockTransfers[0];
    assert.ok(bt);
    assert.deepEqual(
      {
        option: bt.option,
        method: bt.method,
        uri: bt.uriPath,
        blocks: bt.blocks,
        size: bt.blockSize,
        bytes: bt.bytes,
        complete: bt.complete,
      },
      { option: 'Block2', method: 'GET', uri: '/large', blocks: 3, size: 64, bytes: 158, complete: true },
    );
    assert.deepEqual(bt.exchanges, [1, 2, 3]);
    assert.equal(result.coap.exchanges[0]?.kind, 'separate');
    assert.deepEqual(roles(1), [
      'request',
      'empty ACK (response will follow separately)',
      'separate response',
      'ACK of separate response',
    ]);
    assert.equal(result.coap.exchanges[1]?.kind, 'separate');
    assert.equal(result.coap.exchanges[2]?.kind, 'piggybacked');
    assert.deepEqual(roles(3), ['request', 'piggybacked response']);
    const third = msgs[9];
    assert.deepEqual(third?.block2, { num: 2, more: false, szx: 2, size: 64 });
    assert.equal(
      third?.summary,
      'ACK MID=102 TKN=aa03 2.05 Content /large Block2=2/0/64 (text/plain;charset=utf-8)',
    );
  });

  it('groups the observation and its notifications', () => {
    const ex = result.coap.exchanges[3];
    assert.equal(ex?.kind, 'observe');
    assert.equal(ex?.uriPath, '/sensors/temp');
    assert.deepEqual(roles(4), [
      'request (observe register)',
      'piggybacked response',
      'notification (Observe=6)',
      'notification (Observe=7)',
      'ACK of notification (Observe=7)',
    ]);
    const n = msgs[12];
    assert.equal(n?.typeName, 'NON');
    assert.equal(n?.observe, 6);
    assert.equal(n?.payload.kind, 'json');
    assert.equal(n?.payload.preview, '{"t":22.6}');
    assert.equal(n?.requestUriPath, '/sensors/temp');
  });

  it('recognises a CoAP ping and a retransmission', () => {
    assert.equal(result.coap.exchanges[4]?.kind, 'ping');
    assert.deepEqual(roles(5), ['CoAP ping', 'pong (reset to ping)']);
    assert.deepEqual(roles(6), ['request', 'retransmission', 'piggybacked response']);
    assert.equal(result.coap.exchanges.length, 6);
  });

  it('decodes options by format and renders one summary line per message', () => {
    const req = msgs[0];
    assert.equal(req?.summary, 'CON MID=100 TKN=aa01 GET /large');
    assert.deepEqual(req?.options[0], {
      number: 11,
      name: 'Uri-Path',
      format: 'string',
      value: 'large',
      raw: '6c61726765',
      display: '"large"',
    });
    const obs = msgs[10]?.options.find((o) => o.number === 6);
    assert.equal(obs?.value, 0);
    assert.equal(obs?.display, '0 (register)');
    const cf = msgs[11]?.options.find((o) => o.number === 12);
    assert.equal(cf?.display, '50 (application/json)');
    const text = renderText(result, { color: false });
    assert.match(
      text,
      /Block-wise transfer 1: GET \/large \(Block2, 3 block\(s\) of 64 B, 158 payload bytes, complete\)/,
    );
    assert.match(text, /#1 0\.000000 CON MID=100 TKN=aa01 GET \/large/);
    assert.match(text, /Block2 \(23, uint\): num=0 m=1 szx=2 \(64 B\)/);
    assert.match(text, /NON MID=502 TKN=bb01 2\.05 Content \/sensors\/temp Observe=6 \(application\/json\)/);
    assert.match(text, /link 14 \+ IPv4 20 \+ UDP 8 \+ CoAP header 10 \+ payload 64 = 116 B/);
    const colored = renderText(result, { color: true });
    assert.match(colored, /\x1b\[36mCON MID=100/);
    const json = JSON.parse(renderJson(result));
    assert.equal(json.coap.messages.length, SCENARIO.length);
    assert.equal(json.frames[0].protocol, 'coap');
  });
});
