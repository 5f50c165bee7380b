/**
 * -v/--verbose: prints the CoAP messages a command really exchanges with its
 * peer (header, options, payload size, retransmissions) on stderr, using the
 * library's diagnostics channels.
 */
import dc from 'node:diagnostics_channel';
import { decodeMessage } from '../codec/message.js';
import { peerText } from './escape.js';
import { formatMessage } from './format.js';

interface WireEvent {
  peer?: { address: string; port: number };
  data?: Buffer;
  transmission?: number;
}

/**
 * Starts printing the datagrams exchanged with `port` on the peer side
 * (other endpoints of the process are ignored). Returns a stop function and
 * how many messages were printed each way.
 */
export function watchExchange(
  port: number,
  write: (text: string) => void,
): { stop(): void; sent(): number; received(): number } {
  let sent = 0;
  let received = 0;
  const print = (prefix: string, ev: WireEvent, note: string): boolean => {
    if (ev.peer?.port !== port || ev.data === undefined) return false;
    try {
      const m = decodeMessage(ev.data);
      write(
        `${formatMessage(prefix, m, `  ${note}${peerText(ev.peer.address, ev.peer.port)}`).join('\n')}\n`,
      );
    } catch {
      write(
        `${prefix} (${ev.data.length} bytes, not a CoAP message) ${note}${peerText(ev.peer.address, ev.peer.port)}\n`,
      );
    }
    return true;
  };
  const onSent = (msg: unknown) => {
    const ev = msg as WireEvent;
    const n = ev.transmission ?? 0;
    if (print('>', ev, n > 0 ? `(retransmission ${n}) to ` : 'to ')) sent++;
  };
  const onReceived = (msg: unknown) => {
    if (print('<', msg as WireEvent, 'from ')) received++;
  };
  dc.subscribe('coapkit:message:sent', onSent);
  dc.subscribe('coapkit:message:received', onReceived);
  return {
    stop() {
      dc.unsubscribe('coapkit:message:sent', onSent);
      dc.unsubscribe('coapkit:message:received', onReceived);
    },
    sent: () => sent,
    received: () => received,
  };
}
