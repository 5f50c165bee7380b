/**
 * `coapkit console`: a local HTTP server that serves the console page
 * (built from console/ into dist/console/) and, on `/.well-known/coap`, a
 * CoAP-over-WebSockets endpoint (subprotocol `coap`, RFC 8323 §4) that is
 * the page's forward proxy to coap:// and coaps:// servers (session.ts).
 * The `ws` package is loaded only here, when the console runs.
 * Who may connect: access.ts (loopback by default; a token otherwise).
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { ClientOptions } from '../client/client.js';
import { NetworkError, UsageError } from '../errors.js';
import { type AccessPolicy, accessPolicy, checkRequest } from './access.js';
import { LadderHub } from './ladder.js';
import { ConsoleSession, DEFAULT_SESSION_LIMITS, type SessionLimits } from './session.js';

/** The WebSocket path (RFC 8323 §8.4: `coap+ws://host/.well-known/coap`). */
export const CONSOLE_WS_PATH = '/.well-known/coap';

export interface ConsoleOptions {
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** TCP port (default 8080; 0 = any free port). */
  port?: number;
  /** The token for a non-loopback host (default: 16 random bytes, hex). */
  token?: string;
  /** Where the built page is (default dist/console next to this module). */
  staticDir?: string;
  /** Most pages connected at once (default 16). */
  maxSessions?: number;
  limits?: Partial<SessionLimits>;
  /** Options of the clients that reach the CoAP servers (tests). */
  clientOptions?: ClientOptions;
}

export interface RunningConsole {
  /** The page's URL (with `?token=` when one is needed). */
  url: string;
  host: string;
  port: number;
  /** Set when the host is not loopback. */
  token: string | undefined;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
};

/** The page is self-contained: its scripts, styles and the WebSocket to this origin only. */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

async function loadWs(): Promise<typeof import('ws')> {
  try {
    return await import('ws');
  } catch (err) {
    throw new UsageError('coapkit console needs the "ws" package, which is not installed', {
      cause: err,
      hint: 'npm install ws (an optional dependency of coapkit)',
    });
  }
}

function defaultStaticDir(): string {
  // dist/console/server.js -> dist/console-page; src/console/server.ts (tsx) -> dist/console-page too.
  return fileURLToPath(new URL('../../dist/console-page/', import.meta.url));
}

export async function startConsole(options: ConsoleOptions = {}): Promise<RunningConsole> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 8080;
  const policy: AccessPolicy = accessPolicy(host, options.token, () => randomBytes(16).toString('hex'));
  const staticDir = options.staticDir ?? defaultStaticDir();
  const limits: SessionLimits = { ...DEFAULT_SESSION_LIMITS, ...options.limits };
  const maxSessions = options.maxSessions ?? 16;
  const { WebSocketServer } = await loadWs();
  const hub = new LadderHub();
  const sessions = new Set<ConsoleSession>();
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxMessageSize,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has('coap') ? 'coap' : false),
  });

  const serveFile = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const refusal = checkRequest(policy, { url: req.url, headers: req.headers }, false);
    if (refusal) {
      res
        .writeHead(refusal.status, { 'content-type': 'text/plain; charset=utf-8' })
        .end(`${refusal.reason}\n`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://x').pathname;
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (path === '/') path = '/index.html';
    // Only plain names under the page's folder: no "..", no hidden files.
    if (!/^(\/[A-Za-z0-9_-][A-Za-z0-9_.-]*)+$/.test(path) || path.includes('..')) {
      res.writeHead(404).end();
      return;
    }
    const ext = path.slice(path.lastIndexOf('.'));
    const type = TYPES[ext];
    if (type === undefined) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(
        new URL(`.${path}`, `file://${staticDir.endsWith('/') ? staticDir : `${staticDir}/`}`),
      );
      res.writeHead(200, {
        'content-type': type,
        'content-length': body.length,
        'cache-control': 'no-store',
        'content-security-policy': CSP,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res
        .writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
        .end(path === '/index.html' ? 'the console page is not built: run npm run build\n' : 'not found\n');
    }
  };

  const server = createServer((req, res) => {
    serveFile(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const refuse = (status: number, reason: string) => {
      socket.end(
        `HTTP/1.1 ${status} ${status === 403 ? 'Forbidden' : 'Bad Request'}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(reason) + 1}\r\n\r\n${reason}\n`,
      );
    };
    let path = '';
    try {
      path = new URL(req.url ?? '/', 'http://x').pathname;
    } catch {
      // refused below
    }
    if (path !== CONSOLE_WS_PATH) return refuse(400, `WebSocket endpoint is ${CONSOLE_WS_PATH}`);
    const refusal = checkRequest(policy, { url: req.url, headers: req.headers }, true);
    if (refusal) return refuse(refusal.status, refusal.reason);
    if (sessions.size >= maxSessions) return refuse(403, `${maxSessions} consoles connected already`);
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (ws.protocol !== 'coap') {
        ws.close(1002, 'subprotocol coap required (RFC 8323 §4)');
        return;
      }
      const s = new ConsoleSession(ws, hub, limits, options.clientOptions ?? {});
      sessions.add(s);
      ws.on('close', () => sessions.delete(s));
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new NetworkError(`cannot listen on ${host}:${port}: ${err.code ?? err.message}`, {
          cause: err,
          hint: err.code === 'EADDRINUSE' ? 'choose another port with --port' : undefined,
        }),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  const boundPort = typeof addr === 'object' && addr !== null ? addr.port : port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' || host === '::' ? host : host;
  const url = `http://${urlHost}:${boundPort}/${policy.token !== undefined ? `?token=${policy.token}` : ''}`;
  return {
    url,
    host,
    port: boundPort,
    token: policy.token,
    async close() {
      for (const c of wss.clients) c.terminate();
      await Promise.allSettled([...sessions].map((s) => s.close()));
      sessions.clear();
      hub.close();
      wss.close();
      const closed = new Promise<void>((r) => server.close(() => r()));
      // Keep-alive connections of the page would hold close() for seconds.
      server.closeAllConnections();
      await closed;
    },
  };
}
