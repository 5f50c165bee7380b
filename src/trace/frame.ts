/**
 * RFC 8323 frames for the tracer (coap+tcp, coaps+tcp, coap+ws, coaps+ws): what is
 * on the wire, without the Type and Message ID of RFC 7252 datagrams. A frame is
 * Len/TKL, Extended Length (TCP, TLS), Code, Token, Options, payload (§3.2); over
 * WebSockets Len is 0 and the WebSocket frame has the length (§4.2). Signaling messages
 * (§5: 7.01 CSM, 7.02 Ping, 7.03 Pong, 7.04 Release, 7.05 Abort) are named with their
 * options. Pure and never throws on malformed input.
 */
import type { Buffer } from 'node:buffer';
import { decodeMessage } from '../codec/message.js';
import { frameToDatagram, readUint, SIGNAL_NAMES, SIGNAL_OPTIONS } from '../codec/reliable.js';
import { formatCode } from '../constants/codes.js';
import { type CoapSizes, type CoapSummary, type CoapUndecodable, hexOf, summarizeCoap } from './describe.js';

/**
 * A decoded frame ready for printing: a CoAP summary without the Type and Message ID
 * the wire does not carry. `codeText` is "7.01 CSM" for a signaling message, whose
 * options are named as that code defines them; in `sizes`, `header` is Len/TKL,
 * Extended Length and Code.
 */
export interface FrameSummary extends Omit<CoapSummary, 'type' | 'messageId'> {
  /** True for a signaling message (class 7). */
  signal: boolean;
  /** Bytes of Extended Length (0, 1, 2 or 4; always 0 over WebSockets). */
  extendedLength: number;
  /** The Len the header carries: options, payload marker and payload. */
  length: number;
  /** The Message ID 0 datagram the message layer sees (messages only). */
  datagram: Buffer | undefined;
}

/** A frame that does not decode: the same shape as an undecodable datagram. */
export type FrameUndecodable = CoapUndecodable;

/** "7.01 CSM" for a signaling code (RFC 8323 §5), undefined for any other code. */
export function signalingName(code: number): string | undefined {
  if (code >> 5 !== 7) return undefined;
  const name = SIGNAL_NAMES[code];
  return name === undefined ? formatCode(code) : `${formatCode(code)} ${name}`;
}

/** True for the WebSocket schemes (Len 0 framing). */
export function isWebSocketScheme(scheme: string): boolean {
  return scheme.endsWith('+ws');
}

/** Decodes one frame of `scheme` for the trace (never throws). */
export function summarizeFrame(frame: Uint8Array, scheme: string): FrameSummary | FrameUndecodable {
  const bad = (error: string): FrameUndecodable => ({
    ok: false,
    error,
    length: frame.length,
    hex: hexOf(frame.subarray(0, 32)),
  });
  const websocket = isWebSocketScheme(scheme);
  let datagram: Buffer;
  try {
    datagram = frameToDatagram(frame, websocket);
  } catch (err) {
    return bad(err instanceof Error ? err.message : String(err));
  }
  // The datagram is the frame with its header (Len/TKL, Extended Length, Code) replaced by 4 bytes.
  const header = frame.length - datagram.length + 4;
  const s = summarizeCoap(datagram);
  if (!s.ok) return bad(s.error);
  const sizes: CoapSizes = { ...s.sizes, header, total: frame.length };
  const extendedLength = header - 2;
  const length = sizes.options + sizes.marker + sizes.payload;
  const codeText = signalingName(s.code);
  if (codeText === undefined) {
    const { type: _type, messageId: _messageId, sizes: _sizes, ...rest } = s;
    return { ...rest, signal: false, sizes, extendedLength, length, datagram };
  }
  const names = SIGNAL_OPTIONS[s.code] ?? {};
  const msg = decodeMessage(datagram);
  const options = msg.options.map((o) => {
    const known = names[o.number];
    if (known === undefined)
      return { number: o.number, name: `option ${o.number}`, value: `0x${hexOf(o.value)}` };
    const value =
      known.format === 'uint'
        ? String(readUint(o.value))
        : known.format === 'string'
          ? JSON.stringify(o.value.toString('utf8'))
          : '';
    return { number: o.number, name: known.name, value };
  });
  const text = msg.payload.toString('utf8').replace(/[\u0000-\u001f\u007f]/g, '.');
  return {
    ok: true,
    signal: true,
    code: s.code,
    codeText,
    token: s.token,
    options,
    contentFormat: undefined,
    payloadLength: msg.payload.length,
    payloadPreview: text.length > 72 ? `${JSON.stringify(text.slice(0, 72))}…` : JSON.stringify(text),
    sizes,
    extendedLength,
    length,
    datagram: undefined,
  };
}

/** Bytes of the WebSocket frame header around a binary message of `n` bytes (RFC 6455 §5.2). */
export function webSocketHeaderBytes(n: number, masked: boolean): number {
  return (n <= 125 ? 2 : n <= 0xffff ? 4 : 10) + (masked ? 4 : 0);
}

/**
 * "coap+tcp frame 39 B = 3 hdr (Len 13 + 1 B Extended Length: 28, TKL 8, Code) + 8 token + 3 opts + 1+24 payload",
 * and for WebSockets the WebSocket frame header around it.
 */
export function formatFrameLayout(
  s: FrameSummary,
  scheme: string,
  dir: 'in' | 'out',
  initiator: boolean,
): string {
  const websocket = isWebSocketScheme(scheme);
  const z = s.sizes;
  // §3.2: Len 13, 14, 15 say that 1, 2, 4 bytes of Extended Length follow (Len - 13, - 269, - 65805).
  const nibble = [0, 13, 14, 0, 15][s.extendedLength] ?? 0;
  const len = websocket
    ? 'Len 0'
    : s.extendedLength === 0
      ? `Len ${s.length}`
      : `Len ${nibble} + ${s.extendedLength} B Extended Length: ${s.length}`;
  const tkl = z.token;
  let text = `${scheme} ${websocket ? 'message' : 'frame'} ${z.total} B = ${z.header} hdr (${len}, TKL ${tkl}, Code)`;
  if (z.token > 0) text += ` + ${z.token} token`;
  if (z.options > 0) text += ` + ${z.options} opts`;
  if (z.payload > 0) text += ` + ${z.marker}+${z.payload} payload`;
  if (websocket) {
    // RFC 6455 §5.3: what a client sends is masked.
    const masked = (dir === 'out') === initiator;
    text += `; in a WebSocket binary frame: + ${webSocketHeaderBytes(z.total, masked)} B frame header${masked ? ' (4 B mask: client to server)' : ''}`;
  } else if (scheme.startsWith('coaps')) text += '; in TLS records';
  return text;
}
