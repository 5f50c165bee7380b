/**
 * Protocol detection by content, for UDP datagrams on ports other than the
 * well-known CoAP ports (5683, 5684) and the ones given with --port.
 * DTLS follows Wireshark's `dtls_udp` heuristic; tshark has no CoAP heuristic,
 * so the CoAP one is strict: it must decode as a sensible message.
 */
import { decodeMessage } from '../codec/message.js';
import { optionDefinition } from '../constants/options.js';

const DTLS_HEADER = 13;

/**
 * A chain of DTLS record headers (content type 20-24, version DTLS 1.0 0xFEFF or
 * 1.2 0xFEFD) whose lengths cover the datagram exactly. When the snap length cut the
 * frame (`truncated`), records consistent up to the cut are enough. Records with a
 * connection ID (content type 25) have a header length only the handshake tells: they
 * are recognised on a flow that is already DTLS, not by content.
 */
export function dtlsByContent(p: Uint8Array, truncated = false): boolean {
  let o = 0;
  while (o + DTLS_HEADER <= p.length) {
    const ct = p[o] as number;
    const version = ((p[o + 1] as number) << 8) | (p[o + 2] as number);
    if (ct < 20 || ct > 24 || (version !== 0xfeff && version !== 0xfefd)) return false;
    o += DTLS_HEADER + (((p[o + 11] as number) << 8) | (p[o + 12] as number));
    if (o === p.length) return true;
  }
  return truncated && o >= DTLS_HEADER;
}

/**
 * Looks like a CoAP message (RFC 7252 §3): version 1, token length 0-8, a code of
 * class 0 (Empty or a registered method, 0.01-0.07), 2, 4 or 5, options and payload
 * marker that decode, registered options within their length range. Combinations that are violations (a request in an ACK or RST,
 * a response in a RST, an Empty NON) are not enough to recognise a flow: they are
 * decoded (and flagged) on flows already known to be CoAP.
 */
export function coapByContent(p: Uint8Array): boolean {
  if (p.length < 4) return false;
  const b0 = p[0] as number;
  if (b0 >> 6 !== 1 || (b0 & 0x0f) > 8) return false;
  const type = (b0 >> 4) & 3;
  const code = p[1] as number;
  const cls = code >> 5;
  if (code === 0) return p.length === 4 && type !== 1;
  if (cls === 0) {
    if ((code & 0x1f) > 7 || type >= 2) return false;
  } else if (cls !== 2 && cls !== 4 && cls !== 5) return false;
  else if (type === 3) return false;
  try {
    for (const o of decodeMessage(p).options) {
      const def = optionDefinition(o.number);
      if (def && (o.value.length < def.minLength || o.value.length > def.maxLength)) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * UDP ports of other protocols whose datagrams can pass the CoAP test (random IDs
 * in the first bytes, QUIC short headers, text): as in Wireshark, the protocol the
 * port is registered to wins, so they are never taken for CoAP by content.
 * DNS (53, 5353) is decoded before this. `--port` still forces any port.
 */
export const NOT_COAP_BY_CONTENT: ReadonlySet<number> = new Set([
  53, 67, 68, 69, 123, 137, 138, 161, 162, 443, 500, 514, 1194, 1900, 3478, 4500, 5060, 5061, 5353, 5355,
  51820,
]);
