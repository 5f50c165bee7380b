/**
 * One DTLS name table (src/dtls/names.ts): the DTLS layer's alert names, the
 * diagnostics events' RFC identifiers and the passive decoder's names all come from it.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import * as dissect from '../../src/dissect/index.js';
import { recordEvent } from '../../src/dtls/diag.js';
import { DtlsError } from '../../src/dtls/errors.js';
import { handshakeFragmentAt, parseHandshakeFragments } from '../../src/dtls/handshake/fragment.js';
import {
  ALERT_NAMES,
  alertName,
  CONTENT_TYPE_NAMES,
  HANDSHAKE_TYPE_NAMES,
  rfcIdentifier,
} from '../../src/dtls/names.js';
import { CoapError, DtlsAlertError } from '../../src/errors.js';

describe('DTLS names', () => {
  it('the dissector re-exports the very same tables', () => {
    assert.equal(dissect.ALERT_NAMES, ALERT_NAMES);
    assert.equal(dissect.HANDSHAKE_TYPE_NAMES, HANDSHAKE_TYPE_NAMES);
    assert.equal(dissect.CONTENT_TYPE_NAMES, CONTENT_TYPE_NAMES);
  });

  it('alertName covers what the endpoint sends and receives', () => {
    assert.equal(alertName(40), 'handshake_failure');
    assert.equal(alertName(115), 'unknown_psk_identity');
    assert.equal(alertName(0), 'close_notify');
    assert.equal(alertName(42), 'bad_certificate');
    assert.equal(alertName(254), 'unknown');
  });

  it('diagnostics events name types by their RFC identifiers from the same table', () => {
    assert.equal(rfcIdentifier('HelloVerifyRequest'), 'hello_verify_request');
    assert.equal(rfcIdentifier('ChangeCipherSpec'), 'change_cipher_spec');
    assert.equal(rfcIdentifier('tls12_cid'), 'tls12_cid');
    // A ClientHello header (msg_type 1, length 0) in a handshake record.
    const ev = recordEvent('p', 'client', 22, 0, 0, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    assert.equal(ev.typeName, 'handshake');
    assert.equal(ev.handshake?.[0]?.typeName, 'client_hello');
    assert.equal(recordEvent('p', 'client', 20, 0, 0, Buffer.from([1])).typeName, 'change_cipher_spec');
    assert.equal(recordEvent('p', 'client', 99, 0, 0, Buffer.alloc(0)).typeName, 'unknown(99)');
  });
});

describe('one handshake header reader', () => {
  const msg = Buffer.from([2, 0, 0, 4, 0, 7, 0, 0, 0, 0, 0, 4, 9, 9, 9, 9]);

  it('reads the header and cuts the body at the end of the data', () => {
    const f = handshakeFragmentAt(msg, 0);
    assert.deepEqual(
      [f.msgType, f.length, f.messageSeq, f.fragmentOffset, f.fragmentLength, [...f.body]],
      [2, 4, 7, 0, 4, [9, 9, 9, 9]],
    );
    assert.equal(handshakeFragmentAt(msg.subarray(0, 14), 0).body.length, 2);
  });

  it('the endpoint throws a typed decode_error where the dissector shows the fragment', () => {
    assert.throws(
      () => parseHandshakeFragments(msg.subarray(0, 14)),
      (e: unknown) =>
        e instanceof DtlsError && e.alert === 50 && /truncated handshake fragment/.test(e.message),
    );
  });
});

describe('DTLS errors', () => {
  it('have their own module and stay CoapErrors with the same codes', () => {
    const e = new DtlsAlertError('x');
    assert.ok(e instanceof DtlsError);
    assert.ok(e instanceof CoapError);
    assert.equal(e.code, 'COAP_ERR_DTLS_ALERT');
    assert.equal(new DtlsError('y').code, 'COAP_ERR_DTLS');
  });
});
