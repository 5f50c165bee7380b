/**
 * A device for the namespace cluster tests with a shared store: run inside
 * the `dev` namespace (`ip netns exec DEV node --import tsx THIS JSON`). Each
 * request goes to the load balancer (coaps://, PSK) from a source port that
 * nginx's consistent hash (`$remote_addr$remote_port`) sends to the node the
 * op names, so "through node 2" is chosen, not hoped for. Prints one JSON
 * line per result as it happens:
 *
 * - `{ mode: 'req', ops: [{ method, path, payload?, node }], fresh? }`: each
 *   op (with `fresh`, a new client and source port per op; otherwise one
 *   client per node); a failed op (timeout) prints `{ i, error }` and the
 *   next one goes on.
 * - `{ mode: 'observe', path, node, count }`: observes, prints each
 *   notification, exits after `count`.
 */
import { CoapClient } from '../../src/index.js';
import { chashPick, chashRing } from './nginx-chash.js';

interface Op {
  method: 'GET' | 'PUT';
  path: string;
  payload?: string;
  node: number;
}
interface Args {
  lb: string;
  address: string;
  upstreams: string[];
  psk: { identity: string; key: string };
  timeoutMs: number;
  /** req: pause between ops (ms). */
  intervalMs?: number;
  mode: 'req' | 'observe';
  ops?: Op[];
  fresh?: boolean;
  path?: string;
  node?: number;
  count?: number;
}

const args = JSON.parse(process.argv[2]!) as Args;
const ring = chashRing(args.upstreams);
const used = new Set<number>();

/** A source port not used before by this device that nginx hashes to `node` (1-based). */
function portFor(node: number): number {
  for (let i = 0; i < 100_000; i++) {
    const port = 20_000 + Math.floor(Math.random() * 40_000);
    if (used.has(port) || chashPick(ring, `${args.address}${port}`) !== node - 1) continue;
    used.add(port);
    return port;
  }
  throw new Error(`no port hashes to node ${node}`);
}

const client = (node: number) =>
  new CoapClient({ psk: args.psk, bind: { address: args.address, port: portFor(node) } });
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const uri = (path: string) => `coaps://${args.lb}:5684${path}`;

if (args.mode === 'req') {
  const perNode = new Map<number, CoapClient>();
  for (const [i, op] of (args.ops ?? []).entries()) {
    let c = args.fresh ? undefined : perNode.get(op.node);
    if (c === undefined) {
      c = client(op.node);
      if (!args.fresh) perNode.set(op.node, c);
    }
    try {
      const r = await c.request(uri(op.path), {
        method: op.method,
        timeout: args.timeoutMs,
        ...(op.payload !== undefined ? { payload: op.payload } : {}),
      });
      out({ i, node: op.node, path: op.path, code: r.codeText, text: r.text() });
    } catch (e) {
      out({ i, node: op.node, path: op.path, error: String(e) });
    }
    if (args.fresh) await c.close();
    if (args.intervalMs) await new Promise((r) => setTimeout(r, args.intervalMs));
  }
  for (const c of perNode.values()) await c.close();
} else {
  const c = client(args.node!);
  let n = 0;
  for await (const note of c.observe(uri(args.path!), { timeout: args.timeoutMs })) {
    out({ n, code: note.codeText, text: note.text() });
    if (++n >= args.count!) break;
  }
  await c.close();
}
process.exit(0);
