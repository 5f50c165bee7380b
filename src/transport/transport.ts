/**
 * The one interface every transport implements (UDP, DTLS, in-memory, later
 * TCP). The message layer above it only sees datagrams and peers, so DTLS
 * slots in under the same message layer without changing it.
 *
 * Hot path rules: `send` is synchronous fire-and-forget (errors surface via
 * `onError`), and received datagrams are delivered as Buffers that the
 * receiver may keep (transports must not reuse them).
 */

export type AddressFamily = 'IPv4' | 'IPv6';

/**
 * How a peer proved who it is, in one shape for every security mode
 * (RFC 7252 §9: PreSharedKey, RawPublicKey, Certificate).
 */
export interface PeerAuth {
  /** `psk`: pre-shared key; `x509`: certificate chain; `rpk`: raw public key (RFC 7250). */
  readonly mode: 'psk' | 'x509' | 'rpk';
  /**
   * The name access rules match: the PSK identity, the certificate subject's
   * CN, or the raw public key's SHA-256 fingerprint (lowercase hex).
   */
  readonly identity: string;
  /** Certificate mode: the full subject distinguished name. */
  readonly subject?: string;
  /** Certificate mode: the subjectAltName entries (e.g. `DNS:dev1.example`). */
  readonly san?: readonly string[];
  /** Certificate and raw-public-key modes: SHA-256 fingerprint of the peer's key/certificate (hex). */
  readonly fingerprint?: string;
}

/** A remote endpoint as seen by a transport. */
export interface Peer {
  /** The peer's address ("127.0.0.1", "::1"; an in-memory transport names its own). */
  readonly address: string;
  /** The peer's port. */
  readonly port: number;
  /** The address family ("IPv4", "IPv6"). */
  readonly family: AddressFamily;
  /**
   * For secured transports (DTLS PSK): the authenticated identity of the peer.
   * Undefined for plain UDP.
   */
  readonly identity?: string;
  /** For secured transports: how the peer authenticated (mode and identity). */
  readonly auth?: PeerAuth;
  /**
   * A stable string key for this peer endpoint (`address` + `%` + `port`
   * for IP transports). Request/response matching uses it (§5.3.2).
   */
  readonly key: string;
}

export interface TransportHandlers {
  /** A datagram (one CoAP message) arrived from `peer`. */
  message(data: Buffer, peer: Peer): void;
  /**
   * Something failed for one peer (ICMP unreachable, DTLS handshake failure,
   * session closed by an alert...). Pending exchanges with that peer should fail.
   */
  peerError?(peer: Peer, error: Error): void;
  /** A fatal transport error (socket closed unexpectedly). */
  error?(error: Error): void;
}

export interface Transport {
  /** URI scheme this transport serves: 'coap' (UDP), 'coaps' (DTLS), ... */
  readonly scheme: string;
  /**
   * Reliable transports (TCP, WebSockets) skip the message layer's
   * retransmission and deduplication. UDP and DTLS are not reliable.
   */
  readonly reliable: boolean;
  /** Largest CoAP message this transport carries in one datagram, in bytes. */
  readonly maxMessageSize: number;
  /**
   * RFC 8323 transports: BERT with `peer` (undefined: this side does not announce
   * it; 0: the peer does not; else the peer's Max-Message-Size). Absent on UDP/DTLS.
   */
  bertMessageSize?(peer: Peer): number | undefined;
  /**
   * Reliable transports: resolves true once `peer`'s CSM (RFC 8323 §5.3) has arrived,
   * opening the connection if needed; false when the connection ends first.
   */
  awaitCsm?(peer: Peer): Promise<boolean>;
  /** Starts delivering events to `handlers`. Called once by the endpoint. */
  attach(handlers: TransportHandlers): void;
  /**
   * Sends one datagram to `peer`. Never throws for network errors: they are
   * reported through `peerError`.
   *
   * The `reportErrors` contract (default true): with `false` the caller
   * declares that a failure of *this* datagram would change nothing for it,
   * so a transport may send without per-datagram completion tracking and stay
   * silent if this datagram is lost (UDP: no send callback, which costs a
   * process.nextTick per datagram; DTLS:
   * the record goes out the same way). It never suppresses failures that are
   * not about one datagram (a DTLS handshake failing, a session closed by an
   * alert, a closed transport): those are always reported. A transport that
   * has no per-datagram cost may ignore the flag. The message layer passes
   * `false` for stateless answers (RST, replayed replies) and when the
   * exchange layer has nothing that a peer error would fail (no pending
   * client exchange or ping), `true` otherwise.
   */
  send(data: Uint8Array, peer: Peer, reportErrors?: boolean): void;
  /** The local address the transport is bound to. */
  localAddress(): { address: string; port: number; family: AddressFamily };
  /** Closes the transport (for DTLS: sends close_notify to every session first). */
  close(): Promise<void>;
}

export function peerKey(address: string, port: number): string {
  return `${address}%${port}`;
}

export function makePeer(address: string, port: number, identity?: string | PeerAuth): Peer {
  const family: AddressFamily = address.includes(':') ? 'IPv6' : 'IPv4';
  if (identity === undefined) return { address, port, family, key: peerKey(address, port) };
  const auth: PeerAuth = typeof identity === 'string' ? { mode: 'psk', identity } : identity;
  return { address, port, family, identity: auth.identity, auth, key: peerKey(address, port) };
}
