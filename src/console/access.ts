/**
 * Who may use `coapkit console`: the page and its WebSocket proxy reach any
 * CoAP server the console's machine can reach, so they must not become an
 * open proxy by accident.
 *
 * - Bound to loopback (the default): no token; every HTTP request and the
 *   WebSocket upgrade must name a loopback Host (localhost, 127.x, [::1]) so
 *   a page on another site cannot reach it through DNS rebinding (its Host
 *   would be the attacker's name), and the upgrade's Origin must be this very
 *   page (a site the person visits cannot open the WebSocket).
 * - Any other address needs `--host` and a token printed at startup: the page
 *   URL carries it (`?token=`), the upgrade must carry it too; the Origin
 *   must still match the Host.
 */
import { timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';

/** True for an address or name that only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  // IPv4-mapped loopback (::ffff:127.0.0.1).
  return /^::ffff:127\.\d+\.\d+\.\d+$/.test(h);
}

/** The hostname of a Host header (`name:port`, `[v6]:port`), lower case; undefined when malformed. */
export function hostOfHeader(value: string | undefined): string | undefined {
  if (value === undefined || value === '' || value.length > 255) return undefined;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]/\s@]+)(?::(\d{1,5}))?$/.exec(value);
  return m ? m[1]!.replace(/^\[|\]$/g, '').toLowerCase() : undefined;
}

export interface AccessPolicy {
  /** The address the console listens on. */
  host: string;
  /** Required when `host` is not loopback; otherwise undefined. */
  token: string | undefined;
}

/** Why a request was refused (HTTP status and a short reason for the body). */
export interface Refusal {
  status: 400 | 403;
  reason: string;
}

/** The token rule: loopback needs none; anything else gets one (given or generated). */
export function accessPolicy(host: string, token: string | undefined, generate: () => string): AccessPolicy {
  if (isLoopbackHost(host)) return { host, token };
  return { host, token: token ?? generate() };
}

function sameToken(given: string | null, expected: string): boolean {
  if (given === null) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Checks one HTTP request (the page, its files, or the WebSocket upgrade
 * when `upgrade` is true) against the policy; undefined when allowed. The
 * page and its scripts are public; the token guards the upgrade (the proxy).
 */
export function checkRequest(
  policy: AccessPolicy,
  req: { url: string | undefined; headers: { host?: string | undefined; origin?: string | undefined } },
  upgrade: boolean,
): Refusal | undefined {
  const host = hostOfHeader(req.headers.host);
  if (host === undefined) return { status: 400, reason: 'missing or malformed Host header' };
  if (policy.token === undefined && !isLoopbackHost(host)) {
    // DNS rebinding: a foreign name that resolves to 127.0.0.1.
    return {
      status: 403,
      reason: `Host "${host}" is not a loopback name: the console only answers on loopback`,
    };
  }
  if (upgrade) {
    const origin = req.headers.origin;
    if (origin === undefined) return { status: 403, reason: 'the WebSocket upgrade has no Origin' };
    let originHost: string;
    try {
      originHost = new URL(origin).host.toLowerCase();
    } catch {
      return { status: 403, reason: 'malformed Origin' };
    }
    if (originHost !== req.headers.host!.toLowerCase()) {
      return { status: 403, reason: 'the Origin is not this console (cross-site WebSocket)' };
    }
  }
  if (policy.token !== undefined && upgrade) {
    let given: string | null = null;
    try {
      given = new URL(req.url ?? '/', 'http://x').searchParams.get('token');
    } catch {
      given = null;
    }
    if (!sameToken(given, policy.token)) {
      return { status: 403, reason: 'a valid ?token= is required (printed when the console started)' };
    }
  }
  return undefined;
}
