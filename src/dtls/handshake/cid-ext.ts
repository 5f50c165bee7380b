/**
 * The `connection_id` hello extension (RFC 9146 §3, extension type 54 — the
 * RFC's code point, not the drafts' 53 or 254):
 *
 *   struct { opaque cid<0..2^8-1>; } ConnectionId;
 *
 * Each side sends the CID it wants to RECEIVE; an empty one means "I will send
 * CIDs but do not need them". The client offers it in its ClientHello; a
 * server that supports it answers in its ServerHello (only then is it used).
 * Both roles negotiate here, so the handshake code only calls
 * `offerCid` / `answerCid` / `acceptCidAnswer` — one place for the extension.
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { alertError } from '../errors.js';
import { checkCid, MAX_CID_LENGTH } from '../record/cid.js';
import type { Extension } from './messages.js';
import { Reader } from './reader.js';

/** Extension type of `connection_id` (RFC 9146 §3). */
export const CONNECTION_ID_EXTENSION = 54;

/** What was agreed: the CID to put on records we send and the one records we receive carry. */
export interface CidAgreement {
  /** The peer's CID: sent in our epoch-1 records (empty: plain records). */
  send: Buffer;
  /** Our CID: carried by the peer's epoch-1 records (empty: the peer sends plain records). */
  receive: Buffer;
}

export function encodeCidExtension(cid: Uint8Array): Extension {
  const c = checkCid(cid);
  return { type: CONNECTION_ID_EXTENSION, data: Buffer.concat([Buffer.from([c.length]), c]) };
}

/** The CID in an extension's data; decode_error when malformed. */
export function decodeCidExtension(data: Buffer): Buffer {
  const r = new Reader(data);
  const cid = r.vector(1, 'connection_id', 0, MAX_CID_LENGTH);
  r.end('connection_id');
  return Buffer.from(cid);
}

/** Client: the extension offering `ownCid` (the CID we want to receive). */
export function offerCid(ownCid: Uint8Array | undefined): Extension | undefined {
  return ownCid === undefined ? undefined : encodeCidExtension(ownCid);
}

/**
 * Client: the ServerHello's answer. Undefined when the server did not answer
 * (no CID in either direction); an answer to an offer we did not make is
 * unsupported_extension (RFC 5246 §7.4.1.4).
 */
export function acceptCidAnswer(
  answer: Extension | undefined,
  ownCid: Buffer | undefined,
): CidAgreement | undefined {
  if (answer === undefined) return undefined;
  if (ownCid === undefined) {
    throw alertError(
      110 /* unsupported_extension */,
      'the server sent connection_id, which we did not offer',
    );
  }
  return { send: decodeCidExtension(answer.data), receive: ownCid };
}

/** Server side of the negotiation: how our CIDs are made. */
export interface ServerCidPolicy {
  /** Bytes of the CIDs we hand out (0: we send CIDs but want none back). */
  length: number;
  /** Fixed leading bytes of every CID (a node id); the rest is random. */
  prefix?: Uint8Array | undefined;
}

/**
 * Server: the agreement and the ServerHello extension for a ClientHello's
 * offer, or undefined when the client made none. `taken` tells whether a
 * freshly drawn CID is already in use (it is drawn again, a few times).
 */
export function answerCid(
  offer: Extension | undefined,
  policy: ServerCidPolicy,
  taken: (cid: Buffer) => boolean,
): { agreement: CidAgreement; extension: Extension } | undefined {
  if (offer === undefined) return undefined;
  const peer = decodeCidExtension(offer.data);
  const own = makeCid(policy, taken);
  return { agreement: { send: peer, receive: own }, extension: encodeCidExtension(own) };
}

/** A fresh CID of the policy's length: its prefix, then random bytes not `taken`. */
export function makeCid(policy: ServerCidPolicy, taken: (cid: Buffer) => boolean): Buffer {
  const prefix = policy.prefix ?? Buffer.alloc(0);
  if (policy.length === 0) return Buffer.alloc(0);
  for (let i = 0; i < 8; i++) {
    const cid = Buffer.concat([prefix, randomBytes(policy.length - prefix.length)]);
    if (!taken(cid)) return cid;
  }
  throw alertError(
    80 /* internal_error */,
    'no free connection ID (the CID space of this length is exhausted)',
  );
}
