/**
 * node:diagnostics_channel channels for each step of a message's life.
 * Subscribe with `diagnostics_channel.subscribe('coapkit:message:sent', fn)`.
 * Events are only built when a channel has subscribers, so tracing costs
 * nothing when nobody listens.
 */
import dc from 'node:diagnostics_channel';

export const channels = {
  /** {host, address, family, addresses: {address, family}[], durationMs} */
  dnsResolved: dc.channel('coapkit:dns:resolved'),
  /** {host, error, durationMs} */
  dnsFailed: dc.channel('coapkit:dns:failed'),
  /** {peer, data: Buffer, transmission: number (0 = first)} — every datagram the endpoint sends */
  messageSent: dc.channel('coapkit:message:sent'),
  /** {peer, data, messageId, transmission, nextTimeoutMs} */
  messageRetransmitted: dc.channel('coapkit:message:retransmitted'),
  /** {peer, data} — every datagram received */
  messageReceived: dc.channel('coapkit:message:received'),
  /** {peer, data, messageId, replayed: boolean} — a duplicate suppressed by deduplication */
  duplicate: dc.channel('coapkit:message:duplicate'),
  /** {peer, data, reason} — a datagram rejected (RST sent) or ignored */
  rejected: dc.channel('coapkit:message:rejected'),
  /** {peer, messageId, transmissions} — a CON that was never acknowledged */
  timeout: dc.channel('coapkit:message:timeout'),
  /** {peer, token, messageId, code, piggybacked, separate, rttMs} — response matched to a request */
  matched: dc.channel('coapkit:exchange:matched'),
  /** {peer, token, method, path} — a request arrived at a server */
  request: dc.channel('coapkit:server:request'),
  /** {peer, token, code, piggybacked, durationMs} — a server answered */
  response: dc.channel('coapkit:server:response'),
} as const;

/** The key of one channel in {@link channels}, e.g. `messageSent`. */
export type ChannelName = keyof typeof channels;
