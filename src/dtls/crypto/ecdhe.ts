/**
 * Ephemeral ECDH for ECDHE_PSK (RFC 5489) on secp256r1 (uncompressed points,
 * RFC 4492 §5.4) and X25519 (RFC 8422 §5.11, raw 32-byte keys), via node:crypto.
 */
import { Buffer } from 'node:buffer';
import { createECDH, createPublicKey, diffieHellman, generateKeyPairSync } from 'node:crypto';
import { alertError, DtlsError } from '../errors.js';

export const GROUP_SECP256R1 = 23;
export const GROUP_X25519 = 29;
export const SUPPORTED_GROUPS: readonly number[] = [GROUP_X25519, GROUP_SECP256R1];

export interface EphemeralKey {
  group: number;
  publicKey: Buffer;
  /** Computes the shared secret; throws DtlsError (illegal_parameter) on a bad peer point. */
  computeSecret(peerPublic: Uint8Array): Buffer;
}

function illegal(message: string): DtlsError {
  return alertError(47, message);
}

export function generateEphemeral(group: number): EphemeralKey {
  if (group === GROUP_SECP256R1) {
    const ecdh = createECDH('prime256v1');
    ecdh.generateKeys();
    return {
      group,
      publicKey: ecdh.getPublicKey(),
      computeSecret(peer) {
        if (peer.length !== 65 || peer[0] !== 4) throw illegal('bad secp256r1 point');
        try {
          return ecdh.computeSecret(peer);
        } catch (cause) {
          throw illegal(`bad secp256r1 point: ${(cause as Error).message}`);
        }
      },
    };
  }
  if (group === GROUP_X25519) {
    const { publicKey, privateKey } = generateKeyPairSync('x25519');
    const x = publicKey.export({ format: 'jwk' }).x;
    return {
      group,
      publicKey: Buffer.from(x ?? '', 'base64url'),
      computeSecret(peer) {
        if (peer.length !== 32) throw illegal('bad X25519 public key length');
        let secret: Buffer;
        try {
          const pub = createPublicKey({
            key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(peer).toString('base64url') },
            format: 'jwk',
          });
          secret = diffieHellman({ privateKey, publicKey: pub });
        } catch (cause) {
          throw illegal(`bad X25519 public key: ${(cause as Error).message}`);
        }
        if (secret.every((b) => b === 0)) throw illegal('X25519 shared secret is all zero');
        return secret;
      },
    };
  }
  throw new DtlsError(`unsupported ECDHE group ${group}`);
}
