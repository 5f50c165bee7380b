/**
 * Who may do what on `coapkit serve`: `--acl FILE`, `--anonymous-writes`, and
 * the default when keys are configured (issue 12). serve.ts calls
 * `serveAccess()` once and installs the result on each of its servers.
 */

import { UsageError } from '../errors.js';
import { AccessControl, AclRuleError } from '../server/acl.js';
import { bool, type Parsed, str } from './args.js';
import { readInputFile } from './psk.js';

export const ACL_FLAGS = {
  acl: { type: 'string' },
  'anonymous-writes': { type: 'boolean' },
} as const;

/**
 * Flags that configure the server's own keys: given any of them (or the PSK
 * environment variables) and no --acl, anonymous peers may only read. One
 * more key flag is one more entry here (--cert and --rpk-trust are already
 * listed: they count once serve declares them). --identity is not one: with
 * --psk/--psk-hex its key is among the configured keys, and alone (serverKeys
 * refuses it otherwise) it only names --generate-psk's key, as open as without it.
 */
export const KEY_FLAGS = ['psk', 'psk-hex', 'psk-file', 'cert', 'rpk', 'rpk-trust'] as const;

/** The rules of the default with keys: authenticated peers read and write, anonymous ones read. */
export const SECURED_DEFAULT_RULES = '* * /**\nanonymous GET,FETCH /**\n';

/** The access policy of one `coapkit serve`: the ACL to install (none: open) and its banner line. */
export interface ServeAccess {
  /** Undefined: every peer may do everything (no ACL installed). */
  acl: AccessControl | undefined;
  /** One banner line saying who may do what. */
  banner: string;
}

/**
 * The policy from the flags. `keysConfigured`: the server has keys that were
 * given (flags or environment), not generated for this run (--generate-psk).
 */
export function serveAccess(p: Parsed, keysConfigured: boolean): ServeAccess {
  const file = str(p, 'acl');
  const anonymousWrites = bool(p, 'anonymous-writes');
  if (file !== undefined) {
    if (anonymousWrites) {
      throw new UsageError('--anonymous-writes changes the default rules, which --acl replaces', {
        hint: 'write the rule in the ACL file instead, e.g. "anonymous * /**"',
      });
    }
    const text = readInputFile(file, 'ACL file').toString('utf8');
    let acl: AccessControl;
    try {
      acl = AccessControl.parse(text, file);
    } catch (err) {
      if (err instanceof AclRuleError) {
        throw new UsageError(err.message, {
          cause: err,
          hint: 'one rule per line: IDENTITY METHODS PATH, e.g. "* GET,PUT /devices/{identity}/**"',
        });
      }
      throw err;
    }
    const n = acl.rules.length;
    return {
      acl,
      banner: `Access: ${n} rule${n === 1 ? '' : 's'} from ${file} (first match wins; no match: 4.03, 4.01 for coap:// peers)`,
    };
  }
  const secured = keysConfigured || KEY_FLAGS.some((f) => p.values[f] !== undefined);
  if (secured && !anonymousWrites) {
    return {
      acl: AccessControl.parse(SECURED_DEFAULT_RULES, 'default rules'),
      banner:
        'Access: authenticated (coaps:// or OSCORE) peers read and write; anonymous (coap://) peers only read (--acl FILE, --anonymous-writes)',
    };
  }
  return {
    acl: undefined,
    banner: secured
      ? 'Access: open, every peer may read and write, coap:// included (--anonymous-writes)'
      : 'Access: open, every peer may read and write (development server; give keys or --acl FILE to restrict)',
  };
}
