/**
 * Which upstream nginx's `hash KEY consistent;` (ngx_stream_upstream_hash,
 * Cache::Memcached::Fast-compatible ketama ring) picks for a key, so a test
 * can choose a device's new source port that lands on the other node instead
 * of hoping for it. Each server "HOST:PORT" of weight 1 gets 160 points:
 * base = crc32(HOST "\0" PORT), point_j = crc32(base-state + prev_hash as 4
 * little-endian bytes); the key goes to the first point >= crc32(KEY), wrapping.
 */

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** crc32 state update (no final xor): start from 0xffffffff. */
function update(state: number, bytes: Uint8Array): number {
  let c = state;
  for (const b of bytes) c = TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

const final = (state: number) => (state ^ 0xffffffff) >>> 0;

export function crc32(bytes: Uint8Array): number {
  return final(update(0xffffffff, bytes));
}

/** The ring of `servers` ("host:port", weight 1 each), sorted by point. */
export function chashRing(servers: readonly string[]): { hash: number; server: number }[] {
  const points: { hash: number; server: number }[] = [];
  servers.forEach((s, i) => {
    const colon = s.lastIndexOf(':');
    const base = update(
      update(update(0xffffffff, Buffer.from(s.slice(0, colon))), Buffer.from([0])),
      Buffer.from(s.slice(colon + 1)),
    );
    let prev = 0;
    for (let j = 0; j < 160; j++) {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(prev >>> 0);
      const h = final(update(base, b));
      points.push({ hash: h, server: i });
      prev = h;
    }
  });
  points.sort((a, b) => a.hash - b.hash);
  return points;
}

/** Index (in `servers`) of the server nginx picks for `key`. */
export function chashPick(ring: readonly { hash: number; server: number }[], key: string): number {
  const h = crc32(Buffer.from(key));
  for (const p of ring) if (p.hash >= h) return p.server;
  return ring[0]!.server;
}
