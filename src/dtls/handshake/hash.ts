/**
 * DTLS 1.2 handshake transcript (RFC 6347 §4.2.6, RFC 5246 §7.4.9).
 *
 * Every handshake message is hashed with its 12-byte DTLS handshake header as
 * if it had been sent unfragmented (fragment_offset = 0, fragment_length =
 * length). HelloVerifyRequest and the ClientHello that preceded it are NOT part
 * of the transcript: call `reset()` when a HelloVerifyRequest is seen.
 *
 * A passive decoder can feed reassembled messages with `add()` and ask for
 * `digest('sha256')` at the points it needs (session_hash after
 * ClientKeyExchange for RFC 7627, before each Finished for verify_data).
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';

/** The 12-byte DTLS handshake header of an unfragmented message. */
export function handshakeHeader(msgType: number, messageSeq: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(12);
  h[0] = msgType;
  h.writeUIntBE(length, 1, 3);
  h.writeUInt16BE(messageSeq, 4);
  h.writeUIntBE(0, 6, 3);
  h.writeUIntBE(length, 9, 3);
  return h;
}

export class HandshakeTranscript {
  private parts: Buffer[] = [];

  /** Appends one complete (reassembled) handshake message. */
  add(msgType: number, messageSeq: number, body: Uint8Array): void {
    this.parts.push(handshakeHeader(msgType, messageSeq, body.length), Buffer.from(body));
  }

  /** Forgets everything (after a HelloVerifyRequest, the first ClientHello is not hashed). */
  reset(): void {
    this.parts = [];
  }

  /** Hash of all messages added so far. */
  digest(hash: 'sha256' | 'sha384'): Buffer {
    const h = createHash(hash);
    for (const p of this.parts) h.update(p);
    return h.digest();
  }

  /** All messages added so far, concatenated (what CertificateVerify signs, RFC 5246 §7.4.8). */
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }

  /** Number of messages added. */
  get length(): number {
    return this.parts.length / 2;
  }
}
