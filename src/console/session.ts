/**
 * One page's WebSocket (subprotocol `coap`, RFC 8323 §4): the console's
 * forward proxy. Binary messages are CoAP over WebSockets; the page sends
 * requests with Proxy-Uri (or Proxy-Scheme + Uri-Host/Uri-Port/Uri-Path/
 * Uri-Query) to coap:// and coaps:// targets and gets the response with its
 * token. Block-wise transfers to the origin are done here, by the client
 * (RFC 7959), and the whole body travels in one WebSocket message (the CSM
 * announces Max-Message-Size). Observe (Observe: 0) forwards every
 * notification; Observe: 1 with the same token ends it.
 *
 * Text messages are the console's side channel (JSON, one object each):
 * from the page `{"type":"credentials","identity":..,"keyHex":..}` (the PSK
 * for the next coaps:// requests), or with `"mode":"cert"` a client
 * certificate, its key and CAs (PEM), or `"mode":"rpk"` a raw public key and
 * trusted server keys (credentials.ts), answered with
 * `{"type":"credentials","summary":..}` or `{"type":"credentials","error":..}`;
 * to the page the life of each request: `begin`, `step` (a ladder step,
 * src/console/ladder.ts), `progress` (Block1/Block2 progress), `end`.
 * Credentials live in the session only: closing the page forgets them.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { WebSocket } from 'ws';
import { type ClientOptions, CoapClient } from '../client/client.js';
import type { CoapResponse } from '../client/response.js';
import type { CoapOption } from '../codec/message.js';
import { COAP_SCHEMES, type CoapUri, parseUri } from '../codec/uri.js';
import { CoapError, TimeoutError } from '../errors.js';
import type { Observation } from '../observe/client.js';
import { type ConsoleCredentials, MAX_PEM_CHARS, parseCredentials } from './credentials.js';
import {
  codeText,
  decodeWsMessage,
  encodeWsMessage,
  Opt,
  readUint,
  SignalCode,
  uintValue,
  WsFrameError,
  type WsMessage,
} from './frame.js';
import type { LadderHub, LadderStep } from './ladder.js';

/** Limits of one page's session. */
export interface SessionLimits {
  /** Largest CoAP message accepted from the page and sent to it (CSM Max-Message-Size). */
  maxMessageSize: number;
  /** Requests in flight at once (then 5.03). */
  maxInFlight: number;
  /** Observations at once (then 5.03). */
  maxObservations: number;
  /** Clients kept for distinct PSK credentials (the oldest is closed). */
  maxClients: number;
  /** Clients kept for distinct certificate / raw-public-key credentials (the oldest is closed). */
  maxCertClients: number;
  /** Time limit of one forwarded request, every block included (ms). */
  requestTimeoutMs: number;
}

export const DEFAULT_SESSION_LIMITS: SessionLimits = {
  maxMessageSize: 8 * 1024 * 1024 + 1024,
  maxInFlight: 32,
  maxObservations: 16,
  maxClients: 4,
  maxCertClients: 4,
  requestTimeoutMs: 120_000,
};

/** Options the proxy does not pass on: the target, and what its own client does (block-wise, observe). */
const HOP = new Set<number>([
  Opt.ProxyUri,
  Opt.ProxyScheme,
  Opt.UriHost,
  Opt.UriPort,
  Opt.UriPath,
  Opt.UriQuery,
  Opt.Observe,
  Opt.Block1,
  Opt.Block2,
  Opt.Size1,
  Opt.Size2,
]);

/** Target schemes: every CoAP one, UDP and DTLS (PSK, certificate, raw public key), and RFC 8323's TCP, TLS and WebSockets (TLS verified against the page's CAs in certificate mode, else the system's). */
const SCHEMES: ReadonlySet<string> = new Set(COAP_SCHEMES);

const GET = 1;
const FETCH = 5;
const BAD_REQUEST = 128;
const NOT_FOUND = 132;
const INTERNAL = 160;
const BAD_GATEWAY = 162;
const UNAVAILABLE = 163;
const GATEWAY_TIMEOUT = 164;
const PROXYING_NOT_SUPPORTED = 165;

/** Longest side-channel message: a credentials message carries PEM texts (certificate, key, CAs). */
const CONTROL_LIMIT = 4 * MAX_PEM_CHARS;

const toBuf = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** A refusal with its response code (4.xx/5.xx). */
class Refused extends CoapError {
  static override readonly code: string = 'COAP_ERR_CONSOLE_REFUSED';
  constructor(
    readonly responseCode: number,
    message: string,
  ) {
    super(message);
  }
}

export class ConsoleSession {
  private readonly clients = new Map<string, CoapClient>();
  /** Clients with a certificate or raw public key, by the credentials' id (their own bound). */
  private readonly certClients = new Map<string, CoapClient>();
  private readonly observations = new Map<string, { obs: Observation; stop: () => void }>();
  private inFlight = 0;
  private creds: ConsoleCredentials = { kind: 'none' };
  /** SHA-256 of the last credentials message, so a repeated one is not parsed again (the text is not kept). */
  private credsDigest = '';
  private closed = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly hub: LadderHub,
    private readonly limits: SessionLimits = DEFAULT_SESSION_LIMITS,
    private readonly clientOptions: ClientOptions = {},
  ) {
    ws.on('message', (data, isBinary) => this.onMessage(data as Buffer | Buffer[] | ArrayBuffer, isBinary));
    ws.on('close', () => void this.close());
    ws.on('error', () => void this.close());
    // RFC 8323 §5.3: each side starts with a CSM.
    this.sendFrame({
      code: SignalCode.CSM,
      token: new Uint8Array(0),
      options: [
        { number: Opt.MaxMessageSize, value: uintValue(limits.maxMessageSize) },
        { number: Opt.BlockWiseTransfer, value: new Uint8Array(0) },
      ],
      payload: new Uint8Array(0),
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const o of this.observations.values()) o.stop();
    this.observations.clear();
    const clients = [...this.clients.values(), ...this.certClients.values()];
    this.clients.clear();
    this.certClients.clear();
    this.creds = { kind: 'none' };
    this.credsDigest = '';
    await Promise.allSettled(clients.map((c) => c.close()));
  }

  private onMessage(data: Buffer | Buffer[] | ArrayBuffer, isBinary: boolean): void {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    if (!isBinary) {
      this.onControl(bytes.toString('utf8'));
      return;
    }
    let msg: WsMessage;
    try {
      msg = decodeWsMessage(bytes);
    } catch (err) {
      this.abort(err instanceof WsFrameError ? err.message : 'malformed message');
      return;
    }
    if (msg.code >> 5 === 7) {
      this.onSignal(msg);
      return;
    }
    if (msg.code >= 1 && msg.code <= 31) {
      void this.onRequest(msg);
      return;
    }
    // Responses and empty messages from the page: nothing to do (no requests go to the page).
  }

  private onControl(text: string): void {
    if (text.length > CONTROL_LIMIT) {
      this.abort(`control message over ${CONTROL_LIMIT} characters`);
      return;
    }
    let o: unknown;
    try {
      o = JSON.parse(text);
    } catch {
      this.abort('control message is not JSON');
      return;
    }
    if (typeof o !== 'object' || o === null) return;
    const c = o as Record<string, unknown>;
    if (c.type !== 'credentials') return;
    const digest = createHash('sha256').update(text).digest('hex');
    if (digest === this.credsDigest) return;
    this.credsDigest = digest;
    this.creds = parseCredentials(c);
    // Certificate modes are answered (PSK fields are sent before every request and need no answer).
    if (this.creds.kind === 'error') this.sendJson({ type: 'credentials', error: this.creds.message });
    else if (this.creds.kind === 'cert' || this.creds.kind === 'rpk')
      this.sendJson({ type: 'credentials', summary: this.creds.summary });
  }

  private onSignal(msg: WsMessage): void {
    switch (msg.code) {
      case SignalCode.Ping:
        this.sendFrame({ code: SignalCode.Pong, token: msg.token, options: [], payload: new Uint8Array(0) });
        return;
      case SignalCode.Release:
      case SignalCode.Abort:
        this.ws.close(1000);
        return;
      default:
        // CSM (its Max-Message-Size bounds what we send; the page takes what we announce) and Pong.
        return;
    }
  }

  private abort(reason: string): void {
    this.sendFrame({
      code: SignalCode.Abort,
      token: new Uint8Array(0),
      options: [],
      payload: new TextEncoder().encode(reason),
    });
    this.ws.close(1002, 'protocol error');
  }

  private sendFrame(msg: WsMessage): void {
    if (this.ws.readyState !== 1) return;
    this.ws.send(encodeWsMessage(msg), { binary: true });
  }

  private sendJson(o: Record<string, unknown>): void {
    if (this.ws.readyState !== 1) return;
    this.ws.send(JSON.stringify(o));
  }

  private respond(token: Uint8Array, code: number, options: WsMessage['options'], payload: Uint8Array): void {
    let p = payload;
    let opts = options;
    if (p.length + 64 > this.limits.maxMessageSize) {
      opts = [];
      p = new TextEncoder().encode(`response of ${p.length} bytes is over this session's message size`);
      code = BAD_GATEWAY;
    }
    this.sendFrame({ code, token, options: opts, payload: p });
  }

  /** The target of a proxy request (RFC 7252 §5.7.2, §6.4 in reverse). */
  target(msg: WsMessage): CoapUri {
    const get = (n: number) => msg.options.find((o) => o.number === n)?.value;
    const all = (n: number) =>
      msg.options.filter((o) => o.number === n).map((o) => new TextDecoder().decode(o.value));
    const proxyUri = get(Opt.ProxyUri);
    let uri: CoapUri;
    try {
      if (proxyUri !== undefined) {
        const text = new TextDecoder().decode(proxyUri);
        const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(text)?.[1]?.toLowerCase();
        if (scheme !== undefined && !SCHEMES.has(scheme)) {
          throw new Refused(
            PROXYING_NOT_SUPPORTED,
            `the console proxies ${COAP_SCHEMES.join(', ')}, not ${scheme}`,
          );
        }
        uri = parseUri(text);
      } else {
        const scheme = get(Opt.ProxyScheme);
        if (scheme === undefined)
          throw new Refused(
            NOT_FOUND,
            'no Proxy-Uri or Proxy-Scheme: the console has no resources of its own',
          );
        const hostOpt = get(Opt.UriHost);
        if (hostOpt === undefined) throw new Refused(BAD_REQUEST, 'Proxy-Scheme needs Uri-Host');
        const host = new TextDecoder().decode(hostOpt);
        const port = get(Opt.UriPort);
        const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
        const base = parseUri(
          `${new TextDecoder().decode(scheme)}://${h}${port !== undefined ? `:${readUint(port)}` : ''}/`,
        );
        uri = { ...base, path: all(Opt.UriPath), query: all(Opt.UriQuery) };
      }
    } catch (err) {
      if (err instanceof Refused) throw err;
      throw new Refused(BAD_REQUEST, `invalid proxy target: ${(err as Error).message}`);
    }
    if (uri.scheme === 'coaps') {
      if (this.creds.kind === 'error')
        throw new Refused(BAD_REQUEST, `unusable DTLS credentials: ${this.creds.message}`);
      if (this.creds.kind === 'none')
        throw new Refused(
          BAD_REQUEST,
          'coaps:// needs a PSK identity and key, a client certificate and key, or a raw public key (fill in the DTLS fields)',
        );
    }
    return uri;
  }

  private client(uri: CoapUri): CoapClient {
    if ((uri.scheme === 'coaps+tcp' || uri.scheme === 'coaps+ws') && this.creds.kind === 'cert') {
      // TLS: the page's CAs instead of the system's, and its certificate if the server asks for one.
      const tls = this.creds.tls;
      return this.kept(this.certClients, `tls\0${this.creds.id}`, this.limits.maxCertClients, () =>
        tls ? { tls: { ...tls } } : {},
      );
    }
    const creds = uri.scheme === 'coaps' ? this.creds : undefined;
    if (creds?.kind === 'cert' || creds?.kind === 'rpk') {
      return this.kept(this.certClients, creds.id, this.limits.maxCertClients, () => ({
        dtls: { ...creds.dtls },
      }));
    }
    const psk = creds?.kind === 'psk' ? { identity: creds.identity, key: creds.key } : undefined;
    const k = psk ? `${psk.identity}\0${psk.key.toString('hex')}` : '';
    return this.kept(this.clients, k, this.limits.maxClients, () => (psk ? { psk } : {}));
  }

  /** The client kept under `key`, made when missing; past `max` the oldest is closed. */
  private kept(
    map: Map<string, CoapClient>,
    key: string,
    max: number,
    options: () => ClientOptions,
  ): CoapClient {
    let c = map.get(key);
    if (c === undefined) {
      if (map.size >= Math.max(1, max)) {
        const [oldestKey, oldest] = map.entries().next().value as [string, CoapClient];
        map.delete(oldestKey);
        void oldest.close();
      }
      c = new CoapClient({ ...this.clientOptions, ...options() });
      map.set(key, c);
    }
    return c;
  }

  private async onRequest(msg: WsMessage): Promise<void> {
    const tokenHex = toBuf(msg.token).toString('hex');
    const observeOpt = msg.options.find((o) => o.number === Opt.Observe);
    const observe = observeOpt === undefined ? undefined : readUint(observeOpt.value);
    // Observe: 1 (or any request) with the token of an observation ends it (RFC 7641 §3.6).
    const running = this.observations.get(tokenHex);
    if (running !== undefined) {
      running.stop();
      this.observations.delete(tokenHex);
    }
    const start = performance.now();
    let uri: CoapUri;
    try {
      uri = this.target(msg);
      if (this.inFlight >= this.limits.maxInFlight) {
        throw new Refused(
          UNAVAILABLE,
          `${this.limits.maxInFlight} requests in flight: wait for one to finish`,
        );
      }
      if (observe === 0 && this.observations.size >= this.limits.maxObservations) {
        throw new Refused(UNAVAILABLE, `${this.limits.maxObservations} observations already: cancel one`);
      }
    } catch (err) {
      const code = err instanceof Refused ? err.responseCode : BAD_REQUEST;
      this.sendJson({ type: 'end', token: tokenHex, ms: 0, error: (err as Error).message });
      this.respond(msg.token, code, [], new TextEncoder().encode((err as Error).message));
      return;
    }
    const keys = new Set<string>();
    if (uri.hostType !== 0) keys.add(`${uri.host}%${uri.port}`);
    const unwatch = this.hub.watch({
      host: uri.host,
      port: uri.port,
      keys,
      start,
      secure: uri.scheme === 'coaps',
      reliable: uri.scheme.includes('+'),
      emit: (step: LadderStep) => this.sendJson({ type: 'step', token: tokenHex, ...step }),
    });
    this.sendJson({
      type: 'begin',
      token: tokenHex,
      method: msg.code,
      scheme: uri.scheme,
      observe: observe === 0,
    });
    const forwarded: CoapOption[] = msg.options
      .filter((o) => !HOP.has(o.number))
      .map((o) => ({ number: o.number, value: toBuf(o.value) }));
    const client = this.client(uri);
    if (observe === 0 && (msg.code === GET || msg.code === FETCH)) {
      this.observe(client, uri, msg, tokenHex, forwarded, unwatch, start);
      return;
    }
    this.inFlight++;
    let lastProgress = 0;
    try {
      const res = await client.request(uri, {
        method: msg.code,
        ...(msg.payload.length > 0 ? { payload: msg.payload } : {}),
        options: forwarded,
        timeout: this.limits.requestTimeoutMs,
        maxBodySize: this.limits.maxMessageSize - 1024,
        onProgress: (p) => {
          const now = performance.now();
          const last = p.totalBytes !== undefined && p.bytes >= p.totalBytes;
          // At most every 20 ms, and always the last one.
          if (!last && now - lastProgress < 20) return;
          lastProgress = now;
          this.sendJson({ type: 'progress', token: tokenHex, ...p });
        },
      });
      // Let the events of this turn (the matched response) reach the ladder first.
      await new Promise((r) => setImmediate(r));
      this.sendJson({ type: 'end', token: tokenHex, ms: performance.now() - start, code: res.code });
      this.respond(msg.token, res.code, responseOptions(res), res.payload);
    } catch (err) {
      await new Promise((r) => setImmediate(r));
      const timeout = err instanceof TimeoutError;
      const text = err instanceof Error ? err.message : String(err);
      this.sendJson({ type: 'end', token: tokenHex, ms: performance.now() - start, error: text });
      this.respond(
        msg.token,
        err instanceof CoapError ? (timeout ? GATEWAY_TIMEOUT : BAD_GATEWAY) : INTERNAL,
        [],
        new TextEncoder().encode(text),
      );
    } finally {
      this.inFlight--;
      unwatch();
    }
  }

  private observe(
    client: CoapClient,
    uri: CoapUri,
    msg: WsMessage,
    tokenHex: string,
    forwarded: CoapOption[],
    unwatch: () => void,
    start: number,
  ): void {
    const obs = client.observe(uri, {
      method: msg.code === FETCH ? 'FETCH' : 'GET',
      options: forwarded,
      ...(msg.payload.length > 0 ? { payload: msg.payload } : {}),
      timeout: this.limits.requestTimeoutMs,
      maxBodySize: this.limits.maxMessageSize - 1024,
    });
    let stopped = false;
    const stop = () => {
      if (stopped) return;
      stopped = true;
      unwatch();
      void obs.cancel().catch(() => {});
    };
    this.observations.set(tokenHex, { obs, stop });
    void (async () => {
      try {
        for await (const n of obs) {
          if (stopped) break;
          this.respond(msg.token, n.code, responseOptions(n, true), n.payload);
          this.sendJson({
            type: 'notification',
            token: tokenHex,
            ms: performance.now() - start,
            code: n.code,
          });
        }
        if (!stopped) this.sendJson({ type: 'end', token: tokenHex, ms: performance.now() - start });
      } catch (err) {
        if (stopped) return;
        const text = err instanceof Error ? err.message : String(err);
        this.sendJson({ type: 'end', token: tokenHex, ms: performance.now() - start, error: text });
        this.respond(
          msg.token,
          err instanceof TimeoutError ? GATEWAY_TIMEOUT : BAD_GATEWAY,
          [],
          new TextEncoder().encode(text),
        );
      } finally {
        if (this.observations.get(tokenHex)?.obs === obs) this.observations.delete(tokenHex);
        stop();
      }
    })();
  }
}

/** The response's options for the page: without the block-wise ones (the body is whole); Observe kept for notifications. */
function responseOptions(res: CoapResponse, keepObserve = false): WsMessage['options'] {
  return res.options
    .filter(
      (o) =>
        o.number !== Opt.Block1 &&
        o.number !== Opt.Block2 &&
        o.number !== Opt.Size1 &&
        o.number !== Opt.Size2 &&
        (keepObserve || o.number !== Opt.Observe),
    )
    .map((o) => ({ number: o.number, value: o.value }));
}

export { codeText };
