/**
 * Property tests (fast-check) for the access rules: any text either parses or
 * throws AclRuleError naming a line of it (never another error), and a parsed
 * ACL answers every request with one of its three decisions; `{identity}`
 * rules give each identity its own subtree and nobody else's. Bounded by run
 * count and time; replay a failure with FC_SEED=<seed> (and FC_PATH=<path>).
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import fc from 'fast-check';
import { AccessControl, AclRuleError, parseAcl } from '../../src/server/acl.js';

const PER_PROPERTY_MS = process.env.CI ? 5_000 : 3_000;

function params(numRuns: number): fc.Parameters<unknown> {
  const p: fc.Parameters<unknown> = { numRuns, interruptAfterTimeLimit: PER_PROPERTY_MS };
  if (process.env.FC_SEED !== undefined) p.seed = Number(process.env.FC_SEED);
  if (process.env.FC_PATH !== undefined) p.path = process.env.FC_PATH;
  return p;
}

/** Pieces rule text is made of, so that random lines are often nearly valid. */
const piece = fc.oneof(
  fc.constantFrom(
    '*',
    'anonymous',
    'allow',
    'deny',
    'alice',
    '"a b"',
    '"x\\"y"',
    'GET',
    'GET,PUT',
    'ipatch',
    'GOT',
    ',',
    '/',
    '/a',
    '/**',
    '/a/**',
    '/{identity}',
    '/d/{identity}/**',
    '/*/x',
    '/%41',
    '/%zz',
    '{',
    '#',
    ' ',
    '\t',
    '\n',
    '\r\n',
    '"',
    '\\',
    '\0',
  ),
  fc.string({ maxLength: 6 }),
);
const ruleText = fc.array(piece, { maxLength: 40 }).map((a) => a.join(''));

it('any text parses or throws AclRuleError with a line of it', () => {
  fc.assert(
    fc.property(ruleText, (text) => {
      try {
        const rules = parseAcl(text, 'f');
        for (const r of rules) assert.match(r.source, /^f:\d+$/);
      } catch (err) {
        assert.ok(err instanceof AclRuleError, String(err));
        const lines = text.split(/\r?\n/).length;
        assert.ok(err.line >= 1 && err.line <= lines, `${err.line} of ${lines}`);
        assert.ok(err.message.startsWith(`f:${err.line}: `));
      }
    }),
    params(3000),
  );
});

const segment = fc.constantFrom('a', 'b', 'devices', 'x y', '', '*', '{identity}', 'dev-1', 'dev-2');
const identity = fc.option(fc.constantFrom('dev-1', 'dev-2', 'alice', 'a/b', '', '*', 'anonymous'), {
  nil: undefined,
});

it('decisions: one of three; {identity} subtrees belong to their identity only', () => {
  const acl = AccessControl.parse('* GET,PUT /devices/{identity}/**\nanonymous GET /pub/**');
  fc.assert(
    fc.property(
      identity,
      fc.integer({ min: 0, max: 40 }),
      fc.array(segment, { maxLength: 6 }),
      (who, code, segs) => {
        const d = acl.decide(who, code, segs);
        assert.ok(d === 'allow' || d === 'forbidden' || d === 'unauthorized');
        if (d === 'unauthorized') assert.equal(who, undefined, 'only anonymous peers get 4.01');
        if (d === 'allow' && segs[0] === 'devices') {
          assert.equal(segs[1], who, 'a device subtree is open to its own identity only');
          assert.ok(code === 1 || code === 3);
        }
      },
    ),
    params(5000),
  );
});
