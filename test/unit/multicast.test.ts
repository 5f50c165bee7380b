/**
 * Group communication building blocks (RFC 7252 §8) without the network:
 * the GroupTransport filters (§8.1 no ACK/RST, §11.3 size and rate limits),
 * response suppression (§8.2.1), the leisure delay (§8.2), CLI option parsing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMulticastUri, serveMulticast } from '../../src/cli/commands/multicast.js';
import { parseServeArgs, startServe } from '../../src/cli/commands/serve.js';
import { multicastRequest } from '../../src/client/client.js';
import { type CoapMessage, encodeEmpty, encodeMessage } from '../../src/codec/message.js';
import { parseUri } from '../../src/codec/uri.js';
import { MessageType, ResponseCode } from '../../src/constants/codes.js';
import { UsageError } from '../../src/errors.js';
import {
  ipv6Scope,
  multicastHandler,
  usefulMulticastResponse,
  wildcardConflict,
} from '../../src/multicast/server.js';
import { GroupTransport } from '../../src/multicast/transport.js';
import type { Peer, Transport, TransportHandlers } from '../../src/transport/transport.js';
import { makePeer } from '../../src/transport/transport.js';
import type { UdpTransport } from '../../src/transport/udp.js';
import { VirtualClock } from '../../src/util/clock.js';

class FakeSocket {
  handlers: TransportHandlers | undefined;
  sent: Array<{ data: Uint8Array; peer: Peer }> = [];
  readonly maxMessageSize = 1152;
  constructor(
    private readonly family: 'IPv4' | 'IPv6' = 'IPv4',
    private readonly address = '224.0.1.187',
  ) {}
  attach(h: TransportHandlers) {
    this.handlers = h;
  }
  send(data: Uint8Array, peer: Peer) {
    this.sent.push({ data, peer });
  }
  localAddress() {
    return { address: this.address, port: 5683, family: this.family };
  }
  close() {
    return Promise.resolve();
  }
}

function group(opts: ConstructorParameters<typeof GroupTransport>[2] = {}) {
  const sock = new FakeSocket();
  const t = new GroupTransport(sock as unknown as UdpTransport, '224.0.1.187', opts);
  const up: Buffer[] = [];
  t.attach({ message: (d) => up.push(d) });
  const deliver = (b: Uint8Array) => sock.handlers!.message(Buffer.from(b), makePeer('10.0.0.9', 40000));
  return { sock, t, up, deliver };
}

const req = (type: MessageType, code = 1) =>
  encodeMessage({ type, code, messageId: 7, token: Buffer.from([1, 2]) });

test('inbound: only NON requests reach the endpoint (CON, ping, responses, ACK, RST dropped)', () => {
  const { t, up, deliver } = group();
  deliver(req(MessageType.CON));
  deliver(encodeEmpty(MessageType.CON, 8)); // ping
  deliver(req(MessageType.NON, ResponseCode.Content));
  deliver(req(MessageType.CON, ResponseCode.Content));
  deliver(encodeEmpty(MessageType.ACK, 9));
  deliver(encodeEmpty(MessageType.RST, 10));
  deliver(Buffer.from([0x80, 1, 0, 1])); // version 2
  deliver(Buffer.from([0x50])); // too short
  assert.equal(up.length, 0);
  assert.equal(t.stats.droppedConfirmable, 1);
  assert.equal(t.stats.droppedOther, 7);
  deliver(req(MessageType.NON));
  deliver(req(MessageType.NON, 5)); // FETCH
  assert.equal(up.length, 2);
  assert.equal(t.stats.requests, 2);
});

test('outbound: never an ACK, RST or CON; responses over maxResponseSize are not sent', () => {
  const { sock, t } = group({ maxResponseSize: 100 });
  const to = makePeer('10.0.0.9', 40000);
  t.send(encodeEmpty(MessageType.RST, 1), to);
  t.send(encodeEmpty(MessageType.ACK, 1), to);
  t.send(req(MessageType.CON, ResponseCode.Content), to);
  t.send(
    encodeMessage({ type: 1, code: 0x45, messageId: 2, token: Buffer.alloc(0), payload: Buffer.alloc(200) }),
    to,
  );
  assert.equal(sock.sent.length, 0);
  assert.equal(t.stats.droppedNonNon, 3);
  assert.equal(t.stats.droppedTooLarge, 1);
  t.send(req(MessageType.NON, ResponseCode.Content), to);
  assert.equal(sock.sent.length, 1);
  assert.equal(t.maxMessageSize, 100);
});

test('outbound: rate limit per destination address and in total (§11.3)', () => {
  const { sock, t } = group({ rateLimit: { perPeer: 3, total: 5 } });
  const res = req(MessageType.NON, ResponseCode.Content);
  for (let i = 0; i < 10; i++) t.send(res, makePeer('10.0.0.1', 1000 + i));
  assert.equal(sock.sent.length, 3, 'three per destination address, whatever the port');
  for (let i = 0; i < 10; i++) t.send(res, makePeer(`10.0.1.${i}`, 1000));
  assert.equal(sock.sent.length, 5, 'five in total');
  assert.equal(t.stats.droppedRateLimited, 15);
});

test('responses go out from replyVia when its family fits, else from the group socket', () => {
  const via4 = new FakeSocket('IPv4', '127.0.0.2');
  const { sock, t } = group({ replyVia: via4 as unknown as Transport });
  const res = req(MessageType.NON, ResponseCode.Content);
  t.send(res, makePeer('127.0.0.1', 4000));
  assert.equal(via4.sent.length, 1);
  assert.equal(sock.sent.length, 0);
  const dual = new FakeSocket('IPv6', '::');
  const g2 = group({ replyVia: dual as unknown as Transport });
  g2.t.send(res, makePeer('127.0.0.1', 4000));
  assert.equal(dual.sent[0]?.peer.address, '::ffff:127.0.0.1');
  const v6only = new FakeSocket('IPv6', '::1');
  const g3 = group({ replyVia: v6only as unknown as Transport });
  g3.t.send(res, makePeer('127.0.0.1', 4000));
  assert.equal(v6only.sent.length, 0);
  assert.equal(g3.sock.sent.length, 1);
});

test('usefulMulticastResponse: no errors, no empty 2.05 (§8.2.1)', () => {
  const p = Buffer.from('x');
  assert.equal(usefulMulticastResponse(null), false);
  assert.equal(usefulMulticastResponse({ code: ResponseCode.Content, payload: p }), true);
  assert.equal(usefulMulticastResponse({ code: ResponseCode.Content }), false);
  assert.equal(usefulMulticastResponse({ code: ResponseCode.Content, payload: Buffer.alloc(0) }), false);
  assert.equal(usefulMulticastResponse({ code: ResponseCode.Changed }), true);
  assert.equal(usefulMulticastResponse({ code: ResponseCode.Valid }), true);
  assert.equal(usefulMulticastResponse({ code: ResponseCode.NotFound, payload: p }), false);
  assert.equal(usefulMulticastResponse({ code: ResponseCode.BadRequest }), false);
  assert.equal(usefulMulticastResponse({ code: ResponseCode.InternalServerError }), false);
});

test('multicastHandler waits random * leisure before answering, and drops useless responses at once', async () => {
  const msg: CoapMessage = {
    type: MessageType.NON,
    code: 1,
    messageId: 1,
    token: Buffer.alloc(0),
    options: [],
    payload: Buffer.alloc(0),
  };
  const peer = makePeer('127.0.0.1', 1);
  // The leisure timer runs on the handler's clock: virtual here, so no real time has to pass.
  const clock = new VirtualClock();
  const ok = multicastHandler(
    () => ({ code: ResponseCode.Content, payload: Buffer.from('a') }),
    400,
    () => 0.5,
    clock,
  );
  let answered = false;
  const r = ok(msg, peer);
  void Promise.resolve(r).then(() => {
    answered = true;
  });
  await clock.advance(199);
  assert.equal(answered, false, 'not before 0.5 * 400 ms');
  await clock.advance(1);
  assert.equal(answered, true, 'at 0.5 * 400 ms');
  assert.equal((await r)?.code, ResponseCode.Content);
  const bad = multicastHandler(
    () => ({ code: ResponseCode.NotFound }),
    400,
    () => 0.99,
    clock,
  );
  // A useless response is dropped at once: no timer, the clock never moves.
  assert.equal(await bad(msg, peer), null);
  const asyncOk = multicastHandler(async () => ({ code: ResponseCode.Changed }), 0);
  assert.equal((await asyncOk(msg, peer))?.code, ResponseCode.Changed);
});

test('wildcardConflict and ipv6Scope', () => {
  assert.equal(wildcardConflict(undefined, 5683, 5683), true);
  assert.equal(wildcardConflict('::', 5683, 5683), true);
  assert.equal(wildcardConflict('0.0.0.0', 5683, 5683), true);
  assert.equal(wildcardConflict('127.0.0.1', 5683, 5683), false);
  assert.equal(wildcardConflict(undefined, 5690, 5683), false);
  assert.equal(ipv6Scope('ff02::fd'), 2);
  assert.equal(ipv6Scope('ff05::fd'), 5);
});

test('client: a unicast URI is refused; a group URI is recognized', async () => {
  await assert.rejects(multicastRequest('coap://127.0.0.1/x', { windowMs: 100 }), /not a multicast address/);
  await assert.rejects(multicastRequest('coaps://224.0.1.187/x', { windowMs: 100 }), /only defined for coap/);
  assert.equal(isMulticastUri(parseUri('coap://224.0.1.187/')), true);
  assert.equal(isMulticastUri(parseUri('coap://[ff02::fd%25eth0]/')), true);
  assert.equal(isMulticastUri(parseUri('coap://[ff05::fd]/')), true);
  assert.equal(isMulticastUri(parseUri('coap://127.0.0.1/')), false);
  assert.equal(isMulticastUri(parseUri('coap://[::1]/')), false);
  assert.equal(isMulticastUri(parseUri('coap://example.com/')), false);
});

test('serve --multicast options', async () => {
  const m = serveMulticast(undefined, [], 5683, 5000);
  assert.deepEqual(m.groups, ['224.0.1.187']);
  const lo = serveMulticast('lo', [], 5683, 5000);
  assert.equal(lo.interface, '127.0.0.1');
  assert.equal(lo.interface6, 'lo');
  assert.deepEqual(lo.groups, ['224.0.1.187', 'ff02::fd', 'ff05::fd']);
  assert.equal(serveMulticast('127.0.0.1', [], 5683, 0).interface6, undefined);
  assert.throws(() => serveMulticast(undefined, ['10.0.0.1'], 5683, 0), UsageError);
  assert.throws(() => serveMulticast(undefined, ['ff02::fd'], 5683, 0), /needs --multicast-interface/);
  assert.throws(() => serveMulticast('nosuchif0', [], 5683, 0), /no interface/);
  const parsed = parseServeArgs(['--multicast', '--leisure', '0.25', '--multicast-port', '5700'], {});
  assert.ok(parsed !== 'help');
  assert.equal(parsed.multicast?.leisureMs, 250);
  assert.equal(parsed.multicast?.port, 5700);
  assert.throws(() => parseServeArgs(['--leisure', '1'], {}), /needs --multicast/);
  assert.throws(() => parseServeArgs(['--multicast', '--leisure', '-1'], {}), UsageError);
  // A wildcard unicast socket on the group port would also get every multicast request.
  const opts = parseServeArgs(['--multicast', '--host', '::', '--port', '5683'], {});
  assert.ok(opts !== 'help');
  await assert.rejects(
    startServe(opts),
    (e: unknown) => e instanceof UsageError && /wildcard/.test(e.hint ?? ''),
  );
});
