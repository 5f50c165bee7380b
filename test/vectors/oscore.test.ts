/**
 * RFC 8613 Appendix C, byte for byte: key derivation with and without Master
 * Salt and with ID Context (C.1-C.3, client and server, the `info` structures
 * and the nonces for Partial IV 0), the three protected requests (C.4-C.6)
 * and the two protected responses, without and with Partial IV (C.7, C.8),
 * protected and unprotected again by the other side.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeMessage, encodeMessage } from '../../src/codec/message.js';
import { derivationInfo, OscoreContext } from '../../src/oscore/context.js';
import { decodeOscoreOption, encodeOscoreOption } from '../../src/oscore/option.js';
import {
  oscoreAad,
  protectRequest,
  protectResponse,
  unprotectRequest,
  unprotectResponse,
} from '../../src/oscore/protect.js';

const h = (s: string) => Buffer.from(s, 'hex');
const SECRET = h('0102030405060708090a0b0c0d0e0f10');
const SALT = h('9e7ca92223786340');
const ID_CONTEXT = h('37cbf3210017a2d3');

interface KeyVector {
  name: string;
  salt?: Buffer;
  idContext?: Buffer;
  sender: string;
  recipient: string;
  infoSender: string;
  infoRecipient: string;
  infoIv: string;
  senderKey: string;
  recipientKey: string;
  commonIv: string;
  senderNonce: string;
  recipientNonce: string;
}

const KEYS: KeyVector[] = [
  {
    name: 'C.1.1 client, with Master Salt',
    salt: SALT,
    sender: '',
    recipient: '01',
    infoSender: '8540f60a634b657910',
    infoRecipient: '854101f60a634b657910',
    infoIv: '8540f60a6249560d',
    senderKey: 'f0910ed7295e6ad4b54fc793154302ff',
    recipientKey: 'ffb14e093c94c9cac9471648b4f98710',
    commonIv: '4622d4dd6d944168eefb54987c',
    senderNonce: '4622d4dd6d944168eefb54987c',
    recipientNonce: '4722d4dd6d944169eefb54987c',
  },
  {
    name: 'C.1.2 server, with Master Salt',
    salt: SALT,
    sender: '01',
    recipient: '',
    infoSender: '854101f60a634b657910',
    infoRecipient: '8540f60a634b657910',
    infoIv: '8540f60a6249560d',
    senderKey: 'ffb14e093c94c9cac9471648b4f98710',
    recipientKey: 'f0910ed7295e6ad4b54fc793154302ff',
    commonIv: '4622d4dd6d944168eefb54987c',
    senderNonce: '4722d4dd6d944169eefb54987c',
    recipientNonce: '4622d4dd6d944168eefb54987c',
  },
  {
    name: 'C.2.1 client, without Master Salt',
    sender: '00',
    recipient: '01',
    infoSender: '854100f60a634b657910',
    infoRecipient: '854101f60a634b657910',
    infoIv: '8540f60a6249560d',
    senderKey: '321b26943253c7ffb6003b0b64d74041',
    recipientKey: 'e57b5635815177cd679ab4bcec9d7dda',
    commonIv: 'be35ae297d2dace910c52e99f9',
    senderNonce: 'bf35ae297d2dace910c52e99f9',
    recipientNonce: 'bf35ae297d2dace810c52e99f9',
  },
  {
    name: 'C.2.2 server, without Master Salt',
    sender: '01',
    recipient: '00',
    infoSender: '854101f60a634b657910',
    infoRecipient: '854100f60a634b657910',
    infoIv: '8540f60a6249560d',
    senderKey: 'e57b5635815177cd679ab4bcec9d7dda',
    recipientKey: '321b26943253c7ffb6003b0b64d74041',
    commonIv: 'be35ae297d2dace910c52e99f9',
    senderNonce: 'bf35ae297d2dace810c52e99f9',
    recipientNonce: 'bf35ae297d2dace910c52e99f9',
  },
  {
    name: 'C.3.1 client, with ID Context',
    salt: SALT,
    idContext: ID_CONTEXT,
    sender: '',
    recipient: '01',
    infoSender: '85404837cbf3210017a2d30a634b657910',
    infoRecipient: '8541014837cbf3210017a2d30a634b657910',
    infoIv: '85404837cbf3210017a2d30a6249560d',
    senderKey: 'af2a1300a5e95788b356336eeecd2b92',
    recipientKey: 'e39a0c7c77b43f03b4b39ab9a268699f',
    commonIv: '2ca58fb85ff1b81c0b7181b85e',
    senderNonce: '2ca58fb85ff1b81c0b7181b85e',
    recipientNonce: '2da58fb85ff1b81d0b7181b85e',
  },
  {
    name: 'C.3.2 server, with ID Context',
    salt: SALT,
    idContext: ID_CONTEXT,
    sender: '01',
    recipient: '',
    infoSender: '8541014837cbf3210017a2d30a634b657910',
    infoRecipient: '85404837cbf3210017a2d30a634b657910',
    infoIv: '85404837cbf3210017a2d30a6249560d',
    senderKey: 'e39a0c7c77b43f03b4b39ab9a268699f',
    recipientKey: 'af2a1300a5e95788b356336eeecd2b92',
    commonIv: '2ca58fb85ff1b81c0b7181b85e',
    senderNonce: '2da58fb85ff1b81d0b7181b85e',
    recipientNonce: '2ca58fb85ff1b81c0b7181b85e',
  },
];

function context(v: KeyVector): OscoreContext {
  return new OscoreContext({
    masterSecret: SECRET,
    masterSalt: v.salt,
    idContext: v.idContext,
    senderId: h(v.sender),
    recipientId: h(v.recipient),
  });
}

describe('RFC 8613 C.1-C.3: key derivation', () => {
  for (const v of KEYS) {
    it(v.name, () => {
      assert.equal(derivationInfo(h(v.sender), v.idContext, 10, 'Key', 16).toString('hex'), v.infoSender);
      assert.equal(
        derivationInfo(h(v.recipient), v.idContext, 10, 'Key', 16).toString('hex'),
        v.infoRecipient,
      );
      assert.equal(derivationInfo(h(''), v.idContext, 10, 'IV', 13).toString('hex'), v.infoIv);
      const ctx = context(v);
      assert.equal(ctx.senderKey.toString('hex'), v.senderKey);
      assert.equal(ctx.recipientKey.toString('hex'), v.recipientKey);
      assert.equal(ctx.commonIv.toString('hex'), v.commonIv);
      assert.equal(ctx.nonce(ctx.senderId, h('00')).toString('hex'), v.senderNonce);
      assert.equal(ctx.nonce(ctx.recipientId, h('00')).toString('hex'), v.recipientNonce);
    });
  }
});

interface RequestVector {
  name: string;
  client: KeyVector;
  server: KeyVector;
  unprotected: string;
  aad: string;
  nonce: string;
  option: string;
  protected: string;
}

const REQUESTS: RequestVector[] = [
  {
    name: 'C.4 request, key material of C.1',
    client: KEYS[0]!,
    server: KEYS[1]!,
    unprotected: '44015d1f00003974396c6f63616c686f737483747631',
    aad: '8368456e63727970743040488501810a40411440',
    nonce: '4622d4dd6d944168eefb549868',
    option: '0914',
    protected: '44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e',
  },
  {
    name: 'C.5 request, key material of C.2',
    client: KEYS[2]!,
    server: KEYS[3]!,
    unprotected: '440171c30000b932396c6f63616c686f737483747631',
    aad: '8368456e63727970743040498501810a4100411440',
    nonce: 'bf35ae297d2dace910c52e99ed',
    option: '091400',
    protected: '440271c30000b932396c6f63616c686f737463091400ff4ed339a5a379b0b8bc731fffb0',
  },
  {
    name: 'C.6 request, key material of C.3 (kid context)',
    client: KEYS[4]!,
    server: KEYS[5]!,
    unprotected: '44012f8eef9bbf7a396c6f63616c686f737483747631',
    aad: '8368456e63727970743040488501810a40411440',
    nonce: '2ca58fb85ff1b81c0b7181b84a',
    option: '19140837cbf3210017a2d3',
    protected: '44022f8eef9bbf7a396c6f63616c686f73746b19140837cbf3210017a2d3ff72cd7273fd331ac45cffbe55c3',
  },
];

describe('RFC 8613 C.4-C.6: protected requests', () => {
  for (const v of REQUESTS) {
    it(v.name, () => {
      const client = context(v.client);
      const plain = decodeMessage(h(v.unprotected));
      const { message, binding } = protectRequest(client, plain, 20);
      assert.equal(binding.nonce.toString('hex'), v.nonce);
      assert.equal(oscoreAad(10, binding.kid, binding.partialIv).toString('hex'), v.aad);
      const wire = encodeMessage({ ...plain, ...message });
      assert.equal(wire.toString('hex'), v.protected);
      const opt = message.options.find((o) => o.number === 9)!.value;
      assert.equal(opt.toString('hex'), v.option);
      assert.equal(encodeOscoreOption(decodeOscoreOption(opt)).toString('hex'), v.option);
      // The server side gets the original request back.
      const server = context(v.server);
      const got = unprotectRequest(() => server, decodeMessage(wire));
      assert.equal(encodeMessage(got.message).toString('hex'), v.unprotected);
      assert.equal(got.binding.sequenceNumber, 20);
      assert.equal(got.fresh, true);
    });
  }
});

describe('RFC 8613 C.7-C.8: protected responses', () => {
  const unprotected = '64455d1f00003974ff48656c6c6f20576f726c6421';
  const cases = [
    {
      name: 'C.7 response without Partial IV (request nonce reused)',
      own: false,
      protected: '64445d1f0000397490ffdbaad1e9a7e7b2a813d3c31524378303cdafae119106',
    },
    {
      name: 'C.8 response with its own Partial IV (0)',
      own: true,
      protected: '64445d1f00003974920100ff4d4c13669384b67354b2b6175ff4b8658c666a6cf88e',
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const client = context(KEYS[0]!);
      const server = context(KEYS[1]!);
      const req = protectRequest(client, decodeMessage(h(REQUESTS[0]!.unprotected)), 20);
      const got = unprotectRequest(
        () => server,
        decodeMessage(encodeMessage({ ...decodeMessage(h(REQUESTS[0]!.unprotected)), ...req.message })),
      );
      const plain = decodeMessage(h(unprotected));
      const outer = protectResponse(got.binding, plain, c.own ? { ownPartialIv: true, seq: 0 } : {});
      const wire = encodeMessage({ ...plain, ...outer });
      assert.equal(wire.toString('hex'), c.protected);
      const back = unprotectResponse(req.binding, decodeMessage(wire));
      assert.equal(encodeMessage(back).toString('hex'), unprotected);
    });
  }
});
