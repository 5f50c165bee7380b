/**
 * The hello extensions of certificate mode, in one place (RFC 8422, RFC 5246
 * §7.4.1.4.1, RFC 7250): what a client offers (signature_algorithms,
 * client/server_certificate_type), how a server decides whether an ECDHE_ECDSA
 * suite is possible and which certificate types to use, what it answers in
 * its ServerHello, and how the client reads that answer. client.ts and
 * server.ts only call these.
 */
import { Buffer } from 'node:buffer';
import {
  CertificateType,
  type CertOptions,
  type LocalCredential,
  SIG_ECDSA_SHA256,
} from '../crypto/certs.js';
import { GROUP_SECP256R1 } from '../crypto/ecdhe.js';
import { alertError } from '../errors.js';
import {
  type ClientHello,
  decodeCertificateTypeChoice,
  decodeCertificateTypeList,
  decodeSignatureAlgorithms,
  type Extension,
  ExtensionType,
  encodeCertificateTypeList,
  encodeSignatureAlgorithms,
  findExtension,
} from './messages.js';

/** ClientHello: signature_algorithms, and with a raw public key both certificate type lists. */
export function certClientHelloExtensions(certs: CertOptions): Extension[] {
  const exts: Extension[] = [
    { type: ExtensionType.signatureAlgorithms, data: encodeSignatureAlgorithms([SIG_ECDSA_SHA256]) },
  ];
  if (certs.rpk !== undefined) {
    // RFC 7250: we present and accept raw public keys only.
    const rpk = encodeCertificateTypeList([CertificateType.rawPublicKey]);
    exts.push({ type: ExtensionType.clientCertificateType, data: rpk });
    exts.push({ type: ExtensionType.serverCertificateType, data: rpk });
  }
  return exts;
}

/**
 * The certificate types a ServerHello chose (RFC 7250 §4.2: no extension means
 * X.509). Throws unsupported_extension / unsupported_certificate for a type we did not offer.
 */
export function certTypesFromServerHello(
  exts: readonly Extension[],
  rpk: boolean,
): { server: 'x509' | 'rpk'; client: 'x509' | 'rpk' } {
  const typeOf = (type: number): 'x509' | 'rpk' => {
    const e = findExtension(exts, type);
    if (e === undefined) return 'x509';
    if (!rpk) throw alertError(110, `server sent extension ${type} we did not offer`);
    const t = decodeCertificateTypeChoice(e.data);
    if (t !== CertificateType.rawPublicKey)
      throw alertError(43, `server chose certificate type ${t}, which we did not offer`);
    return 'rpk';
  };
  return {
    server: typeOf(ExtensionType.serverCertificateType),
    client: typeOf(ExtensionType.clientCertificateType),
  };
}

/** ServerHello: echo the chosen type for each certificate type extension the client sent (RFC 7250 §4.2). */
export function certServerHelloExtensions(mode: CertMode): Extension[] {
  const exts: Extension[] = [];
  if (mode.serverTypeExt)
    exts.push({
      type: ExtensionType.serverCertificateType,
      data: Buffer.from([certTypeCode(mode.own.type)]),
    });
  if (mode.clientType !== undefined && mode.clientTypeExt)
    exts.push({
      type: ExtensionType.clientCertificateType,
      data: Buffer.from([certTypeCode(mode.clientType)]),
    });
  return exts;
}

const certTypeCode = (t: 'x509' | 'rpk'): number =>
  t === 'rpk' ? CertificateType.rawPublicKey : CertificateType.x509;

export interface CertMode {
  own: LocalCredential;
  serverTypeExt: boolean;
  /** The type we ask the client's certificate in (undefined: no CertificateRequest). */
  clientType?: 'x509' | 'rpk' | undefined;
  clientTypeExt: boolean;
}

/**
 * Whether (and how) an ECDHE_ECDSA suite can be used with this ClientHello: our
 * credential of a type the client accepts (server_certificate_type, RFC 7250;
 * X.509 without it), ecdsa_secp256r1_sha256 in its signature_algorithms,
 * secp256r1 in its supported_groups, and the type we ask its certificate in.
 */
export function negotiateCertMode(
  ch: ClientHello,
  certs: CertOptions | undefined,
  clientGroups: readonly number[],
): CertMode | undefined {
  if (certs === undefined || (certs.x509 === undefined && certs.rpk === undefined)) return undefined;
  if (!clientGroups.includes(GROUP_SECP256R1)) return undefined;
  const sigExt = findExtension(ch.extensions, ExtensionType.signatureAlgorithms);
  // RFC 5246 §7.4.1.4.1: without the extension the client accepts only SHA-1 signatures.
  if (sigExt === undefined || !decodeSignatureAlgorithms(sigExt.data).includes(SIG_ECDSA_SHA256))
    return undefined;
  const st = findExtension(ch.extensions, ExtensionType.serverCertificateType);
  const serverTypes = st === undefined ? [CertificateType.x509] : decodeCertificateTypeList(st.data);
  let own: LocalCredential | undefined;
  for (const t of serverTypes) {
    own =
      t === CertificateType.rawPublicKey ? certs.rpk : t === CertificateType.x509 ? certs.x509 : undefined;
    if (own !== undefined) break;
  }
  if (own === undefined) return undefined;
  const mode: CertMode = { own, serverTypeExt: st !== undefined, clientTypeExt: false };
  const trust = certs.trust;
  const ct = findExtension(ch.extensions, ExtensionType.clientCertificateType);
  const clientTypes = ct === undefined ? [CertificateType.x509] : decodeCertificateTypeList(ct.data);
  mode.clientTypeExt = ct !== undefined;
  // Raw public keys from clients are asked for when we use one ourselves or have a trust list.
  const rpkOk = certs.rpk !== undefined || trust.rpkTrust !== undefined;
  // X.509 client certificates are asked for only when we can verify them (trust anchors).
  const x509Ok = trust.ca.length > 0;
  for (const t of clientTypes) {
    if (t === CertificateType.rawPublicKey && rpkOk) mode.clientType = 'rpk';
    else if (t === CertificateType.x509 && x509Ok) mode.clientType = 'x509';
    if (mode.clientType !== undefined) break;
  }
  if (mode.clientType === undefined && trust.verifyPeer)
    throw alertError(43, 'no client certificate type we can verify');
  // verifyPeer false: a client certificate is optional (asked for when we could verify one;
  // an empty answer is fine, one that is sent must be valid).
  return mode;
}
