// The ceiling for any Node CoAP server: a dgram socket that answers every datagram with a fixed
// 2.05 "world" response made by flipping bytes of the request in place (no parsing beyond TKL):
// CON -> piggybacked ACK, NON -> NON; same Message ID and token; options dropped.
import dgram from 'node:dgram';
import { portArg, ready, reportTo } from './report.mjs';

const PAYLOAD = Buffer.from([0xff, 0x77, 0x6f, 0x72, 0x6c, 0x64]); // 0xFF "world"
let requests = 0;
const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });

socket.on('message', (msg, rinfo) => {
  if (msg.length < 4) return;
  requests++;
  const tkl = msg[0] & 0x0f;
  const end = 4 + tkl + PAYLOAD.length;
  const out = msg.length >= end ? msg : Buffer.allocUnsafe(end);
  if (out !== msg) msg.copy(out, 0, 0, 4 + tkl);
  // type: CON (0) -> ACK (2); NON stays NON
  out[0] = (msg[0] & 0x30) === 0 ? (msg[0] & 0xcf) | 0x20 : msg[0];
  out[1] = 0x45; // 2.05 Content
  PAYLOAD.copy(out, 4 + tkl);
  socket.send(out, 0, end, rinfo.port, rinfo.address);
});

reportTo(() => requests);
socket.bind(portArg(), '127.0.0.1', () => ready(socket.address().port));
