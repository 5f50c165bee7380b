/**
 * `coapkit serve` flags of a cluster node (docs/cluster.md):
 *   --node-id N                 this node's id, 1..255 (the first byte of its DTLS CIDs)
 *   --cluster-listen HOST:PORT  where it listens for the other nodes (a private address)
 *   --peer ID=HOST:PORT         another node (repeatable)
 */
import { isIP } from 'node:net';
import type { ClusterOptions, ClusterPeer } from '../cluster/forward.js';
import { UsageError } from '../errors.js';
import { type FlagSpecs, type Parsed, str, strs } from './args.js';

export const CLUSTER_FLAGS: FlagSpecs = {
  'node-id': { type: 'string' },
  'cluster-listen': { type: 'string' },
  peer: { type: 'string', multiple: true },
};

function hostPort(v: string, flag: string): ClusterPeer {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(v) ?? /^([^:]+):(\d+)$/.exec(v);
  const port = Number(m?.[2]);
  if (m === null || isIP(m[1]!) === 0 || !(port >= 1 && port <= 65535))
    throw new UsageError(`${flag} expects IP:PORT (or [IPv6]:PORT), got "${v}"`);
  return { address: m[1]!, port };
}

function nodeId(v: string, flag: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 255)
    throw new UsageError(`${flag} expects a node id 1..255, got "${v}"`);
  return n;
}

/** The cluster options, or undefined without --node-id (and then no other cluster flag may be given). */
export function clusterArgs(p: Parsed): ClusterOptions | undefined {
  const id = str(p, 'node-id');
  const listen = str(p, 'cluster-listen');
  const peers = strs(p, 'peer');
  if (id === undefined) {
    if (listen !== undefined || peers.length > 0)
      throw new UsageError('--cluster-listen and --peer need --node-id N');
    return undefined;
  }
  const nodeId_ = nodeId(id, '--node-id');
  if (listen === undefined) throw new UsageError('--node-id needs --cluster-listen HOST:PORT (node-to-node)');
  const map = new Map<number, ClusterPeer>();
  for (const v of peers) {
    const eq = v.indexOf('=');
    if (eq < 0) throw new UsageError(`--peer expects ID=IP:PORT, got "${v}"`);
    const n = nodeId(v.slice(0, eq), '--peer ID');
    if (n === nodeId_) throw new UsageError(`--peer ${v}: ${n} is this node's own --node-id`);
    if (map.has(n)) throw new UsageError(`--peer ${n} is given twice`);
    map.set(n, hostPort(v.slice(eq + 1), '--peer'));
  }
  const l = hostPort(listen, '--cluster-listen');
  return { nodeId: nodeId_, listen: { host: l.address, port: l.port }, peers: map };
}
