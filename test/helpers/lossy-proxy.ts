/**
 * A lossy UDP proxy for loopback tests (CoAP and DTLS alike): clients talk to
 * the proxy's port, the proxy forwards to a target and relays replies back.
 *
 * - Callbacks decide per datagram whether to drop, delay, duplicate or reorder
 *   it; `randomImpairments()` builds such callbacks from rates and a seed, and
 *   `seeded()` gives the deterministic PRNG behind it.
 * - `upstream: 'per-client'` (default) forwards each client from its own
 *   upstream socket; `'shared'` forwards every client from ONE socket, so the
 *   target sees them all as the same address/port (a client that lost its
 *   state and comes back from the same port) and replies go to the latest one.
 * - `stats` counts what happened and logs every datagram seen; `inject()`
 *   sends a datagram unimpaired as if it came from one side.
 */
import dgram from 'node:dgram';

/** 'up' travels from a client towards the target, 'down' back to the client. */
export type Direction = 'up' | 'down';

export interface Datagram {
  dir: Direction;
  data: Buffer;
  /** Index of this datagram among all datagrams seen by the proxy (both directions). */
  index: number;
}

export interface LossyProxyOptions {
  /** Where to forward; a bare port means 127.0.0.1. */
  target: number | { address: string; port: number };
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** One upstream socket per client (default) or one for all clients. */
  upstream?: 'per-client' | 'shared';
  /** Return true to drop this datagram (counted in `stats.dropped`). */
  drop?: (d: Datagram) => boolean;
  /** Extra delay in ms, asked once per copy sent (default 0: forwarded at once). */
  delay?: (d: Datagram) => number;
  duplicate?: (d: Datagram) => boolean;
  /** Hold this datagram back and send it after the next one in the same direction. */
  reorder?: (d: Datagram) => boolean;
}

export interface LossyProxyStats {
  /** Copies actually sent (a duplicated datagram counts twice). */
  forwarded: number;
  dropped: number;
  duplicated: number;
  reordered: number;
  /** Every datagram seen, in arrival order, dropped ones included. */
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

export interface RandomImpairments {
  /** Probability of dropping a datagram. */
  loss?: number;
  /** Probability of sending a datagram twice. */
  duplicate?: number;
  /** Probability of delaying a copy by up to `maxDelayMs` (which reorders traffic). */
  jitter?: number;
  /** Default 20. */
  maxDelayMs?: number;
  /** Default 1. */
  seed?: number;
}

/**
 * Callbacks for `LossyProxyOptions` that impair traffic at random rates,
 * deterministically for a given seed: per datagram one draw for loss, one for
 * duplication if kept, and per copy one for jitter (plus one for its delay).
 */
export function randomImpairments(
  o: RandomImpairments,
): Pick<LossyProxyOptions, 'drop' | 'duplicate' | 'delay'> {
  const random = seeded(o.seed ?? 1);
  const maxDelayMs = o.maxDelayMs ?? 20;
  return {
    drop: () => random() < (o.loss ?? 0),
    duplicate: () => random() < (o.duplicate ?? 0),
    delay: () => (random() < (o.jitter ?? 0) ? Math.floor(random() * maxDelayMs) : 0),
  };
}

interface Upstream {
  sock: dgram.Socket;
  /** Where replies go: the client (or, shared, the latest client) behind this socket. */
  client: { address: string; port: number };
}

/** Releases a reorder-held datagram after this long if nothing follows it. */
const HOLD_MAX_MS = 200;

export class LossyProxy {
  readonly stats: LossyProxyStats = { forwarded: 0, dropped: 0, duplicated: 0, reordered: 0, log: [] };
  /** Live options: tests may change the callbacks between exchanges. */
  readonly options: LossyProxyOptions;
  private readonly target: { address: string; port: number };
  private readonly upstream = new Map<string, Upstream>();
  private latest: Upstream | undefined;
  private readonly held = new Map<Direction, () => void>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private index = 0;
  private closed = false;

  private constructor(
    private readonly front: dgram.Socket,
    options: LossyProxyOptions,
  ) {
    this.options = options;
    const t = options.target;
    this.target = typeof t === 'number' ? { address: '127.0.0.1', port: t } : t;
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
    const key = this.options.upstream === 'shared' ? '' : `${rinfo.address}|${rinfo.port}`;
    let up = this.upstream.get(key);
    if (up === undefined) {
      const entry: Upstream = {
        sock: dgram.createSocket(this.target.address.includes(':') ? 'udp6' : 'udp4'),
        client: { address: rinfo.address, port: rinfo.port },
      };
      entry.sock.on('message', (reply) =>
        this.forward('down', reply, (d) => this.front.send(d, entry.client.port, entry.client.address)),
      );
      entry.sock.on('error', () => {});
      this.upstream.set(key, entry);
      up = entry;
    } else if (up.client.port !== rinfo.port || up.client.address !== rinfo.address) {
      up.client = { address: rinfo.address, port: rinfo.port };
    }
    this.latest = up;
    const sock = up.sock;
    this.forward('up', data, (d) => sock.send(d, this.target.port, this.target.address));
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
        if (ms > 0) this.after(ms, go);
        else go();
      }
    };
    // Release a datagram held back for reordering after this one.
    const heldBefore = this.held.get(dir);
    if (o.reorder?.(d) && heldBefore === undefined) {
      this.stats.reordered++;
      this.held.set(dir, deliver);
      // Never hold forever.
      this.after(HOLD_MAX_MS, () => {
        if (this.held.get(dir) === deliver) {
          this.held.delete(dir);
          deliver();
        }
      });
      return;
    }
    deliver();
    if (heldBefore) {
      this.held.delete(dir);
      heldBefore();
    }
  }

  private after(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }

  /**
   * Sends a datagram unimpaired and unlogged as if it came from one side:
   * 'up' goes to the target from the latest client's upstream socket (the
   * target takes it for that client's), 'down' goes to the latest client.
   */
  inject(data: Buffer, dir: Direction): void {
    const up = this.latest;
    if (up === undefined) throw new Error('LossyProxy.inject: no client has sent anything yet');
    if (dir === 'up') up.sock.send(data, this.target.port, this.target.address);
    else this.front.send(data, up.client.port, up.client.address);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.held.clear();
    const socks = [this.front, ...[...this.upstream.values()].map((u) => u.sock)];
    this.upstream.clear();
    this.latest = undefined;
    await Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}
