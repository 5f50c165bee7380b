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
 *
 * Memory: a protection object holds no key Buffers of its own, only offsets into
 * the session's key block (one unpooled Buffer shared by both directions), and
 * has no closures; the nonce and additional data are built in module-level
 * scratch space (node:crypto copies them synchronously), so an idle session
 * pays for two small objects plus the key bytes.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { DtlsError } from '../../errors.js';
import type { KeyBlock } from '../crypto/keys.js';
import type { CipherSuiteInfo } from '../crypto/suites.js';
import { RECORD_HEADER_LENGTH } from './record.js';

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
  writeEpochSeq(b, 0, epoch, typeof seq === 'bigint' ? Number(seq) : seq);
  return b;
}

function writeEpochSeq(b: Buffer, o: number, epoch: number, seq: number): void {
  b[o] = (epoch >>> 8) & 0xff;
  b[o + 1] = epoch & 0xff;
  b.writeUIntBE(seq, o + 2, 6);
}

// Scratch space for nonces and additional data (only used synchronously).
const SCRATCH = Buffer.allocUnsafeSlow(64);
const AAD = SCRATCH.subarray(0, 13);
const NONCE = SCRATCH.subarray(16, 28);
const MAC_AAD = SCRATCH.subarray(32, 45);

function fillAad(ad: Buffer, contentType: number, epoch: number, seq: number, length: number): Buffer {
  writeEpochSeq(ad, 0, epoch, seq);
  ad[8] = contentType;
  ad[9] = 0xfe;
  ad[10] = 0xfd;
  ad[11] = (length >>> 8) & 0xff;
  ad[12] = length & 0xff;
  return ad;
}

function writeHeader(out: Buffer, type: number, epoch: number, seq: number, length: number, version: number) {
  out[0] = type;
  out[1] = (version >>> 8) & 0xff;
  out[2] = version & 0xff;
  writeEpochSeq(out, 3, epoch, seq);
  out[11] = (length >>> 8) & 0xff;
  out[12] = length & 0xff;
}

type CipherKind = CipherSuiteInfo['cipher'];

/**
 * Record protection for one direction of one session. `kb` is the raw key block
 * (RFC 5246 §6.3 order: client MAC key, server MAC key, client key, server key,
 * client IV, server IV); the object reads its key, IV and MAC key at offsets.
 */
export class SessionRecordProtection implements RecordProtection {
  private readonly keyOff: number;
  private readonly ivOff: number;
  private readonly macOff: number;

  constructor(
    private readonly kb: Buffer,
    private readonly cipher: CipherKind,
    private readonly keyLen: number,
    ivLen: number,
    private readonly macLen: number,
    private readonly tagLength: number,
    useClientKeys: boolean,
  ) {
    const c = useClientKeys ? 0 : 1;
    this.macOff = c * macLen;
    this.keyOff = 2 * macLen + c * keyLen;
    this.ivOff = 2 * macLen + 2 * keyLen + c * ivLen;
  }

  private key(): Buffer {
    return this.kb.subarray(this.keyOff, this.keyOff + this.keyLen);
  }

  /** Length of the protected fragment for `plaintextLength` bytes (AEAD suites). */
  private aeadFragmentLength(plaintextLength: number): number {
    return (this.cipher === 'chacha20-poly1305' ? 0 : 8) + plaintextLength + this.tagLength;
  }

  /** Builds the AEAD nonce for (epoch, seq) in scratch space. */
  private nonce(epoch: number, seq: number, explicit?: Uint8Array): Buffer {
    const kb = this.kb;
    if (this.cipher === 'chacha20-poly1305') {
      // RFC 7905 §2: IV XOR (0000 | epoch | seq).
      kb.copy(NONCE, 0, this.ivOff, this.ivOff + 12);
      writeEpochSeq(MAC_AAD, 0, epoch, seq);
      for (let i = 0; i < 8; i++) NONCE[4 + i]! ^= MAC_AAD[i]!;
      return NONCE;
    }
    kb.copy(NONCE, 0, this.ivOff, this.ivOff + 4);
    if (explicit === undefined) writeEpochSeq(NONCE, 4, epoch, seq);
    else NONCE.set(explicit, 4);
    return NONCE;
  }

  /**
   * Returns a whole record: 13-byte header (type, version, epoch, seq, length) + protected fragment.
   * Saves the copy of the fragment into a separate record buffer.
   */
  encryptRecord(type: number, epoch: number, seq: number, plaintext: Uint8Array, version = 0xfefd): Buffer {
    if (this.cipher === 'aes-128-cbc') {
      const frag = this.cbcEncrypt(type, epoch, seq, plaintext);
      const out = Buffer.allocUnsafe(RECORD_HEADER_LENGTH + frag.length);
      writeHeader(out, type, epoch, seq, frag.length, version);
      frag.copy(out, RECORD_HEADER_LENGTH);
      return out;
    }
    const fragLen = this.aeadFragmentLength(plaintext.length);
    const out = Buffer.allocUnsafe(RECORD_HEADER_LENGTH + fragLen);
    writeHeader(out, type, epoch, seq, fragLen, version);
    let o = RECORD_HEADER_LENGTH;
    const alg = this.cipher === 'aes-128-ccm8' ? 'aes-128-ccm' : this.cipher;
    const c = createCipheriv(alg as 'aes-128-ccm', this.key(), this.nonce(epoch, seq), {
      authTagLength: this.tagLength,
    });
    if (alg !== 'chacha20-poly1305') {
      writeEpochSeq(out, o, epoch, seq); // explicit nonce
      o += 8;
    }
    const aad = fillAad(AAD, type, epoch, seq, plaintext.length);
    c.setAAD(aad, { plaintextLength: plaintext.length });
    const ct = c.update(plaintext);
    c.final();
    ct.copy(out, o);
    c.getAuthTag().copy(out, o + ct.length);
    return out;
  }

  encrypt(contentType: number, epoch: number, seq: bigint | number, plaintext: Uint8Array): Buffer {
    const s = typeof seq === 'bigint' ? Number(seq) : seq;
    if (this.cipher === 'aes-128-cbc') return this.cbcEncrypt(contentType, epoch, s, plaintext);
    return this.encryptRecord(contentType, epoch, s, plaintext).subarray(RECORD_HEADER_LENGTH);
  }

  decrypt(contentType: number, epoch: number, seq: bigint | number, fragment: Uint8Array): Buffer {
    const s = typeof seq === 'bigint' ? Number(seq) : seq;
    if (this.cipher === 'aes-128-cbc') return this.cbcDecrypt(contentType, epoch, s, fragment);
    const tagLength = this.tagLength;
    const explicitLen = this.cipher === 'chacha20-poly1305' ? 0 : 8;
    if (fragment.length < explicitLen + tagLength) throw badMac();
    const ctLen = fragment.length - explicitLen - tagLength;
    const alg = this.cipher === 'aes-128-ccm8' ? 'aes-128-ccm' : this.cipher;
    const nonce = this.nonce(epoch, s, explicitLen === 8 ? fragment.subarray(0, 8) : undefined);
    try {
      const d = createDecipheriv(alg as 'aes-128-ccm', this.key(), nonce, { authTagLength: tagLength });
      d.setAuthTag(fragment.subarray(explicitLen + ctLen));
      const aad = fillAad(AAD, contentType, epoch, s, ctLen);
      d.setAAD(aad, { plaintextLength: ctLen });
      const pt = d.update(fragment.subarray(explicitLen, explicitLen + ctLen));
      d.final();
      return pt;
    } catch {
      throw badMac();
    }
  }

  // ---- AES-128-CBC + HMAC-SHA256 (MAC-then-encrypt)

  private mac(type: number, epoch: number, seq: number, data: Uint8Array): Buffer {
    return createHmac('sha256', this.kb.subarray(this.macOff, this.macOff + this.macLen))
      .update(fillAad(MAC_AAD, type, epoch, seq, data.length))
      .update(data)
      .digest();
  }

  private cbcEncrypt(type: number, epoch: number, seq: number, plaintext: Uint8Array): Buffer {
    const MAC_LEN = 32;
    const tag = this.mac(type, epoch, seq, plaintext);
    const contentLen = plaintext.length + MAC_LEN;
    const padLen = 15 - (contentLen % 16); // total = content + pad + 1 is a multiple of 16
    const padded = Buffer.alloc(contentLen + padLen + 1, padLen);
    padded.set(plaintext, 0);
    tag.copy(padded, plaintext.length);
    const ivBytes = randomBytes(16);
    const c = createCipheriv('aes-128-cbc', this.key(), ivBytes);
    c.setAutoPadding(false);
    return Buffer.concat([ivBytes, c.update(padded), c.final()]);
  }

  private cbcDecrypt(type: number, epoch: number, seq: number, fragment: Uint8Array): Buffer {
    const MAC_LEN = 32;
    // Minimum: IV + one block holding at least MAC + padding_length byte (2 blocks for SHA-256).
    if (fragment.length < 16 + 48 || fragment.length % 16 !== 0) throw badMac();
    let pt: Buffer;
    try {
      const d = createDecipheriv('aes-128-cbc', this.key(), fragment.subarray(0, 16));
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
    const expected = this.mac(type, epoch, seq, data);
    const got = pt.subarray(data.length, data.length + MAC_LEN);
    const macOk = got.length === MAC_LEN && timingSafeEqual(expected, got);
    if (!macOk || good !== 1) throw badMac();
    return Buffer.from(data);
  }
}

/** Record protection from a raw key block (RFC 5246 §6.3 layout, see `keyBlockBytes`). */
export function protectionFromKeyBlock(
  suite: CipherSuiteInfo,
  kb: Buffer,
  side: 'client' | 'server',
  direction: 'write' | 'read',
): SessionRecordProtection {
  // The client writes with client keys and reads with server keys, and vice versa.
  const useClient = (side === 'client') === (direction === 'write');
  return new SessionRecordProtection(
    kb,
    suite.cipher,
    suite.encKeyLength,
    suite.fixedIvLength,
    suite.macKeyLength,
    suite.tagLength,
    useClient,
  );
}

export function createRecordProtection(
  suite: CipherSuiteInfo,
  keys: KeyBlock,
  side: 'client' | 'server',
  direction: 'write' | 'read',
): RecordProtection {
  const kb = Buffer.concat([
    keys.clientWriteMacKey,
    keys.serverWriteMacKey,
    keys.clientWriteKey,
    keys.serverWriteKey,
    keys.clientWriteIv,
    keys.serverWriteIv,
  ]);
  return protectionFromKeyBlock(suite, kb, side, direction);
}
