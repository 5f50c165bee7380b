/**
 * A device behind a NAT that rebinds, for the namespace tests: run inside the
 * `dev` namespace (`ip netns exec DEV node --import tsx THIS JSON`). It starts
 * a RebindRelay towards the load balancer and `coapkit get ... --repeat N`
 * through it, rebinding before the listed application datagrams (the last
 * rebinding also moves to a second address); with `moveNodes`, each new port
 * is one that nginx's consistent hash sends to the other node. Prints one
 * JSON line with what happened.
 */
import { spawn } from 'node:child_process';
import { chashPick, chashRing } from './nginx-chash.js';
import { RebindRelay } from './rebind-relay.js';

interface Args {
  lb: { address: string; port: number };
  addresses: string[];
  /** Rebind before these application datagrams (1-based). */
  rebindAt: number[];
  /** The nginx upstream servers ("ip:port", in config order), for moveNodes. */
  upstreams: string[];
  moveNodes: boolean;
  /** The first outside port must hash to this node (1-based). */
  firstNode?: number;
  cli: string[];
  /** Tell what happens on stderr as it happens (npm run cluster-demo). */
  live?: boolean;
}

const args = JSON.parse(process.argv[2]!) as Args;
const ring = chashRing(args.upstreams);
const nodes: number[] = [];
const relay = await RebindRelay.create({ target: args.lb });
let current = -1;
relay.outsideAddress = args.addresses[0]!;
let app = 0;
let rebinds = 0;
relay.acceptPort = (address, port) => {
  const n = chashPick(ring, `${address}${port}`);
  if (current < 0 && args.firstNode !== undefined && n !== args.firstNode - 1) return false;
  if (args.moveNodes && current >= 0 && n === current) return false;
  current = n;
  nodes.push(n + 1);
  if (args.live)
    process.stderr.write(`[device] NAT: now ${address}:${port} (nginx hashes it to node ${n + 1})\n`);
  return true;
};
await relay.rebind(); // the first outside port, chosen like the others
relay.rebindBefore = (d) => {
  const isApp = d[0] === 25 || (d[0] === 23 && d[4] === 1);
  if (!isApp || !args.rebindAt.includes(++app)) return false;
  rebinds++;
  if (rebinds === args.rebindAt.length && args.addresses[1] !== undefined)
    relay.outsideAddress = args.addresses[1];
  return true;
};
const child = spawn(
  process.execPath,
  ['--import', 'tsx', 'src/cli/main.ts', ...args.cli.map((a) => a.replace('RELAY', String(relay.port)))],
  { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, COAPKIT_PSK: '', COAPKIT_PSK_IDENTITY: '' } },
);
let out = '';
let err = '';
child.stdout.on('data', (c: Buffer) => {
  out += c.toString();
  if (args.live) process.stderr.write(`[device] answer: ${c.toString()}\n`);
});
child.stderr.on('data', (c: Buffer) => {
  err += c.toString();
  if (args.live)
    for (const l of c.toString().split('\n')) if (l !== '') process.stderr.write(`[device] ${l}\n`);
});
const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
relay.close();
process.stdout.write(
  `${JSON.stringify({ code, out, stderr: err, clientHellos: relay.clientHellos, handshakes: relay.handshakes, outside: relay.outside_.slice(1), nodes })}\n`,
);
