/**
 * docs/migrating-from-node-coap.md: every code block marked `ts coapkit` runs
 * as written (its `'coapkit'` import pointed at this checkout's sources), to
 * completion, on free ports, and prints what the guide says it prints.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { runProcess } from '../helpers/proc.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const guide = readFileSync(join(root, 'docs/migrating-from-node-coap.md'), 'utf8');
const entry = pathToFileURL(join(root, 'src/index.ts')).href;

/** The `ts coapkit` blocks, each with the heading of its section. */
function blocks(): Array<{ heading: string; code: string }> {
  const out: Array<{ heading: string; code: string }> = [];
  let heading = '';
  const lines = guide.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith('## ')) heading = line.slice(3);
    if (line.trim() !== '```ts coapkit') continue;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i]!.trim() !== '```'; i++) body.push(lines[i]!);
    out.push({ heading, code: body.join('\n') });
  }
  return out;
}

/** What each section's block must print (lines of its stdout, in order, as substrings). */
const EXPECT: Record<string, RegExp[]> = {
  '1.': [/^Hello Matteo$/m],
  '2.': [/^2\.05 Content 50 \{ value: 21\.5, unit: 'C' \}$/m],
  '3.': [/^50 trace-1 booted$/m, /^2\.01 Created \[ 'logs', '1' \]$/m],
  '4.': [
    /^2\.01 Created\n2\.04 Changed\n4\.15 Unsupported Content-Format\n4\.05 Method Not Allowed\nno such key$/m,
  ],
  '5.': [/tick 3$/m],
  '6.': [/^registered: 20$/m, /^changed to 21$/m],
  '7.': [/^upload: 40 blocks$/m, /^download: 20 blocks$/m, /^true$/m],
  '8.': [/^from port \d+$/m, /^1$/m],
  '9.': [/^COAP_ERR_TIMEOUT /m],
  '10.': [/^2\.05 Content 22\.5$/m],
};

function run(file: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // Generous: the block must end by itself (nothing left open), not be killed.
  return runProcess(process.execPath, ['--import', 'tsx', file], { cwd: root, timeoutMs: 60_000 });
}

describe('docs/migrating-from-node-coap.md', { timeout: 600_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-migration-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const all = blocks();

  it('has a coapkit block for each of the ten uses, and says why there is no compat entry point', () => {
    const sections = new Set(all.map((b) => b.heading.split(' ')[0]));
    for (let n = 1; n <= 10; n++) assert.ok(sections.has(`${n}.`), `section ${n} has a coapkit block`);
    assert.match(guide, /## Why there is no `coapkit\/compat`/);
  });

  it('type-checks every coapkit block against the sources (strict, like the project)', () => {
    const files = all.map((b, i) => {
      const f = join(dir, `typed-${i}.mts`);
      writeFileSync(f, b.code);
      return f;
    });
    const tsconfig = join(dir, 'tsconfig.json');
    writeFileSync(
      tsconfig,
      JSON.stringify({
        extends: join(root, 'tsconfig.json'),
        compilerOptions: {
          noEmit: true,
          rootDir: '/',
          typeRoots: [join(root, 'node_modules/@types')],
          paths: { coapkit: [join(root, 'src/index.ts')] },
        },
        include: [],
        files,
      }),
    );
    const r = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', tsconfig], {
      cwd: root,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  });

  for (const [i, b] of all.entries()) {
    it(`runs the coapkit block of "${b.heading}" to completion`, async () => {
      assert.match(b.code, /from 'coapkit'/, 'imports the package by its name');
      const file = join(dir, `block-${i}.mts`);
      writeFileSync(file, b.code.replaceAll("from 'coapkit'", `from '${entry}'`));
      const r = await run(file);
      assert.equal(r.code, 0, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
      assert.equal(r.stderr, '', 'nothing on stderr');
      for (const re of EXPECT[b.heading.split(' ')[0]!] ?? []) assert.match(r.stdout, re);
    });
  }
});
