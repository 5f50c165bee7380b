/**
 * A hand-made CoAP-over-UDP client for the attack tests (loopback only).
 *
 * It sends requests built from parts (any options, payload, type, token) from
 * a chosen source address (any 127.x.y.z plays another host), matches
 * responses by token (empty ACKs and RSTs by Message ID), and — like any
 * client that receives datagrams at its own address — answers a 4.01
 * Unauthorized + Echo challenge (RFC 9175; a coap:// server sends it to an
 * unverified address instead of a large response) by repeating the request
 * once with the Echo value. `answerEcho: false` plays a spoofed source,
 * which never sees the replies: the challenge is not answered (what arrives
 * is still counted, to measure what a victim would get).
 *
 * Every wait is bounded: `request()` gives up after its transmissions,
 * `until()` throws after its deadline, `waitForAnswers()` returns false.
 */
import dgram from 'node:dgram';
import {
  type CoapMessage,
  type CoapOption,
  decodeMessage,
  encodeEmpty,
  encodeMessage,
} from '../../src/codec/message.js';
import { getOption } from '../../src/codec/options.js';
import { MessageType, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';

export interface RawRequest {
  /** Method code (1 GET, 2 POST, 3 PUT, 4 DELETE, ...). */
  code: number;
  /** Uri-Path: "/a/b" or its segments. */
  path?: string | readonly string[];
  /** Other options, in any order (sorted on encoding; repeated options keep their order). */
  options?: readonly CoapOption[];
  payload?: Buffer;
  /** Send as NON (default CON). */
  non?: boolean;
  /** Token (default: a fresh 4-byte token). Responses are matched by token: keep tokens unique. */
  token?: Buffer;
}

export interface RawClientOptions {
  /** Source address to bind (default 127.0.0.1). */
  host?: string;
  /** The server's address (default 127.0.0.1). */
  serverHost?: string;
  /**
   * Answer a 4.01 + Echo by repeating the request once with the Echo value, as a client
   * that receives at its address can (default true). false plays a spoofed source.
   */
  answerEcho?: boolean;
  /** Keep every datagram received in `datagrams` (default false). */
  keepDatagrams?: boolean;
}

export interface RequestOptions {
  /** Transmissions before giving up (default 5). A CON is retransmitted as is, a NON re-sent with a new Message ID. */
  tries?: number;
  /** Time between transmissions, in ms (default 1000). */
  intervalMs?: number;
}

interface Pending {
  type: MessageType;
  code: number;
  token: Buffer;
  options: CoapOption[];
  payload: Buffer | undefined;
  mid: number;
  bytes: Buffer;
  echoed: boolean;
  acked: boolean;
  /** Set for request(): called with the answer, or an error. */
  done?: (m: CoapMessage | Error) => void;
  /** Set for request(): a new transmission round after the Echo repeat. */
  restart?: () => void;
}

/** Requests sent with send() remembered for their Echo challenge (the oldest are forgotten first). */
const MAX_FIRED = 4096;

export function pathOptions(path: string | readonly string[]): CoapOption[] {
  const segs = typeof path === 'string' ? path.split('/').filter(Boolean) : path;
  return segs.map((s) => ({ number: OptionNumber.UriPath, value: Buffer.from(s) }));
}

export class RawCoapClient {
  readonly socket: dgram.Socket;
  /** Bytes of all datagrams sent / received. */
  bytesSent = 0;
  bytesReceived = 0;
  /** Datagrams received (every kind). */
  datagramsReceived = 0;
  /** Every datagram received, with `keepDatagrams`. */
  readonly datagrams: Buffer[] = [];
  /** Responses received (not counting the challenges this client answered), and their codes. */
  answers = 0;
  readonly codes = new Map<number, number>();
  /** 4.01 + Echo challenges answered with a repeated request. */
  echoesAnswered = 0;
  readonly answerEcho: boolean;
  private readonly keep: boolean;
  private mid = Math.floor(Math.random() * 0x10000);
  private messages = 0;
  private tok = Math.floor(Math.random() * 2 ** 32);
  /** request() exchanges by token (hex), and their Message IDs. */
  private readonly requests = new Map<string, Pending>();
  private readonly byMid = new Map<number, string>();
  /** send() requests by token, kept to answer a challenge. */
  private readonly fired = new Map<string, Pending>();
  private readonly pongs = new Set<number>();
  private waiters: Array<() => void> = [];
  private closed = false;

  private constructor(
    readonly serverPort: number,
    readonly serverHost: string,
    opts: RawClientOptions,
  ) {
    this.answerEcho = opts.answerEcho ?? true;
    this.keep = opts.keepDatagrams ?? false;
    this.socket = dgram.createSocket('udp4');
    this.socket.on('message', (data) => this.onDatagram(data));
    this.socket.on('error', () => undefined);
  }

  /** A client on its own socket (port 0) at `opts.host`, talking to 127.0.0.1:serverPort. */
  static async open(serverPort: number, opts: RawClientOptions = {}): Promise<RawCoapClient> {
    const c = new RawCoapClient(serverPort, opts.serverHost ?? '127.0.0.1', opts);
    await new Promise<void>((resolve, reject) => {
      c.socket.once('error', reject);
      c.socket.bind(0, opts.host ?? '127.0.0.1', () => {
        c.socket.off('error', reject);
        resolve();
      });
    });
    c.socket.setSendBufferSize(4 << 20);
    c.socket.setRecvBufferSize(4 << 20);
    return c;
  }

  /** Number of responses received with this code. */
  count(code: number): number {
    return this.codes.get(code) ?? 0;
  }

  /**
   * Sends a request once, without waiting (bounded traffic is the caller's loop).
   * Returns its size in bytes. With `answerEcho`, a challenge to it is answered.
   */
  send(req: RawRequest): number {
    const p = this.pending(req);
    if (this.answerEcho) {
      const key = p.token.toString('hex');
      this.fired.delete(key);
      this.fired.set(key, p);
      if (this.fired.size > MAX_FIRED) this.fired.delete(this.fired.keys().next().value!);
    }
    this.transmit(p.bytes);
    return p.bytes.length;
  }

  /**
   * Sends a request and resolves with its response (after the Echo round trip, if
   * challenged); rejects after `tries` transmissions `intervalMs` apart, or on close().
   */
  request(req: RawRequest, opts: RequestOptions = {}): Promise<CoapMessage> {
    const tries = opts.tries ?? 5;
    const interval = opts.intervalMs ?? 1000;
    const p = this.pending(req);
    const key = p.token.toString('hex');
    if (this.requests.has(key)) return Promise.reject(new Error(`token ${key} already in use`));
    return new Promise<CoapMessage>((resolve, reject) => {
      let n = 0;
      let timer: NodeJS.Timeout | undefined;
      const fire = () => {
        if (++n > tries) {
          this.forget(key, p);
          reject(new Error(`no answer to ${describe(req)} after ${tries} transmissions`));
          return;
        }
        if (n > 1 && p.type === MessageType.NON) this.encode(p);
        if (!p.acked) this.transmit(p.bytes);
        timer = setTimeout(fire, interval);
      };
      p.done = (m) => {
        clearTimeout(timer);
        if (m instanceof Error) reject(m);
        else resolve(m);
      };
      p.restart = () => {
        clearTimeout(timer);
        n = 0;
        fire();
      };
      this.requests.set(key, p);
      this.byMid.set(p.mid, key);
      fire();
    });
  }

  /** Sends `total` requests (`one(i)` calls send()) with at most `window` unanswered; a lost answer stalls it at most `stallMs`. */
  async paced(total: number, window: number, one: (i: number) => void, stallMs = 200): Promise<void> {
    const start = this.answers;
    for (let i = 0; i < total; i++) {
      if (i - (this.answers - start) >= window) await this.waitForAnswers(this.answers + 1, stallMs);
      one(i);
    }
  }

  /** Waits until `n` responses in all have arrived; false if `ms` passed first. */
  waitForAnswers(n: number, ms = 10_000): Promise<boolean> {
    return this.waitUntil(() => this.answers >= n, ms);
  }

  /** Waits until `cond()` holds (checked at every datagram); throws "timeout: <what>" after `ms`. */
  async until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
    if (!(await this.waitUntil(cond, ms))) throw new Error(`timeout: ${what}`);
  }

  /**
   * A CoAP ping: resolves on its RST. Replies on one loopback socket arrive in order,
   * so everything the server sent before it has been received.
   */
  async barrier(ms = 10_000): Promise<void> {
    const mid = this.nextMid();
    this.transmit(encodeEmpty(MessageType.CON, mid));
    await this.until(() => this.pongs.has(mid), 'RST to the ping', ms);
    this.pongs.delete(mid);
  }

  /** Closes the socket; pending request() calls reject. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [key, p] of this.requests) {
      this.forget(key, p);
      p.done?.(new Error(`closed before an answer to ${describe(p)}`));
    }
    this.fired.clear();
    this.socket.close();
    for (const w of this.waiters.splice(0)) w();
  }

  // ---- internals -------------------------------------------------------------

  /**
   * A new Message ID. The server remembers Message IDs for EXCHANGE_LIFETIME (minutes):
   * one client reusing one within a test would get a stale (deduplicated) answer or none.
   */
  private nextMid(): number {
    if (++this.messages > 0xffff) {
      throw new Error('this client has used all 65,536 Message IDs: open another one (a new source port)');
    }
    this.mid = (this.mid + 1) & 0xffff;
    return this.mid;
  }

  private pending(req: RawRequest): Pending {
    let token = req.token;
    if (token === undefined) {
      this.tok = (this.tok + 1) >>> 0;
      token = Buffer.alloc(4);
      token.writeUInt32BE(this.tok);
    }
    const p: Pending = {
      type: req.non ? MessageType.NON : MessageType.CON,
      code: req.code,
      token,
      options: [...(req.path !== undefined ? pathOptions(req.path) : []), ...(req.options ?? [])],
      payload: req.payload,
      mid: 0,
      bytes: Buffer.alloc(0),
      echoed: false,
      acked: false,
    };
    this.encode(p);
    return p;
  }

  /** (Re-)encodes `p` with a new Message ID. */
  private encode(p: Pending): void {
    if (p.done !== undefined) this.byMid.delete(p.mid);
    p.mid = this.nextMid();
    p.acked = false;
    p.bytes = encodeMessage({
      type: p.type,
      code: p.code,
      messageId: p.mid,
      token: p.token,
      options: p.options,
      ...(p.payload ? { payload: p.payload } : {}),
    });
    if (p.done !== undefined) this.byMid.set(p.mid, p.token.toString('hex'));
  }

  private transmit(bytes: Buffer): void {
    if (this.closed) return;
    this.bytesSent += bytes.length;
    this.socket.send(bytes, this.serverPort, this.serverHost);
  }

  private forget(key: string, p: Pending): void {
    this.requests.delete(key);
    this.byMid.delete(p.mid);
  }

  private waitUntil(cond: () => boolean, ms: number): Promise<boolean> {
    const end = performance.now() + ms;
    return new Promise<boolean>((resolve) => {
      const check = () => {
        if (cond()) return resolve(true);
        const left = end - performance.now();
        if (left <= 0 || this.closed) return resolve(cond());
        const t = setTimeout(check, left);
        this.waiters.push(() => {
          clearTimeout(t);
          check();
        });
      };
      check();
    });
  }

  private onDatagram(data: Buffer): void {
    this.bytesReceived += data.length;
    this.datagramsReceived++;
    if (this.keep) this.datagrams.push(data);
    let m: CoapMessage | undefined;
    try {
      m = decodeMessage(data);
    } catch {
      m = undefined;
    }
    if (m !== undefined) this.onMessage(m);
    for (const w of this.waiters.splice(0)) w();
  }

  private onMessage(m: CoapMessage): void {
    if (m.code === 0) {
      if (m.type === MessageType.RST) this.pongs.add(m.messageId);
      const key = this.byMid.get(m.messageId);
      if (key === undefined) return;
      const p = this.requests.get(key)!;
      if (m.type === MessageType.ACK)
        p.acked = true; // a separate response follows
      else if (m.type === MessageType.RST) {
        this.forget(key, p);
        p.done?.(new Error(`RST to ${describe(p)}`));
      }
      return;
    }
    if (m.code >> 5 === 0) return; // a request: not for this client
    const key = m.token.toString('hex');
    const p = this.requests.get(key) ?? this.fired.get(key);
    if (p !== undefined && p.done !== undefined && m.type === MessageType.CON && !this.closed) {
      this.socket.send(encodeEmpty(MessageType.ACK, m.messageId), this.serverPort, this.serverHost);
    }
    if (p !== undefined && this.answerEcho && !p.echoed && m.code === ResponseCode.Unauthorized) {
      const echo = getOption(m.options, OptionNumber.Echo);
      if (echo !== undefined) {
        p.echoed = true;
        this.echoesAnswered++;
        p.options = [
          ...p.options.filter((o) => o.number !== OptionNumber.Echo),
          { number: OptionNumber.Echo, value: echo },
        ];
        this.encode(p);
        if (p.restart !== undefined) p.restart();
        else this.transmit(p.bytes);
        return;
      }
    }
    this.answers++;
    this.codes.set(m.code, (this.codes.get(m.code) ?? 0) + 1);
    if (p === undefined) return;
    if (p.done !== undefined) {
      this.forget(key, p);
      p.done(m);
    } else this.fired.delete(key);
  }
}

function describe(r: {
  code: number;
  path?: string | readonly string[];
  options?: readonly CoapOption[];
}): string {
  const segs =
    r.path !== undefined
      ? pathOptions(r.path)
      : (r.options ?? []).filter((o) => o.number === OptionNumber.UriPath);
  const s = segs.map((o) => o.value.toString()).join('/');
  return `code ${r.code} /${s.length > 40 ? `${s.slice(0, 40)}...` : s}`;
}
