/**
 * A lossy UDP proxy for loopback tests: clients talk to the proxy's port,
 * the proxy forwards to a target from one upstream socket per client, and
 * relays replies back. Callbacks decide per datagram whether to drop, delay,
 * duplicate or reorder it; `seeded()` gives deterministic randomness.
 */
import dgram from 'node:dgram';

export type Direction = 'up' | 'down';

export interface Datagram {
  dir: Direction;
  data: Buffer;
  /** Index of this datagram among all datagrams seen by the proxy (both directions). */
  index: number;
}

export interface LossyProxyOptions {
  target: { address: string; port: number };
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  drop?: (d: Datagram) => boolean;
  /** Extra delay in ms (default 0: forwarded at once). */
  delay?: (d: Datagram) => number;
  duplicate?: (d: Datagram) => boolean;
  /** Hold this datagram back and send it after the next one in the same direction. */
  reorder?: (d: Datagram) => boolean;
}

export interface LossyProxyStats {
  forwarded: number;
  dropped: number;
  duplicated: number;
  reordered: number;
  log: Datagram[];
}

/** mulberry32: a small deterministic PRNG returning numbers in [0, 1). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class LossyProxy {
  readonly stats: LossyProxyStats = { forwarded: 0, dropped: 0, duplicated: 0, reordered: 0, log: [] };
  private readonly upstream = new Map<string, dgram.Socket>();
  private readonly held = new Map<string, () => void>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private index = 0;
  private closed = false;

  private constructor(
    private readonly front: dgram.Socket,
    private readonly options: LossyProxyOptions,
  ) {
    front.on('message', (data, rinfo) => this.fromClient(data, rinfo));
  }

  static async create(options: LossyProxyOptions): Promise<LossyProxy> {
    const host = options.host ?? '127.0.0.1';
    const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, host, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    return new LossyProxy(sock, options);
  }

  get port(): number {
    return this.front.address().port;
  }

  get address(): string {
    return this.front.address().address;
  }

  private fromClient(data: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}|${rinfo.port}`;
    let up = this.upstream.get(key);
    if (up === undefined) {
      const t = this.options.target;
      up = dgram.createSocket(t.address.includes(':') ? 'udp6' : 'udp4');
      up.on('message', (reply) =>
        this.forward('down', reply, (d) => this.front.send(d, rinfo.port, rinfo.address)),
      );
      up.on('error', () => {});
      this.upstream.set(key, up);
    }
    const sock = up;
    const t = this.options.target;
    this.forward('up', data, (d) => sock.send(d, t.port, t.address));
  }

  private forward(dir: Direction, data: Buffer, send: (d: Buffer) => void): void {
    if (this.closed) return;
    const d: Datagram = { dir, data, index: this.index++ };
    this.stats.log.push(d);
    const o = this.options;
    if (o.drop?.(d)) {
      this.stats.dropped++;
      return;
    }
    const copies = o.duplicate?.(d) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    const deliver = () => {
      for (let i = 0; i < copies; i++) {
        const ms = o.delay?.(d) ?? 0;
        const go = () => {
          if (this.closed) return;
          this.stats.forwarded++;
          send(data);
        };
        if (ms > 0) {
          const timer = setTimeout(() => {
            this.timers.delete(timer);
            go();
          }, ms);
          this.timers.add(timer);
        } else go();
      }
    };
    // Release a datagram held back for reordering after this one.
    const heldBefore = this.held.get(dir);
    if (o.reorder?.(d) && heldBefore === undefined) {
      this.stats.reordered++;
      this.held.set(dir, deliver);
      // Never hold forever: release after 200 ms if nothing follows.
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (this.held.get(dir) === deliver) {
          this.held.delete(dir);
          deliver();
        }
      }, 200);
      this.timers.add(timer);
      return;
    }
    deliver();
    if (heldBefore) {
      this.held.delete(dir);
      heldBefore();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const socks = [this.front, ...this.upstream.values()];
    this.upstream.clear();
    await Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}
