/**
 * The scenario of "Life of a CoAP Message" (Dan Mangum, Golioth blog): a device sends a
 * short JSON log line to the cloud over coaps:// with a pre-shared key, in a confirmable
 * POST; the cloud answers in the ACK (piggybacked), with 2.03 Valid as in the article's
 * capture (2.04 Changed is the usual answer to a POST that creates nothing).
 *
 *   npx tsx examples/device-to-cloud.ts
 *   coapkit demo            (the same scenario, traced step by step)
 */
import { randomBytes } from 'node:crypto';
import { CoapClient, CoapServer, DtlsServerTransport, ResponseCodeError } from 'coapkit';

// ---- the cloud: one PSK per device
const devices = new Map([['device-42', randomBytes(16)]]);
const cloud = new CoapServer();
cloud.post('/logs', (req) => {
  if (req.contentFormat !== 50) throw new ResponseCodeError('4.15', 'JSON only');
  console.log(`cloud: log from ${req.identity} (${req.payload.length} bytes): ${req.text()}`);
  return { code: '2.03' }; // Valid
});
const dtls = await DtlsServerTransport.create({
  port: Number(process.env.PORT ?? 0),
  psk: (identity) => devices.get(identity),
});
await cloud.listen(dtls);
const { port } = dtls.localAddress();

// ---- the device
const device = new CoapClient({ psk: { identity: 'device-42', key: devices.get('device-42') ?? '' } });
const log = JSON.stringify({ level: 'info', module: 'basics', msg: 'Hello, Golioth!' });
const res = await device.post(`coaps://localhost:${port}/logs`, { payload: log, contentFormat: 'json' });
console.log(
  `device: ${res.codeText}, ${res.piggybacked ? 'piggybacked on the ACK' : 'separate'}, ${res.rttMs.toFixed(1)} ms`,
);

await device.close();
await cloud.close();
