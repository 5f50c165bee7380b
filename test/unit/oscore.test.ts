/**
 * OSCORE pieces one at a time: the option codec's refusals, the replay window
 * (§7.4), sequence numbers persisted ahead with a margin (§7.5.1), context
 * validation, the other AEAD algorithms, tampering, outer Class E options
 * discarded, and the Proxy-Uri split (§4.1.3.3).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type CoapMessage, decodeMessage, encodeMessage } from '../../src/codec/message.js';
import {
  InvalidArgumentError,
  OscoreContextNotFoundError,
  OscoreDecryptError,
  OscoreError,
  OscoreReplayError,
  OscoreSequenceError,
} from '../../src/errors.js';
import { MAX_SEQUENCE_NUMBER, OscoreContext, type SequenceStore } from '../../src/oscore/context.js';
import { decodeOscoreOption, encodeOscoreOption, partialIvOf } from '../../src/oscore/option.js';
import {
  type PlainMessage,
  protectRequest,
  protectResponse,
  unprotectRequest,
  unprotectResponse,
} from '../../src/oscore/protect.js';
import { FileSequenceStore } from '../../src/oscore/store.js';

const SECRET = Buffer.alloc(16, 1);
const pair = (extra: Record<string, unknown> = {}) => ({
  client: new OscoreContext({
    masterSecret: SECRET,
    senderId: Buffer.from('c'),
    recipientId: Buffer.from('s'),
    ...extra,
  }),
  server: new OscoreContext({
    masterSecret: SECRET,
    senderId: Buffer.from('s'),
    recipientId: Buffer.from('c'),
    ...extra,
  }),
});
const GET: PlainMessage = { code: 1, options: [{ number: 11, value: Buffer.from('x') }] };
const wire = (m: PlainMessage, mid = 1): CoapMessage =>
  decodeMessage(encodeMessage({ type: 0, messageId: mid, token: Buffer.from('t'), ...m }));

describe('OSCORE option (§6.1)', () => {
  it('round trips and keeps the all-zero value empty', () => {
    assert.equal(encodeOscoreOption({}).length, 0);
    assert.deepEqual(decodeOscoreOption(Buffer.alloc(0)), {});
    const v = { partialIv: Buffer.from([1, 2]), kid: Buffer.from('k'), kidContext: Buffer.from('ctx') };
    const back = decodeOscoreOption(encodeOscoreOption(v));
    assert.deepEqual(back, v);
  });
  for (const [name, hex] of [
    ['reserved bit 0x80', '80'],
    ['reserved bits 0x60', '2100'],
    ['Partial IV length 6', '06010203040506'],
    ['Partial IV length 7', '07'],
    ['all flags zero in one byte', '00'],
    ['Partial IV truncated', '03aa'],
    ['kid context length missing', '1101'],
    ['kid context truncated', '110105aa'],
    ['bytes after the last field without kid', '0101ff'],
  ] as const) {
    it(`refuses ${name}`, () =>
      assert.throws(() => decodeOscoreOption(Buffer.from(hex, 'hex')), OscoreError));
  }
  it('Partial IVs are shortest big-endian, 0 is one byte', () => {
    assert.equal(partialIvOf(0).toString('hex'), '00');
    assert.equal(partialIvOf(255).toString('hex'), 'ff');
    assert.equal(partialIvOf(256).toString('hex'), '0100');
    assert.equal(partialIvOf(MAX_SEQUENCE_NUMBER).toString('hex'), 'ffffffffff');
  });
});

describe('replay window (§7.4)', () => {
  it('accepts each number once, out of order within the window, and nothing older', () => {
    const { server } = pair({ replayWindow: 32 });
    for (const n of [5, 3, 4, 40, 20]) {
      assert.ok(server.replayOk(n), `${n} accepted`);
      server.replayAccept(n);
    }
    for (const n of [5, 3, 40, 20]) assert.equal(server.replayOk(n), false, `${n} seen before`);
    assert.equal(server.replayOk(9), true, 'within the window, not seen');
    assert.equal(server.replayOk(8), false, '32 below the highest is outside');
    server.replayAccept(1000);
    assert.equal(server.replayOk(999), true);
    assert.equal(server.replayOk(40), false);
  });
  it('a replayed request is refused with 4.01 before decryption; a failed one does not move the window', () => {
    const { client, server } = pair();
    const { message } = protectRequest(client, GET);
    const tampered = { ...message, payload: Buffer.from(message.payload!) };
    tampered.payload![0]! ^= 1;
    assert.throws(
      () => unprotectRequest(() => server, wire(tampered)),
      (e: unknown) => e instanceof OscoreDecryptError && e.responseCode === 0x80,
    );
    unprotectRequest(() => server, wire(message));
    assert.throws(
      () => unprotectRequest(() => server, wire(message, 2)),
      (e: unknown) =>
        e instanceof OscoreReplayError && e.responseCode === 0x81 && e.diagnostic === 'Replay detected',
    );
  });
  it('unknown kid: 4.01 Security context not found', () => {
    const { client } = pair();
    assert.throws(
      () => unprotectRequest(() => undefined, wire(protectRequest(client, GET).message)),
      (e: unknown) => e instanceof OscoreContextNotFoundError && e.responseCode === 0x81,
    );
  });
  it('a request without kid or with a malformed option: 4.02 Failed to decode COSE', () => {
    const { server } = pair();
    const bad = {
      code: 2,
      options: [{ number: 9, value: Buffer.from('80', 'hex') }],
      payload: Buffer.alloc(9),
    };
    assert.throws(
      () => unprotectRequest(() => server, wire(bad)),
      (e: unknown) => e instanceof OscoreError && e.responseCode === 0x82,
    );
    const noKid = {
      code: 2,
      options: [{ number: 9, value: Buffer.from('0101', 'hex') }],
      payload: Buffer.alloc(9),
    };
    assert.throws(
      () => unprotectRequest(() => server, wire(noKid)),
      (e: unknown) => e instanceof OscoreError && e.diagnostic === 'Failed to decode COSE',
    );
  });
});

describe('sequence numbers (§7.5.1)', () => {
  it('saves the bound once per margin, before any number at or above it is used', () => {
    const saved: number[] = [];
    const store: SequenceStore = { load: () => undefined, save: (n) => void saved.push(n) };
    const ctx = new OscoreContext({
      masterSecret: SECRET,
      senderId: Buffer.from('a'),
      recipientId: Buffer.from('b'),
      sequenceStore: store,
      sequenceMargin: 10,
    });
    const used = Array.from({ length: 25 }, () => ctx.nextSequenceNumber());
    assert.deepEqual(
      used,
      Array.from({ length: 25 }, (_, i) => i),
    );
    assert.deepEqual(saved, [10, 20, 30]);
  });
  it('a failed save fails the message: no number is used without being covered', () => {
    const store: SequenceStore = {
      load: () => 7,
      save: () => {
        throw new Error('disk full');
      },
    };
    const ctx = new OscoreContext({
      masterSecret: SECRET,
      senderId: Buffer.from('a'),
      recipientId: Buffer.from('b'),
      sequenceStore: store,
    });
    assert.throws(() => ctx.nextSequenceNumber(), OscoreSequenceError);
    assert.equal(ctx.senderSequenceNumber, 7);
  });
  it('the file store survives a restart and refuses a file it cannot trust', () => {
    const dir = mkdtempSync(join(tmpdir(), 'coapkit-seq-'));
    try {
      const file = join(dir, 'ctx.json.seq');
      const mk = () =>
        new OscoreContext({
          masterSecret: SECRET,
          senderId: Buffer.from('a'),
          recipientId: Buffer.from('b'),
          sequenceStore: new FileSequenceStore(file),
          sequenceMargin: 4,
        });
      const a = mk();
      for (let i = 0; i < 6; i++) a.nextSequenceNumber();
      const b = mk();
      assert.equal(b.senderSequenceNumber, 8, 'continues at the stored bound');
      assert.equal(b.replayKnown, false, 'replay state unknown after a restart');
      writeFileSync(file, 'garbage');
      assert.throws(mk, OscoreSequenceError);
      // Moved to a durable store: the file keeps the floor for the store, and refuses the file-only mode.
      const f = new FileSequenceStore(file);
      writeFileSync(file, '8\n');
      f.markMoved(8);
      assert.equal(readFileSync(file, 'utf8'), 'store 8\n');
      assert.equal(f.floor(), 8);
      assert.equal(f.moved(), true);
      assert.throws(
        mk,
        (e: Error) => e instanceof OscoreSequenceError && /kept in a durable store/.test(e.message),
      );
      for (const bad of ['store', 'store -1', 'store 8 9', 'stored 8']) {
        writeFileSync(file, bad);
        assert.throws(() => f.floor(), OscoreSequenceError, bad);
      }
      assert.deepEqual(readdirSync(dir).sort(), ['ctx.json.seq'], 'no temporary file left');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('an exhausted sequence number is an error, not a wrap', () => {
    const ctx = new OscoreContext({
      masterSecret: SECRET,
      senderId: Buffer.from('a'),
      recipientId: Buffer.from('b'),
      senderSequenceNumber: MAX_SEQUENCE_NUMBER,
    });
    assert.equal(ctx.nextSequenceNumber(), MAX_SEQUENCE_NUMBER);
    assert.throws(() => ctx.nextSequenceNumber(), OscoreSequenceError);
  });
});

describe('contexts and algorithms', () => {
  it('refuses impossible contexts', () => {
    const base = { masterSecret: SECRET, senderId: Buffer.from('a'), recipientId: Buffer.from('b') };
    assert.throws(() => new OscoreContext({ ...base, senderId: Buffer.alloc(8) }), InvalidArgumentError);
    assert.throws(() => new OscoreContext({ ...base, recipientId: Buffer.from('a') }), InvalidArgumentError);
    assert.throws(() => new OscoreContext({ ...base, masterSecret: Buffer.alloc(0) }), InvalidArgumentError);
    assert.throws(() => new OscoreContext({ ...base, algorithm: 'DES' }), InvalidArgumentError);
    assert.throws(
      () => new OscoreContext({ ...base, algorithm: 'A128GCM', senderId: Buffer.alloc(7) }),
      InvalidArgumentError,
    );
  });
  for (const algorithm of ['AES-CCM-16-64-128', 'A128GCM', 'ChaCha20/Poly1305']) {
    it(`${algorithm}: request and response round trip`, () => {
      const { client, server } = pair({ algorithm });
      const req = protectRequest(client, { ...GET, payload: Buffer.from('body') });
      const got = unprotectRequest(() => server, wire(req.message));
      assert.equal(got.message.payload.toString(), 'body');
      for (const own of [false, true]) {
        const res = protectResponse(
          got.binding,
          { code: 0x45, options: [], payload: Buffer.from('ok') },
          { ownPartialIv: own },
        );
        assert.equal(unprotectResponse(req.binding, wire(res)).payload.toString(), 'ok');
      }
    });
  }
});

describe('option classes (§4.1)', () => {
  it('outer Class E options are discarded; Class U stay outside', () => {
    const { client, server } = pair();
    const { message } = protectRequest(client, {
      code: 1,
      options: [
        { number: 3, value: Buffer.from('example.com') },
        { number: 11, value: Buffer.from('inner') },
      ],
    });
    assert.deepEqual(
      message.options.map((o) => o.number),
      [3, 9],
      'Uri-Host and OSCORE outside',
    );
    const injected = {
      ...message,
      options: [...message.options, { number: 11, value: Buffer.from('evil') }],
    };
    const got = unprotectRequest(() => server, wire(injected));
    const paths = got.message.options.filter((o) => o.number === 11).map((o) => o.value.toString());
    assert.deepEqual(paths, ['inner']);
    assert.ok(got.message.options.some((o) => o.number === 3));
  });
  it('Proxy-Uri is split: scheme, host and port outside, path and query inside (§4.1.3.3)', () => {
    const { client, server } = pair();
    const { message } = protectRequest(client, {
      code: 1,
      options: [{ number: 35, value: Buffer.from('coap://[::1]:5699/a/b?q=1') }],
    });
    assert.deepEqual(
      message.options.map((o) => o.number),
      [3, 7, 9, 39],
    );
    assert.equal(message.options.find((o) => o.number === 3)!.value.toString(), '::1');
    const got = unprotectRequest(() => server, wire(message));
    assert.deepEqual(
      got.message.options.filter((o) => o.number === 11 || o.number === 15).map((o) => o.value.toString()),
      ['a', 'b', 'q=1'],
    );
  });
  it('a response without OSCORE option is the server error, surfaced as an OscoreError', () => {
    const { client } = pair();
    const req = protectRequest(client, GET);
    const plain = wire({ code: 0x81, options: [], payload: Buffer.from('Security context not found') });
    assert.throws(
      () => unprotectResponse(req.binding, plain),
      (e: unknown) =>
        e instanceof OscoreError && e.responseCode === 0x81 && e.diagnostic === 'Security context not found',
    );
  });
});
