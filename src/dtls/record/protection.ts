/**
 * DTLS 1.2 record payload protection for the supported PSK suites.
 *
 * The per-record sequence number used in the MAC / AEAD additional data is the
 * DTLS epoch (2 bytes) followed by the 48-bit sequence number (RFC 6347 §4.1.2.1):
 *   additional_data = epoch(2) + seq(6) + type(1) + version(2, 0xFEFD) + length(2)
 * AEAD nonces:
 * - AES-GCM / AES-CCM / AES-CCM_8 (RFC 5288, RFC 6655): 4-byte implicit salt from
 *   the key block + 8-byte explicit nonce carried in the record; we send epoch+seq.
 * - ChaCha20-Poly1305 (RFC 7905 §2): 12-byte write IV XOR (zero-padded epoch+seq),
 *   no explicit nonce.
 * - AES-128-CBC + HMAC-SHA256 (RFC 5246 §6.2.3.2): MAC-then-encrypt, random explicit IV.
 * Also imported by the passive capture decoder.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { DtlsError } from '../../errors.js';
import type { KeyBlock } from '../crypto/keys.js';
import type { CipherSuiteInfo } from '../crypto/suites.js';

export const DTLS_1_2_VERSION = 0xfefd;

export interface RecordProtection {
  /** Returns the record fragment (explicit nonce/IV + ciphertext + tag/MAC). */
  encrypt(contentType: number, epoch: number, seq: bigint | number, plaintext: Uint8Array): Buffer;
  /** Returns the plaintext; throws DtlsError (alert bad_record_mac) on authentication failure. */
  decrypt(contentType: number, epoch: number, seq: bigint | number, fragment: Uint8Array): Buffer;
}

function badMac(): DtlsError {
  const e = new DtlsError('DTLS record authentication failed');
  e.alert = 20;
  return e;
}

/** epoch(2) + seq(6) as 8 bytes. */
export function epochSeqBytes(epoch: number, seq: bigint | number): Buffer {
  const b = Buffer.allocUnsafe(8);
  const s = typeof seq === 'bigint' ? Number(seq) : seq;
  b.writeUInt16BE(epoch & 0xffff, 0);
  b.writeUIntBE(s, 2, 6);
  return b;
}

function additionalData(contentType: number, epoch: number, seq: bigint | number, length: number): Buffer {
  const ad = Buffer.allocUnsafe(13);
  epochSeqBytes(epoch, seq).copy(ad, 0);
  ad[8] = contentType;
  ad.writeUInt16BE(DTLS_1_2_VERSION, 9);
  ad.writeUInt16BE(length, 11);
  return ad;
}

export function createRecordProtection(
  suite: CipherSuiteInfo,
  keys: KeyBlock,
  side: 'client' | 'server',
  direction: 'write' | 'read',
): RecordProtection {
  // The client writes with client keys and reads with server keys, and vice versa.
  const useClient = (side === 'client') === (direction === 'write');
  const key = useClient ? keys.clientWriteKey : keys.serverWriteKey;
  const iv = useClient ? keys.clientWriteIv : keys.serverWriteIv;
  const macKey = useClient ? keys.clientWriteMacKey : keys.serverWriteMacKey;
  switch (suite.cipher) {
    case 'aes-128-gcm':
      return gcmProtection(key, iv, suite.tagLength);
    case 'aes-128-ccm':
    case 'aes-128-ccm8':
      return ccmProtection(key, iv, suite.tagLength);
    case 'chacha20-poly1305':
      return chachaProtection(key, iv);
    case 'aes-128-cbc':
      return cbcProtection(key, macKey);
  }
}

function gcmProtection(key: Buffer, salt: Buffer, tagLength: number): RecordProtection {
  return {
    encrypt(type, epoch, seq, plaintext) {
      const explicit = epochSeqBytes(epoch, seq);
      const nonce = Buffer.concat([salt, explicit]);
      const c = createCipheriv('aes-128-gcm', key, nonce, { authTagLength: tagLength });
      c.setAAD(additionalData(type, epoch, seq, plaintext.length));
      const ct = c.update(plaintext);
      c.final();
      return Buffer.concat([explicit, ct, c.getAuthTag()]);
    },
    decrypt(type, epoch, seq, fragment) {
      if (fragment.length < 8 + tagLength) throw badMac();
      const nonce = Buffer.concat([salt, fragment.subarray(0, 8)]);
      const ctLen = fragment.length - 8 - tagLength;
      try {
        const d = createDecipheriv('aes-128-gcm', key, nonce, { authTagLength: tagLength });
        d.setAuthTag(fragment.subarray(8 + ctLen));
        d.setAAD(additionalData(type, epoch, seq, ctLen));
        const pt = d.update(fragment.subarray(8, 8 + ctLen));
        d.final();
        return pt;
      } catch {
        throw badMac();
      }
    },
  };
}

function ccmProtection(key: Buffer, salt: Buffer, tagLength: number): RecordProtection {
  return {
    encrypt(type, epoch, seq, plaintext) {
      const explicit = epochSeqBytes(epoch, seq);
      const nonce = Buffer.concat([salt, explicit]);
      const c = createCipheriv('aes-128-ccm', key, nonce, { authTagLength: tagLength });
      c.setAAD(additionalData(type, epoch, seq, plaintext.length), { plaintextLength: plaintext.length });
      const ct = c.update(plaintext);
      c.final();
      return Buffer.concat([explicit, ct, c.getAuthTag()]);
    },
    decrypt(type, epoch, seq, fragment) {
      if (fragment.length < 8 + tagLength) throw badMac();
      const nonce = Buffer.concat([salt, fragment.subarray(0, 8)]);
      const ctLen = fragment.length - 8 - tagLength;
      try {
        const d = createDecipheriv('aes-128-ccm', key, nonce, { authTagLength: tagLength });
        d.setAuthTag(fragment.subarray(8 + ctLen));
        d.setAAD(additionalData(type, epoch, seq, ctLen), { plaintextLength: ctLen });
        const pt = d.update(fragment.subarray(8, 8 + ctLen));
        d.final();
        return pt;
      } catch {
        throw badMac();
      }
    },
  };
}

function chachaProtection(key: Buffer, iv: Buffer): RecordProtection {
  const nonceFor = (epoch: number, seq: bigint | number): Buffer => {
    const n = Buffer.from(iv);
    const es = epochSeqBytes(epoch, seq);
    for (let i = 0; i < 8; i++) n[4 + i]! ^= es[i]!;
    return n;
  };
  return {
    encrypt(type, epoch, seq, plaintext) {
      const c = createCipheriv('chacha20-poly1305', key, nonceFor(epoch, seq), { authTagLength: 16 });
      c.setAAD(additionalData(type, epoch, seq, plaintext.length), { plaintextLength: plaintext.length });
      const ct = c.update(plaintext);
      c.final();
      return Buffer.concat([ct, c.getAuthTag()]);
    },
    decrypt(type, epoch, seq, fragment) {
      if (fragment.length < 16) throw badMac();
      const ctLen = fragment.length - 16;
      try {
        const d = createDecipheriv('chacha20-poly1305', key, nonceFor(epoch, seq), { authTagLength: 16 });
        d.setAuthTag(fragment.subarray(ctLen));
        d.setAAD(additionalData(type, epoch, seq, ctLen), { plaintextLength: ctLen });
        const pt = d.update(fragment.subarray(0, ctLen));
        d.final();
        return pt;
      } catch {
        throw badMac();
      }
    },
  };
}

function cbcProtection(key: Buffer, macKey: Buffer): RecordProtection {
  const MAC_LEN = 32;
  const mac = (type: number, epoch: number, seq: bigint | number, data: Uint8Array): Buffer =>
    createHmac('sha256', macKey)
      .update(additionalData(type, epoch, seq, data.length))
      .update(data)
      .digest();
  return {
    encrypt(type, epoch, seq, plaintext) {
      const tag = mac(type, epoch, seq, plaintext);
      const contentLen = plaintext.length + MAC_LEN;
      const padLen = 15 - (contentLen % 16); // total = content + pad + 1 is a multiple of 16
      const padded = Buffer.alloc(contentLen + padLen + 1, padLen);
      padded.set(plaintext, 0);
      tag.copy(padded, plaintext.length);
      const ivBytes = randomBytes(16);
      const c = createCipheriv('aes-128-cbc', key, ivBytes);
      c.setAutoPadding(false);
      return Buffer.concat([ivBytes, c.update(padded), c.final()]);
    },
    decrypt(type, epoch, seq, fragment) {
      // Minimum: IV + one block holding at least MAC + padding_length byte (2 blocks for SHA-256).
      if (fragment.length < 16 + 48 || fragment.length % 16 !== 0) throw badMac();
      let pt: Buffer;
      try {
        const d = createDecipheriv('aes-128-cbc', key, fragment.subarray(0, 16));
        d.setAutoPadding(false);
        pt = Buffer.concat([d.update(fragment.subarray(16)), d.final()]);
      } catch {
        throw badMac();
      }
      // Constant-ish padding check: always scan the maximal padding window and
      // always compute a MAC, so bad padding and bad MAC cost about the same.
      const padLen = pt[pt.length - 1]!;
      let good = padLen + 1 + MAC_LEN <= pt.length ? 1 : 0;
      const scan = Math.min(256, pt.length);
      for (let i = 1; i <= scan; i++) {
        const inPad = i <= padLen + 1 ? 1 : 0;
        const b = pt[pt.length - i]!;
        good &= inPad === 1 ? (b === padLen ? 1 : 0) : 1;
      }
      const dataLen = good ? pt.length - padLen - 1 - MAC_LEN : pt.length - MAC_LEN - 1;
      const data = pt.subarray(0, Math.max(0, dataLen));
      const expected = mac(type, epoch, seq, data);
      const got = pt.subarray(data.length, data.length + MAC_LEN);
      const macOk = got.length === MAC_LEN && timingSafeEqual(expected, got);
      if (!macOk || good !== 1) throw badMac();
      return Buffer.from(data);
    },
  };
}
