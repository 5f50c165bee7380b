/**
 * `coapkit console` in a real browser: Debian's chromium driven by
 * playwright-core loads the page from `coapkit console`, which proxies over
 * CoAP-over-WebSockets to a `coapkit serve`. Discovery, PUT then GET,
 * two notifications of an observation, a 200 KB upload whose progress bar
 * reaches 100% (driven by the proxy's Block1 progress), the ladder diagram,
 * and a screenshot kept in test-artifacts/console.png. Certificate mode: a
 * client certificate, key and CA given in the page (pasted and read from a
 * chosen file) reach a `coapkit serve --cert --key --ca` over coaps://, a raw
 * public key reaches `serve --rpk`; a wrong CA, a bad PEM and an expired
 * certificate are shown as the typed errors' messages.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { makePki, type Pki } from '../helpers/pki.js';
import { cliEnv, LOOPBACK_PORTS, ROOT, type ServeProcess, startServe } from './cli-helpers.js';

// The callbacks given to page.waitForFunction/evaluate run in the page: the little of its
// DOM they use, for the type checker (the test tsconfig has no DOM lib).
declare const document: {
  // biome-ignore lint/suspicious/noExplicitAny: an element of the page
  getElementById(id: string): any;
  querySelectorAll(selector: string): { length: number };
};

const CHROMIUM = '/usr/bin/chromium';
const PAGE = join(ROOT, 'dist/console-page/index.html');
const skip = !existsSync(CHROMIUM)
  ? `${CHROMIUM} is missing (Debian package chromium; .ci/run installs it)`
  : !existsSync(PAGE)
    ? 'the console page is not built (npm run build)'
    : false;

interface ConsoleProcess {
  child: ChildProcess;
  url: string;
  stop(): Promise<void>;
}

/** `coapkit console --port 0` from source; resolves with the page URL from its banner. */
function startConsoleProcess(args: readonly string[] = []): Promise<ConsoleProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'console', '--port', '0', ...args],
      {
        cwd: ROOT,
        env: cliEnv(),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`console did not start: ${out} ${err}`));
    }, 20_000);
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /open (http:\/\/\S+)/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        child,
        url: m[1]!,
        stop: async () => {
          if (child.exitCode !== null) return;
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
          await exited;
          clearTimeout(kill);
        },
      });
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`console exited with ${code}: ${out} ${err}`));
    });
  });
}

/** Waits until the ladder diagram's text matches every pattern (it is redrawn on the next frame). */
// biome-ignore lint/suspicious/noExplicitAny: playwright's Page
async function ladderShows(page: any, ...patterns: RegExp[]): Promise<void> {
  const sources = patterns.map((p) => p.source);
  try {
    await page.waitForFunction(
      (src: string[]) => {
        const t = document.getElementById('ladder')?.textContent ?? '';
        return src.every((s) => new RegExp(s).test(t));
      },
      sources,
      { timeout: 20_000 },
    );
  } catch (err) {
    const text = await page.textContent('#ladder');
    for (const p of patterns) assert.match(text, p);
    throw err;
  }
}

describe('coapkit console in chromium', { skip }, () => {
  let serve: ServeProcess;
  let con: ConsoleProcess;
  let userDir: string;
  // biome-ignore lint/suspicious/noExplicitAny: playwright-core's types are loaded dynamically
  let browser: any;
  // biome-ignore lint/suspicious/noExplicitAny: as above
  let page: any;
  const client = new CoapClient();
  const pki: Pki = makePki();

  before(async () => {
    serve = await startServe([
      ...LOOPBACK_PORTS,
      '--identity',
      'console-test',
      '--psk',
      'console-secret',
      // the page PUTs over plain coap:// too: with keys given, anonymous peers may only read otherwise
      '--anonymous-writes',
    ]);
    con = await startConsoleProcess();
    userDir = mkdtempSync(join(tmpdir(), 'coapkit-chromium-'));
    const { chromium } = await import('playwright-core');
    browser = await chromium.launchPersistentContext(userDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1440, height: 960 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(30_000);
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await client.close();
    await con?.stop();
    await serve?.stop();
    if (userDir) rmSync(userDir, { recursive: true, force: true });
    rmSync(pki.dir, { recursive: true, force: true });
  });

  it('discovers, PUTs then GETs, observes, uploads 200 KB with progress, draws the ladder', {
    timeout: 180_000,
  }, async () => {
    const base = `coap://127.0.0.1:${serve.port}`;
    const errors: string[] = [];
    page.on('pageerror', (e: Error) => errors.push(e.message));
    await page.goto(con.url);
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'connected');

    // Discovery: the tree lists serve's built-in resources.
    await page.fill('#uri', `${base}/`);
    await page.click('#discover');
    await page.waitForSelector('#tree button[data-path="/time"]');
    await page.waitForSelector('#tree button[data-path="/echo"]');

    // PUT then GET a value.
    await page.fill('#uri', `${base}/greeting`);
    await page.selectOption('#method', 'PUT');
    await page.selectOption('#content-format', '0');
    await page.fill('#payload', 'hello from chromium');
    await page.click('#send');
    await page.waitForFunction(() =>
      /^2\.01/.test(document.getElementById('response-code')?.textContent ?? ''),
    );
    await page.selectOption('#method', 'GET');
    await page.click('#send');
    await page.waitForFunction(() =>
      /^2\.05/.test(document.getElementById('response-code')?.textContent ?? ''),
    );
    assert.equal(await page.textContent('#response-body'), 'hello from chromium');
    await ladderShows(page, /CON GET MID \d+/, /ACK 2\.05 Content MID \d+/, /matched 2\.05 \(piggybacked\)/);

    // Observe: the registration's response, then one notification per PUT.
    await page.click('#observe');
    const count = async () => Number(await page.textContent('#notification-count'));
    await page.waitForFunction(() => document.querySelectorAll('#notifications li').length >= 1);
    for (const [i, value] of ['first change', 'second change'].entries()) {
      const r = await client.put(`${base}/greeting`, { payload: value, contentFormat: 0 });
      assert.equal(r.code, 68 /* 2.04 */);
      await page.waitForFunction(
        (n: number) => document.querySelectorAll('#notifications li').length >= n,
        i + 2,
      );
      assert.match(await page.textContent('#notifications li:first-child'), new RegExp(value));
    }
    assert.ok((await count()) >= 3, 'registration + two notifications');
    await page.click('#observe'); // deregister

    // Upload 200 KB: Block1 from the proxy to the server, the bar driven by its progress events.
    const body = randomBytes(200 * 1024);
    await page.fill('#uri', `${base}/firmware.bin`);
    await page.selectOption('#method', 'PUT');
    await page.selectOption('#content-format', '42');
    await page.setInputFiles('#file', {
      name: 'firmware.bin',
      mimeType: 'application/octet-stream',
      buffer: body,
    });
    await page.waitForFunction(() =>
      /204800 B/.test(document.getElementById('file-info')?.textContent ?? ''),
    );
    await page.click('#send');
    await page.waitForFunction(() =>
      /^2\.0[14]/.test(document.getElementById('response-code')?.textContent ?? ''),
    );
    const progress = await page.evaluate(() => {
      const p = document.getElementById('progress') as { value: number; max: number };
      return {
        value: p.value,
        max: p.max,
        text: document.getElementById('progress-text')?.textContent ?? '',
      };
    });
    assert.equal(progress.max, body.length);
    assert.equal(progress.value, body.length);
    assert.match(progress.text, /upload 204800 \/ 204800 B \(100%\), 200 blocks/);
    const back = await client.get(`${base}/firmware.bin`);
    assert.ok(back.payload.equals(body), 'the server holds the uploaded bytes');

    // The middle blocks are folded into one note.
    await ladderShows(page, /CON PUT MID \d+/, /more steps \(\d+ messages\)/);

    // Download it again: Block2 progress, and the body offered as a file.
    await page.click('#clear-file');
    await page.selectOption('#method', 'GET');
    await page.click('#send');
    await page.waitForFunction(() =>
      /^2\.05/.test(document.getElementById('response-code')?.textContent ?? ''),
    );
    assert.match(
      await page.textContent('#progress-text'),
      /^download 204800 \/ 204800 B \(100%\), 200 blocks/,
    );
    assert.match(await page.textContent('#download-link'), /Save body \(204800 B\)/);

    // coaps:// with the PSK fields: the DTLS flights are on the ladder.
    assert.ok(serve.securePort, 'serve started coaps://');
    await page.fill('#uri', `coaps://127.0.0.1:${serve.securePort}/greeting`);
    await page.fill('#psk-identity', 'console-test');
    await page.fill('#psk-key', 'console-secret');
    await page.selectOption('#method', 'GET');
    await page.click('#send');
    await page.waitForFunction(() =>
      /^2\.05/.test(document.getElementById('response-code')?.textContent ?? ''),
    );
    assert.equal(await page.textContent('#response-body'), 'second change');
    await ladderShows(
      page,
      /DTLS handshake starts/,
      /DTLS client_hello/,
      /DTLS up: TLS_PSK_WITH_AES_128_CCM_8/,
      /CON GET MID \d+/,
    );

    // For the screenshot: the tree discovered again (with the new resources), the coaps ladder.
    await page.click('#discover');
    await page.waitForSelector('#tree button[data-path="/firmware.bin"]');
    await page.click('#tree button[data-path="/greeting"]');
    await page.selectOption('#history', { index: 1 });
    await page.waitForFunction(() => /DTLS up/.test(document.getElementById('ladder')?.textContent ?? ''));
    const dir = join(ROOT, 'test-artifacts');
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: join(dir, 'console.png'), fullPage: true });
    assert.deepEqual(errors, []);
  });

  it('coaps:// with a client certificate, key and CA from the page; a raw public key; the errors', {
    timeout: 180_000,
  }, async () => {
    const certServe = await startServe([
      ...LOOPBACK_PORTS,
      '--cert',
      pki.file('serverCert'),
      '--key',
      pki.file('serverKey'),
      '--ca',
      pki.file('ca'),
    ]);
    const rpkServe = await startServe([
      ...LOOPBACK_PORTS,
      '-v',
      '--rpk',
      pki.file('rpkServerKey'),
      '--rpk-trust',
      pki.file('rpkClientKey'),
    ]);
    try {
      const errors: string[] = [];
      page.on('pageerror', (e: Error) => errors.push(e.message));
      await page.goto(con.url);
      await page.waitForFunction(() => document.getElementById('status')?.textContent === 'connected');
      assert.equal(await page.isVisible('#dtls-fields'), false, 'PSK mode shows no certificate fields');
      await page.selectOption('#dtls-mode', 'cert');
      assert.equal(await page.isVisible('#cert-pem'), true);
      assert.equal(await page.isVisible('#psk-identity'), false);
      assert.equal(await page.isVisible('#rpk-pem'), false);

      const code = async (re: RegExp) =>
        page.waitForFunction(
          (src: string) => new RegExp(src).test(document.getElementById('response-code')?.textContent ?? ''),
          re.source,
        );
      const dtlsStatus = async (re: RegExp) =>
        page.waitForFunction(
          (src: string) => new RegExp(src).test(document.getElementById('dtls-status')?.textContent ?? ''),
          re.source,
        );
      const get = async (uri: string) => {
        await page.fill('#uri', uri);
        await page.selectOption('#method', 'GET');
        await page.click('#send');
      };
      const url = `coaps://127.0.0.1:${certServe.securePort}/time`;

      // The certificate pasted, its key and the CA chosen as files (read in the page by FileReader).
      await page.fill('#cert-pem', pki.clientCert);
      await page.setInputFiles('#key-file', pki.file('clientKey'));
      await page.setInputFiles('#ca-file', pki.file('ca'));
      await page.waitForFunction(() =>
        /BEGIN CERTIFICATE/.test(document.getElementById('ca-pem')?.value ?? ''),
      );
      assert.match(await page.inputValue('#key-pem'), /BEGIN PRIVATE KEY/);
      await get(url);
      await code(/^2\.05/);
      assert.match(await page.textContent('#response-body'), /\d{4}-\d\d-\d\dT/);
      await dtlsStatus(/certificate CN=device-1; server checked against CN=coapkit test CA/);
      await ladderShows(
        page,
        /DTLS handshake starts/,
        /DTLS client_hello/,
        /DTLS server_hello/,
        /DTLS certificate_request/,
        // the client's flight: its certificate, proved by certificate_verify
        /DTLS certificate_verify/,
        /DTLS up: TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8/,
        /CON GET MID \d+/,
        /ACK 2\.05 Content/,
      );
      const ladder = await page.textContent('#ladder');
      assert.doesNotMatch(ladder, /PRIVATE KEY/);
      assert.ok(!ladder.includes(pki.clientKey.split('\n')[1]!), 'the key is not drawn');
      await page.screenshot({ path: join(ROOT, 'test-artifacts', 'console-cert.png'), fullPage: true });

      // A wrong CA: the server's certificate is refused, with the DTLS error's message.
      const other = makePki();
      try {
        await page.fill('#ca-pem', other.ca);
        await get(`coaps://127.0.0.1:${certServe.securePort}/time?wrong-ca`);
        await code(/^5\.02/);
        assert.match(
          await page.textContent('#response-body'),
          /certificate \(issuer CN=coapkit test CA\) is not signed by a trusted CA/,
        );
        await ladderShows(page, /not signed by a trusted CA/);
      } finally {
        rmSync(other.dir, { recursive: true, force: true });
      }

      // A bad PEM (a key in the certificate field): the typed error, before anything is sent.
      await page.fill('#ca-pem', pki.ca);
      await page.fill('#cert-pem', pki.clientKey);
      await get(url);
      await code(/^4\.00/);
      assert.match(
        await page.textContent('#response-body'),
        /unusable DTLS credentials: cert is not a certificate: no PEM CERTIFICATE block and not DER \(this is a private key\)/,
      );
      await dtlsStatus(/credentials: cert is not a certificate/);
      assert.doesNotMatch(await page.textContent('#response-body'), /BEGIN/);

      // An expired client certificate: the page says so, and the server refuses it.
      await page.fill('#cert-pem', pki.expiredClientCert);
      await page.fill('#key-pem', pki.expiredClientKey);
      await get(url);
      await dtlsStatus(/certificate CN=old-device \(expired on /);
      await code(/^5\.02/);
      assert.match(await page.textContent('#response-body'), /certificate_expired|expired/);

      // A raw public key with the server's key trusted.
      await page.selectOption('#dtls-mode', 'rpk');
      assert.equal(await page.isVisible('#cert-pem'), false);
      await page.fill('#rpk-pem', pki.rpkClientKey);
      await page.fill('#rpk-trust', `# the server\n${pki.rpkServerFingerprint}\n`);
      await get(`coaps://127.0.0.1:${rpkServe.securePort}/time`);
      await code(/^2\.05/);
      await dtlsStatus(/raw public key [0-9a-f]{16}…; server key must be one of 1 trusted/);
      await ladderShows(page, /DTLS up: TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8/);
      assert.match(
        rpkServe.output(),
        new RegExp(`GET /time from 127\\.0\\.0\\.1:\\d+ \\(${pki.rpkClientFingerprint.slice(0, 8)}`),
      );
      assert.deepEqual(errors, []);
    } finally {
      await certServe.stop();
      await rpkServe.stop();
    }
  });
});
