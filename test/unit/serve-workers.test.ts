/** `--workers` parsing and the reusePort version rule (the processes: test/integration/serve-workers). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseWorkers, withoutWorkersFlag } from '../../src/cli/commands/workers.js';
import { UsageError } from '../../src/errors.js';
import { DtlsServerTransport } from '../../src/transport/dtls.js';
import { reusePortOption, reusePortSupported, UdpTransport } from '../../src/transport/udp.js';
import { InvalidArgumentError } from '../../src/util/errors.js';

test('reusePort: Node 22.12+, 23.1+ and 24', () => {
  for (const v of ['22.12.0', '22.20.1', '23.1.0', '24.0.0', '25.2.1']) assert.ok(reusePortSupported(v), v);
  for (const v of ['20.19.0', '20.20.2', '22.11.0', '23.0.0', '18.20.0'])
    assert.ok(!reusePortSupported(v), v);
  assert.deepEqual(reusePortOption(undefined), {});
  assert.deepEqual(reusePortOption(false), {});
});

test('--workers: a count, auto, or a refusal naming the Node version', () => {
  assert.equal(parseWorkers(undefined, '20.20.2'), 1);
  assert.equal(parseWorkers('1', '20.20.2'), 1);
  assert.equal(parseWorkers('3', '24.1.0'), 3);
  assert.equal(
    parseWorkers('auto', '24.1.0', () => 4),
    4,
  );
  assert.equal(
    parseWorkers('auto', '20.20.2', () => 4),
    1,
    'auto is one process where reusePort is missing',
  );
  assert.throws(
    () => parseWorkers('2', '20.20.2'),
    (e: unknown) => {
      assert.ok(e instanceof UsageError);
      assert.match(
        e.message,
        /--workers 2 needs Node 22\.12\.0 or later \(dgram reusePort\); this is Node 20\.20\.2/,
      );
      return true;
    },
  );
  for (const bad of ['0', '-1', '1.5', 'x', '', '2000'])
    assert.throws(() => parseWorkers(bad, '24.1.0'), UsageError, `--workers ${bad}`);
});

test('the supervisor passes every flag but --workers to its workers', () => {
  assert.deepEqual(withoutWorkersFlag(['--port', '0', '--workers', '2', '-v']), ['--port', '0', '-v']);
  assert.deepEqual(withoutWorkersFlag(['--workers=auto', '--host', 'h']), ['--host', 'h']);
  assert.deepEqual(withoutWorkersFlag(['--', '--workers', '2']), ['--', '--workers', '2']);
});

test('listen({ reusePort: true }) on a Node without it is a typed error', async (t) => {
  if (reusePortSupported()) {
    // Two sockets on one port.
    const a = await UdpTransport.create({ host: '127.0.0.1', port: 0, reusePort: true });
    const b = await UdpTransport.create({ host: '127.0.0.1', port: a.localAddress().port, reusePort: true });
    assert.equal(b.localAddress().port, a.localAddress().port);
    await a.close();
    await b.close();
    return t.diagnostic('reusePort available: two sockets bound one port');
  }
  await assert.rejects(UdpTransport.create({ host: '127.0.0.1', port: 0, reusePort: true }), (e: unknown) => {
    assert.ok(e instanceof InvalidArgumentError);
    assert.match(e.message, /reusePort needs Node 22\.12\.0 or later/);
    return true;
  });
});

test('DtlsServerTransport.create({ reusePort: true }): the same rule for coaps', async (t) => {
  const psk = { identity: 'a', key: 'secret' };
  if (reusePortSupported()) {
    const a = await DtlsServerTransport.create({ host: '127.0.0.1', port: 0, psk, reusePort: true });
    const port = a.localAddress().port;
    const b = await DtlsServerTransport.create({ host: '127.0.0.1', port, psk, reusePort: true });
    assert.equal(b.localAddress().port, port);
    await a.close();
    await b.close();
    return t.diagnostic('reusePort available: two DTLS sockets bound one port');
  }
  await assert.rejects(
    DtlsServerTransport.create({ host: '127.0.0.1', port: 0, psk, reusePort: true }),
    InvalidArgumentError,
  );
});
