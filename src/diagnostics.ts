/**
 * node:diagnostics_channel channels for each step of a message's life.
 *
 * {@link ChannelPayloads} is the one list of every coapkit channel and the
 * type of its payload (the `coapkit:dtls:*` payloads are declared next to
 * their publisher in src/dtls/diag.ts). Subscribe through the typed objects:
 * `channels.messageSent.subscribe((ev) => ...)` (or `channelsByName['coapkit:message:sent']`),
 * or with `diagnostics_channel.subscribe('coapkit:message:sent', fn)` and the
 * payload types. Events are only built when a channel has subscribers, so
 * tracing costs nothing when nobody listens.
 */
import type { Buffer } from 'node:buffer';
import type { DtlsChannelPayloads } from './dtls/diag.js';
import {
  handshakeDoneChannel,
  handshakeErrorChannel,
  handshakeStartChannel,
  recordReceivedChannel,
  recordSentChannel,
} from './dtls/diag.js';
import type { DnsError } from './errors.js';
import type { Peer } from './transport/transport.js';
import { type TypedChannel, typedChannel } from './util/typed-channel.js';

export type { TypedChannel, TypedListener } from './util/typed-channel.js';

/** `coapkit:dns:resolved`: a host name was resolved (getaddrinfo, A and AAAA). */
export interface DnsResolvedEvent {
  /** The name looked up. */
  host: string;
  /** The address used. */
  address: string;
  /** Its family. */
  family: 4 | 6;
  /** Every address returned, resolver order kept. */
  addresses: Array<{
    /** An IPv4 or IPv6 address. */
    address: string;
    /** Its family. */
    family: 4 | 6;
  }>;
  /** How long the lookup took. */
  durationMs: number;
}

/** `coapkit:dns:failed`: resolving a host name failed. */
export interface DnsFailedEvent {
  /** The name looked up. */
  host: string;
  /** The error the request fails with. */
  error: DnsError;
  /** How long the lookup took. */
  durationMs: number;
}

/** `coapkit:message:sent`: every datagram the endpoint sends. */
export interface MessageSentEvent {
  /** Where it goes. */
  peer: Peer;
  /** The datagram (one CoAP message). */
  data: Uint8Array;
  /** 0 for the first transmission, n for the n-th retransmission. */
  transmission: number;
}

/** `coapkit:message:retransmitted`: a CON was not acknowledged in time and is sent again (§4.2). */
export interface MessageRetransmittedEvent {
  /** Where it goes. */
  peer: Peer;
  /** The datagram, as first sent. */
  data: Uint8Array;
  /** Message ID of the CON. */
  messageId: number;
  /** 1 for the first retransmission. */
  transmission: number;
  /** The (doubled) timeout before the next retransmission. */
  nextTimeoutMs: number;
}

/** `coapkit:message:received`: every datagram received (before any check). */
export interface MessageReceivedEvent {
  /** Where it comes from. */
  peer: Peer;
  /** The datagram as received. */
  data: Buffer;
}

/** `coapkit:message:duplicate`: a duplicate suppressed by deduplication (§4.5). */
export interface MessageDuplicateEvent {
  /** Where it comes from. */
  peer: Peer;
  /** The datagram as received. */
  data: Buffer;
  /** Its Message ID. */
  messageId: number;
  /** True when the stored reply was sent again. */
  replayed: boolean;
}

/** `coapkit:message:rejected`: a datagram rejected with RST, or ignored. */
export interface MessageRejectedEvent {
  /** Where it comes from. */
  peer: Peer;
  /** The datagram as received. */
  data: Buffer;
  /** Why, e.g. `CoAP ping` or the decoding error. */
  reason: string;
  /** True when a RST was sent (a CoAP ping answered counts too). */
  reset: boolean;
}

/** `coapkit:message:timeout`: a CON that was never acknowledged. */
export interface MessageTimeoutEvent {
  /** Who did not answer. */
  peer: Peer;
  /** Message ID of the CON. */
  messageId: number;
  /** How many times it was sent. */
  transmissions: number;
}

/** `coapkit:exchange:matched`: a response matched to a request (§5.3.2). */
export interface ExchangeMatchedEvent {
  /** Who answered. */
  peer: Peer;
  /** The token shared by request and response. */
  token: Buffer;
  /** Message ID of the response. */
  messageId: number;
  /** Message ID of the request. */
  requestMessageId: number;
  /** Response code (e.g. 69 = 2.05). */
  code: number;
  /** True when the response came in the ACK of the request. */
  piggybacked: boolean;
  /** True for a separate response (not piggybacked). */
  separate: boolean;
  /** From the request's first transmission to the response. */
  rttMs: number;
}

/** `coapkit:server:request`: a request arrived at a server and goes to its handlers. */
export interface ServerRequestEvent {
  /** Who asked (with `identity` over DTLS). */
  peer: Peer;
  /** The request's token. */
  token: Buffer;
  /** `GET`, `POST`... */
  method: string;
  /** The Uri-Path, `/`-joined. */
  path: string;
  /** The request's Message ID. */
  messageId: number;
}

/** `coapkit:server:response`: a server answered (or decided not to). */
export interface ServerResponseEvent {
  /** Who asked. */
  peer: Peer;
  /** The request's token. */
  token: Buffer;
  /** The response code; undefined when no response is sent. */
  code: number | undefined;
  /** Time spent in the handlers. */
  durationMs: number;
}

/**
 * `coapkit:frame:sent` and `coapkit:frame:received`: one frame on an RFC 8323 transport
 * (coap+tcp, coaps+tcp, coap+ws, coaps+ws), signaling (7.01 CSM ... 7.05 Abort) included.
 * These transports carry no Type and no Message ID: the `coapkit:message:*` events of their
 * peers show the message layer's view (a NON with Message ID 0), this one what is on the wire.
 */
export interface FrameEvent {
  /** The other side. */
  peer: Peer;
  /** The transport's URI scheme: `coap+tcp`, `coaps+tcp`, `coap+ws` or `coaps+ws`. */
  scheme: string;
  /** True when this side opened the connection (over WebSockets, the client: it masks what it sends). */
  initiator: boolean;
  /**
   * The frame as written: over TCP and TLS with its Len nibble and Extended Length
   * (RFC 8323 §3.2); over WebSockets the binary message's body (Len 0, §4.2).
   */
  frame: Uint8Array;
}

/** The payload of each CoAP-layer channel. */
export interface CoapChannelPayloads {
  /** {@link DnsResolvedEvent} */
  'coapkit:dns:resolved': DnsResolvedEvent;
  /** {@link DnsFailedEvent} */
  'coapkit:dns:failed': DnsFailedEvent;
  /** {@link MessageSentEvent} */
  'coapkit:message:sent': MessageSentEvent;
  /** {@link MessageRetransmittedEvent} */
  'coapkit:message:retransmitted': MessageRetransmittedEvent;
  /** {@link MessageReceivedEvent} */
  'coapkit:message:received': MessageReceivedEvent;
  /** {@link MessageDuplicateEvent} */
  'coapkit:message:duplicate': MessageDuplicateEvent;
  /** {@link MessageRejectedEvent} */
  'coapkit:message:rejected': MessageRejectedEvent;
  /** {@link MessageTimeoutEvent} */
  'coapkit:message:timeout': MessageTimeoutEvent;
  /** {@link ExchangeMatchedEvent} */
  'coapkit:exchange:matched': ExchangeMatchedEvent;
  /** {@link ServerRequestEvent} */
  'coapkit:server:request': ServerRequestEvent;
  /** {@link ServerResponseEvent} */
  'coapkit:server:response': ServerResponseEvent;
  /** {@link OscoreMessageEvent} */
  'coapkit:oscore:message': OscoreMessageEvent;
  /** {@link FrameEvent} */
  'coapkit:frame:sent': FrameEvent;
  /** {@link FrameEvent} */
  'coapkit:frame:received': FrameEvent;
}

/**
 * `coapkit:oscore:message`: an OSCORE-protected message (RFC 8613) this side protected
 * (`out`) or verified and decrypted (`in`): its inner message, which the datagram hides.
 */
export interface OscoreMessageEvent {
  /** The other side. */
  peer: Peer;
  /** 'out': protected here before sending; 'in': verified and decrypted here. */
  direction: 'in' | 'out';
  /** The inner code (0.01 GET, 2.05 Content...). */
  code: number;
  /** The inner Uri-Path ("/a/b"; "" for a response). */
  path: string;
  /** Bytes of the inner payload. */
  payloadLength: number;
  /** kid (hex) of the request (the client's Sender ID; "" for an empty one). */
  kid: string;
  /** This message's Partial IV (hex); "" when a response reuses its request's nonce. */
  partialIv: string;
}

/** Every coapkit diagnostics channel and the type of its payload. */
export interface ChannelPayloads extends CoapChannelPayloads, DtlsChannelPayloads {}

/** The name of a coapkit diagnostics channel (`coapkit:message:sent`...). */
export type ChannelName = keyof ChannelPayloads;

/** The payload of channel `K`. */
export type ChannelPayload<K extends ChannelName> = ChannelPayloads[K];

/** Every channel by name, typed. */
export type ChannelsByName = { readonly [K in ChannelName]: TypedChannel<ChannelPayloads[K], K> };

const coap = <K extends keyof CoapChannelPayloads>(name: K) => typedChannel<ChannelPayloads[K], K>(name);

/**
 * Every coapkit channel, keyed by name, in the order of a message's life
 * (DNS, DTLS handshake and records, CoAP messages, matching, server). The
 * type makes this list complete: a channel added to {@link ChannelPayloads}
 * must be added here.
 */
export const channelsByName: ChannelsByName = {
  'coapkit:dns:resolved': coap('coapkit:dns:resolved'),
  'coapkit:dns:failed': coap('coapkit:dns:failed'),
  'coapkit:dtls:handshake:start': handshakeStartChannel,
  'coapkit:dtls:record:sent': recordSentChannel,
  'coapkit:dtls:record:received': recordReceivedChannel,
  'coapkit:dtls:handshake:done': handshakeDoneChannel,
  'coapkit:dtls:handshake:error': handshakeErrorChannel,
  'coapkit:frame:sent': coap('coapkit:frame:sent'),
  'coapkit:frame:received': coap('coapkit:frame:received'),
  'coapkit:message:sent': coap('coapkit:message:sent'),
  'coapkit:message:retransmitted': coap('coapkit:message:retransmitted'),
  'coapkit:message:received': coap('coapkit:message:received'),
  'coapkit:message:duplicate': coap('coapkit:message:duplicate'),
  'coapkit:message:rejected': coap('coapkit:message:rejected'),
  'coapkit:message:timeout': coap('coapkit:message:timeout'),
  'coapkit:exchange:matched': coap('coapkit:exchange:matched'),
  'coapkit:server:request': coap('coapkit:server:request'),
  'coapkit:server:response': coap('coapkit:server:response'),
  'coapkit:oscore:message': coap('coapkit:oscore:message'),
};

/** The names of every coapkit channel, in the order of {@link channelsByName}. */
export const CHANNEL_NAMES = Object.freeze(Object.keys(channelsByName) as ChannelName[]);

/** The channels by a short name; each is the node:diagnostics_channel Channel of that name, typed. */
export const channels = {
  /** coapkit:dns:resolved ({@link DnsResolvedEvent}) */
  dnsResolved: channelsByName['coapkit:dns:resolved'],
  /** coapkit:dns:failed ({@link DnsFailedEvent}) */
  dnsFailed: channelsByName['coapkit:dns:failed'],
  /** coapkit:message:sent ({@link MessageSentEvent}): every datagram the endpoint sends */
  messageSent: channelsByName['coapkit:message:sent'],
  /** coapkit:frame:sent ({@link FrameEvent}): every frame an RFC 8323 transport writes */
  frameSent: channelsByName['coapkit:frame:sent'],
  /** coapkit:frame:received ({@link FrameEvent}): every frame an RFC 8323 transport reads */
  frameReceived: channelsByName['coapkit:frame:received'],
  /** coapkit:message:retransmitted ({@link MessageRetransmittedEvent}) */
  messageRetransmitted: channelsByName['coapkit:message:retransmitted'],
  /** coapkit:message:received ({@link MessageReceivedEvent}): every datagram received */
  messageReceived: channelsByName['coapkit:message:received'],
  /** coapkit:message:duplicate ({@link MessageDuplicateEvent}) */
  duplicate: channelsByName['coapkit:message:duplicate'],
  /** coapkit:message:rejected ({@link MessageRejectedEvent}): a datagram rejected (RST sent) or ignored */
  rejected: channelsByName['coapkit:message:rejected'],
  /** coapkit:message:timeout ({@link MessageTimeoutEvent}): a CON that was never acknowledged */
  timeout: channelsByName['coapkit:message:timeout'],
  /** coapkit:exchange:matched ({@link ExchangeMatchedEvent}): response matched to a request */
  matched: channelsByName['coapkit:exchange:matched'],
  /** coapkit:server:request ({@link ServerRequestEvent}) */
  request: channelsByName['coapkit:server:request'],
  /** coapkit:server:response ({@link ServerResponseEvent}) */
  response: channelsByName['coapkit:server:response'],
  /** coapkit:oscore:message ({@link OscoreMessageEvent}): the inner message of an OSCORE one */
  oscore: channelsByName['coapkit:oscore:message'],
  /** coapkit:dtls:handshake:start (HandshakeStartEvent) */
  dtlsHandshakeStart: channelsByName['coapkit:dtls:handshake:start'],
  /** coapkit:dtls:handshake:done (HandshakeDoneEvent) */
  dtlsHandshakeDone: channelsByName['coapkit:dtls:handshake:done'],
  /** coapkit:dtls:handshake:error (HandshakeErrorEvent) */
  dtlsHandshakeError: channelsByName['coapkit:dtls:handshake:error'],
  /** coapkit:dtls:record:sent (RecordEvent) */
  dtlsRecordSent: channelsByName['coapkit:dtls:record:sent'],
  /** coapkit:dtls:record:received (RecordEvent) */
  dtlsRecordReceived: channelsByName['coapkit:dtls:record:received'],
} as const;

/**
 * Subscribes `fn` to channel `name` with the payload typed; returns the
 * function that unsubscribes it.
 */
export function subscribeChannel<K extends ChannelName>(
  name: K,
  fn: (message: ChannelPayloads[K], name: string | symbol) => void,
): () => void {
  const ch = channelsByName[name] as TypedChannel<ChannelPayloads[K], K>;
  ch.subscribe(fn);
  return () => ch.unsubscribe(fn);
}
