/**
 * The page's side of CoAP over WebSockets (RFC 8323 §4): one WebSocket with
 * subprotocol `coap` to the console, which forwards each request to its
 * Proxy-Uri. Binary messages are CoAP (src/console/frame.ts, shared with the
 * server); text messages are the console's JSON side channel (the ladder
 * steps, block-wise progress, the end of each request).
 */
import {
  codeText,
  decodeWsMessage,
  encodeWsMessage,
  Opt,
  readUint,
  SignalCode,
  uintValue,
  type WsMessage,
  type WsOption,
} from '../src/console/frame.js';

export type { WsMessage, WsOption };
export { codeText, Opt, readUint };

/** A JSON event from the console about one request (by token, hex). */
export interface SideEvent {
  type: 'begin' | 'step' | 'progress' | 'end' | 'notification';
  token: string;
  [k: string]: unknown;
}

export interface RequestHandlers {
  /** Each response; for an observation, every notification. */
  onResponse(msg: WsMessage, wireBytes: number): void;
  onEvent(ev: SideEvent): void;
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

export class ConsoleConnection {
  private ws: WebSocket | undefined;
  private readonly handlers = new Map<string, RequestHandlers>();
  /** The console's Max-Message-Size (its CSM). */
  maxMessageSize = 1152;
  onStatus: (status: string) => void = () => {};

  constructor(private readonly url: string) {}

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, 'coap');
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      // A new connection has no credentials yet: the next request sends them again.
      this.lastCredentials = '';
      ws.onopen = () => {
        // RFC 8323 §5.3: our CSM first.
        this.sendRaw({
          code: SignalCode.CSM,
          token: new Uint8Array(0),
          options: [{ number: Opt.MaxMessageSize, value: uintValue(64 * 1024 * 1024) }],
          payload: new Uint8Array(0),
        });
      };
      ws.onerror = () => reject(new Error('cannot connect to the console'));
      ws.onclose = (e) => this.onStatus(`disconnected (${e.code}${e.reason ? ` ${e.reason}` : ''})`);
      ws.onmessage = (e: MessageEvent) => {
        if (typeof e.data === 'string') {
          let ev: SideEvent;
          try {
            ev = JSON.parse(e.data) as SideEvent;
          } catch {
            return;
          }
          if ((ev.type as string) === 'credentials') {
            this.onCredentials(ev as { summary?: string; error?: string });
            return;
          }
          this.handlers.get(ev.token)?.onEvent(ev);
          return;
        }
        let msg: WsMessage;
        const bytes = new Uint8Array(e.data as ArrayBuffer);
        try {
          msg = decodeWsMessage(bytes);
        } catch {
          return;
        }
        if (msg.code === SignalCode.CSM) {
          const m = msg.options.find((o) => o.number === Opt.MaxMessageSize);
          if (m) this.maxMessageSize = readUint(m.value);
          this.onStatus('connected');
          resolve();
          return;
        }
        if (msg.code === SignalCode.Abort) {
          this.onStatus(`aborted: ${new TextDecoder().decode(msg.payload)}`);
          return;
        }
        if (msg.code >> 5 === 7) return;
        this.handlers.get(hex(msg.token))?.onResponse(msg, bytes.length);
      };
    });
  }

  /** The PSK for coaps:// targets (empty identity: none). */
  setCredentials(identity: string, key: string): void {
    const keyHex = /^0x([0-9a-f]{2})+$/i.test(key) ? key.slice(2) : undefined;
    this.sendCredentials({ identity, ...(keyHex ? { keyHex } : { key }) });
  }

  /**
   * Certificate credentials for coaps:// targets: `{ mode: 'cert', cert, key, ca }`
   * or `{ mode: 'rpk', rpk, rpkTrust }` (PEM texts). Sent only when they changed;
   * the console answers with `onCredentials` (a summary, or the error's message).
   */
  setCertificateCredentials(c: { mode: 'cert' | 'rpk'; [field: string]: string }): void {
    this.sendCredentials(c);
  }

  /** The console's answer to certificate credentials. */
  onCredentials: (answer: { summary?: string; error?: string }) => void = () => {};

  private lastCredentials = '';

  private sendCredentials(c: Record<string, string>): void {
    const text = JSON.stringify({ type: 'credentials', ...c });
    if (text === this.lastCredentials) return;
    this.lastCredentials = text;
    this.ws?.send(text);
  }

  /** Sends a request; handlers get its response(s) and events until `forget`. The token (hex) and the message's size. */
  request(
    msg: Omit<WsMessage, 'token'>,
    handlers: RequestHandlers,
    token?: Uint8Array,
  ): { token: string; bytes: number } {
    const t = token ?? crypto.getRandomValues(new Uint8Array(4));
    const key = hex(t);
    this.handlers.set(key, handlers);
    return { token: key, bytes: this.sendRaw({ ...msg, token: t }) };
  }

  forget(token: string): void {
    this.handlers.delete(token);
  }

  get open(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  private sendRaw(msg: WsMessage): number {
    const bytes = encodeWsMessage(msg);
    this.ws?.send(bytes);
    return bytes.length;
  }
}

/** Hex string to bytes (for a token kept as hex). */
export function fromHex(s: string): Uint8Array {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(s.slice(i * 2, i * 2 + 2), 16);
  return out;
}
