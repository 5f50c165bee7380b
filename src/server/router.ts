/**
 * Path routing for the server: exact paths in a Map, patterns with
 * `:param` segments and a trailing `*` wildcard checked in order.
 */
export interface ResourceAttributes {
  /** Resource type(s), space-separated (RFC 6690 rt). */
  rt?: string;
  /** Interface description(s) (RFC 6690 if). */
  if?: string;
  /** Content-Format(s) the resource serves (ct); also used for Accept checks. */
  ct?: number | number[];
  title?: string;
  /** Maximum size estimate (sz). */
  sz?: number;
  /** Observable (obs). */
  obs?: boolean;
  /** Not listed in /.well-known/core. */
  hidden?: boolean;
  /** Content-Formats accepted in request payloads; others get 4.15. */
  accepts?: number[];
}

export interface Route<H> {
  pattern: string;
  segments: string[];
  /** Handlers by method code. */
  handlers: Map<number, H>;
  attrs: ResourceAttributes;
  hasParams: boolean;
  /** The match result for this route as an exact route (one object, no allocation per request). */
  exactMatch: RouteMatch<H>;
}

export interface RouteMatch<H> {
  route: Route<H>;
  /** Parameters of a pattern route; undefined for an exact route (no parameters). */
  params: Record<string, string> | undefined;
}

export class Router<H> {
  private readonly exact = new Map<string, Route<H>>();
  private readonly patterns: Route<H>[] = [];
  private readonly all: Route<H>[] = [];

  add(method: number, pattern: string, handler: H, attrs?: ResourceAttributes): Route<H> {
    const norm = normalize(pattern);
    const segments = norm === '/' ? [] : norm.slice(1).split('/');
    const hasParams = segments.some((s) => s.startsWith(':') || s === '*');
    let route = hasParams ? this.patterns.find((r) => r.pattern === norm) : this.exact.get(norm);
    if (!route) {
      const created: Route<H> = {
        pattern: norm,
        segments,
        handlers: new Map(),
        attrs: { ...attrs },
        hasParams,
        exactMatch: undefined as unknown as RouteMatch<H>,
      };
      created.exactMatch = { route: created, params: undefined };
      route = created;
      if (hasParams) this.patterns.push(route);
      else this.exact.set(norm, route);
      this.all.push(route);
    } else if (attrs) Object.assign(route.attrs, attrs);
    route.handlers.set(method, handler);
    return route;
  }

  remove(pattern: string, method?: number): void {
    const norm = normalize(pattern);
    const route = this.exact.get(norm) ?? this.patterns.find((r) => r.pattern === norm);
    if (!route) return;
    if (method !== undefined) route.handlers.delete(method);
    if (method === undefined || route.handlers.size === 0) {
      this.exact.delete(norm);
      const i = this.patterns.indexOf(route);
      if (i !== -1) this.patterns.splice(i, 1);
      this.all.splice(this.all.indexOf(route), 1);
    }
  }

  /** Finds the route for a path given as decoded segments. */
  match(path: string, segments: readonly string[]): RouteMatch<H> | undefined {
    const r = this.exact.get(path);
    if (r) return r.exactMatch;
    for (const route of this.patterns) {
      // A catch-all route ("/*", e.g. the serve command's store): the whole path is the
      // wildcard (the path is "/" plus the segments joined with "/").
      if (route.segments.length === 1 && route.segments[0] === '*')
        return { route, params: { '*': path.slice(1) } };
      const params = matchSegments(route.segments, segments);
      if (params) return { route, params };
    }
    return undefined;
  }

  routes(): readonly Route<H>[] {
    return this.all;
  }
}

function normalize(p: string): string {
  if (!p.startsWith('/')) p = `/${p}`;
  if (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

function matchSegments(
  pattern: readonly string[],
  path: readonly string[],
): Record<string, string> | undefined {
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p === '*' && i === pattern.length - 1) {
      params['*'] = path.slice(i).join('/');
      return params;
    }
    const s = path[i];
    if (s === undefined) return undefined;
    if (p.startsWith(':')) params[p.slice(1)] = s;
    else if (p !== s) return undefined;
  }
  return path.length === pattern.length ? params : undefined;
}
