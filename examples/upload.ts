/**
 * Block-wise transfer (RFC 7959): a 200 KB "firmware image" goes up in 1 KiB blocks (Block1)
 * with progress, and comes back down the same way (Block2). Handlers see whole bodies.
 *
 *   npx tsx examples/upload.ts
 */
import { createHash, randomBytes } from 'node:crypto';
import { type BlockProgress, CoapClient, CoapServer } from 'coapkit';

// A request body may be up to maxPayloadSize once reassembled (default 64 KiB).
const server = new CoapServer({ maxPayloadSize: 1024 * 1024 });
let firmware: Buffer = Buffer.alloc(0);
server.put('/firmware', (req) => {
  firmware = req.payload;
  return { code: '2.04' };
});
server.get('/firmware', () => ({ payload: firmware, contentFormat: 42 })); // application/octet-stream
const endpoint = await server.listen({ port: Number(process.env.PORT ?? 0) });
const { port } = endpoint.transport.localAddress();

const image = randomBytes(200 * 1024);
const progress = (p: BlockProgress) => {
  if (p.blocks % 50 === 0 || p.bytes === p.totalBytes) {
    console.log(`${p.direction}: ${p.bytes} of ${p.totalBytes ?? '?'} bytes, ${p.blocks} blocks`);
  }
};

const client = new CoapClient();
const put = await client.put(`coap://localhost:${port}/firmware`, {
  payload: image,
  contentFormat: 42,
  blockSize: 1024,
  onProgress: progress,
});
console.log('PUT', put.codeText);

const get = await client.get(`coap://localhost:${port}/firmware`, { onProgress: progress });
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex').slice(0, 16);
console.log(
  'GET',
  get.codeText,
  `${get.payload.length} bytes`,
  sha(get.payload) === sha(image) ? 'identical' : 'DIFFERENT',
);

await client.close();
await server.close();
