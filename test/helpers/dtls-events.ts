/** DTLS events of this process (diagnostics channels), counted for tests. */
import dc from 'node:diagnostics_channel';

/**
 * Counts DTLS handshakes started by role (`coapkit:dtls:handshake:start`: a
 * ClientHello accepted by a server / sent by a client) until `stop()`.
 */
export function countHandshakes(): { counts: { server: number; client: number }; stop(): void } {
  const counts = { server: 0, client: 0 };
  const on = (m: unknown) => {
    const ev = m as { role: 'server' | 'client' };
    counts[ev.role]++;
  };
  dc.subscribe('coapkit:dtls:handshake:start', on);
  return { counts, stop: () => dc.unsubscribe('coapkit:dtls:handshake:start', on) };
}
