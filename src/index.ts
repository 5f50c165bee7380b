/**
 * coapkit — the public API, listed by hand: what an application needs to be a CoAP client,
 * server, observer, proxy or multicast node over UDP or DTLS, the errors it may catch, the
 * codec helpers and the protocol constants. Everything here follows semver.
 *
 * The layers underneath (message layer, exchange layer, deduplication, block-wise and observe
 * machinery, the CLI's helpers) are in `coapkit/internals`, with no stability promise.
 *
 * @packageDocumentation
 */

// ---------------------------------------------------------------- client
export { type BlockwiseClientOptions, DEFAULT_MAX_BODY_SIZE } from './blockwise/client.js';
export type { BlockProgress } from './blockwise/common.js';
export { szxToSize } from './blockwise/common.js';
export {
  type BlockwiseHost,
  BlockwiseServer,
  type BlockwiseServerOptions,
  enableBlockwise,
} from './blockwise/server.js';
export {
  type ClientOptions,
  CoapClient,
  getDefaultClient,
  type MulticastRequestOptions,
  multicastRequest,
  type PskCredentials,
  ping,
  type RequestMethod,
  type RequestOptions,
  type ResolvedTarget,
  request,
} from './client/client.js';
export { CoapResponse } from './client/response.js';
export {
  filterLinks,
  type Link,
  linkAttr,
  linkAttrValues,
  parseLinkFormat,
  serializeLinkFormat,
} from './codec/link-format.js';
// ---------------------------------------------------------------- codec
export {
  type CoapMessage,
  type CoapOption,
  decodeMessage,
  type EncodableMessage,
  encodeEmpty,
  encodeMessage,
} from './codec/message.js';
export {
  type BlockOption,
  checkOptions,
  decodeBlock,
  decodeUint,
  encodeBlock,
  encodeUint,
  firstBadCritical,
  formatOptionValue,
  getOption,
  getOptions,
  getStringOptions,
  getUintOption,
  hasOption,
  type OptionCheck,
  type OptionInput,
  optionValue,
  sizeToSzx,
} from './codec/options.js';
// RFC 8323: CoAP over TCP, TLS and WebSockets (coap+tcp, coaps+tcp, coap+ws, coaps+ws).
export type { PeerCapabilities } from './codec/reliable.js';
export {
  type CoapScheme,
  type CoapUri,
  defaultPort,
  encodePathSegment,
  encodeQueryArg,
  formatUri,
  optionsToUri,
  parseUri,
  pathFromOptions,
  uriToOptions,
} from './codec/uri.js';
// ---------------------------------------------------------------- constants
export {
  code,
  codeClass,
  codeName,
  describeCode,
  formatCode,
  isEmptyCode,
  isRequestCode,
  isResponseCode,
  MESSAGE_TYPE_NAMES,
  MessageType,
  Method,
  type MethodName,
  parseCode,
  ResponseCode,
} from './constants/codes.js';
export {
  CONTENT_FORMATS,
  ContentFormat,
  contentFormatName,
  isTextual,
  parseContentFormat,
} from './constants/content-formats.js';
export {
  ALL_OPTION_DEFINITIONS,
  isCritical,
  isNoCacheKey,
  isUnsafe,
  type OptionDefinition,
  type OptionFormat,
  OptionNumber,
  optionByName,
  optionDefinition,
  optionName,
} from './constants/options.js';
export {
  DEFAULT_TRANSMISSION,
  type DerivedParameters,
  deriveParameters,
  resolveParameters,
  type TransmissionParameters,
} from './constants/transmission.js';
// ---------------------------------------------------------------- diagnostics
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
  type FrameEvent,
  type MessageDuplicateEvent,
  type MessageReceivedEvent,
  type MessageRejectedEvent,
  type MessageRetransmittedEvent,
  type MessageSentEvent,
  type MessageTimeoutEvent,
  type OscoreMessageEvent,
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
export {
  HANDSHAKE_RATE_DEFAULTS,
  HANDSHAKE_WEIGHTS,
  type HandshakeRateOptions,
} from './dtls/handshake-rate.js';
// ---------------------------------------------------------------- endpoints and transports
// Endpoint is public: `server.listen()` returns one and `server.endpoints` lists them (an
// application reads `endpoint.transport.localAddress()` and closes it); its options carry the
// limits of the layers below (deduplication memory, peer table). Its layers are internal.
export { Endpoint, type EndpointOptions } from './endpoint/endpoint.js';
// ---------------------------------------------------------------- errors
// ---------------------------------------------------------------- OSCORE (RFC 8613)
export {
  AbortError,
  BlockTransferError,
  BodyTooLargeError,
  CaptureFormatError,
  ClosedError,
  CoapError,
  DnsError,
  DtlsAlertError,
  DtlsCredentialError,
  DtlsError,
  DtlsHandshakeTimeoutError,
  InvalidArgumentError,
  LinkFormatError,
  MessageFormatError,
  NetworkError,
  ObserveError,
  OptionError,
  OscoreContextNotFoundError,
  OscoreDecryptError,
  OscoreError,
  OscoreReplayError,
  OscoreSequenceError,
  OscoreSequenceUnavailableError,
  ProtocolError,
  ResetError,
  ResponseCodeError,
  TimeoutError,
  UriError,
} from './errors.js';
export type { OutgoingResponse } from './exchange/exchange-layer.js';
export type { DedupOptions } from './message-layer/dedup.js';
export type { PeerTableOptions } from './message-layer/message-layer.js';
// ---------------------------------------------------------------- multicast (RFC 7252 §8)
export {
  ALL_COAP_NODES_IPV4,
  ALL_COAP_NODES_IPV6_LINK_LOCAL,
  ALL_COAP_NODES_IPV6_SITE_LOCAL,
  DEFAULT_LEISURE_MS,
  DEFAULT_MULTICAST_WINDOW_MS,
  type GroupRateLimit,
  type GroupStats,
  GroupTransport,
  type GroupTransportOptions,
  listenMulticast,
  type MulticastHost,
  type MulticastListener,
  type MulticastServerOptions,
} from './multicast/index.js';
export { Observation, type ObserveOptions, type ObserveTarget } from './observe/client.js';
export {
  enableObserve,
  type ObservableResource,
  type ObserveEvent,
  type ObserveHost,
  type ObservePersistence,
  ObserveServer,
  type ObserveServerOptions,
  type PersistedObserver,
} from './observe/server.js';
export {
  OSCORE_ALGORITHMS,
  type OscoreAlgorithm,
  OscoreContext,
  type OscoreContextOptions,
  type SequenceSource,
  type SequenceStore,
} from './oscore/context.js';
export { FileSequenceStore } from './oscore/store.js';
export {
  DEFAULT_PROXY_SCHEMES,
  ForwardProxy,
  type ForwardProxyOptions,
  proxyUriOption,
} from './proxy/proxy.js';
export {
  AccessControl,
  type AccessControlOptions,
  type AclDecision,
  type AclHost,
  type AclRule,
  AclRuleError,
  aclIdentity,
  MAX_ACL_RULES,
  parseAcl,
} from './server/acl.js';
export { type ChangeEvent, DynamicStore, type DynamicStoreOptions } from './server/dynamic-store.js';
export type { AmplificationStats, EchoOptions } from './server/echo.js';
export {
  enableOscore,
  OscoreServer,
  type OscoreServerOptions,
  type OscoreServerStats,
} from './server/oscore.js';
export type { OscoreRequestInfo, ServerPeer } from './server/request.js';
export { type ResourceAttributes, type Route, Router } from './server/router.js';
export type { ServerHandlerLayer } from './server/server.js';
// ---------------------------------------------------------------- server
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
// ---------------------------------------------------------------- durable state (coapkit serve --data / --store)
export {
  GroupCommitter,
  type GroupCommitterOptions,
  hasNodeSqlite,
  MemoryStore,
  type ObserverRecord,
  type OpenStoreOptions,
  openStore,
  POSTGRES_CHANNEL,
  PostgresStore,
  type PostgresStoreOptions,
  type RemoteChange,
  type ResourceRecord,
  SQLITE_FILE_NAME,
  type SqliteBinding,
  SqliteStore,
  type SqliteStoreOptions,
  type StateStore,
  type StoreChange,
  StoreDependencyError,
  StoreError,
  StoreFormatError,
  type StoreKind,
  type StoreSnapshot,
  StoreUnavailableError,
} from './store/index.js';
export {
  formatSummary,
  startTrace,
  type Trace,
  type TraceOptions,
  type TraceSummary,
} from './trace/tracer.js';
export {
  type DtlsCertificateOptions,
  type DtlsClientOptions,
  DtlsClientTransport,
  DtlsServerTransport,
  type DtlsServerTransportOptions,
  type DtlsSessionInfo,
  type PemInput,
  type StallDiagnosis,
} from './transport/dtls.js';
export {
  DEFAULT_WRITE_SEQUENCE_MARGIN,
  DtlsSessionStateError,
  MIN_STATE_KEY_BYTES,
  type SessionExportOptions,
  type SessionImportResult,
  type SessionStateProblem,
} from './transport/dtls-sessions.js';
export { type LinkConditions, MemoryNetwork, MemoryTransport } from './transport/memory.js';
export {
  type LocalAddress,
  type ReliableConnection,
  ReliableTransport,
  type ReliableTransportOptions,
} from './transport/reliable.js';
export { TcpTransport, type TcpTransportOptions } from './transport/tcp.js';
export { TlsTransport, type TlsTransportOptions } from './transport/tls.js';
export type { AddressFamily, Peer, PeerAuth, Transport, TransportHandlers } from './transport/transport.js';
export { makePeer } from './transport/transport.js';
export {
  REUSE_PORT_NODE_VERSION,
  reusePortSupported,
  UdpTransport,
  type UdpTransportOptions,
} from './transport/udp.js';
export { COAP_WS_PATH, COAP_WS_PROTOCOL, WsTransport, type WsTransportOptions } from './transport/ws.js';
// ---------------------------------------------------------------- time (EndpointOptions.clock; VirtualClock for tests)
export { type Clock, realClock, type TimerHandle, VirtualClock } from './util/clock.js';
