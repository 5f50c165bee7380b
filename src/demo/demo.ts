/**
 * `coapkit demo`: the seed article's scenario ("Life of a CoAP Message")
 * played on this machine, with the trace of every step.
 *
 * A coaps:// server (the "cloud") starts on a loopback ephemeral port with a
 * freshly generated PSK and identity. A device client then resolves
 * `localhost` (A/AAAA), runs the DTLS 1.2 PSK handshake, POSTs a JSON log
 * to /logs (CON, answered by a piggybacked 2.03 Valid as in the article),
 * observes /.d/settings while the cloud changes it twice, and downloads a
 * firmware image block-wise with a progress bar. Everything is closed at the
 * end; the whole run takes well under 15 s.
 */

import { Buffer } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { BlockProgress } from '../blockwise/common.js';
import { claimStatusLine } from '../blockwise/progress.js';
import { type BlockwiseServer, enableBlockwise } from '../blockwise/server.js';
import { CoapClient } from '../client/client.js';
import { ContentFormat } from '../constants/content-formats.js';
import { ResponseCodeError } from '../errors.js';
import { enableObserve, type ObserveServer } from '../observe/server.js';
import { CoapServer } from '../server/server.js';
import { eventPeerKey, formatSummary, startTrace, type Trace, type TraceChannel } from '../trace/tracer.js';
import { DtlsClientTransport, DtlsServerTransport } from '../transport/dtls.js';
import { resolveHost } from '../transport/resolve.js';

export interface DemoIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** True when stdout is a terminal: colours and a live progress bar. */
  isTTY: boolean;
}

export interface DemoOptions {
  /** Use coaps:// with a PSK (default true); false plays the scenario over plain coap://. */
  secure?: boolean;
  /** Host name the device resolves (default "localhost"). */
  host?: string;
  /** Size of the firmware image in bytes (default 64 KiB). */
  firmwareSize?: number;
  /** Block size for the download, 16..1024 (default 1024). */
  blockSize?: number;
  /** Trace format (default text). JSON trace lines go to stdout, headings to stderr. */
  traceFormat?: 'text' | 'json';
  /** Colours (default: isTTY and no NO_COLOR). */
  color?: boolean;
  /** Print the trace of every block of the download, not just the first and last ones. */
  allBlocks?: boolean;
  /** Overall time limit in ms (default 14 000). */
  timeoutMs?: number;
}

const JSON_CF = ContentFormat.Json;

/** The "cloud": /logs, /.d/settings (observable), /fw/image.bin (block-wise). */
class Cloud {
  readonly server = new CoapServer({ separateResponseDelayMs: 500 });
  readonly logs: unknown[] = [];
  settings: Record<string, unknown> = { logLevel: 'info', reportIntervalS: 60 };
  readonly firmware: Buffer;
  readonly blockwise: BlockwiseServer;
  readonly observe: ObserveServer;

  constructor(firmwareSize: number) {
    this.firmware = randomBytes(firmwareSize);
    // RFC 7959 slicing first, then RFC 7641 (notifications as CON, like Golioth's).
    this.blockwise = enableBlockwise(this.server);
    this.observe = enableObserve(this.server, { confirmable: true, blockwise: this.blockwise });
    this.server.post(
      '/logs',
      (req) => {
        try {
          this.logs.push(JSON.parse(req.text()));
        } catch {
          throw new ResponseCodeError('4.00', 'log entries are JSON');
        }
        // The article's capture shows Golioth answering the log POST with 2.03 Valid.
        return { code: '2.03' };
      },
      { rt: 'logs', ct: JSON_CF },
    );
    this.server.get(
      '/.d/settings',
      () => ({ contentFormat: JSON_CF, payload: JSON.stringify(this.settings) }),
      { rt: 'config', ct: JSON_CF, obs: true },
    );
    this.server.get(
      '/fw/image.bin',
      () => ({ contentFormat: ContentFormat.OctetStream, payload: this.firmware }),
      { rt: 'firmware', ct: ContentFormat.OctetStream, sz: firmwareSize },
    );
  }

  get observerCount(): number {
    return this.observe.observerCount('/.d/settings');
  }

  /** Changes the settings; every observer gets a notification. */
  changeSettings(patch: Record<string, unknown>): void {
    this.settings = { ...this.settings, ...patch };
    this.observe.notify('/.d/settings');
  }

  async close(): Promise<void> {
    this.observe.close();
    this.blockwise.close();
    await this.server.close();
  }
}

class Printer {
  constructor(
    readonly out: NodeJS.WritableStream,
    private readonly color: boolean,
  ) {}

  write(s: string): void {
    try {
      this.out.write(s);
    } catch {
      // output closed: keep going, the demo still cleans up
    }
  }

  heading(n: number | string, title: string, blurb: string[]): void {
    const bar = '─'.repeat(Math.max(8, 78 - title.length - String(n).length - 4));
    const head = `\n── ${n}. ${title} ${bar}\n`;
    this.write(this.color ? `\x1b[1m${head}\x1b[0m` : head);
    for (const b of blurb) this.write(`   ${this.color ? `\x1b[2m${b}\x1b[0m` : b}\n`);
    this.write('\n');
  }

  note(s: string): void {
    this.write(`   ${this.color ? `\x1b[33m${s}\x1b[0m` : s}\n`);
  }

  result(s: string): void {
    this.write(`   ${this.color ? `\x1b[1m» ${s}\x1b[0m` : `» ${s}`}\n`);
  }
}

/** Waits for the trace to flush what the event loop has queued (it prints on setImmediate). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(() => setImmediate(r)));

export async function runDemo(io: DemoIo, options: DemoOptions = {}): Promise<number> {
  const started = performance.now();
  const secure = options.secure ?? true;
  const host = options.host ?? 'localhost';
  const firmwareSize = options.firmwareSize ?? 64 * 1024;
  const blockSize = options.blockSize ?? 1024;
  const format = options.traceFormat ?? 'text';
  const color = options.color ?? (io.isTTY && !process.env.NO_COLOR);
  const p = new Printer(format === 'json' ? io.stderr : io.stdout, color);
  const scheme = secure ? 'coaps' : 'coap';

  const cloud = new Cloud(firmwareSize);
  let client: CoapClient | undefined;
  let trace: Trace | undefined;
  let watchdog: NodeJS.Timeout | undefined;
  let failed: unknown;

  const run = async (): Promise<void> => {
    p.write(
      `coapkit demo: the life of a CoAP message, from a device to the "cloud" and back,\n` +
        `after Golioth's "Life of a CoAP Message" — played on this machine over loopback.\n`,
    );

    // ---- 1. the cloud
    const identity = `device-${randomBytes(3).toString('hex')}`;
    const key = randomBytes(16);
    // Bind where the device's resolver will send it (first answer for `host`).
    const where = await resolveHost(host);
    // The first address that can be bound (e.g. ::1 may resolve without IPv6 on loopback).
    let bindAddress = where.address;
    let bindFamily = where.family;
    let port = 0;
    let lastError: unknown;
    for (const a of [where, ...where.addresses.filter((x) => x.address !== where.address)]) {
      try {
        if (secure) {
          const transport = await DtlsServerTransport.create({
            host: a.address,
            port: 0,
            psk: { identity, key },
            mtu: 1500,
          });
          await cloud.server.listen(transport);
          port = transport.localAddress().port;
        } else {
          const ep = await cloud.server.listen({ host: a.address, port: 0 });
          port = ep.transport.localAddress().port;
        }
        bindAddress = a.address;
        bindFamily = a.family;
        lastError = undefined;
        break;
      } catch (err) {
        lastError = err;
      }
    }
    if (lastError !== undefined) throw lastError;
    const cloudKey = `${bindAddress}%${port}`;
    const base = `${scheme}://${host}:${port}`;
    p.heading(1, 'Setting up: the "cloud"', [
      `A CoAP server plays the cloud: POST /logs, GET /.d/settings (observable), GET /fw/image.bin.`,
      secure
        ? `Like the article's device, ours authenticates with a pre-shared key (DTLS 1.2 PSK).`
        : `Plain coap:// (no DTLS) for this run.`,
    ]);
    p.result(
      `cloud listening on ${scheme}://${bindAddress.includes(':') ? `[${bindAddress}]` : bindAddress}:${port}`,
    );
    if (secure) {
      p.result(
        `PSK identity "${identity}", key (16 random bytes, hex for Wireshark): ${key.toString('hex')}`,
      );
    }

    // ---- tracing: the device's view of the wire, plus the cloud's handler
    const names: Record<string, string> = { [cloudKey]: 'cloud' };
    let muted = false;
    let showDns = true;
    trace = startTrace({
      format,
      out: io.stdout,
      color,
      names,
      filter: (channel: TraceChannel, ev: unknown) => {
        if (channel.startsWith('coapkit:dns:')) return showDns;
        if (channel.startsWith('coapkit:server:')) return true;
        const k = eventPeerKey(ev);
        return k === cloudKey;
      },
      mute: () => muted,
    });

    client = new CoapClient({
      // One shared socket (no connected socket per session): its port names the device in the trace.
      ...(secure ? { psk: { identity, key }, dtls: { mtu: 1500, maxConnectedSockets: 0 } } : {}),
      preferFamily: bindFamily,
      blockSize,
      // 4-byte tokens like the article's device (Token: 7d5b825d).
      tokenLength: 4,
    });

    // ---- 2. DNS
    p.heading(2, 'Address resolution (DNS)', [
      `The device knows the cloud by name. getaddrinfo(AF_UNSPEC) asks for A and AAAA records;`,
      `the first answer is used.`,
    ]);
    const target = await client.resolve(`${base}/`);
    await settle();
    p.result(`${host} → ${target.peer.address}`);
    p.note('(the client resolves the name again for each request; those lookups are not shown)');
    showDns = false;

    // ---- 3. DTLS
    const transport = target.endpoint.transport;
    const local = transport.localAddress();
    names[`${target.peer.address}%${local.port}`] = 'device';
    if (secure && transport instanceof DtlsClientTransport) {
      p.heading(3, 'Establishing a secure channel (DTLS 1.2 handshake)', [
        `ClientHello → HelloVerifyRequest with a stateless cookie → ClientHello again with the cookie →`,
        `ServerHello + ServerHelloDone → ClientKeyExchange (PSK identity) + ChangeCipherSpec + Finished →`,
        `ChangeCipherSpec + Finished. Several records may share one datagram; each has epoch and seq.`,
      ]);
      const hs = performance.now();
      await transport.connect(target.peer);
      await settle();
      const info = transport.sessionInfo(target.peer);
      p.result(
        `secure channel up in ${(performance.now() - hs).toFixed(1)} ms: ${info?.suite ?? '?'}${
          info?.extendedMasterSecret ? ', extended master secret' : ''
        }`,
      );
    } else {
      p.heading(3, 'Establishing a secure channel', [`Skipped: plain coap:// has no handshake.`]);
    }

    // ---- 4. POST /logs
    p.heading(4, 'Sending a CoAP message: POST /logs', [
      `A Confirmable POST with a JSON log entry. The cloud answers in the ACK itself (piggybacked):`,
      `same Message ID and same Token as the request, code 2.03 Valid as in the article's capture.`,
    ]);
    const log = { level: 'info', module: 'golioth_basics', msg: 'Waiting for connection to Golioth...' };
    const res = await client.post(`${base}/logs`, {
      payload: JSON.stringify(log),
      contentFormat: 'json',
      timeout: 5000,
    });
    await settle();
    p.result(
      `${res.codeText}, ${res.piggybacked ? 'piggybacked on the ACK' : 'separate response'}, MID ${res.messageId}, token ${res.token.toString('hex')}, RTT ${res.rttMs.toFixed(1)} ms`,
    );

    // ---- 5. Observe
    p.heading(5, 'Observing the device settings: GET /.d/settings with Observe', [
      `The device registers (Observe: 0); the cloud changes the settings twice and pushes each`,
      `change as a Confirmable notification with the same token and a growing Observe number.`,
    ]);
    await observeSettings(client, `${base}/.d/settings`, cloud, p);
    await settle();

    // ---- 6. Block-wise download
    const blocks = Math.ceil(firmwareSize / blockSize);
    p.heading(6, `Firmware download, block-wise (${formatSize(firmwareSize)} in ${blockSize} B blocks)`, [
      `The image is bigger than a datagram, so it comes in ${blocks} Block2 exchanges (RFC 7959);`,
      `Block2 reads NUM/M/size (block number, more-flag, block size). ${
        options.allBlocks ? 'Every block is traced.' : 'Only the first two and the last block are traced.'
      }`,
    ]);
    const fw = await downloadFirmware(
      client,
      `${base}/fw/image.bin`,
      blockSize,
      io.isTTY && format === 'text',
      p,
      (done, total) => {
        if (options.allBlocks) return false;
        const n = Math.ceil(total / blockSize);
        muted = done >= 2 && done < n - 1;
        return muted;
      },
    );
    muted = false;
    await settle();
    const ok = Buffer.compare(fw, cloud.firmware) === 0;
    p.result(
      `${formatSize(fw.length)} received, SHA-256 ${createHash('sha256').update(fw).digest('hex').slice(0, 16)}… ${
        ok ? 'matches the image' : 'DOES NOT MATCH'
      }`,
    );
    if (!ok) throw new Error('firmware image corrupted in transfer');

    // ---- 7. summary
    await client.close();
    client = undefined;
    await settle();
    trace.stop();
    const s = trace.summary();
    p.heading(7, 'How does it stack up?', [
      `Every CoAP message above, counted layer by layer (IP and UDP headers, DTLS record header`,
      `+ nonce/tag, CoAP header/token/options, payload).`,
    ]);
    p.result(formatSummary(s));
    p.result(`done in ${((performance.now() - started) / 1000).toFixed(2)} s`);
  };

  const limit = options.timeoutMs ?? 14_000;
  try {
    await Promise.race([
      run(),
      new Promise<never>((_, reject) => {
        watchdog = setTimeout(() => reject(new Error(`demo did not finish within ${limit} ms`)), limit);
      }),
    ]);
  } catch (err) {
    failed = err;
  } finally {
    if (watchdog) clearTimeout(watchdog);
    trace?.stop();
    await client?.close().catch(() => undefined);
    await cloud.close().catch(() => undefined);
  }
  if (failed !== undefined) {
    const msg = failed instanceof Error ? failed.message : String(failed);
    try {
      io.stderr.write(`coapkit demo: ${msg}\n`);
    } catch {
      // ignore
    }
    return 1;
  }
  return 0;
}

function formatSize(n: number): string {
  return n >= 1024 && n % 1024 === 0 ? `${n / 1024} KiB` : `${n} B`;
}

/** Registers, waits for two changes, then deregisters (GET with Observe: 1). */
async function observeSettings(client: CoapClient, uri: string, cloud: Cloud, p: Printer): Promise<void> {
  const changes: Array<Record<string, unknown>> = [
    { logLevel: 'debug' },
    { reportIntervalS: 10, ledBrightness: 40 },
  ];
  const observation = client.observe(uri, { timeout: 5000 });
  let count = 0;
  for await (const n of observation) {
    count++;
    await settle();
    const what = count === 1 ? 'registered, current settings' : `notification #${count - 1}`;
    p.result(`${what} (Observe ${n.observe ?? 'absent'}): ${n.text()}`);
    const next = changes.shift();
    if (n.observe === undefined || next === undefined) break;
    // The cloud changes the configuration a moment later.
    setTimeout(() => cloud.changeSettings(next), 50);
  }
  // Leaving the loop deregisters (§3.6: GET with Observe: 1 and the same token).
  await observation.cancel();
  await settle();
  p.result(`deregistered; the cloud now has ${cloud.observerCount} observers of /.d/settings`);
}

/** Downloads with the client's transparent Block2, drawing progress. */
async function downloadFirmware(
  client: CoapClient,
  uri: string,
  blockSize: number,
  tty: boolean,
  p: Printer,
  onBlock: (done: number, total: number) => boolean,
): Promise<Buffer> {
  let lastPct = -1;
  // The bar owns the bottom line of the terminal: each trace line erases it first and
  // it comes back below at the next block, so the two never share a line.
  const line = tty ? claimStatusLine(p.out) : undefined;
  const progress = (pr: BlockProgress) => {
    const total = pr.totalBytes ?? pr.bytes;
    onBlock(pr.blocks, total);
    const pct = total > 0 ? Math.floor((pr.bytes / total) * 100) : 0;
    const blocks = `${pr.blocks} block${pr.blocks === 1 ? '' : 's'}`;
    if (line !== undefined) {
      const width = 40;
      const fill = Math.round((pct / 100) * width);
      line.show(
        `   [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${pct}%  ${pr.bytes}/${total} B  ${blocks}`,
      );
    } else if (pct >= lastPct + 25 || pr.bytes >= total) {
      lastPct = pct - (pct % 25);
      p.write(`   progress: ${pct}% (${pr.bytes}/${total} B, ${blocks})\n`);
    }
  };
  try {
    const res = await client.get(uri, { timeout: 5000, blockSize, onProgress: progress });
    if (!res.ok) throw new Error(`firmware download failed: ${res.codeText}`);
    return res.payload;
  } finally {
    line?.end(true);
  }
}
