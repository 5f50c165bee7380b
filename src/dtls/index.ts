/**
 * DTLS 1.2 PSK building blocks (no CoAP imports). The transports live in
 * src/transport/dtls.ts; these exports serve passive decoders and tools.
 */
export { type EphemeralKey, GROUP_SECP256R1, GROUP_X25519, generateEphemeral } from './crypto/ecdhe.js';
export {
  finishedVerifyData,
  type KeyBlock,
  keyBlock,
  masterSecret,
  pskPremasterSecret,
} from './crypto/keys.js';
export { prf } from './crypto/prf.js';
export {
  CIPHER_SUITES,
  type CipherSuiteInfo,
  DEFAULT_CIPHER_SUITES,
  recordOverhead,
} from './crypto/suites.js';
export { DtlsAlertError, DtlsError, DtlsHandshakeTimeoutError } from './errors.js';
export {
  encodeFragment,
  fragmentMessage,
  type HandshakeFragment,
  type HandshakeMessage,
  HandshakeReassembler,
  handshakeFragmentAt,
  parseHandshakeFragments,
} from './handshake/fragment.js';
export { HandshakeTranscript, handshakeHeader } from './handshake/hash.js';
export * from './handshake/messages.js';
export { createKeyLogger, keyLogLine } from './keylog.js';
export * from './names.js';
export {
  createRecordProtection,
  DTLS_1_2_VERSION,
  epochSeqBytes,
  type RecordProtection,
} from './record/protection.js';
export { ContentType, type DtlsRecord, encodeRecord, parseDatagram, parseRecord } from './record/record.js';
export { ReplayWindow } from './record/replay.js';
