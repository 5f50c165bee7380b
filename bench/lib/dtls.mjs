// DTLS figures (coaps): full PSK handshakes per second, established coaps requests/s, heap per
// idle session. Runs only when coapkit's DTLS transport is built (dist/transport/dtls.js).
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * @param {{ root: string, quick: boolean, pinCpu: string | null, duration: number, log: (s: string) => void }} ctx
 */
export async function dtlsBench(ctx) {
  const transport = join(ctx.root, 'dist/transport/dtls.js');
  if (!existsSync(transport)) return { status: 'n/a', note: 'n/a (not built: dist/transport/dtls.js)' };
  // ---- DTLS section: wired once DtlsServerTransport / DtlsClientTransport exist. ----
  return { status: 'n/a', note: 'n/a (DTLS bench not wired yet)' };
}
