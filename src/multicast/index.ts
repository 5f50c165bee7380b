/**
 * CoAP group communication over UDP multicast (RFC 7252 §8): the layer under
 * the client's `multicastRequest` / `CoapClient.multicast` and the server's
 * `listenMulticast`. It imports endpoints and transports, never the client or
 * the server.
 */
export {
  DEFAULT_MULTICAST_WINDOW_MS,
  type GroupSendOptions,
  isMulticastAddress,
  sendGroupRequest,
} from './client.js';
export {
  ALL_COAP_NODES_IPV4,
  ALL_COAP_NODES_IPV6_LINK_LOCAL,
  ALL_COAP_NODES_IPV6_SITE_LOCAL,
  DEFAULT_LEISURE_MS,
  ipv6Scope,
  isIpv6Group,
  listenMulticast,
  type MulticastHost,
  type MulticastListener,
  type MulticastServerOptions,
  multicastHandler,
  usefulMulticastResponse,
  wildcardConflict,
} from './server.js';
export {
  type GroupRateLimit,
  type GroupStats,
  GroupTransport,
  type GroupTransportOptions,
} from './transport.js';
