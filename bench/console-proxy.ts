/**
 * How long the console proxy takes: a 200 KB PUT (Block1 to a `coapkit serve`) and its GET
 * back (Block2) through the CoAP-over-WebSockets endpoint, and small GETs.
 * Run: node --import tsx bench/console-proxy.ts
 */
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { decodeWsMessage, encodeWsMessage, Opt } from '../src/console/frame.js';
import { startConsole } from '../src/console/server.js';
import { LOOPBACK_PORTS, startServe } from '../test/integration/cli-helpers.js';

const serve = await startServe([...LOOPBACK_PORTS]);
const con = await startConsole({ port: 0 });
const ws = new WebSocket(`ws://127.0.0.1:${con.port}/.well-known/coap`, 'coap', {
  headers: { origin: `http://127.0.0.1:${con.port}` },
});
await new Promise((r) => ws.once('open', r));
const ends: Record<string, number> = {};
const done = new Map<number, () => void>();
ws.on('message', (d: Buffer, bin: boolean) => {
  if (!bin) {
    const j = JSON.parse(d.toString());
    if (j.type === 'end') ends[j.token] = j.ms;
    return;
  }
  const m = decodeWsMessage(d);
  if (m.code >> 5 !== 7) done.get(m.token[0]!)?.();
});
const send = (t: number, code: number, path: string, payload = new Uint8Array(0)) =>
  new Promise<number>((r) => {
    const s = performance.now();
    done.set(t, () => r(performance.now() - s));
    ws.send(
      encodeWsMessage({
        code,
        token: Uint8Array.of(t),
        options: [
          { number: Opt.ProxyUri, value: new TextEncoder().encode(`coap://127.0.0.1:${serve.port}${path}`) },
        ],
        payload,
      }),
    );
  });
const body = randomBytes(200 * 1024);
for (let i = 1; i <= 3; i++) {
  const up = await send(i, 3, '/m', body);
  const down = await send(i + 10, 1, '/m');
  console.log(
    `200 KB PUT through the console: ${up.toFixed(0)} ms (proxy ${ends[i.toString(16).padStart(2, '0')]?.toFixed(0)} ms); GET back: ${down.toFixed(0)} ms`,
  );
}
const rtts: number[] = [];
for (let i = 0; i < 200; i++) rtts.push(await send(100 + (i % 50), 1, '/time'));
rtts.sort((a, b) => a - b);
console.log(
  `GET /time via console, 200 requests: median ${rtts[100]!.toFixed(2)} ms, p95 ${rtts[190]!.toFixed(2)} ms`,
);
ws.close();
await con.close();
await serve.stop();
