/**
 * Several coaps:// nodes behind one UDP load balancer, with DTLS Connection
 * IDs routed to the node that owns the session (Californium's design; see
 * docs/cluster.md for the choice and the failure table).
 *
 * - Every node hands out CIDs whose first byte is its node id (1..255).
 * - A node that receives a tls12_cid record whose CID is not one of its own
 *   (the load balancer sent a device that moved to another node) forwards the
 *   datagram, as it came, to the owner named by the first CID byte, with the
 *   source address it came from in a small header.
 * - The owner processes it as if it had arrived itself (the RFC 9146 §6 rules
 *   apply: it must authenticate and be the newest record), and from then on
 *   sends that session's datagrams back through the forwarding node, which
 *   sends them from its own DTLS socket to the address it got the record from
 *   (the load balancer relays that to the device as for any answer of its).
 *
 * The records stay encrypted end to end: no key material crosses the network.
 * The node-to-node port must be on a private network; messages are accepted
 * only from the configured peers' addresses (a node would otherwise relay
 * datagrams for anyone).
 *
 * Message (UDP, node to node):
 *   magic "CK"(2) version(1)=1 kind(1) port(2) address_length(1) address(text) datagram
 *   kind 1: a device's datagram for the owner; kind 2: the owner's answer for the device.
 */
import { Buffer } from 'node:buffer';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import { InvalidArgumentError, NetworkError } from '../errors.js';
import type { DtlsServerTransport, DtlsServerTransportOptions } from '../transport/dtls.js';
import { unmapAddress } from '../util/ip-prefix.js';

const MAGIC_0 = 0x43; // 'C'
const MAGIC_1 = 0x4b; // 'K'
const VERSION = 1;
/** A device's datagram, forwarded to the node that owns its CID. */
export const KIND_RECORD = 1;
/** The owner's datagram for a device, to be sent by the node the device's records come through. */
export const KIND_ANSWER = 2;
/** Largest datagram relayed (a UDP payload). */
const MAX_DATAGRAM = 65_507;

export interface ClusterPeer {
  address: string;
  port: number;
}

export interface ClusterOptions {
  /** This node's id, 1..255: the first byte of every CID it hands out. */
  nodeId: number;
  /** Where this node listens for the other nodes (a private address). */
  listen: { host: string; port: number };
  /** The other nodes: id -> their node-to-node address. */
  peers: ReadonlyMap<number, ClusterPeer>;
}

/** One node-to-node message, decoded. */
export interface ClusterMessage {
  kind: number;
  address: string;
  port: number;
  datagram: Buffer;
}

/** A node-to-node message: header (kind, the device's address as text) + the datagram. */
export function encodeClusterMessage(
  kind: number,
  address: string,
  port: number,
  datagram: Uint8Array,
): Buffer {
  if (isIP(address) === 0) throw new InvalidArgumentError(`not an IP address: ${address}`);
  const addr = Buffer.from(address, 'latin1');
  const head = Buffer.from([MAGIC_0, MAGIC_1, VERSION, kind, (port >>> 8) & 0xff, port & 0xff, addr.length]);
  return Buffer.concat([head, addr, datagram]);
}

/** The message in `b`, or undefined when it is not one (magic, version, kind, address, truncated). */
export function decodeClusterMessage(b: Buffer): ClusterMessage | undefined {
  if (b.length < 8 || b[0] !== MAGIC_0 || b[1] !== MAGIC_1 || b[2] !== VERSION) return undefined;
  const kind = b[3]!;
  if (kind !== KIND_RECORD && kind !== KIND_ANSWER) return undefined;
  const len = b[6]!;
  if (len === 0 || len > 64 || b.length <= 7 + len) return undefined;
  const address = b.toString('latin1', 7, 7 + len);
  if (isIP(address) === 0) return undefined;
  return { kind, address, port: b.readUInt16BE(4), datagram: b.subarray(7 + len) };
}

/** Checks cluster options: node ids 1..255, no peer with our own id. */
export function checkClusterOptions(o: ClusterOptions): void {
  const id = (n: number, what: string) => {
    if (!Number.isInteger(n) || n < 1 || n > 255)
      throw new InvalidArgumentError(`${what} must be a node id 1..255 (got ${n})`);
  };
  id(o.nodeId, 'nodeId');
  for (const [n, p] of o.peers) {
    id(n, 'a peer id');
    if (n === o.nodeId) throw new InvalidArgumentError(`peer ${n} has this node's own id`);
    if (isIP(p.address) === 0) throw new InvalidArgumentError(`peer ${n}: not an IP address: ${p.address}`);
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535)
      throw new InvalidArgumentError(`peer ${n}: bad port ${p.port}`);
  }
}

/** One node of the cluster: its node-to-node socket and the hooks of its DTLS transport. */
export class ClusterNode {
  private transport?: DtlsServerTransport;
  /** Peer id by its node-to-node address ("address%port"). */
  private readonly byAddress = new Map<string, number>();
  private closed = false;
  readonly stats = {
    /** Device datagrams sent to their owner. */
    forwarded: 0,
    /** Device datagrams received from another node for a session of ours. */
    received: 0,
    /** Our answers sent back through another node. */
    answeredVia: 0,
    /** Other nodes' answers sent to a device from our socket. */
    relayed: 0,
    /** CIDs naming a node we do not know (dropped). */
    noOwner: 0,
    /** Messages from addresses that are not configured peers, or malformed (dropped). */
    refused: 0,
  };

  private constructor(
    readonly options: ClusterOptions,
    private readonly socket: Socket,
  ) {
    for (const [id, p] of options.peers) this.byAddress.set(`${unmapAddress(p.address)}%${p.port}`, id);
    socket.on('message', (m: Buffer, r: RemoteInfo) => this.onMessage(m, r));
    socket.on('error', () => {});
  }

  static async create(options: ClusterOptions): Promise<ClusterNode> {
    checkClusterOptions(options);
    const type = isIP(options.listen.host) === 6 ? 'udp6' : 'udp4';
    const socket = createSocket({ type });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err) =>
        reject(new NetworkError(`cannot bind the cluster port: ${err.message}`, { cause: err })),
      );
      socket.bind(options.listen.port, options.listen.host, () => resolve());
    });
    return new ClusterNode(options, socket);
  }

  /** Where this node listens for the others. */
  address(): { address: string; port: number } {
    const a = this.socket.address();
    return { address: a.address, port: a.port };
  }

  /** Options for this node's DTLS transport: CIDs with our node id first, and the two hooks. */
  transportOptions(): Pick<DtlsServerTransportOptions, 'cid' | 'foreignCid' | 'sendVia'> {
    return {
      cid: { length: 8, prefix: Buffer.from([this.options.nodeId]) },
      foreignCid: (d, address, port) => this.forward(d, address, port),
      sendVia: (d, address, port, via) => this.answerVia(d, address, port, via as number),
    };
  }

  /** Joins the DTLS transport created with `transportOptions()`. */
  attach(transport: DtlsServerTransport): void {
    this.transport = transport;
  }

  /** A device's tls12_cid record whose CID is another node's: to its owner. */
  private forward(d: Buffer, address: string, port: number): void {
    // The CID starts right after the 11-byte record header prefix.
    const owner = d[11];
    const peer = owner === undefined ? undefined : this.options.peers.get(owner);
    if (peer === undefined || d.length > MAX_DATAGRAM - 72) {
      this.stats.noOwner++;
      return;
    }
    this.stats.forwarded++;
    this.socket.send(encodeClusterMessage(KIND_RECORD, address, port, d), peer.port, peer.address);
  }

  /** One of our sessions whose records come through node `via`: its datagram goes back that way. */
  private answerVia(d: Buffer, address: string, port: number, via: number): void {
    const peer = this.options.peers.get(via);
    if (peer === undefined || this.closed) return;
    this.stats.answeredVia++;
    this.socket.send(encodeClusterMessage(KIND_ANSWER, address, port, d), peer.port, peer.address);
  }

  private onMessage(m: Buffer, r: RemoteInfo): void {
    const from = this.byAddress.get(`${unmapAddress(r.address)}%${r.port}`);
    const msg = from === undefined ? undefined : decodeClusterMessage(m);
    const t = this.transport;
    if (msg === undefined || t === undefined) {
      this.stats.refused++;
      return;
    }
    if (msg.kind === KIND_RECORD) {
      this.stats.received++;
      t.server.handleDatagram(msg.datagram, msg.address, msg.port, from);
    } else {
      this.stats.relayed++;
      t.sendRaw(msg.datagram, msg.address, msg.port);
    }
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((r) => this.socket.close(() => r()));
  }
}
