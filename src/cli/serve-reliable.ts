/**
 * `coapkit serve` over RFC 8323: --tcp-port (coap+tcp://), --tls-port with
 * --tls-cert/--tls-key (coaps+tcp://, and coaps+ws:// on --wss-port), and
 * --ws-port (coap+ws:// at /.well-known/coap on an HTTP port). serve.ts
 * calls `parseReliableServe` and `startReliableServe` from one block each.
 */
import type { Buffer } from 'node:buffer';
import { UsageError } from '../errors.js';
import type { CoapServer } from '../server/server.js';
import { type FlagSpecs, num, type Parsed, str } from './args.js';
import { readInputFile } from './psk.js';

export const RELIABLE_SERVE_FLAGS: FlagSpecs = {
  'tcp-port': { type: 'string' },
  'tls-port': { type: 'string' },
  'ws-port': { type: 'string' },
  'wss-port': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
};

/** What the RFC 8323 flags asked for. */
export interface ReliableServeOptions {
  tcpPort?: number;
  tlsPort?: number;
  wsPort?: number;
  wssPort?: number;
  cert?: Buffer;
  key?: Buffer;
  /** The serve keys (identity -> key): coaps+tcp:// takes them as TLS 1.2 PSK too. */
  psk?: Map<string, Buffer>;
  /**
   * serve's --ca (clients of coaps:// must present a certificate from it): coaps+tcp:// asks
   * its clients for one too, verified against it (required unless PSK keys are given).
   */
  clientCa?: Buffer;
}

export function parseReliableServe(
  p: Parsed,
  keys: Map<string, Buffer>,
  /** The server certificate --generate-cert made (serves TLS too, as --cert/--key would). */
  generated?: { cert: Buffer; key: Buffer },
  /** serve's --ca (or --generate-cert's CA): the trust anchors for client certificates. */
  clientCa?: Buffer,
): ReliableServeOptions | undefined {
  const o: ReliableServeOptions = {};
  const port = (flag: string) => num(p, flag, { integer: true, max: 65535 });
  const tcp = port('tcp-port');
  const tls = port('tls-port');
  const ws = port('ws-port');
  const wss = port('wss-port');
  if (tcp !== undefined) o.tcpPort = tcp;
  if (tls !== undefined) o.tlsPort = tls;
  if (ws !== undefined) o.wsPort = ws;
  if (wss !== undefined) o.wssPort = wss;
  // The DTLS certificate (--cert/--key) serves TLS too, unless --tls-cert/--tls-key name another.
  const own = str(p, 'tls-cert') !== undefined || str(p, 'tls-key') !== undefined;
  const fromDtls = !own && (tls !== undefined || wss !== undefined) && str(p, 'cert') !== undefined;
  const cert = fromDtls ? str(p, 'cert') : str(p, 'tls-cert');
  const key = fromDtls ? str(p, 'key') : str(p, 'tls-key');
  if ((cert === undefined) !== (key === undefined))
    throw new UsageError('--tls-cert and --tls-key go together');
  const useGenerated =
    cert === undefined && generated !== undefined && (tls !== undefined || wss !== undefined);
  const needCert = wss !== undefined || (tls !== undefined && keys.size === 0);
  if (needCert && cert === undefined && !useGenerated) {
    throw new UsageError(
      `--${wss !== undefined ? 'wss' : 'tls'}-port needs --tls-cert FILE and --tls-key FILE (or --cert/--key)${wss !== undefined ? '' : ' or PSK keys'}`,
      {
        hint: 'a throwaway one: openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout key.pem -out cert.pem',
      },
    );
  }
  if ((cert !== undefined || key !== undefined) && tls === undefined && wss === undefined) {
    throw new UsageError('--tls-cert/--tls-key need --tls-port N or --wss-port N');
  }
  if (cert !== undefined) o.cert = readInputFile(cert, 'certificate file');
  if (key !== undefined) o.key = readInputFile(key, 'key file');
  if (useGenerated) {
    o.cert = generated.cert;
    o.key = generated.key;
  }
  if (tls !== undefined && keys.size > 0) o.psk = keys;
  if (tls !== undefined && clientCa !== undefined) o.clientCa = clientCa;
  return Object.keys(o).length > 0 ? o : undefined;
}

/** One started listener (the serve banner prints its URL). */
export interface ReliableListener {
  scheme: 'coap+tcp' | 'coaps+tcp' | 'coap+ws' | 'coaps+ws';
  address: string;
  port: number;
}

/**
 * Starts the asked-for RFC 8323 listeners on `server` (one CoapServer shares
 * the store, block-wise and observe layers with the UDP ones), on each of
 * `hosts` (undefined: '::', falling back to 0.0.0.0).
 */
export async function startReliableServe(
  o: ReliableServeOptions,
  server: CoapServer,
  hosts: (string | undefined)[],
  bind: <T>(host: string | undefined, fn: (host: string) => Promise<T>) => Promise<T>,
): Promise<ReliableListener[]> {
  const out: ReliableListener[] = [];
  const each = async (
    scheme: ReliableListener['scheme'],
    first: number,
    make: (host: string, port: number) => Promise<import('../transport/transport.js').Transport>,
  ) => {
    let port = first;
    for (const host of hosts) {
      const t = await bind(host, (h) => make(h, port));
      await server.listen(t);
      const a = t.localAddress();
      port = a.port;
      out.push({ scheme, address: a.address, port: a.port });
    }
  };
  if (o.tcpPort !== undefined) {
    const { TcpTransport } = await import('../transport/tcp.js');
    await each('coap+tcp', o.tcpPort, (host, port) => TcpTransport.create({ host, port }));
  }
  if (o.tlsPort !== undefined) {
    const { TlsTransport } = await import('../transport/tls.js');
    await each('coaps+tcp', o.tlsPort, (host, port) =>
      TlsTransport.create({
        host,
        port,
        ...(o.cert !== undefined && o.key !== undefined ? { cert: o.cert, key: o.key } : {}),
        ...(o.psk !== undefined ? { psk: { keys: (identity: string) => o.psk!.get(identity) } } : {}),
        // As coaps://: a client certificate from --ca, required unless PSK clients are served too.
        ...(o.clientCa !== undefined
          ? { ca: o.clientCa, requestCert: true, rejectUnauthorized: o.psk === undefined }
          : {}),
      }),
    );
  }
  if (o.wsPort !== undefined || o.wssPort !== undefined) {
    const { WsTransport } = await import('../transport/ws.js');
    if (o.wsPort !== undefined)
      await each('coap+ws', o.wsPort, (host, port) => WsTransport.create({ host, port }));
    if (o.wssPort !== undefined) {
      await each('coaps+ws', o.wssPort, (host, port) =>
        WsTransport.create({ host, port, tls: { cert: o.cert!, key: o.key! } }),
      );
    }
  }
  return out;
}

/** Help lines for `coapkit serve --help`. */
export const RELIABLE_SERVE_HELP = `CoAP over TCP, TLS and WebSockets (RFC 8323; each only when its flag is given):
      --tcp-port N            TCP port for coap+tcp:// (5683 is the RFC 8323 port)
      --tls-port N            TLS port for coaps+tcp:// (5684 is the RFC 8323 port): with a
                              certificate (--tls-cert/--tls-key, or --cert/--key, or the
                              --generate-cert one) and the PSK keys below (TLS 1.2 PSK)
      --ws-port N             HTTP port for coap+ws:// (WebSocket at /.well-known/coap,
                              subprotocol "coap"; needs the "ws" package)
      --wss-port N            HTTPS port for coaps+ws:// (needs a certificate: --tls-cert
                              and --tls-key, --cert and --key, or --generate-cert)
      --tls-cert FILE         certificate chain (PEM) for --tls-port and --wss-port
                              (default: the coaps:// one, --cert or --generate-cert's)
      --tls-key FILE          its private key (PEM; default: --key)
`;
