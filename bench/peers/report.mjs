// Shared by the Node peers: talks to the bench harness over the IPC channel.
//  - sends { ready: true, port } once the server listens;
//  - answers { cmd: 'mem', gc: true } with process.memoryUsage() (after forced GCs when the peer
//    runs with --expose-gc) plus the number of requests the peer has answered and, for coapkit,
//    the number of exchanges its deduplication store holds;
//  - exits when the harness goes away, so a peer can never outlive the bench.

/**
 * @param {() => number} requestCount
 * @param {() => Record<string, number>} [extra] peer-specific counters (e.g. dedup entries)
 */
export function reportTo(requestCount, extra) {
  process.on('message', (msg) => {
    if (msg === null || typeof msg !== 'object' || msg.cmd !== 'mem') return;
    if (msg.gc && typeof globalThis.gc === 'function') {
      for (let i = 0; i < 3; i++) globalThis.gc();
    }
    process.send?.({ mem: process.memoryUsage(), requests: requestCount(), extra: extra?.() ?? {} });
  });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

/** @param {number} port */
export function ready(port) {
  if (process.send) process.send({ ready: true, port });
  else console.log(`listening on 127.0.0.1:${port}`);
}

export function portArg() {
  const i = process.argv.indexOf('--port');
  return i > 0 ? Number(process.argv[i + 1]) : 0;
}
