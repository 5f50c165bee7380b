/** Test helpers for the DTLS tests: a tiny impairing UDP proxy and small utilities. */
import { createSocket, type Socket } from 'node:dgram';
import { seeded } from '../helpers/lossy-proxy.js';

export interface ProxyOptions {
  loss?: number;
  duplicate?: number;
  /** Probability of delaying a datagram by up to `maxDelayMs` (reordering). */
  reorder?: number;
  maxDelayMs?: number;
  seed?: number;
  /** Return false to drop a datagram ('c2s' = towards the server). */
  filter?: (msg: Buffer, dir: 'c2s' | 's2c') => boolean;
}

/**
 * UDP proxy in front of `target`. All clients share ONE upstream socket, so the
 * server sees every client behind the proxy as the same address/port (used to
 * simulate a client that lost its session and reconnects from the same port).
 */
export class LossyProxy {
  options: ProxyOptions;
  forwarded = 0;
  dropped = 0;
  private front!: Socket;
  private back!: Socket;
  private lastClient?: { address: string; port: number };
  private readonly timers = new Set<NodeJS.Timeout>();
  private random: () => number;

  private constructor(
    private readonly targetPort: number,
    options: ProxyOptions,
  ) {
    this.options = options;
    this.random = seeded(options.seed ?? 1);
  }

  static async create(targetPort: number, options: ProxyOptions = {}): Promise<LossyProxy> {
    const p = new LossyProxy(targetPort, options);
    p.front = createSocket('udp4');
    p.back = createSocket('udp4');
    await Promise.all([
      new Promise<void>((r) => p.front.bind(0, '127.0.0.1', () => r())),
      new Promise<void>((r) => p.back.bind(0, '127.0.0.1', () => r())),
    ]);
    p.front.on('message', (msg, rinfo) => {
      p.lastClient = { address: rinfo.address, port: rinfo.port };
      if (p.options.filter && !p.options.filter(msg, 'c2s')) return;
      p.impair(msg, (m) => p.back.send(m, p.targetPort, '127.0.0.1'));
    });
    p.back.on('message', (msg) => {
      const c = p.lastClient;
      if (p.options.filter && !p.options.filter(msg, 's2c')) return;
      if (c) p.impair(msg, (m) => p.front.send(m, c.port, c.address));
    });
    return p;
  }

  get port(): number {
    return this.front.address().port;
  }

  private impair(msg: Buffer, send: (m: Buffer) => void): void {
    const o = this.options;
    if (this.random() < (o.loss ?? 0)) {
      this.dropped++;
      return;
    }
    const copies = this.random() < (o.duplicate ?? 0) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      this.forwarded++;
      if (this.random() < (o.reorder ?? 0)) {
        const t = setTimeout(
          () => {
            this.timers.delete(t);
            send(msg);
          },
          Math.floor(this.random() * (o.maxDelayMs ?? 20)),
        );
        this.timers.add(t);
      } else {
        send(msg);
      }
    }
  }

  /** Sends a datagram as if it came from the other side ('c2s' = to the server, from the proxy's upstream address). */
  inject(msg: Buffer, dir: 'c2s' | 's2c'): void {
    if (dir === 'c2s') this.back.send(msg, this.targetPort, '127.0.0.1');
    else if (this.lastClient) this.front.send(msg, this.lastClient.port, this.lastClient.address);
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    await Promise.all([
      new Promise<void>((r) => this.front.close(() => r())),
      new Promise<void>((r) => this.back.close(() => r())),
    ]);
  }
}

export { sleep, until, withTimeout } from '../helpers/timing.js';
