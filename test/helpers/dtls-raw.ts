/**
 * Raw DTLS peers for bound and attack tests: build ClientHello / handshake
 * fragment records by hand, do the cookie exchange, and leave a handshake
 * half-open (the server has sent its ServerHello flight, we never answer).
 */
import { createSocket, type Socket } from 'node:dgram';
import type { ClientConnectionOptions } from '../../src/dtls/client.js';
import { encodeFragment, parseHandshakeFragments } from '../../src/dtls/handshake/fragment.js';
import { decodeHelloVerifyRequest, encodeClientHello } from '../../src/dtls/handshake/messages.js';
import { encodeRecord, parseDatagram } from '../../src/dtls/record/record.js';

/** One epoch-0 handshake record holding a ClientHello (message_seq 0). */
export function clientHelloRecord(cookie: Buffer, random: Buffer, recordSeq = 0): Buffer {
  const body = encodeClientHello({
    version: 0xfefd,
    random,
    sessionId: Buffer.alloc(0),
    cookie,
    cipherSuites: [0xc0a8],
    compressionMethods: Buffer.from([0]),
    extensions: [],
  });
  return encodeRecord(22, 0, recordSeq, encodeFragment(1, 0, body, 0, body.length));
}

/**
 * An epoch-0 handshake record with one fragment that claims a message of
 * `length` bytes and carries `body` at `offset` (the header is written by hand
 * so that the claimed length can be anything).
 */
export function fragmentRecord(
  msgType: number,
  messageSeq: number,
  length: number,
  offset: number,
  body: Buffer,
  recordSeq: number,
): Buffer {
  const f = Buffer.alloc(12 + body.length);
  f[0] = msgType;
  f.writeUIntBE(length, 1, 3);
  f.writeUInt16BE(messageSeq, 4);
  f.writeUIntBE(offset, 6, 3);
  f.writeUIntBE(body.length, 9, 3);
  body.copy(f, 12);
  return encodeRecord(22, 0, recordSeq, f);
}

/** A UDP socket that records what it receives and can wait for the next datagram. */
export class RawDtlsPeer {
  readonly received: Buffer[] = [];
  private waiters: (() => void)[] = [];
  private constructor(readonly socket: Socket) {
    socket.on('message', (m) => {
      this.received.push(m);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async create(address = '127.0.0.1'): Promise<RawDtlsPeer> {
    const s = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(0, address, () => {
        s.off('error', reject);
        resolve();
      });
    });
    return new RawDtlsPeer(s);
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(data: Buffer, port: number, host = '127.0.0.1'): void {
    this.socket.send(data, port, host);
  }

  /** Resolves with the first datagram received at index >= `from` that matches `pred` (rejects after `ms`). */
  async waitFor(pred: (d: Buffer) => boolean, from = 0, ms = 5000): Promise<Buffer> {
    const deadline = Date.now() + ms;
    for (let i = from; ; ) {
      for (; i < this.received.length; i++) if (pred(this.received[i]!)) return this.received[i]!;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`no matching datagram within ${ms} ms (${this.received.length} received)`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /**
   * Sends `data` and waits for a datagram matching `pred`, resending every
   * `everyMs` like a DTLS peer retransmits (a burst can overflow the server's
   * socket buffer on a busy machine); rejects after `tries` sends.
   */
  async exchange(
    data: Buffer,
    port: number,
    pred: (d: Buffer) => boolean,
    tries = 20,
    everyMs = 250,
  ): Promise<Buffer> {
    const from = this.received.length;
    for (let i = 1; ; i++) {
      this.send(data, port);
      try {
        return await this.waitFor(pred, from, everyMs);
      } catch (e) {
        if (i >= tries) throw e;
      }
    }
  }

  close(): Promise<void> {
    return new Promise((r) => this.socket.close(() => r()));
  }
}

/** Handshake message types of the first handshake record of a datagram. */
export function handshakeTypes(d: Buffer): number[] {
  const types: number[] = [];
  for (const rec of parseDatagram(d)) {
    if (rec.type !== 22 || rec.epoch !== 0) continue;
    try {
      for (const f of parseHandshakeFragments(rec.fragment)) types.push(f.msgType);
    } catch {
      // not a parseable handshake record
    }
  }
  return types;
}

/** The alert descriptions (fatal or not) of a datagram's epoch-0 alert records. */
export function alerts(d: Buffer): number[] {
  return parseDatagram(d)
    .filter((r) => r.type === 21 && r.epoch === 0 && r.fragment.length === 2)
    .map((r) => r.fragment[1]!);
}

/**
 * Cookie exchange from `peer`, then the verified ClientHello. With `waitFlight`
 * it resolves once the server's ServerHello arrived (the handshake is half-open);
 * otherwise right after sending (the server may refuse it).
 */
export async function openHalfHandshake(
  peer: RawDtlsPeer,
  serverPort: number,
  random: Buffer,
  waitFlight = true,
): Promise<void> {
  const hello = clientHelloRecord(Buffer.alloc(0), random, 0);
  const hvr = await peer.exchange(hello, serverPort, (d) => handshakeTypes(d).includes(3));
  const [rec] = parseDatagram(hvr);
  const cookie = decodeHelloVerifyRequest(parseHandshakeFragments(rec!.fragment)[0]!.body).cookie;
  const verified = clientHelloRecord(cookie, random, 1);
  if (waitFlight) await peer.exchange(verified, serverPort, (d) => handshakeTypes(d).includes(2));
  else peer.send(verified, serverPort);
}

/**
 * Options of an in-memory DTLS client connection (PSK "mem"/"k", suite 0xC0A8, 1 s initial
 * retransmission, 30 s handshake deadline), with `overrides` on top: the unit tests that drive
 * a DtlsClientConnection against a DtlsServer without sockets.
 */
export function memClientOptions(overrides: Partial<ClientConnectionOptions> = {}): ClientConnectionOptions {
  return {
    mtu: 1280,
    ipOverhead: 48,
    retransmitInitialMs: 1000,
    retransmitMaxMs: 60_000,
    handshakeTimeoutMs: 30_000,
    peerLabel: 'mem',
    identity: Buffer.from('mem'),
    psk: Buffer.from('k'),
    cipherSuites: [0xc0a8],
    ...overrides,
  };
}
