/**
 * Measurements behind test/attack/server-state.test.ts (issue 10, items 4, 5, 7),
 * runnable against any checkout to compare before and after:
 *
 *   node --expose-gc --import tsx test/attack/measure-server-state.mts discovery [ROOT] [PATH_BYTES] [N]
 *   node --expose-gc --import tsx test/attack/measure-server-state.mts sources   [ROOT] [N]
 *   node --expose-gc --import tsx test/attack/measure-server-state.mts hotpath   [ROOT]
 *
 * ROOT is a checkout (default: this one). In-process, no sockets: a no-op
 * transport feeds datagrams to the endpoint, so the figures are server CPU
 * time and heap only.
 */
import { fileURLToPath } from 'node:url';

const [what = 'discovery', rootArg, a3, a4] = process.argv.slice(2);
const root = rootArg ?? fileURLToPath(new URL('../..', import.meta.url));
const { CoapServer } = await import(`${root}/src/server/server.ts`);
const { encodeMessage } = await import(`${root}/src/codec/message.ts`);

// biome-ignore lint/suspicious/noExplicitAny: transport handlers of any checkout
let handlers: any;
const transport = {
  scheme: 'coap',
  reliable: false,
  maxMessageSize: 1152,
  attach(h: unknown) {
    handlers = h;
  },
  send() {},
  localAddress: () => ({ address: '127.0.0.1', port: 1, family: 'IPv4' }),
  close: async () => {},
};
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const heap = () => {
  gc();
  const m = process.memoryUsage();
  return `heap ${(m.heapUsed / 2 ** 20).toFixed(1)} MiB, arrayBuffers ${(m.arrayBuffers / 2 ** 20).toFixed(1)} MiB`;
};
const peerOf = (address: string, port: number) => ({
  address,
  port,
  family: 'IPv4',
  key: `${address}%${port}`,
});

if (what === 'discovery') {
  // Server time per GET /.well-known/core (block 0 of 1024 bytes, as a client asks) with N
  // dynamic resources of PATH_BYTES-long paths, block-wise layer installed like coapkit serve.
  const pathBytes = Number(a3 ?? 1000);
  const n = Number(a4 ?? 1000);
  const { DynamicStore } = await import(`${root}/src/server/dynamic-store.ts`);
  const { BlockwiseServer } = await import(`${root}/src/blockwise/server.ts`);
  const server = new CoapServer();
  new BlockwiseServer({}).install(server);
  const store = new DynamicStore({ observable: true, maxResources: n + 10, maxBytes: 1e12 });
  store.mount(server);
  const segs = Math.ceil(pathBytes / 250);
  for (let i = 0; i < n; i++) {
    const len = Math.min(250, Math.floor(pathBytes / segs) - 1);
    store.set(`/${Array.from({ length: segs }, (_, k) => `${i}-${k}-`.padEnd(len, 'a')).join('/')}`, 'x');
  }
  const wk = ['.well-known', 'core'].map((s) => ({ number: 11, value: Buffer.from(s) }));
  const block0 = { number: 23, value: Buffer.from([0x06]) };
  let mid = 0;
  const once = async () => {
    mid++;
    const msg = {
      type: 0,
      code: 1,
      messageId: mid & 0xffff,
      token: Buffer.from([mid & 255, mid >> 8]),
      options: [...wk, block0],
      payload: Buffer.alloc(0),
    };
    const t = performance.now();
    await server.handle(msg, peerOf('127.0.0.1', 1 + (mid % 1000)));
    return performance.now() - t;
  };
  const first = await once();
  const times: number[] = [];
  for (let i = 0; i < 100; i++) times.push(await once());
  times.sort((x, y) => x - y);
  console.log(
    `${n} resources with ~${pathBytes}-byte paths: first discovery ${first.toFixed(1)} ms, then median ${times[50]!.toFixed(2)} ms, max ${times[99]!.toFixed(2)} ms per request`,
  );
} else if (what === 'sources') {
  // Heap held after N NON GETs, each from a new source address/port.
  const n = Number(a3 ?? 500_000);
  const server = new CoapServer({});
  server.get('/x', () => 'hello');
  await server.listen(transport);
  const msg = encodeMessage({
    type: 1,
    code: 1,
    messageId: 7,
    token: Buffer.from([1]),
    options: [{ number: 11, value: Buffer.from('x') }],
  });
  const before = heap();
  const t = performance.now();
  for (let i = 0; i < n; i++) {
    handlers.message(msg, peerOf(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 1024 + (i % 50000)));
  }
  const ms = performance.now() - t;
  console.log(
    `${n} sources in ${ms.toFixed(0)} ms: ${before} -> ${heap()}; peer table ${server.endpoints[0].messageLayer.peerCount}`,
  );
  process.exit(0);
} else if (what === 'hotpath') {
  // ns per request from 100 known peers (message layer + exchange + routing + reply).
  const server = new CoapServer({ dedup: { maxEntries: 200_000 } });
  server.get('/x', () => 'hello');
  await server.listen(transport);
  const peers = Array.from({ length: 100 }, (_, i) => peerOf('127.0.0.1', 10000 + i));
  const msgs = Array.from({ length: 65536 }, (_, i) =>
    encodeMessage({
      type: 0,
      code: 1,
      messageId: i,
      token: Buffer.from([1, 2, 3, 4]),
      options: [{ number: 11, value: Buffer.from('x') }],
    }),
  );
  const run = (count: number, start: number) => {
    for (let i = 0; i < count; i++) handlers.message(msgs[(start + i) & 0xffff], peers[i % 100]);
  };
  run(200_000, 0);
  const res: number[] = [];
  for (let r = 0; r < 9; r++) {
    const t = process.hrtime.bigint();
    run(200_000, (r + 1) * 200_000);
    res.push(Number(process.hrtime.bigint() - t) / 200_000);
  }
  res.sort((x, y) => x - y);
  console.log(`median ${res[4]!.toFixed(0)} ns/request, min ${res[0]!.toFixed(0)}`);
  process.exit(0);
} else {
  console.error('usage: discovery|sources|hotpath [ROOT] ...');
  process.exit(64);
}
