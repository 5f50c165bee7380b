/**
 * -v/--verbose: prints the CoAP messages a command really exchanges with its
 * peer (header, options, payload size, retransmissions) on stderr, using the
 * library's diagnostics channels.
 */
import { decodeMessage } from '../codec/message.js';
import { channels, type MessageReceivedEvent, type MessageSentEvent } from '../diagnostics.js';
import { peerText } from './escape.js';
import { formatMessage } from './format.js';

type WireEvent = MessageSentEvent | MessageReceivedEvent;

/**
 * Starts printing the datagrams exchanged with `port` on the peer side
 * (other endpoints of the process are ignored). Returns a stop function and
 * how many messages were printed each way.
 */
export function watchExchange(
  port: number,
  write: (text: string) => void,
  /** RFC 8323 (coap+tcp, coap+ws...): the frames have no Type and no Message ID: none is shown. */
  reliable = false,
): { stop(): void; sent(): number; received(): number } {
  let sent = 0;
  let received = 0;
  const print = (prefix: string, ev: WireEvent, note: string): boolean => {
    if (ev.peer?.port !== port || ev.data === undefined) return false;
    try {
      const d = decodeMessage(ev.data);
      const m = reliable ? { ...d, type: undefined, messageId: undefined } : d;
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
  const onSent = (ev: MessageSentEvent) => {
    const n = ev.transmission ?? 0;
    if (print('>', ev, n > 0 ? `(retransmission ${n}) to ` : 'to ')) sent++;
  };
  const onReceived = (ev: MessageReceivedEvent) => {
    if (print('<', ev, 'from ')) received++;
  };
  channels.messageSent.subscribe(onSent);
  channels.messageReceived.subscribe(onReceived);
  return {
    stop() {
      channels.messageSent.unsubscribe(onSent);
      channels.messageReceived.unsubscribe(onReceived);
    },
    sent: () => sent,
    received: () => received,
  };
}
