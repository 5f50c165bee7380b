#!/usr/bin/env node
// Checks the API reference without writing it: TypeDoc reads the TSDoc of everything the
// entry points export (typedoc.json) with validation on (undocumented exports, broken
// {@link}s, exported API that refers to types not exported) and `--emit none`.
// docs/typedoc-baseline.txt lists the warnings of the code as it was when the check came in;
// any other warning fails, and so does a listed one that is gone (the list only shrinks).
// `npm run docs` writes the HTML reference to docs/api/ (not committed: it is generated).
//
// Usage: node scripts/docs-check.mjs [--update]   (--update rewrites the baseline)
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const baselineFile = `${root}docs/typedoc-baseline.txt`;
// TypeDoc's log goes to a file: through a pipe, the end of it can be lost at exit.
const dir = mkdtempSync(join(tmpdir(), 'coapkit-typedoc-'));
const log = join(dir, 'log');
const fd = openSync(log, 'w');
const r = spawnSync(
  process.execPath,
  [`${root}node_modules/typedoc/bin/typedoc`, '--emit', 'none', '--treatWarningsAsErrors', 'false'],
  { cwd: root, stdio: ['ignore', fd, fd], env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } },
);
closeSync(fd);
const plain = readFileSync(log, 'utf8').replace(/\x1b\[[0-9;]*m/g, '');
rmSync(dir, { recursive: true, force: true });
const errors = plain.split('\n').filter((l) => l.startsWith('[error]'));
if (r.error || r.status !== 0 || errors.length > 0) {
  console.error(r.error ?? plain);
  process.exit(1);
}
const warnings = [
  ...new Set(
    plain
      .split('\n')
      .filter((l) => l.startsWith('[warning] ') && !/^\[warning\] Found \d+ errors and \d+ warnings/.test(l))
      .map((l) => l.slice('[warning] '.length).trim()),
  ),
].sort();

if (process.argv.includes('--update')) {
  writeFileSync(baselineFile, `${warnings.join('\n')}\n`);
  console.log(`docs/typedoc-baseline.txt: ${warnings.length} known warnings`);
  process.exit(0);
}
const baseline = new Set(
  readFileSync(baselineFile, 'utf8')
    .split('\n')
    .filter((l) => l !== ''),
);
const added = warnings.filter((w) => !baseline.has(w));
const current = new Set(warnings);
const gone = [...baseline].filter((w) => !current.has(w));
if (added.length > 0) {
  console.error(`TypeDoc: ${added.length} new warning(s) (document the exported API, fix the link):`);
  for (const w of added) console.error(`  ${w}`);
}
if (gone.length > 0) {
  console.error(
    `TypeDoc: ${gone.length} warning(s) of docs/typedoc-baseline.txt are fixed: ` +
      'run `node scripts/docs-check.mjs --update` so that they cannot come back:',
  );
  for (const w of gone) console.error(`  ${w}`);
}
if (added.length > 0 || gone.length > 0) process.exit(1);
console.log(`TypeDoc: the API reference builds; ${warnings.length} known warnings, no new one`);
