/**
 * Every file in examples/ and every code block in README.md runs as written, to completion,
 * on free ports, against the built package (dist/, imported as 'coapkit' like users do).
 *
 * - examples/*.ts: run with tsx; each must exit 0 by itself and print what it promises.
 *   client.ts talks to a `coapkit serve` started here (COAP_SERVER); multicast.ts runs in
 *   a private network namespace (root only, as test/integration/multicast.test.ts does).
 * - README ```ts blocks: a block that starts with `// examples/NAME.ts` must be that file
 *   (after its header comment); any other ts/js block is written to a temporary folder and
 *   run there with `coapkit` resolving to this package.
 * - README ```sh blocks: run line by line against a `coapkit serve` on a free port (the
 *   port substituted, `npx coapkit` run as `node dist/cli/main.js`), unless the block is
 *   preceded by `<!-- not run by the tests: REASON -->`.
 * - examples are type-checked (tsc -p tsconfig.examples.json) and use no `any`, no type
 *   assertions, no non-null assertions.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
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
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import ts from 'typescript';
import { runProcess } from '../helpers/proc.js';
import { cliEnv, ROOT, type ServeProcess, startServe } from '../integration/cli-helpers.js';

const EXAMPLES = join(ROOT, 'examples');
const CLI = join(ROOT, 'dist/cli/main.js');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = cliEnv(extra);
  delete env.NODE_TEST_CONTEXT;
  return env;
}

/** Runs a command to completion; kills it and fails after `timeoutMs` (it must exit by itself). */
function run(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000): Promise<Run> {
  return runProcess(cmd, args, { cwd: ROOT, env, timeoutMs });
}

function runTs(file: string, env: Record<string, string> = {}, timeoutMs?: number): Promise<Run> {
  return run(process.execPath, ['--import', 'tsx', file], childEnv(env), timeoutMs);
}

function ok(r: Run, what: string): void {
  assert.equal(
    r.code,
    0,
    `${what} exited with ${r.code ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
  );
}

before(() => {
  assert.ok(existsSync(join(ROOT, 'dist/index.js')), 'dist/ is missing: run `npm run build` first');
});

/** What each example must print (it is run with PORT=0). client.ts and multicast.ts: below. */
const EXPECT: Record<string, RegExp[]> = {
  'server.ts': [
    /^serving coap:\/\/localhost:\d+$/m,
    /^2\.05 Content 22\.5 C$/m,
    /^2\.04 Changed$/m,
    /^4\.15 /m,
  ],
  'observe.ts': [/notification \d+: 20\.0 C\nnotification \d+: 20\.5 C\nnotification \d+: 21\.0 C\n$/],
  'upload.ts': [
    /upload: 204800 of 204800 bytes, 200 blocks/,
    /^PUT 2\.04 Changed$/m,
    /204800 bytes identical/,
  ],
  'coaps-psk.ts': [/^2\.05 Content hello, sensor-7$/m],
  'oscore.ts': [/^2\.05 Content open for cli$/m, /^4\.02 Bad Option OSCORE required$/m],
  'proxy.ts': [
    /\(1\): 2\.05 Content .* origin asked 1 time/,
    /\(2\): 2\.05 Content .* origin asked 1 time/,
    /another host: 4\.03 Forbidden/,
  ],
  'device-to-cloud.ts': [
    /^cloud: log from device-42 \((\d+) bytes\): \{/m,
    /^device: 2\.03 Valid, piggybacked/m,
  ],
};

describe('examples/', () => {
  test('every example is run by this test', () => {
    const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.ts'));
    const covered = new Set([...Object.keys(EXPECT), 'client.ts', 'multicast.ts']);
    for (const f of files)
      assert.ok(covered.has(f), `examples/${f} is not run by test/docs/examples.test.ts`);
    for (const f of covered) assert.ok(files.includes(f), `examples/${f} is missing`);
  });

  for (const [file, patterns] of Object.entries(EXPECT)) {
    test(`examples/${file} runs to completion`, async () => {
      const r = await runTs(join(EXAMPLES, file), { PORT: '0' });
      ok(r, file);
      for (const p of patterns) assert.match(r.stdout, p, `examples/${file}`);
      if (file === 'device-to-cloud.ts') {
        const bytes = Number(/\((\d+) bytes\)/.exec(r.stdout)?.[1]);
        assert.ok(bytes >= 40 && bytes <= 80, `the device's log is ${bytes} bytes, not about 60`);
      }
    });
  }

  describe('examples/client.ts against coapkit serve', () => {
    let serve: ServeProcess;
    before(async () => {
      serve = await startServe(['--port', '0']);
    });
    after(async () => {
      await serve?.stop();
    });
    test('PUT, GET, a 4.04, discovery', async () => {
      const r = await runTs(join(EXAMPLES, 'client.ts'), { COAP_SERVER: `coap://localhost:${serve.port}` });
      ok(r, 'client.ts');
      assert.match(r.stdout, /^PUT \/greeting: 2\.01 Created$/m);
      assert.match(r.stdout, /^GET \/greeting: 2\.05 Content hello$/m);
      assert.match(r.stdout, /^GET \/no\/such\/thing: 4\.04 Not Found \(ok: false\)$/m);
      assert.match(r.stdout, /^resource: \/greeting \(observable\)$/m);
    });
    test('without a server: a typed error with a hint, exit 3', async () => {
      // A port nobody listens on: the ICMP port unreachable comes back at once.
      const r = await runTs(join(EXAMPLES, 'client.ts'), { COAP_SERVER: 'coap://127.0.0.1:9' }, 60_000);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /^COAP_ERR_\w+: /m);
    });
  });

  test('examples/multicast.ts in a private network namespace', { timeout: 60_000 }, async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip('not run: multicast discovery needs root to create a network namespace (ip netns add)');
      return;
    }
    const ns = `coapkit-ex-${process.pid}`;
    try {
      execFileSync('ip', ['netns', 'add', ns], { stdio: 'pipe' });
    } catch (err) {
      t.skip(`not run: cannot create a network namespace: ${String(err).split('\n')[0]}`);
      return;
    }
    try {
      const inNs = (...args: string[]) =>
        execFileSync('ip', ['netns', 'exec', ns, ...args], { stdio: 'pipe' });
      inNs('ip', 'link', 'set', 'lo', 'up');
      inNs('ip', 'route', 'add', '224.0.0.0/4', 'dev', 'lo');
      const r = await run(
        'ip',
        ['netns', 'exec', ns, process.execPath, '--import', 'tsx', join(EXAMPLES, 'multicast.ts')],
        childEnv({ PORT: '0' }),
      );
      ok(r, 'multicast.ts');
      assert.match(r.stdout, /^127\.0\.0\.1:\d+ 2\.05 Content <\/lamp>;rt="light"/m);
      assert.match(r.stdout, /^1 answer\(s\)$/m);
    } finally {
      execFileSync('ip', ['netns', 'delete', ns], { stdio: 'pipe' });
    }
  });

  test('examples type-check, with no any and no type or non-null assertions', () => {
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    try {
      execFileSync(process.execPath, [tsc, '-p', 'tsconfig.examples.json'], { cwd: ROOT, stdio: 'pipe' });
    } catch (err) {
      const e = err as { stdout?: Buffer };
      assert.fail(`tsc -p tsconfig.examples.json failed:\n${e.stdout?.toString() ?? String(err)}`);
    }
    const found: string[] = [];
    for (const f of readdirSync(EXAMPLES).filter((n) => n.endsWith('.ts'))) {
      const src = ts.createSourceFile(
        f,
        readFileSync(join(EXAMPLES, f), 'utf8'),
        ts.ScriptTarget.ES2022,
        true,
      );
      const visit = (n: ts.Node): void => {
        if (ts.isAsExpression(n) && !(ts.isTypeReferenceNode(n.type) && n.type.getText() === 'const')) {
          found.push(`${f}: ${n.getText()}`);
        }
        if (
          ts.isTypeAssertionExpression(n) ||
          ts.isNonNullExpression(n) ||
          n.kind === ts.SyntaxKind.AnyKeyword
        ) {
          found.push(`${f}: ${n.getText()}`);
        }
        if (ts.isSatisfiesExpression(n)) return;
        ts.forEachChild(n, visit);
      };
      visit(src);
    }
    assert.deepEqual(found, []);
  });
});

// ---------------------------------------------------------------- README.md

interface Block {
  lang: string;
  code: string;
  line: number;
  /** The reason from a `<!-- not run by the tests: REASON -->` just before the block. */
  skip?: string;
}

function readmeBlocks(): Block[] {
  const lines = readFileSync(join(ROOT, 'README.md'), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\w*)\s*$/.exec(lines[i] ?? '');
    if (!open) continue;
    const indent = open[1] ?? '';
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && (lines[i] ?? '').trim() !== '```'; i++)
      body.push((lines[i] ?? '').slice(indent.length));
    let prev = start - 1;
    while (prev >= 0 && (lines[prev] ?? '').trim() === '') prev--;
    const skip = /<!-- not run by the tests: (.+?) -->/.exec(lines[prev] ?? '')?.[1];
    blocks.push({
      lang: open[2] ?? '',
      code: `${body.join('\n')}\n`,
      line: start + 1,
      ...(skip ? { skip } : {}),
    });
  }
  return blocks;
}

/** The example file's text after its header comment. */
function exampleBody(name: string): string {
  return readFileSync(join(EXAMPLES, name), 'utf8').replace(/^\/\*\*[\s\S]*?\*\/\n/, '');
}

describe('README.md code blocks', () => {
  const blocks = readmeBlocks();
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'coapkit-readme-'));
    // `import ... from 'coapkit'` in a user's project: node_modules/coapkit is this package.
    mkdirSync(join(tmp, 'node_modules'));
    symlinkSync(ROOT, join(tmp, 'node_modules', 'coapkit'), 'dir');
  });
  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('every block is a known kind: ts/js (run), sh (run or marked), text (not code)', () => {
    assert.ok(blocks.length > 0);
    for (const b of blocks) {
      assert.ok(
        ['ts', 'js', 'sh', 'text'].includes(b.lang),
        `README.md:${b.line}: give the block a language (ts, js, sh, or text for a synopsis)`,
      );
      if (b.skip) assert.equal(b.lang, 'sh', `README.md:${b.line}: only shell blocks may be left unrun`);
    }
  });

  for (const b of blocks.filter((x) => x.lang === 'ts' || x.lang === 'js')) {
    const named = /^\/\/ (examples\/[\w-]+\.ts)\n/.exec(b.code)?.[1];
    if (named) {
      test(`README.md:${b.line} is ${named} as it is (run above)`, () => {
        assert.equal(b.code.slice(named.length + 4), exampleBody(named.slice('examples/'.length)));
      });
      continue;
    }
    test(`README.md:${b.line} runs to completion`, async () => {
      // ts: an ES module; js: CommonJS when it calls require(), an ES module otherwise.
      const ext = b.lang === 'ts' ? 'mts' : /\brequire\(/.test(b.code) ? 'cjs' : 'mjs';
      const file = join(tmp, `block-${b.line}.${ext}`);
      writeFileSync(file, b.code);
      ok(await runTs(file, { PORT: '0' }), `README.md:${b.line}`);
    });
  }

  describe('shell blocks, against coapkit serve on a free port', () => {
    let serve: ServeProcess;
    before(async () => {
      serve = await startServe(['--port', '0']);
    });
    after(async () => {
      await serve?.stop();
    });

    const shell = blocks.filter((b) => b.lang === 'sh');
    for (const b of shell) {
      if (b.skip) {
        test(`README.md:${b.line} (not run: ${b.skip})`, (t) => t.skip(b.skip));
        continue;
      }
      test(`README.md:${b.line} runs`, { timeout: 90_000 }, async () => {
        const lines = b.code
          .split('\n')
          .map((l) => l.replace(/\s+#\s.*$/, '').trim())
          .filter((l) => l !== '');
        for (const line of lines) {
          assert.match(
            line,
            /^npx coapkit /,
            `README.md:${b.line}: "${line}" is not a coapkit command: mark the block`,
          );
          const cmd = line
            .replace(/^npx coapkit /, `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} `)
            .replace(/coap:\/\/localhost\//g, `coap://localhost:${serve.port}/`);
          if (/^npx coapkit observe /.test(line)) {
            await observeWithChange(cmd, serve.port);
            continue;
          }
          ok(await run('bash', ['-c', cmd], childEnv()), `README.md:${b.line}: ${line}`);
        }
      });
    }
  });
});

/**
 * `coapkit observe URI` runs until Ctrl-C: wait for its first notification, change the
 * resource as the README says ("then PUT again from another shell"), wait for that
 * notification, then interrupt it as a user would.
 */
async function observeWithChange(cmd: string, port: number): Promise<void> {
  const child: ChildProcess = spawn('bash', ['-c', `exec ${cmd}`], {
    cwd: ROOT,
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  const waitFor = (re: RegExp, what: string) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`observe: no ${what} within 20 s\n${out}\n${err}`)),
        20_000,
      );
      const check = () => {
        if (re.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on('data', (c: Buffer) => {
        out += c.toString();
        check();
      });
      check();
    });
  child.stderr?.on('data', (c: Buffer) => {
    err += c.toString();
  });
  try {
    await waitFor(/\S/, 'first notification');
    const put = await run(
      process.execPath,
      [CLI, 'put', `coap://localhost:${port}/greeting`, '-p', 'changed from another shell', '-t', 'text'],
      childEnv(),
    );
    ok(put, 'the PUT while observing');
    await waitFor(/changed from another shell/, 'notification of the change');
  } finally {
    child.kill('SIGINT');
  }
  const code = await exited;
  assert.ok(code === 0 || code === 130, `observe interrupted with Ctrl-C exited with ${code}\n${err}`);
}
