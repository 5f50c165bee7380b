/**
 * Generates test/vectors/dtls-openssl-sessions.json: real DTLS 1.2 sessions
 * between `openssl s_client` and `openssl s_server` (one per PSK suite),
 * captured through a UDP relay, with the NSS key log OpenSSL wrote.
 * Run: node --import tsx test/vectors/dtls-gen-openssl-vectors.mts
 * The unit test dtls-vectors.test.ts checks coapkit's key schedule, transcript
 * hash and record protection against these independently produced bytes.
 */
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SUITES: [string, number][] = [
  ['PSK-AES128-CCM8', 0xc0a8],
  ['PSK-AES128-CCM', 0xc0a4],
  ['PSK-AES128-GCM-SHA256', 0x00a8],
  ['ECDHE-PSK-CHACHA20-POLY1305', 0xccac],
  ['ECDHE-PSK-AES128-CBC-SHA256', 0xc037],
];
const PSK_HEX = '0102030405060708090a0b0c0d0e0f10';
const dir = mkdtempSync(join(tmpdir(), 'dtlsvec-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function capture(cipher: string, id: number) {
  const serverPort = 30000 + Math.floor(Math.random() * 20000);
  const keylog = join(dir, `${id}.keylog`);
  const srv = spawn('openssl', [
    's_server',
    '-dtls1_2',
    '-psk',
    PSK_HEX,
    '-psk_hint',
    'vector-hint',
    '-cipher',
    cipher,
    '-nocert',
    '-accept',
    `127.0.0.1:${serverPort}`,
    '-naccept',
    '1',
    '-keylogfile',
    keylog,
  ]);
  let srvOut = '';
  srv.stdout.on('data', (d) => (srvOut += d));
  while (!srvOut.includes('ACCEPT')) await sleep(20);
  const relay = createSocket('udp4');
  await new Promise<void>((r) => relay.bind(0, '127.0.0.1', () => r()));
  const up = createSocket('udp4');
  await new Promise<void>((r) => up.bind(0, '127.0.0.1', () => r()));
  const datagrams: { dir: 'c2s' | 's2c'; hex: string }[] = [];
  let clientAddr: { port: number } | undefined;
  relay.on('message', (m, r) => {
    clientAddr = { port: r.port };
    datagrams.push({ dir: 'c2s', hex: m.toString('hex') });
    up.send(m, serverPort, '127.0.0.1');
  });
  up.on('message', (m) => {
    datagrams.push({ dir: 's2c', hex: m.toString('hex') });
    if (clientAddr) relay.send(m, clientAddr.port, '127.0.0.1');
  });
  const cli = spawn('openssl', [
    's_client',
    '-dtls1_2',
    '-psk',
    PSK_HEX,
    '-psk_identity',
    'vector-identity',
    '-cipher',
    cipher,
    '-connect',
    `127.0.0.1:${relay.address().port}`,
    '-ign_eof',
    // coapkit does not implement encrypt_then_mac (RFC 7366): capture MAC-then-encrypt CBC records.
    '-no_etm',
  ]);
  let cliOut = '';
  cli.stdout.on('data', (d) => (cliOut += d));
  while (!cliOut.includes('Verify return code') && !cliOut.includes('Cipher is')) await sleep(20);
  await sleep(100);
  cli.stdin.write('hello from s_client\n');
  await sleep(150);
  srv.stdin.write('hello from s_server\n');
  await sleep(150);
  cli.kill();
  srv.kill();
  relay.close();
  up.close();
  const line = readFileSync(keylog, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('CLIENT_RANDOM'))!;
  const [, clientRandom, masterSecret] = line.split(' ');
  return {
    suite: id,
    cipher,
    psk: PSK_HEX,
    identity: 'vector-identity',
    clientRandom,
    masterSecret,
    datagrams,
  };
}

const out = [];
for (const [cipher, id] of SUITES) out.push(await capture(cipher, id));
writeFileSync(new URL('./dtls-openssl-sessions.json', import.meta.url), `${JSON.stringify(out, null, 1)}\n`);
console.log(`wrote ${out.length} sessions`);
