/**
 * A NAT that rebinds, for loopback tests: one client talks to the relay's
 * port; the relay forwards to the target from an "outside" socket and relays
 * answers back. `rebind()` (or `rebindBefore` returning true for a datagram)
 * closes the outside socket and opens a new one, as a NAT whose mapping timed
 * out does: the server sees the same client come from a new source port, and
 * whatever it still sends to the old port is lost.
 */
import dgram from 'node:dgram';

export interface RebindRelayOptions {
  target: { address: string; port: number };
  /** Asked for each client datagram (with the count so far, from 1): rebind before forwarding it. */
  rebindBefore?: (d: Buffer, n: number) => boolean;
}

export class RebindRelay {
  private readonly inside = dgram.createSocket('udp4');
  private outside?: dgram.Socket;
  private client?: { address: string; port: number };
  private count = 0;
  /** Source ports the target saw, in order. */
  readonly ports: number[] = [];
  /** Client datagrams seen (before forwarding). */
  readonly upLog: Buffer[] = [];
  /** Datagrams from the target relayed to the client. */
  readonly downLog: Buffer[] = [];
  /** The source port of each of them. */
  readonly downFrom: number[] = [];
  /** Where client datagrams go (a test may switch it: a load balancer moving the client). */
  target: { address: string; port: number };

  /** Local address of the outside socket (a test may change it: the NAT's new public address). */
  outsideAddress = '127.0.0.1';
  /**
   * Accepts or refuses the new outside port a rebinding drew (e.g. to land on
   * another node behind a hashing load balancer); at most 64 draws.
   */
  acceptPort?: (address: string, port: number) => boolean;
  /** Where each rebinding went: [address, port]. */
  readonly outside_: [string, number][] = [];
  /** Asked for each client datagram: rebind before forwarding it (a test may set it later). */
  rebindBefore: RebindRelayOptions['rebindBefore'];

  private constructor(options: RebindRelayOptions) {
    this.target = options.target;
    this.rebindBefore = options.rebindBefore;
  }

  static async create(options: RebindRelayOptions): Promise<RebindRelay> {
    const r = new RebindRelay(options);
    await new Promise<void>((res) => r.inside.bind(0, '127.0.0.1', () => res()));
    r.inside.on('message', (d, rinfo) => r.up(d, rinfo));
    await r.rebind();
    return r;
  }

  /** Where the client sends. */
  get port(): number {
    return this.inside.address().port;
  }

  /** DTLS ClientHello records the client sent (each handshake sends two: without and with cookie). */
  get clientHellos(): number {
    return this.upLog.filter((d) => d[0] === 22 && d[3] === 0 && d[4] === 0 && d[13] === 1).length;
  }

  /**
   * Handshakes the client started: distinct ClientHello randoms. The ClientHello with the
   * cookie repeats the first one's random (RFC 6347 §4.2.1), and so does a retransmission,
   * which a busy machine may cause: counting records would count those too.
   */
  get handshakes(): number {
    const randoms = new Set<string>();
    for (const d of this.upLog) {
      // record header 13, handshake header 12, client_version 2, then the 32-byte random
      if (d[0] === 22 && d[3] === 0 && d[4] === 0 && d[13] === 1 && d.length >= 59)
        randoms.add(d.subarray(27, 59).toString('hex'));
    }
    return randoms.size;
  }

  /** A new outside socket (new source port); the old one is closed. */
  async rebind(): Promise<void> {
    const old = this.outside;
    let s = dgram.createSocket('udp4');
    for (let i = 0; ; i++) {
      await new Promise<void>((res) => s.bind(0, this.outsideAddress, () => res()));
      if (i >= 63 || this.acceptPort === undefined || this.acceptPort(this.outsideAddress, s.address().port))
        break;
      s.close();
      s = dgram.createSocket('udp4');
    }
    this.outside_.push([this.outsideAddress, s.address().port]);
    s.on('message', (d, rinfo) => {
      if (this.outside !== s || this.client === undefined) return;
      this.downLog.push(d);
      this.downFrom.push(rinfo.port);
      this.inside.send(d, this.client.port, this.client.address);
    });
    this.outside = s;
    this.ports.push(s.address().port);
    old?.close();
  }

  private up(d: Buffer, rinfo: dgram.RemoteInfo): void {
    this.client = { address: rinfo.address, port: rinfo.port };
    this.upLog.push(d);
    const n = ++this.count;
    const go = () => {
      const { address, port } = this.target;
      this.outside?.send(d, port, address);
    };
    if (this.rebindBefore?.(d, n)) void this.rebind().then(go);
    else go();
  }

  close(): void {
    this.inside.close();
    this.outside?.close();
    this.outside = undefined;
  }
}
