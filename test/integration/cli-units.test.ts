/**
 * Pure pieces of the CLI: stdout newline rule, link printing, -O parsing,
 * key files, exit status mapping.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkUri, contentFormatArg, optionArg } from '../../src/cli/common.js';
import { ExitCode, exitCodeForError, exitCodeForResponse, InputFileError } from '../../src/cli/exit.js';
import { formatLink, linkToJson, stdoutBytes, summarizePayload } from '../../src/cli/format.js';
import { parsePskFile } from '../../src/cli/psk.js';
import { parseLinkFormat } from '../../src/codec/link-format.js';
import { encodeUint } from '../../src/codec/options.js';
import { DnsError, ResetError, TimeoutError, UriError, UsageError } from '../../src/errors.js';

describe('cli units', () => {
  it('stdout gets a trailing newline only on a TTY for text without one', () => {
    const t = Buffer.from('hello');
    assert.deepEqual(stdoutBytes(t, 0, false), t);
    assert.deepEqual(stdoutBytes(t, 0, true), Buffer.from('hello\n'));
    assert.deepEqual(stdoutBytes(t, undefined, true), Buffer.from('hello\n'));
    assert.deepEqual(stdoutBytes(Buffer.from('x\n'), 50, true), Buffer.from('x\n'));
    const bin = Buffer.from([1, 2, 3]);
    assert.deepEqual(stdoutBytes(bin, 42, true), bin);
    assert.deepEqual(stdoutBytes(Buffer.from([0xff, 0xfe]), 0, true), Buffer.from([0xff, 0xfe]));
    assert.deepEqual(stdoutBytes(Buffer.alloc(0), 0, true), Buffer.alloc(0));
  });

  it('summarizes payloads for stderr', () => {
    assert.equal(summarizePayload(Buffer.from('a\n b'), 0), 'a b');
    assert.equal(summarizePayload(Buffer.from([1, 2]), 60), '(2 bytes of 60 (application/cbor))');
    assert.equal(summarizePayload(Buffer.alloc(0), 0), '');
  });

  it('prints links one per line and as JSON', () => {
    const [l] = parseLinkFormat('</s/t>;rt="temp c";ct=0;obs;title="T 1";rt=x');
    assert.equal(formatLink(l!), '</s/t>  rt="temp c" ct=0 obs title="T 1" rt=x');
    assert.deepEqual(linkToJson(l!), { href: '/s/t', rt: ['temp c', 'x'], ct: '0', obs: true, title: 'T 1' });
  });

  it('parses -O by name and number with per-format values', () => {
    assert.deepEqual(optionArg('Uri-Query,a=b'), { number: 15, value: Buffer.from('a=b') });
    assert.deepEqual(optionArg('uri-query,x,y'), { number: 15, value: Buffer.from('x,y') });
    assert.deepEqual(optionArg('Max-Age,300'), { number: 14, value: encodeUint(300) });
    assert.deepEqual(optionArg('ETag,0xa1b2'), { number: 4, value: Buffer.from([0xa1, 0xb2]) });
    assert.deepEqual(optionArg('If-None-Match'), { number: 5, value: Buffer.alloc(0) });
    assert.deepEqual(optionArg('65000,0x00ff'), { number: 65000, value: Buffer.from([0, 255]) });
    assert.deepEqual(optionArg('65000,text'), { number: 65000, value: Buffer.from('text') });
    assert.throws(() => optionArg('If-None-Match,x'), UsageError);
    assert.throws(() => optionArg('0,1'), UsageError);
    assert.throws(() => optionArg('Nope,1'), UsageError);
  });

  it('content formats by name, media type or number', () => {
    assert.equal(contentFormatArg('json', '-t'), 50);
    assert.equal(contentFormatArg('application/cbor', '-t'), 60);
    assert.equal(contentFormatArg('11542', '-t'), 11542);
    assert.throws(
      () => contentFormatArg('application/nope', '-t'),
      /unknown content format "application\/nope"/,
    );
  });

  it('URIs: invalid ones become usage errors naming the input', () => {
    assert.equal(checkUri('coap://[::1]:5700/a?b').port, 5700);
    assert.throws(
      () => checkUri('coap://host/#frag'),
      (e: unknown) => {
        assert.ok(e instanceof UsageError);
        assert.match(e.message, /^invalid URI "coap:\/\/host\/#frag": .*fragment/);
        return true;
      },
    );
    assert.equal(checkUri('coap+tcp://h/').scheme, 'coap+tcp');
    assert.throws(
      () => checkUri('coap+sms://h/'),
      /unsupported URI scheme "coap\+sms" \(expected coap, coaps, coap\+tcp/,
    );
  });

  it('server key files: identity:secret, identity:0xHEX, comments', () => {
    const keys = parsePskFile('# c\n\na:b:c\n  dev-2 :0xA0b1\n');
    assert.deepEqual(
      [...keys.entries()],
      [
        ['a', Buffer.from('b:c')],
        ['dev-2', Buffer.from([0xa0, 0xb1])],
      ],
    );
    assert.throws(() => parsePskFile('x\n', 'k.txt'), /k\.txt:1: expected "identity:secret"/);
    assert.throws(() => parsePskFile('a:0xZZ\n'), /not valid hex/);
    assert.throws(() => parsePskFile('a:1\na:2\n'), /listed twice/);
  });

  it('exit statuses', () => {
    assert.equal(exitCodeForResponse(0x45), ExitCode.OK);
    assert.equal(exitCodeForResponse(0x43), ExitCode.OK);
    assert.equal(exitCodeForResponse(0x84), 1);
    assert.equal(exitCodeForResponse(0xa3), 2);
    assert.equal(exitCodeForResponse(0xe0), 2);
    assert.equal(exitCodeForError(new TimeoutError('t')), 3);
    assert.equal(exitCodeForError(new ResetError('r')), 3);
    assert.equal(exitCodeForError(new DnsError('d')), 3);
    assert.equal(exitCodeForError(new UriError('u')), 64);
    assert.equal(exitCodeForError(new UsageError('u')), 64);
    assert.equal(exitCodeForError(new InputFileError('f')), 66);
    assert.equal(exitCodeForError(new TypeError('bug')), 70);
  });
});
