/**
 * coapkit/internals — the layers under the public API, for tests, tools and experiments.
 *
 * **No stability promise**: anything here may change or go in any release, a patch release
 * included. Applications use `coapkit` (client, server, observe, block-wise, proxy, DTLS
 * transports, errors, codec helpers, constants); this entry point exposes how they are
 * built: the message layer (RFC 7252 §4: CON/NON, retransmission, deduplication, per-peer
 * state), the exchange layer (§5: tokens, piggybacked and separate responses), the
 * block-wise and observe machinery, and helpers the CLI uses.
 *
 * @packageDocumentation
 */
export {
  type BlockwiseResult,
  blockwiseExchange,
  type SendFn,
} from './blockwise/client.js';
export {
  createProgressBar,
  formatProgress,
  type ProgressBar,
  type ProgressBarOptions,
} from './blockwise/progress.js';
export { buildRequest, isMulticastAddress, methodCode } from './client/client.js';
export {
  applyCsm,
  buildFrame,
  DEFAULT_RELIABLE_MAX_MESSAGE_SIZE,
  datagramToFrame,
  decodeFrame,
  type EncodableReliableMessage,
  encodeAbort,
  encodeCsm,
  encodeFrame,
  FrameDecoder,
  type FrameHeader,
  FrameTooLargeError,
  frameToDatagram,
  type PeerCapabilities,
  type ReliableMessage,
  readFrameHeader,
  SignalCode,
  SignalOption,
} from './codec/reliable.js';
export { removeDotSegments } from './codec/uri.js';
export { UsageError } from './errors.js';
export {
  type ClientExchange,
  ExchangeLayer,
  type ExchangeLayerOptions,
  type InboundResponse,
  type OutgoingRequest,
  type RequestCallbacks,
  type ServerHandler,
} from './exchange/exchange-layer.js';
export { randomToken } from './exchange/tokens.js';
export { DedupStore } from './message-layer/dedup.js';
export {
  MessageLayer,
  type MessageLayerOptions,
  type MessageLayerUpper,
  type OutgoingCon,
  type OutgoingConCallbacks,
  type PeerState,
} from './message-layer/message-layer.js';
export { isFresher } from './observe/client.js';
export { type ResolvedAddress, resolveHost } from './transport/resolve.js';
export { peerKey } from './transport/transport.js';
