/**
 * The code users copy is checked against the PUBLISHED types: dist/*.d.ts, reached through the
 * package name (`import ... from 'coapkit'` in a folder whose node_modules/coapkit is this
 * package), strict, with no `any`, no type assertions and no non-null assertions:
 * - every ```ts block of README.md (those that are an example are examples/*.ts verbatim) and
 *   the ```js blocks (checkJs: a renamed export fails them too);
 * - every ```ts coapkit block of docs/migrating-from-node-coap.md (type-checked only: its
 *   blocks still use non-null assertions);
 * - examples/*.ts (test/docs/examples.test.ts also runs tsc -p tsconfig.examples.json).
 * And the entry points: `coapkit` exports the application API only, `coapkit/internals` the
 * layers (no stability promise).
 */
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import ts from 'typescript';
import { ROOT } from '../integration/cli-helpers.js';

interface Snippet {
  /** Where it comes from, for messages: README.md:143, examples/server.ts... */
  where: string;
  file: string;
}

/** Fenced blocks of a markdown file whose info string is one of `langs`. */
function fenced(md: string, langs: readonly string[]): Array<{ lang: string; line: number; code: string }> {
  const lines = readFileSync(join(ROOT, md), 'utf8').split('\n');
  const out: Array<{ lang: string; line: number; code: string }> = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(.*)$/.exec(lines[i] ?? '');
    if (!open) continue;
    const lang = (open[2] ?? '').trim();
    const indent = open[1] ?? '';
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && (lines[i] ?? '').trim() !== '```'; i++)
      body.push((lines[i] ?? '').slice(indent.length));
    if (langs.includes(lang)) out.push({ lang, line: start + 1, code: `${body.join('\n')}\n` });
  }
  return out;
}

/** `any`, `x as T` (but `as const`), `<T>x`, `x!`: the places a reader's code would lie to the checker. */
function unsound(file: string, text: string): string[] {
  const found: string[] = [];
  const src = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const visit = (n: ts.Node): void => {
    if (ts.isAsExpression(n) && !(ts.isTypeReferenceNode(n.type) && n.type.getText() === 'const'))
      found.push(n.getText());
    if (ts.isTypeAssertionExpression(n) || ts.isNonNullExpression(n) || n.kind === ts.SyntaxKind.AnyKeyword)
      found.push(n.getText());
    ts.forEachChild(n, visit);
  };
  visit(src);
  return found;
}

let dir = '';
const snippets: Snippet[] = [];

before(() => {
  assert.ok(existsSync(join(ROOT, 'dist/index.d.ts')), 'dist/ is missing: run `npm run build` first');
  dir = mkdtempSync(join(tmpdir(), 'coapkit-types-'));
  // A user's project: node_modules/coapkit is this package, @types/node from this checkout.
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(ROOT, join(dir, 'node_modules', 'coapkit'), 'dir');
  symlinkSync(join(ROOT, 'node_modules', '@types'), join(dir, 'node_modules', '@types'), 'dir');
  for (const b of fenced('README.md', ['ts', 'js'])) {
    const ext = b.lang === 'ts' ? 'mts' : /\brequire\(/.test(b.code) ? 'cjs' : 'mjs';
    const file = join(dir, `readme-${b.line}.${ext}`);
    writeFileSync(file, b.code);
    snippets.push({ where: `README.md:${b.line}`, file });
  }
  for (const b of fenced('docs/migrating-from-node-coap.md', ['ts coapkit'])) {
    const file = join(dir, `migrating-${b.line}.mts`);
    writeFileSync(file, b.code);
    snippets.push({ where: `docs/migrating-from-node-coap.md:${b.line}`, file });
  }
  for (const f of readdirSync(join(ROOT, 'examples')).filter((n) => n.endsWith('.ts'))) {
    const file = join(dir, `example-${f.replace(/\.ts$/, '.mts')}`);
    writeFileSync(file, readFileSync(join(ROOT, 'examples', f), 'utf8'));
    snippets.push({ where: `examples/${f}`, file });
  }
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('user code against the published types', () => {
  it('README, the migration guide and examples/ type-check against dist/*.d.ts by the package name', () => {
    assert.ok(
      snippets.some((s) => s.where.startsWith('README.md')),
      'README has code blocks',
    );
    assert.ok(
      snippets.some((s) => s.where.startsWith('docs/')),
      'the migration guide has coapkit blocks',
    );
    const base = ts.readConfigFile(join(ROOT, 'tsconfig.json'), ts.sys.readFile).config as {
      compilerOptions: Record<string, unknown>;
    };
    const { options, errors } = ts.convertCompilerOptionsFromJson(
      {
        ...base.compilerOptions,
        noEmit: true,
        declaration: false,
        sourceMap: false,
        rootDir: undefined,
        outDir: undefined,
        allowJs: true,
        checkJs: true,
        typeRoots: [join(dir, 'node_modules', '@types')],
      },
      dir,
    );
    assert.deepEqual(errors, []);
    const program = ts.createProgram(
      snippets.map((s) => s.file),
      options,
    );
    const diags = ts.getPreEmitDiagnostics(program).map((d) => {
      const where = snippets.find((s) => s.file === d.file?.fileName)?.where ?? d.file?.fileName ?? '';
      const line =
        d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
      return `${where} (+${line}): ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
    assert.deepEqual(diags, []);
    // 'coapkit' resolved to the published declarations, not to the sources.
    const loaded = program.getSourceFiles().map((f) => relative(ROOT, f.fileName));
    assert.ok(loaded.includes('dist/index.d.ts'), 'dist/index.d.ts is what the snippets see');
    assert.deepEqual(
      loaded.filter((f) => f.startsWith('src/')),
      [],
    );
  });

  it('README and examples/: no any, no type assertions, no non-null assertions', () => {
    const found: string[] = [];
    for (const s of snippets) {
      // The migration guide's blocks are type-checked above; they still use `!` (on
      // `req.params.x` and `server.observe`), so the strict rule is for README and examples/.
      if (!s.file.endsWith('.mts') || s.where.startsWith('docs/')) continue;
      for (const u of unsound(s.file, readFileSync(s.file, 'utf8'))) found.push(`${s.where}: ${u}`);
    }
    assert.deepEqual(found, []);
  });
});

describe('entry points', () => {
  const require = createRequire(join(ROOT, 'package.json'));
  it('coapkit exports the application API, not the layers; coapkit/internals has them', async () => {
    const pub = (await import(join(ROOT, 'dist/index.js'))) as Record<string, unknown>;
    const internals = (await import(join(ROOT, 'dist/internals.js'))) as Record<string, unknown>;
    for (const name of [
      'CoapClient',
      'CoapServer',
      'ServerRequest',
      'Endpoint',
      'UdpTransport',
      'MemoryNetwork',
      'DtlsServerTransport',
      'DtlsClientTransport',
      'ForwardProxy',
      'ObserveServer',
      'BlockwiseServer',
      'CoapError',
      'TimeoutError',
      'BodyTooLargeError',
      'encodeMessage',
      'decodeMessage',
      'parseUri',
      'uriToOptions',
      'optionsToUri',
      'parseLinkFormat',
      'OptionNumber',
      'ContentFormat',
      'ResponseCode',
      'DEFAULT_TRANSMISSION',
      'DEFAULT_MAX_BODY_SIZE',
      'DEFAULT_MAX_URI_PATH_BYTES',
      'channels',
    ]) {
      assert.ok(name in pub, `coapkit exports ${name}`);
    }
    for (const name of [
      'MessageLayer',
      'ExchangeLayer',
      'DedupStore',
      'UsageError',
      'randomToken',
      'blockwiseExchange',
      'peerKey',
      'resolveHost',
      'peekHeader',
    ]) {
      assert.ok(!(name in pub), `coapkit does not export ${name}`);
    }
    for (const name of ['MessageLayer', 'ExchangeLayer', 'DedupStore', 'UsageError'])
      assert.equal(typeof internals[name], 'function', `coapkit/internals exports ${name}`);
  });

  it('package.json: ./internals has the same conditions as the other entry points', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      exports: Record<string, Record<string, string> | string>;
    };
    const main = pkg.exports['.'];
    const internals = pkg.exports['./internals'];
    assert.ok(typeof main === 'object' && typeof internals === 'object');
    assert.deepEqual(Object.keys(internals), Object.keys(main));
    assert.equal(require.resolve('coapkit/internals'), join(ROOT, 'dist/internals.js'));
    assert.ok(existsSync(join(ROOT, internals.types ?? '')), internals.types);
  });
});
