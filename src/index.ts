/**
 * coapkit — public API. Re-exports only.
 */

export {
  type BlockwiseClientOptions,
  type BlockwiseResult,
  blockwiseExchange,
  DEFAULT_MAX_BODY_SIZE,
  type SendFn,
} from './blockwise/client.js';
export { type BlockProgress, szxToSize } from './blockwise/common.js';
export {
  createProgressBar,
  formatProgress,
  type ProgressBar,
  type ProgressBarOptions,
} from './blockwise/progress.js';
export { BlockwiseServer, type BlockwiseServerOptions, enableBlockwise } from './blockwise/server.js';
export {
  buildRequest,
  type ClientOptions,
  CoapClient,
  getDefaultClient,
  isMulticastAddress,
  type MulticastRequestOptions,
  methodCode,
  multicastRequest,
  type PskCredentials,
  ping,
  type RequestMethod,
  type RequestOptions,
  type ResolvedTarget,
  request,
} from './client/client.js';
export { CoapResponse } from './client/response.js';
export * from './codec/link-format.js';
export * from './codec/message.js';
export * from './codec/options.js';
export * from './codec/uri.js';
export * from './constants/codes.js';
export * from './constants/content-formats.js';
export * from './constants/options.js';
export * from './constants/transmission.js';
export {
  CHANNEL_NAMES,
  type ChannelName,
  type ChannelPayload,
  type ChannelPayloads,
  type ChannelsByName,
  type CoapChannelPayloads,
  channels,
  channelsByName,
  type DnsFailedEvent,
  type DnsResolvedEvent,
  type ExchangeMatchedEvent,
  type MessageDuplicateEvent,
  type MessageReceivedEvent,
  type MessageRejectedEvent,
  type MessageRetransmittedEvent,
  type MessageSentEvent,
  type MessageTimeoutEvent,
  type ServerRequestEvent,
  type ServerResponseEvent,
  subscribeChannel,
  type TypedChannel,
  type TypedListener,
} from './diagnostics.js';
export type {
  DtlsChannelPayloads,
  DtlsRole,
  HandshakeDoneEvent,
  HandshakeErrorEvent,
  HandshakeInfo,
  HandshakeRefusal,
  HandshakeStartEvent,
  RecordEvent,
} from './dtls/diag.js';
export { Endpoint, type EndpointOptions } from './endpoint/endpoint.js';
export * from './errors.js';
export {
  type ClientExchange,
  ExchangeLayer,
  type InboundResponse,
  type OutgoingRequest,
  type OutgoingResponse,
  type RequestCallbacks,
  type ServerHandler,
} from './exchange/exchange-layer.js';
export { randomToken } from './exchange/tokens.js';
export { type DedupOptions, DedupStore } from './message-layer/dedup.js';
export { MessageLayer, type PeerState, type PeerTableOptions } from './message-layer/message-layer.js';
export {
  ALL_COAP_NODES_IPV4,
  ALL_COAP_NODES_IPV6_LINK_LOCAL,
  ALL_COAP_NODES_IPV6_SITE_LOCAL,
  DEFAULT_LEISURE_MS,
  DEFAULT_MULTICAST_WINDOW_MS,
  GroupTransport,
  type GroupTransportOptions,
  listenMulticast,
  type MulticastHost,
  type MulticastListener,
  type MulticastServerOptions,
} from './multicast/index.js';
export { isFresher, Observation, type ObserveOptions, type ObserveTarget } from './observe/client.js';
export {
  enableObserve,
  type ObservableResource,
  type ObserveEvent,
  ObserveServer,
  type ObserveServerOptions,
} from './observe/server.js';
export { ForwardProxy, type ForwardProxyOptions, proxyUriOption } from './proxy/proxy.js';
export { type ChangeEvent, DynamicStore, type DynamicStoreOptions } from './server/dynamic-store.js';
export type { AmplificationStats, EchoOptions } from './server/echo.js';
export { type ResourceAttributes, type Route, Router } from './server/router.js';
export {
  CoapServer,
  DEFAULT_MAX_URI_PATH_BYTES,
  DEFAULT_MAX_URI_PATH_SEGMENTS,
  DEFAULT_MAX_URI_QUERY_BYTES,
  type HandlerResult,
  type Middleware,
  type RequestHandler,
  type ServerOptions,
  ServerRequest,
  type ServerResponse,
} from './server/server.js';
export {
  formatSummary,
  startTrace,
  type Trace,
  type TraceOptions,
  type TraceSummary,
} from './trace/tracer.js';
export {
  type DtlsClientOptions,
  DtlsClientTransport,
  DtlsServerTransport,
  type DtlsServerTransportOptions,
  type DtlsSessionInfo,
  type StallDiagnosis,
} from './transport/dtls.js';
export { type LinkConditions, MemoryNetwork, MemoryTransport } from './transport/memory.js';
export { type ResolvedAddress, resolveHost } from './transport/resolve.js';
export type { AddressFamily, Peer, Transport, TransportHandlers } from './transport/transport.js';
export { makePeer, peerKey } from './transport/transport.js';
export { UdpTransport, type UdpTransportOptions } from './transport/udp.js';
export { type Clock, realClock, type TimerHandle, VirtualClock } from './util/clock.js';
