/**
 * Name tables for DTLS 1.2 record / handshake fields: the DTLS layer owns
 * them (src/dtls/names.ts); re-exported here for `coapkit/dissect`.
 */
export {
  ALERT_NAMES,
  CIPHER_SUITE_NAMES,
  CONTENT_TYPE_NAMES,
  cipherSuiteName,
  EXTENSION_NAMES,
  GROUP_NAMES,
  HANDSHAKE_TYPE_NAMES,
  versionName,
} from '../dtls/names.js';
