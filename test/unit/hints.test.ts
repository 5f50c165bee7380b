/** Issue 18: one address format; the progress bar owns its terminal line; serve's banner command. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { claimStatusLine, createProgressBar } from '../../src/blockwise/progress.js';
import { selfCommand, sizeText } from '../../src/cli/commands/serve.js';
import { peerText } from '../../src/cli/escape.js';
import { describePeer } from '../../src/message-layer/message-layer.js';
import { formatAddress, formatPeerKey } from '../../src/transport/address.js';
import { makePeer } from '../../src/transport/transport.js';

describe('formatAddress', () => {
  it('host:port for IPv4 and names, [v6]:port for IPv6, v4-mapped as IPv4', () => {
    assert.equal(formatAddress('127.0.0.1', 5683), '127.0.0.1:5683');
    assert.equal(formatAddress('example.com', 5684), 'example.com:5684');
    assert.equal(formatAddress('::1', 5683), '[::1]:5683');
    assert.equal(formatAddress('fe80::1%eth0', 5683), '[fe80::1%eth0]:5683');
    assert.equal(formatAddress('::ffff:10.0.0.1', 7), '10.0.0.1:7');
  });
  it('peer keys (address%port) are printed the same way', () => {
    assert.equal(formatPeerKey('127.0.0.1%5683'), '127.0.0.1:5683');
    assert.equal(formatPeerKey('fe80::1%eth0%5683'), '[fe80::1%eth0]:5683');
    assert.equal(formatPeerKey('not a key'), 'not a key');
  });
  it('peerText and describePeer use it', () => {
    assert.equal(peerText('::1', 1), '[::1]:1');
    assert.equal(peerText('a\nb', 1), 'a\\nb:1');
    assert.equal(describePeer(makePeer('::1', 5683)), '[::1]:5683');
    assert.equal(describePeer(makePeer('127.0.0.1', 5683)), '127.0.0.1:5683');
  });
});

/** What a terminal shows for `text`: \r, \n, ESC[K and SGR handled. */
function screen(text: string): string[] {
  const lines: string[] = [''];
  let col = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\x1b') {
      const m = /^\x1b\[([0-9;]*)([A-Za-z])/.exec(text.slice(i));
      assert.ok(m, 'only CSI sequences');
      if (m[2] === 'K') lines[lines.length - 1] = lines.at(-1)!.slice(0, col);
      i += m[0].length - 1;
    } else if (c === '\r') col = 0;
    else if (c === '\n') {
      lines.push('');
      col = 0;
    } else {
      const l = lines.at(-1)!;
      lines[lines.length - 1] = l.slice(0, col) + c + l.slice(col + 1);
      col++;
    }
  }
  return lines;
}

function fakeTty() {
  let out = '';
  const stream = {
    isTTY: true,
    columns: 100,
    write: (s: string | Uint8Array) => {
      out += String(s);
      return true;
    },
  };
  return { stream, text: () => out };
}

describe('progress output never shares a line with other output', () => {
  it('trace lines written while the bar is shown erase it first; the bar comes back below', () => {
    const tty = fakeTty();
    const line = claimStatusLine(tty.stream);
    for (let i = 1; i <= 5; i++) {
      line.show(`[${'#'.repeat(i)}] ${i} block${i === 1 ? '' : 's'}`);
      if (i % 2 === 1) tty.stream.write(`TRACE line ${i}\n`);
      if (i === 4) tty.stream.write('partial ');
    }
    line.end(true);
    tty.stream.write('after\n');
    const shown = screen(tty.text());
    for (const l of shown)
      assert.ok(!(l.includes('[#') && /TRACE|partial|after/.test(l)), `shared line: "${l}"`);
    assert.deepEqual(
      shown.filter((l) => l.startsWith('TRACE')),
      ['TRACE line 1', 'TRACE line 3', 'TRACE line 5'],
    );
    assert.ok(shown.includes('[#####] 5 blocks'), 'the final bar stays');
    assert.ok(shown.includes('partial '), 'a partial line is ended before the bar is drawn again');
    assert.equal(shown.at(-2), 'after');
  });
  it('createProgressBar: an error printed mid-transfer is on a line of its own', () => {
    const tty = fakeTty();
    let t = 0;
    const bar = createProgressBar({ stream: tty.stream, now: () => t, label: 'GET' });
    bar.update({ direction: 'download', bytes: 1024, totalBytes: 4096, blocks: 1 });
    t += 200;
    tty.stream.write('coapkit: no response\n');
    bar.update({ direction: 'download', bytes: 2048, totalBytes: 4096, blocks: 2 });
    bar.done();
    const shown = screen(tty.text());
    assert.ok(shown.includes('coapkit: no response'), shown.join('|'));
    assert.ok(shown.some((l) => / 2 blocks /.test(l)));
    assert.ok(!shown.some((l) => /1 blocks/.test(l)));
  });
  it('the stream write is given back after done()', () => {
    const tty = fakeTty();
    const original = tty.stream.write;
    const line = claimStatusLine(tty.stream);
    assert.notEqual(tty.stream.write, original);
    line.end();
    assert.equal(tty.stream.write, original);
  });
});

describe('serve banner', () => {
  it('prints npx coapkit under npm, coapkit when installed, node <script> otherwise', () => {
    assert.equal(selfCommand({ npm_lifecycle_event: 'start' }, '/p/dist/cli/main.js', '/p'), 'npx coapkit');
    assert.equal(selfCommand({ npm_command: 'exec' }, '/x/bin/coapkit', '/p'), 'npx coapkit');
    assert.equal(
      selfCommand({}, '/usr/local/bin/coapkit', '/home', () => true),
      'coapkit',
    );
    assert.equal(
      selfCommand({}, '/p/dist/cli/main.js', '/p', () => true),
      'node dist/cli/main.js',
    );
    assert.equal(
      selfCommand({}, '/p/dist/cli/main.js', '/elsewhere', () => false),
      'node /p/dist/cli/main.js',
    );
    assert.equal(
      selfCommand({}, '/usr/local/bin/coapkit', '/home', () => false),
      'node /usr/local/bin/coapkit',
    );
  });
  it('sizes', () => {
    assert.equal(sizeText(4 * 1024 * 1024), '4 MiB');
    assert.equal(sizeText(65536), '64 KiB');
    assert.equal(sizeText(1000), '1000 bytes');
  });
});
