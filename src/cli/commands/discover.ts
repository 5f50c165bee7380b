/**
 * coapkit discover URI — GET /.well-known/core (RFC 6690) and print the links.
 */
import { performance } from 'node:perf_hooks';
import { CoapClient, multicastRequest } from '../../client/client.js';
import { filterLinks, type Link, parseLinkFormat } from '../../codec/link-format.js';
import { encodeQueryArg, formatUri } from '../../codec/uri.js';
import { describeCode, ResponseCode } from '../../constants/codes.js';
import { ContentFormat, contentFormatName } from '../../constants/content-formats.js';
import { LinkFormatError, UsageError } from '../../errors.js';
import { bool, type FlagSpecs, parseFlags, positionals, str } from '../args.js';
import { CLIENT_FLAGS, clientOptions } from '../client-flags.js';
import { checkUri, contentFormatArg, timeoutMs } from '../common.js';
import { escapeText, jsonSafe } from '../escape.js';
import { ExitCode, exitCodeForResponse } from '../exit.js';
import { formatLink, linkToJson, summarizePayload } from '../format.js';
import { DISCOVER_HELP } from '../help.js';
import { type Io, writeAll } from '../io.js';
import { OSCORE_CLIENT_FLAGS, oscoreRequestOption } from '../oscore.js';
import { watchExchange } from '../verbose.js';
import {
  groupRequest,
  isMulticastUri,
  MULTICAST_CLIENT_FLAGS,
  multicastClientOptions,
  sourceOf,
} from './multicast.js';

export const DISCOVER_FLAGS: FlagSpecs = {
  rt: { type: 'string' },
  if: { type: 'string' },
  ct: { type: 'string' },
  href: { type: 'string' },
  json: { type: 'boolean' },
  verbose: { type: 'boolean', short: 'v' },
  quiet: { type: 'boolean', short: 'q' },
  ...MULTICAST_CLIENT_FLAGS,
  ...CLIENT_FLAGS,
  ...OSCORE_CLIENT_FLAGS,
};

export async function runDiscover(args: string[], io: Io): Promise<number> {
  const p = parseFlags('discover', args, DISCOVER_FLAGS);
  if (bool(p, 'help')) {
    await writeAll(io.stdout, DISCOVER_HELP);
    return ExitCode.OK;
  }
  const [uriArg] = positionals('discover', p, ['URI']);
  const uri = checkUri(uriArg!);
  const copts = clientOptions(uri, p, io);
  const timeout = timeoutMs(p);
  const filters: string[] = [];
  for (const name of ['href', 'rt', 'if'] as const) {
    const v = str(p, name);
    if (v !== undefined) filters.push(`${name}=${v}`);
  }
  const ct = str(p, 'ct');
  if (ct !== undefined) filters.push(`ct=${/\*$/.test(ct) ? ct : contentFormatArg(ct, '--ct')}`);

  // The well-known URI on the same host unless the URI names a path of its own.
  const target = { ...uri, path: uri.path.length === 0 ? ['.well-known', 'core'] : uri.path };
  let href = formatUri({ ...target, query: [] });
  // RFC 6690 §4.1 defines a single query filter, and servers may reject more:
  // send the first one (unless the URI has its own query); all apply locally.
  const query = uri.query.length > 0 ? uri.query : filters.slice(0, 1);
  if (query.length > 0) href += `?${query.map(encodeQueryArg).join('&')}`;

  if (isMulticastUri(uri)) {
    if (str(p, 'oscore') !== undefined)
      throw new UsageError('--oscore protects one client-server context: group discovery is not protected', {
        hint: 'Group OSCORE is not supported; discover a unicast address',
      });
    // Group discovery (RFC 7252 §8.2, RFC 6690 §4.1): members with no matching link stay silent.
    const mopts = { ...multicastClientOptions(p), method: 'GET' as const, accept: ContentFormat.LinkFormat };
    // With a filter, silence means "no member has a matching link" (not an error).
    const res = filters.length > 0 ? await multicastRequest(href, mopts) : await groupRequest(href, mopts);
    const groups: Array<{ source: string; links: Link[] }> = [];
    for (const r of res) {
      if (r.code !== ResponseCode.Content) continue;
      if (r.contentFormat !== undefined && r.contentFormat !== ContentFormat.LinkFormat) continue;
      let links: Link[];
      try {
        links = parseLinkFormat(r.payload.toString('utf8'));
      } catch {
        if (!bool(p, 'quiet'))
          await writeAll(io.stderr, `coapkit: ${sourceOf(r)} sent invalid link format\n`);
        continue;
      }
      for (const f of filters) links = filterLinks(links, f);
      if (links.length > 0) groups.push({ source: sourceOf(r), links });
    }
    if (bool(p, 'json')) {
      const json = groups.map((g) => ({ source: g.source, links: g.links.map(linkToJson) }));
      await writeAll(io.stdout, `${jsonSafe(JSON.stringify(json, null, 2))}\n`);
    } else if (groups.length > 0) {
      const text = groups.map((g) => `${g.source}\n${g.links.map((l) => `  ${formatLink(l)}`).join('\n')}\n`);
      await writeAll(io.stdout, text.join(''));
    } else if (!bool(p, 'quiet')) {
      await writeAll(io.stderr, 'coapkit: no matching links\n');
    }
    return ExitCode.OK;
  }

  const client = new CoapClient(copts);
  const watch = bool(p, 'verbose')
    ? watchExchange(uri.port, (t) => io.stderr.write(t), uri.scheme.includes('+'))
    : undefined;
  if (watch) io.stderr.write(`* GET ${escapeText(href)}\n`);
  const started = performance.now();
  try {
    const res = await client.request(href, {
      method: 'GET',
      accept: ContentFormat.LinkFormat,
      confirmable: !bool(p, 'non'),
      ...(timeout !== undefined ? { timeout } : {}),
      ...oscoreRequestOption(p),
    });
    if (watch) {
      watch.stop();
      const ms = (performance.now() - started).toFixed(1);
      await writeAll(io.stderr, `* ${describeCode(res.code)} in ${ms} ms (rtt ${res.rttMs.toFixed(1)} ms)\n`);
    }
    // With a filter, 4.04 is how many servers say "no link matches" (not an error of the request).
    if (res.code === ResponseCode.NotFound && filters.length > 0 && uri.path.length === 0) {
      if (bool(p, 'json')) await writeAll(io.stdout, '[]\n');
      else if (!bool(p, 'quiet')) await writeAll(io.stderr, 'coapkit: no matching links\n');
      return ExitCode.OK;
    }
    const status = exitCodeForResponse(res.code);
    if (status !== ExitCode.OK) {
      if (!bool(p, 'quiet')) {
        const diag = summarizePayload(res.payload, res.contentFormat);
        await writeAll(io.stderr, `coapkit: ${describeCode(res.code)}${diag ? `: ${diag}` : ''}\n`);
      }
      return status;
    }
    if (res.contentFormat !== undefined && res.contentFormat !== ContentFormat.LinkFormat) {
      const name = contentFormatName(res.contentFormat) ?? String(res.contentFormat);
      throw new LinkFormatError(`the server answered with ${name}, not application/link-format`);
    }
    let links: Link[];
    try {
      links = parseLinkFormat(res.payload.toString('utf8'));
    } catch (err) {
      throw new LinkFormatError(`the server sent invalid link format: ${(err as Error).message}`);
    }
    // Servers may ignore the query filters (RFC 6690 §4.1 makes them optional): apply them here too.
    for (const f of filters) links = filterLinks(links, f);
    if (bool(p, 'json')) {
      await writeAll(io.stdout, `${jsonSafe(JSON.stringify(links.map(linkToJson), null, 2))}\n`);
    } else if (links.length > 0) {
      await writeAll(io.stdout, `${links.map(formatLink).join('\n')}\n`);
    } else if (!bool(p, 'quiet')) {
      await writeAll(io.stderr, 'coapkit: no matching links\n');
    }
    return ExitCode.OK;
  } finally {
    watch?.stop();
    await client.close();
  }
}
