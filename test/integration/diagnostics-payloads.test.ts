/**
 * Each diagnostics channel publishes what ChannelPayloads declares.
 *
 * The schema below is typed from the declarations (`Schema<ChannelPayloads[K]>`):
 * `npm run typecheck` fails when a field is added to, removed from or changes
 * kind in a payload type without the schema following. At run time every
 * channel is subscribed during real exchanges (UDP: DNS, piggybacked and
 * separate responses, duplicate, ping, garbage, retransmission, timeout;
 * DTLS: handshake, records, a failed handshake; TCP: frames) and each payload is checked
 * against the schema: a missing or mistyped field, or one the type does not
 * declare, fails the test.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, describe, it } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { MessageType } from '../../src/constants/codes.js';
import {
  CHANNEL_NAMES,
  type ChannelName,
  type ChannelPayloads,
  channelsByName,
} from '../../src/diagnostics.js';
import { OscoreContext } from '../../src/oscore/context.js';
import { enableOscore } from '../../src/server/oscore.js';
import { CoapServer } from '../../src/server/server.js';
import { TRACE_CHANNELS } from '../../src/trace/tracer.js';
import { DtlsServerTransport } from '../../src/transport/dtls.js';
import { TcpTransport } from '../../src/transport/tcp.js';

// ---------------------------------------------------------------- schema derived from the types

type Kind<V> = [V] extends [string]
  ? 'string'
  : [V] extends [number]
    ? 'number'
    : [V] extends [boolean]
      ? 'boolean'
      : [V] extends [Uint8Array]
        ? 'bytes'
        : [V] extends [Error]
          ? 'error'
          : [V] extends [ReadonlyArray<infer E>]
            ? { array: Spec<E> }
            : [V] extends [object]
              ? { object: Schema<V> }
              : never;
/** A field that may be undefined (or absent) is `{ optional: kind }`. */
type Spec<V> = undefined extends V ? { optional: Kind<Exclude<V, undefined>> } : Kind<V>;
/** Every declared field, optional ones included, must be listed. */
type Schema<T> = { [P in keyof Required<T>]: Spec<T[P & keyof T]> };

type AnyKind =
  | 'string'
  | 'number'
  | 'boolean'
  | 'bytes'
  | 'error'
  | { array: AnySpec }
  | { object: AnySchema };
type AnySpec = AnyKind | { optional: AnyKind };
type AnySchema = { [field: string]: AnySpec };

const peer = {
  object: {
    address: 'string',
    port: 'number',
    family: 'string',
    identity: { optional: 'string' },
    auth: {
      optional: {
        object: {
          mode: 'string',
          identity: 'string',
          subject: { optional: 'string' },
          san: { optional: { array: 'string' } },
          fingerprint: { optional: 'string' },
        },
      },
    },
    key: 'string',
  },
} as const;

const handshakeInfo = {
  object: {
    type: 'number',
    typeName: 'string',
    length: 'number',
    messageSeq: 'number',
    fragmentOffset: 'number',
    fragmentLength: 'number',
    cookie: { optional: 'string' },
    offeredSuites: { optional: { array: 'string' } },
    chosenSuite: { optional: 'string' },
    extensions: { optional: { array: 'number' } },
    identity: { optional: 'string' },
    identityHint: { optional: 'string' },
    group: { optional: 'number' },
    certificates: { optional: { array: 'string' } },
    serverName: { optional: 'string' },
  },
} as const;

const record = {
  peer: 'string',
  role: 'string',
  type: 'number',
  typeName: 'string',
  epoch: 'number',
  seq: 'number',
  length: 'number',
  handshake: { optional: { array: handshakeInfo } },
  cid: { optional: 'string' },
  alert: { optional: { object: { level: 'number', description: 'number' } } },
} as const;

const SCHEMAS: { [K in ChannelName]: Schema<ChannelPayloads[K]> } = {
  'coapkit:dns:resolved': {
    host: 'string',
    address: 'string',
    family: 'number',
    addresses: { array: { object: { address: 'string', family: 'number' } } },
    durationMs: 'number',
  },
  'coapkit:dns:failed': { host: 'string', error: 'error', durationMs: 'number' },
  'coapkit:dtls:handshake:start': { peer: 'string', role: 'string' },
  'coapkit:dtls:record:sent': record,
  'coapkit:dtls:record:received': record,
  'coapkit:dtls:handshake:done': {
    peer: 'string',
    role: 'string',
    suite: { optional: 'string' },
    suiteId: { optional: 'number' },
    extendedMasterSecret: 'boolean',
    identity: { optional: 'string' },
    authMode: { optional: 'string' },
    durationMs: 'number',
    cid: { optional: { object: { send: 'string', receive: 'string' } } },
  },
  'coapkit:dtls:handshake:error': {
    peer: 'string',
    role: 'string',
    error: 'error',
    identity: { optional: 'string' },
    alert: {
      optional: { object: { level: 'number', description: 'number', name: 'string', direction: 'string' } },
    },
    reason: { optional: 'string' },
  },
  'coapkit:frame:sent': { peer, scheme: 'string', initiator: 'boolean', frame: 'bytes' },
  'coapkit:frame:received': { peer, scheme: 'string', initiator: 'boolean', frame: 'bytes' },
  'coapkit:message:sent': { peer, data: 'bytes', transmission: 'number' },
  'coapkit:message:retransmitted': {
    peer,
    data: 'bytes',
    messageId: 'number',
    transmission: 'number',
    nextTimeoutMs: 'number',
  },
  'coapkit:message:received': { peer, data: 'bytes' },
  'coapkit:message:duplicate': { peer, data: 'bytes', messageId: 'number', replayed: 'boolean' },
  'coapkit:message:rejected': { peer, data: 'bytes', reason: 'string', reset: 'boolean' },
  'coapkit:message:timeout': { peer, messageId: 'number', transmissions: 'number' },
  'coapkit:exchange:matched': {
    peer,
    token: 'bytes',
    messageId: 'number',
    requestMessageId: 'number',
    code: 'number',
    piggybacked: 'boolean',
    separate: 'boolean',
    rttMs: 'number',
  },
  'coapkit:server:request': {
    peer,
    token: 'bytes',
    method: 'string',
    path: 'string',
    messageId: 'number',
  },
  'coapkit:server:response': { peer, token: 'bytes', code: { optional: 'number' }, durationMs: 'number' },
  'coapkit:oscore:message': {
    peer,
    direction: 'string',
    code: 'number',
    path: 'string',
    payloadLength: 'number',
    kid: 'string',
    partialIv: 'string',
  },
};

// The schema type is not vacuous: a wrong kind, a missing field and an undeclared one are rejected.
const _wrongKind: Schema<ChannelPayloads['coapkit:message:timeout']> = {
  peer,
  // @ts-expect-error messageId is a number
  messageId: 'string',
  transmissions: 'number',
};
// @ts-expect-error transmissions is missing
const _missing: Schema<ChannelPayloads['coapkit:message:timeout']> = { peer, messageId: 'number' };
const _extra: Schema<ChannelPayloads['coapkit:message:timeout']> = {
  peer,
  messageId: 'number',
  transmissions: 'number',
  // @ts-expect-error not declared
  retries: 'number',
};
void [_wrongKind, _missing, _extra];

/** Problems of `value` against `spec` (empty when it conforms). */
function check(spec: AnySpec, value: unknown, path: string, out: string[]): void {
  let kind: AnySpec = spec;
  if (typeof kind === 'object' && 'optional' in kind) {
    if (value === undefined) return;
    kind = kind.optional;
  }
  if (typeof kind === 'string') {
    const ok =
      kind === 'bytes'
        ? value instanceof Uint8Array
        : kind === 'error'
          ? value instanceof Error
          : typeof value === kind && !(kind === 'number' && !Number.isFinite(value));
    if (!ok) out.push(`${path}: expected ${kind}, got ${kindOf(value)}`);
    return;
  }
  if ('array' in kind) {
    if (!Array.isArray(value)) {
      out.push(`${path}: expected an array, got ${kindOf(value)}`);
      return;
    }
    for (let i = 0; i < value.length; i++) check(kind.array, value[i], `${path}[${i}]`, out);
    return;
  }
  checkObject(kind.object, value, path, out);
}

function checkObject(schema: AnySchema, value: unknown, path: string, out: string[]): void {
  if (value === null || typeof value !== 'object') {
    out.push(`${path}: expected an object, got ${kindOf(value)}`);
    return;
  }
  for (const [field, spec] of Object.entries(schema)) {
    check(spec, (value as Record<string, unknown>)[field], `${path}.${field}`, out);
  }
  for (const field of Object.keys(value)) {
    if (!(field in schema)) out.push(`${path}.${field}: published but not declared`);
  }
}

const kindOf = (v: unknown): string =>
  v === null ? 'null' : Array.isArray(v) ? 'array' : v instanceof Uint8Array ? 'bytes' : typeof v;

// ---------------------------------------------------------------- the run

const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('diagnostics: every channel publishes its declared payload', () => {
  it('the schema check catches a wrong, a missing and an undeclared field', () => {
    const out: string[] = [];
    const p = { address: '127.0.0.1', port: 1, family: 'IPv4', key: '127.0.0.1%1' };
    checkObject(SCHEMAS['coapkit:message:timeout'], { peer: p, messageId: '7', extra: 1 }, 'ev', out);
    assert.deepEqual(out.sort(), [
      'ev.extra: published but not declared',
      'ev.messageId: expected number, got string',
      'ev.transmissions: expected number, got undefined',
    ]);
  });

  it('the trace listens to every declared channel', () => {
    assert.deepEqual([...TRACE_CHANNELS].sort(), Object.keys(SCHEMAS).sort());
    assert.deepEqual([...CHANNEL_NAMES].sort(), Object.keys(SCHEMAS).sort());
  });

  it('UDP and DTLS exchanges publish on all channels, each payload as declared', async () => {
    const seen = new Map<ChannelName, number>();
    const problems: string[] = [];
    let changed: () => void = () => {};
    for (const name of CHANNEL_NAMES) {
      const fn = (m: unknown): void => {
        seen.set(name, (seen.get(name) ?? 0) + 1);
        const out: string[] = [];
        checkObject(SCHEMAS[name] as AnySchema, m, name, out);
        if (out.length > 0 && problems.length < 50) problems.push(...out);
        changed();
      };
      const ch = channelsByName[name] as { subscribe(f: typeof fn): void; unsubscribe(f: typeof fn): void };
      ch.subscribe(fn);
      cleanups.push(() => ch.unsubscribe(fn));
    }
    /** Waits until `cond` holds (checked after every event), within a generous deadline. */
    const until = (what: string, cond: () => boolean): Promise<void> =>
      new Promise((resolve, reject) => {
        if (cond()) return resolve();
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 15_000);
        changed = () => {
          if (cond()) {
            clearTimeout(timer);
            changed = () => {};
            resolve();
          }
        };
      });
    const has =
      (...names: ChannelName[]) =>
      () =>
        names.every((n) => (seen.get(n) ?? 0) > 0);

    // ---- UDP server: piggybacked and separate responses
    const server = new CoapServer({ separateResponseDelayMs: 10 });
    server.get('/hello', () => ({ payload: 'world' }));
    server.get('/slow', () => new Promise((r) => setTimeout(() => r({ payload: 'late' }), 60)));
    const ep = await server.listen({ host: '127.0.0.1', port: 0 });
    const port = ep.transport.localAddress().port;
    cleanups.push(() => server.close());
    const client = new CoapClient({ preferFamily: 4 });
    cleanups.push(() => client.close());
    await client.get(`coap://localhost:${port}/hello`, { timeout: 10_000 });
    const slow = await client.get(`coap://127.0.0.1:${port}/slow`, { timeout: 10_000 });
    assert.equal(slow.payload.toString(), 'late');

    // ---- OSCORE: a protected request and its response (the inner messages)
    const osc = (s: string, r: string) =>
      new OscoreContext({
        masterSecret: Buffer.alloc(16, 3),
        senderId: Buffer.from(s),
        recipientId: Buffer.from(r),
      });
    const oserver = new CoapServer();
    oserver.get('/inner', () => ({ payload: 'x' }));
    enableOscore(oserver, { contexts: [osc('s', 'c')] });
    const oport = (await oserver.listen({ host: '127.0.0.1', port: 0 })).transport.localAddress().port;
    cleanups.push(() => oserver.close());
    await client.get(`coap://127.0.0.1:${oport}/inner`, { timeout: 10_000, oscore: osc('c', 's') });

    // ---- DNS failure (the resolver is replaced: no network)
    const failing = new CoapClient({
      lookup: async () => {
        throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
      },
    });
    cleanups.push(() => failing.close());
    await assert.rejects(failing.get('coap://nowhere.invalid/x', { timeout: 5000 }));

    // ---- raw datagrams: a duplicate CON, a ping, garbage
    const raw = dgram.createSocket('udp4');
    cleanups.push(() => raw.close());
    await new Promise<void>((r) => raw.bind(0, '127.0.0.1', r));
    const get = Buffer.from([0x41, 0x01, 0x12, 0x34, 0xab, 0xb5, ...Buffer.from('hello')]);
    raw.send(get, port, '127.0.0.1');
    await until('the first request', has('coapkit:server:response'));
    raw.send(get, port, '127.0.0.1');
    raw.send(Buffer.from([(1 << 6) | (MessageType.CON << 4), 0, 0x55, 0x66]), port, '127.0.0.1');
    raw.send(Buffer.from([0xff, 0x00]), port, '127.0.0.1');
    await until('duplicate and rejections', has('coapkit:message:duplicate', 'coapkit:message:rejected'));

    // ---- retransmission and timeout: a peer that never answers
    const silent = dgram.createSocket('udp4');
    cleanups.push(() => silent.close());
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
    const impatient = new CoapClient({
      transmission: { ackTimeout: 20, ackRandomFactor: 1, maxRetransmit: 1 },
    });
    cleanups.push(() => impatient.close());
    await assert.rejects(impatient.get(`coap://127.0.0.1:${silent.address().port}/x`, { timeout: 10_000 }));
    await until(
      'retransmission and timeout',
      has('coapkit:message:retransmitted', 'coapkit:message:timeout'),
    );

    // ---- DTLS: a handshake and an exchange, then a client with the wrong key
    const dserver = new CoapServer();
    dserver.get('/secure', () => ({ payload: 'ok' }));
    const transport = await DtlsServerTransport.create({
      host: '127.0.0.1',
      port: 0,
      psk: { identity: 'diag', key: 'right-key' },
    });
    await dserver.listen(transport);
    cleanups.push(() => dserver.close());
    const dport = transport.localAddress().port;
    const dclient = new CoapClient({ psk: { identity: 'diag', key: 'right-key' } });
    cleanups.push(() => dclient.close());
    const res = await dclient.get(`coaps://127.0.0.1:${dport}/secure`, { timeout: 10_000 });
    assert.equal(res.payload.toString(), 'ok');
    const wrong = new CoapClient({ psk: { identity: 'diag', key: 'wrong-key' } });
    cleanups.push(() => wrong.close());
    await assert.rejects(wrong.get(`coaps://127.0.0.1:${dport}/secure`, { timeout: 10_000 }));
    await until('a failed handshake', has('coapkit:dtls:handshake:error'));

    // ---- RFC 8323: a request over coap+tcp:// (CSM both ways, the request and response frames)
    const tserver = new CoapServer();
    tserver.get('/tcp', () => ({ payload: 'ok' }));
    const tcp = await tserver.listen(await TcpTransport.create({ host: '127.0.0.1', port: 0 }));
    cleanups.push(() => tserver.close());
    const tres = await client.get(`coap+tcp://127.0.0.1:${tcp.transport.localAddress().port}/tcp`, {
      timeout: 10_000,
    });
    assert.equal(tres.payload.toString(), 'ok');
    await until('frames', has('coapkit:frame:sent', 'coapkit:frame:received'));

    const missing = CHANNEL_NAMES.filter((n) => !seen.has(n));
    assert.deepEqual(missing, [], 'every channel published at least once');
    assert.deepEqual(problems, [], 'payloads match their declared types');
  });
});
