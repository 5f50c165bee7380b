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
 *
 * Per-record cost: besides the node:crypto cipher object (the floor), the hot
 * path allocates only what node:crypto returns plus the output record; key and
 * ciphertext views are FastBuffer views (no subarray), sequence numbers are
 * plain numbers written byte by byte, and the options objects are shared.
 */
import { Buffer } from 'node:buffer';
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { BufferView } from '../../util/view.js';
import type { KeyBlock } from '../crypto/keys.js';
import type { CipherSuiteInfo } from '../crypto/suites.js';
import { alertError, type DtlsError } from '../errors.js';
import { cidAdditionalData, writeCidHeader } from './cid.js';
import { RECORD_HEADER_LENGTH, writeEpochSeq } from './record.js';

export const DTLS_1_2_VERSION = 0xfefd;

export interface RecordProtection {
  /** Returns the record fragment (explicit nonce/IV + ciphertext + tag/MAC). */
  encrypt(contentType: number, epoch: number, seq: bigint | number, plaintext: Uint8Array): Buffer;
  /** Returns the plaintext; throws DtlsError (alert bad_record_mac) on authentication failure. */
  decrypt(contentType: number, epoch: number, seq: bigint | number, fragment: Uint8Array): Buffer;
  /** The DTLSInnerPlaintext of a tls12_cid record fragment (RFC 9146); throws like `decrypt`. */
  decryptCid(epoch: number, seq: number, cid: Uint8Array, fragment: Uint8Array): Buffer;
}

function badMac(): DtlsError {
  return alertError(20, 'DTLS record authentication failed');
}

/** epoch(2) + seq(6) as 8 bytes. */
export function epochSeqBytes(epoch: number, seq: bigint | number): Buffer {
  const b = Buffer.allocUnsafe(8);
  writeEpochSeq(b, 0, epoch, typeof seq === 'bigint' ? Number(seq) : seq);
  return b;
}

// Scratch space for nonces and additional data (only used synchronously).
const SCRATCH = Buffer.allocUnsafeSlow(64);
const AAD = SCRATCH.subarray(0, 13);
const NONCE = SCRATCH.subarray(16, 28);
const MAC_AAD = SCRATCH.subarray(32, 45);
// Shared option objects (node:crypto reads them synchronously; AAD_OPTS is filled per call).
const TAG_OPTS: Record<number, { authTagLength: number }> = {
  8: { authTagLength: 8 },
  16: { authTagLength: 16 },
};
const AAD_OPTS = { plaintextLength: 0 };
/** The real content type byte of a tls12_cid inner plaintext (encrypted right after the content). */
const TYPE_BYTE = Buffer.allocUnsafeSlow(1);

function fillAad(ad: Buffer, contentType: number, epoch: number, seq: number, length: number): Buffer {
  // additional_data = seq_num(8) + type(1) + version(2) + length(2)
  writeEpochSeq(ad, 0, epoch, seq);
  ad[8] = contentType;
  ad[9] = 0xfe;
  ad[10] = 0xfd;
  ad[11] = (length >>> 8) & 0xff;
  ad[12] = length & 0xff;
  return ad;
}

function writeHeader(
  out: Uint8Array,
  type: number,
  epoch: number,
  seq: number,
  length: number,
  version: number,
): void {
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
  /** node:crypto algorithm name (CCM_8 is aes-128-ccm with an 8-byte tag). */
  private readonly alg: 'aes-128-ccm' | 'aes-128-gcm' | 'chacha20-poly1305' | 'aes-128-cbc';
  /** Bytes of explicit nonce carried in each AEAD record (8 for AES-GCM/CCM, 0 for ChaCha20). */
  private readonly explicitLen: number;
  private readonly tagOpts: { authTagLength: number };
  /** The key block's ArrayBuffer and the key's offset in it (the `buffer` getter is not free). */
  private readonly kbBuffer: ArrayBufferLike;
  private readonly keyAt: number;

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
    this.alg = cipher === 'aes-128-ccm8' ? 'aes-128-ccm' : cipher;
    this.explicitLen = cipher === 'chacha20-poly1305' ? 0 : 8;
    this.tagOpts = TAG_OPTS[tagLength] ?? { authTagLength: tagLength };
    this.kbBuffer = kb.buffer;
    this.keyAt = kb.byteOffset + this.keyOff;
  }

  /** A view of the key (a FastBuffer: cheaper than subarray; no Buffer kept per session). */
  private key(): Buffer {
    return new BufferView(this.kbBuffer, this.keyAt, this.keyLen);
  }

  /**
   * Builds the AEAD nonce for (epoch, seq) in scratch space; for AES-GCM/CCM
   * the explicit part is `src[at..at+8]` when `src` is given (a received record).
   */
  private nonce(epoch: number, seq: number, src?: Uint8Array, at = 0): Buffer {
    const kb = this.kb;
    const iv = this.ivOff;
    if (this.explicitLen === 0) {
      // RFC 7905 §2: IV XOR (0000 | epoch | seq).
      for (let i = 0; i < 12; i++) NONCE[i] = kb[iv + i]!;
      writeEpochSeq(MAC_AAD, 0, epoch, seq);
      for (let i = 0; i < 8; i++) NONCE[4 + i]! ^= MAC_AAD[i]!;
      return NONCE;
    }
    NONCE[0] = kb[iv]!;
    NONCE[1] = kb[iv + 1]!;
    NONCE[2] = kb[iv + 2]!;
    NONCE[3] = kb[iv + 3]!;
    if (src === undefined) writeEpochSeq(NONCE, 4, epoch, seq);
    else for (let i = 0; i < 8; i++) NONCE[4 + i] = src[at + i]!;
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
    const ptLen = plaintext.length;
    const fragLen = this.explicitLen + ptLen + this.tagLength;
    const out = Buffer.allocUnsafe(RECORD_HEADER_LENGTH + fragLen);
    writeHeader(out, type, epoch, seq, fragLen, version);
    this.aeadSeal(
      out,
      RECORD_HEADER_LENGTH,
      epoch,
      seq,
      plaintext,
      -1,
      fillAad(AAD, type, epoch, seq, ptLen),
    );
    return out;
  }

  /**
   * Writes at `out[o..]` the explicit nonce, `plaintext` encrypted (followed by
   * the byte `innerType` when it is >= 0: a DTLSInnerPlaintext without padding)
   * and the tag; `ad` is the additional data.
   */
  private aeadSeal(
    out: Buffer,
    o: number,
    epoch: number,
    seq: number,
    plaintext: Uint8Array,
    innerType: number,
    ad: Buffer,
  ): void {
    const c = createCipheriv(this.alg as 'aes-128-ccm', this.key(), this.nonce(epoch, seq), this.tagOpts);
    if (this.explicitLen !== 0) {
      writeEpochSeq(out, o, epoch, seq); // explicit nonce
      o += 8;
    }
    const len = innerType < 0 ? plaintext.length : plaintext.length + 1;
    AAD_OPTS.plaintextLength = len;
    c.setAAD(ad, AAD_OPTS);
    const ct = c.update(plaintext);
    out.set(ct, o);
    if (innerType >= 0) {
      TYPE_BYTE[0] = innerType;
      out.set(c.update(TYPE_BYTE), o + ct.length);
    }
    c.final();
    out.set(c.getAuthTag(), o + len);
  }

  encrypt(contentType: number, epoch: number, seq: bigint | number, plaintext: Uint8Array): Buffer {
    const s = typeof seq === 'bigint' ? Number(seq) : seq;
    if (this.cipher === 'aes-128-cbc') return this.cbcEncrypt(contentType, epoch, s, plaintext);
    return this.encryptRecord(contentType, epoch, s, plaintext).subarray(RECORD_HEADER_LENGTH);
  }

  decrypt(contentType: number, epoch: number, seq: bigint | number, fragment: Uint8Array): Buffer {
    const s = typeof seq === 'bigint' ? Number(seq) : seq;
    const pt = this.open(contentType, epoch, s, fragment, 0, fragment.length);
    if (pt === undefined) throw badMac();
    return pt;
  }

  /**
   * The record fragment `data[off..off+len]` decrypted and authenticated, or
   * undefined if it does not authenticate (no error object: invalid records are
   * silently discarded, RFC 6347 §4.1.2.7). Reads the fragment in place.
   */
  open(
    contentType: number,
    epoch: number,
    seq: number,
    data: Uint8Array,
    off: number,
    len: number,
  ): Buffer | undefined {
    if (this.cipher === 'aes-128-cbc') return this.cbcOpen(contentType, epoch, seq, data, off, len);
    const ctLen = len - this.explicitLen - this.tagLength;
    if (ctLen < 0) return undefined;
    return this.aeadOpen(epoch, seq, data, off, ctLen, fillAad(AAD, contentType, epoch, seq, ctLen));
  }

  /**
   * The AEAD fragment `data[off..]` (explicit nonce, `ctLen` bytes of
   * ciphertext, tag) opened with the additional data `ad`, or undefined.
   */
  private aeadOpen(
    epoch: number,
    seq: number,
    data: Uint8Array,
    off: number,
    ctLen: number,
    ad: Buffer,
  ): Buffer | undefined {
    const explicitLen = this.explicitLen;
    const nonce = this.nonce(epoch, seq, explicitLen === 8 ? data : undefined, off);
    const ab = data.buffer;
    const at = data.byteOffset + off + explicitLen;
    try {
      const d = createDecipheriv(this.alg as 'aes-128-ccm', this.key(), nonce, this.tagOpts);
      d.setAuthTag(new BufferView(ab, at + ctLen, this.tagLength));
      AAD_OPTS.plaintextLength = ctLen;
      d.setAAD(ad, AAD_OPTS);
      const pt = d.update(new BufferView(ab, at, ctLen));
      d.final();
      return pt;
    } catch {
      return undefined;
    }
  }

  /** `cbcDecrypt` of the fragment `data[off..off+len]`, undefined instead of the error. */
  private cbcOpen(
    type: number,
    epoch: number,
    seq: number,
    data: Uint8Array,
    off: number,
    len: number,
    cid?: Uint8Array,
  ): Buffer | undefined {
    try {
      return this.cbcDecrypt(type, epoch, seq, new BufferView(data.buffer, data.byteOffset + off, len), cid);
    } catch {
      return undefined;
    }
  }

  // ---- tls12_cid records (RFC 9146; format and additional data in cid.ts)

  /**
   * A whole tls12_cid record (header with `cid`, protected DTLSInnerPlaintext
   * `plaintext | type`, no padding) for a peer that asked for a non-empty CID.
   */
  sealCid(type: number, epoch: number, seq: number, cid: Uint8Array, plaintext: Uint8Array): Buffer {
    const innerLen = plaintext.length + 1;
    const h = RECORD_HEADER_LENGTH + cid.length;
    if (this.cipher === 'aes-128-cbc') {
      const inner = Buffer.allocUnsafe(innerLen);
      inner.set(plaintext, 0);
      inner[plaintext.length] = type;
      const frag = this.cbcEncrypt(type, epoch, seq, inner, cid);
      const out = Buffer.allocUnsafe(h + frag.length);
      writeCidHeader(out, 0, epoch, seq, cid, frag.length);
      frag.copy(out, h);
      return out;
    }
    const fragLen = this.explicitLen + innerLen + this.tagLength;
    const out = Buffer.allocUnsafe(h + fragLen);
    writeCidHeader(out, 0, epoch, seq, cid, fragLen);
    const ad = cidAdditionalData(epoch, seq, cid, innerLen);
    if (this.alg === 'aes-128-ccm') {
      // CCM takes its input in one piece.
      const inner = Buffer.allocUnsafe(innerLen);
      inner.set(plaintext, 0);
      inner[plaintext.length] = type;
      this.aeadSeal(out, h, epoch, seq, inner, -1, ad);
    } else {
      this.aeadSeal(out, h, epoch, seq, plaintext, type, ad);
    }
    return out;
  }

  decryptCid(epoch: number, seq: number, cid: Uint8Array, fragment: Uint8Array): Buffer {
    const pt = this.openCid(epoch, seq, cid, fragment, 0, fragment.length);
    if (pt === undefined) throw badMac();
    return pt;
  }

  /**
   * The DTLSInnerPlaintext of the tls12_cid fragment `data[off..off+len]` that
   * carried `cid`, or undefined if it does not authenticate.
   */
  openCid(
    epoch: number,
    seq: number,
    cid: Uint8Array,
    data: Uint8Array,
    off: number,
    len: number,
  ): Buffer | undefined {
    if (this.cipher === 'aes-128-cbc') return this.cbcOpen(0, epoch, seq, data, off, len, cid);
    const ctLen = len - this.explicitLen - this.tagLength;
    if (ctLen < 1) return undefined; // at least the real content type
    return this.aeadOpen(epoch, seq, data, off, ctLen, cidAdditionalData(epoch, seq, cid, ctLen));
  }

  // ---- AES-128-CBC + HMAC-SHA256 (MAC-then-encrypt)

  /** The record MAC; with `cid` the RFC 9146 §5.1 input (the data is the inner plaintext). */
  private mac(type: number, epoch: number, seq: number, data: Uint8Array, cid?: Uint8Array): Buffer {
    const ad =
      cid === undefined
        ? fillAad(MAC_AAD, type, epoch, seq, data.length)
        : cidAdditionalData(epoch, seq, cid, data.length);
    return createHmac('sha256', this.kb.subarray(this.macOff, this.macOff + this.macLen))
      .update(ad)
      .update(data)
      .digest();
  }

  private cbcEncrypt(
    type: number,
    epoch: number,
    seq: number,
    plaintext: Uint8Array,
    cid?: Uint8Array,
  ): Buffer {
    const MAC_LEN = 32;
    const tag = this.mac(type, epoch, seq, plaintext, cid);
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

  private cbcDecrypt(
    type: number,
    epoch: number,
    seq: number,
    fragment: Uint8Array,
    cid?: Uint8Array,
  ): Buffer {
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
    const expected = this.mac(type, epoch, seq, data, cid);
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
