/**
 * How coapkit prints a transport address: `host:port`, or `[v6]:port` for an
 * IPv6 address (zone kept inside the brackets: `[fe80::1%eth0]:5683`). An
 * IPv4-mapped IPv6 address (what a dual-stack socket reports for an IPv4
 * peer) is printed as the IPv4 address it stands for. Every message, log line
 * and banner uses this one function (the CLI escapes the result: peerText).
 */
export function formatAddress(host: string, port: number | string): string {
  if (host.includes(':')) {
    if (host.startsWith('::ffff:') && /^\d{1,3}(\.\d{1,3}){3}$/.test(host.slice(7))) {
      return `${host.slice(7)}:${port}`;
    }
    return `[${host}]:${port}`;
  }
  return `${host}:${port}`;
}

/**
 * `formatAddress` of a peer key (`address%port`, see `peerKey`): the key is
 * split at its last '%' (an IPv6 zone holds one too). Text that is not a key
 * is returned as it is.
 */
export function formatPeerKey(key: string): string {
  const i = key.lastIndexOf('%');
  if (i <= 0 || !/^\d+$/.test(key.slice(i + 1))) return key;
  return formatAddress(key.slice(0, i), key.slice(i + 1));
}
