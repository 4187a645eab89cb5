/**
 * The greybox matrix: every route the server registers × every caller × own/other tenant, sent to
 * the real server over HTTPS and judged against the route's declaration (test/security/greybox/).
 *
 * A cell is `allow` when authorization let the request through (any answer but 401/403 and 5xx;
 * on public routes any answer below 500, their handlers refuse bad credentials in the body with
 * 401), `deny` when it was refused with 401/403, `hidden` when the other tenant's object was not
 * found or refused (403/404) and nothing of that tenant is in the answer.
 */
import { request as httpsRequest } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { allRouteModules, specOnlyDependencies } from '../../src/http/routes/index.ts';
import { systemRoutes } from '../../src/http/routes/system.ts';
import {
  CALLERS,
  type Caller,
  type CallerContext,
  type Declarations,
  expectedOther,
  expectedOwn,
  type Fixtures,
  type Outcome,
  type RouteExpectation,
} from './greybox-declare.ts';

export interface RouteEntry {
  module: string;
  key: string;
}

/** Every route of the server's route table with its module (the app adds system.ts's). */
export function routeTable(): RouteEntry[] {
  const modules = [systemRoutes(specOnlyDependencies()), ...allRouteModules(specOnlyDependencies())];
  return modules.flatMap((m) => m.routes.map((r) => ({ module: m.name, key: `${r.method} ${r.url}` })));
}

/** Routes with no declaration, declarations with no route, declarations in another module's file. */
export function coverage(routes: RouteEntry[], declared: Record<string, Declarations>): string[] {
  const problems: string[] = [];
  const keys = new Set(routes.map((r) => r.key));
  for (const r of routes) {
    if (!declared[r.module]?.[r.key])
      problems.push(
        `${r.key} (module ${r.module}) has no declaration in test/security/greybox/${r.module}.ts`,
      );
  }
  for (const [module, decls] of Object.entries(declared)) {
    for (const key of Object.keys(decls)) {
      if (!keys.has(key))
        problems.push(`test/security/greybox/${module}.ts declares ${key}, which no longer exists`);
      else if (routes.find((r) => r.key === key)?.module !== module)
        problems.push(`${key} is declared in ${module}.ts, not in its module's file`);
    }
  }
  return problems;
}

export interface Answer {
  status: number;
  text: string;
  headers: Record<string, string | string[] | undefined>;
}

const REQUEST_LIMIT_MS = 30_000;

/** One HTTPS request; an event stream is judged on its status and closed at once. */
export function send(
  origin: string,
  ca: Buffer,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: unknown,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const url = new URL(origin);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const h: Record<string, string> = { ...headers };
    if (payload) {
      h['content-type'] = 'application/json';
      h['content-length'] = String(payload.length);
    }
    if (h.cookie && !['GET', 'HEAD'].includes(method) && h.origin === undefined) h.origin = url.origin;
    const req = httpsRequest(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        headers: h,
        ca,
        agent: false,
        timeout: REQUEST_LIMIT_MS,
      },
      (res) => {
        if (String(res.headers['content-type'] ?? '').includes('text/event-stream')) {
          resolve({ status: res.statusCode ?? 0, text: '', headers: res.headers });
          req.destroy();
          return;
        }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            text: Buffer.concat(chunks).toString('utf8'),
            headers: res.headers,
          }),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in ${REQUEST_LIMIT_MS} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Sends, honouring a 429's Retry-After a few times (the production limits apply). */
export async function sendPolitely(...args: Parameters<typeof send>): Promise<Answer> {
  for (let attempt = 0; ; attempt++) {
    const res = await send(...args);
    if (res.status !== 429 || attempt >= 4) return res;
    const after = Number(res.headers['retry-after'] ?? 1);
    await sleep(Math.min(Number.isFinite(after) ? after : 1, 15) * 1000);
  }
}

export interface Cell {
  route: string;
  caller: Caller;
  side: 'own' | 'other';
  expected: Outcome;
  status: number;
  got: Outcome | 'error';
  ok: boolean;
  /** The error code and detail of a refusal (problem+json), for the report. */
  code?: string;
  detail?: string;
}

/** The route run after every other, since it ends the session for good. */
const LAST_OF_ALL = 'POST /v1/auth/logout';

function judge(res: Answer, decl: RouteExpectation, expected: Outcome, f: Fixtures): Outcome | 'error' {
  if (res.status >= 500 || res.status === 429) return 'error';
  if (decl.allow === 'everyone') return 'allow';
  if (expected === 'hidden') {
    const leaks = res.text.includes(f.b.canary);
    if ((res.status === 403 || res.status === 404) && !leaks) return 'hidden';
    return res.status === 401 || res.status === 403 ? 'deny' : 'allow';
  }
  if (res.status === 401 || res.status === 403) {
    // A handler's own refusal of a factor in the body (a WebAuthn assertion) is an answer, not authorization.
    if (res.text.includes('TRESOR_ERR_WEBAUTHN_REFUSED')) return 'allow';
    return 'deny';
  }
  return 'allow';
}

export interface MatrixRun {
  cells: Cell[];
  durationMs: number;
}

export async function runMatrix(options: {
  origin: string;
  ca: Buffer;
  routes: RouteEntry[];
  declared: Record<string, Declarations>;
  fixtures: Fixtures;
  headersOf(caller: Caller, method: string): Promise<Record<string, string>>;
  contextOf(caller: Caller): CallerContext;
  renew(caller: Caller, answer: Answer): Promise<void>;
  /** Resolves when the stale caller's second factor is older than the step-up window. */
  staleReady(): Promise<void>;
}): Promise<MatrixRun> {
  const started = Date.now();
  const cells: Cell[] = [];
  const decl = (r: RouteEntry) => options.declared[r.module]?.[r.key] as RouteExpectation;
  const one = async (r: RouteEntry, caller: Caller) => {
    const d = decl(r);
    const method = r.key.split(' ')[0] as string;
    const sides: ['own' | 'other', NonNullable<RouteExpectation['other']>, Outcome][] = [
      ['own', d.own, expectedOwn(d, caller)],
    ];
    const other = expectedOther(d, caller);
    if (d.other && other) sides.push(['other', d.other, other]);
    for (const [side, make, expected] of sides) {
      // Headers first: a session they step up takes a TOTP step, which the request's own code must follow.
      const headers = await options.headersOf(caller, method);
      const req = await make(options.fixtures, options.contextOf(caller));
      const res = await sendPolitely(
        options.origin,
        options.ca,
        method,
        req.path,
        { ...headers, ...req.headers },
        req.body,
      );
      const got = judge(res, d, expected, options.fixtures);
      const code = /"code":"(TRESOR_ERR_[A-Z_]+)"/.exec(res.text)?.[1];
      const detail = /"detail":"([^"]{0,120})/.exec(res.text)?.[1];
      cells.push({
        route: r.key,
        caller,
        side,
        expected,
        status: res.status,
        got,
        ok: got === expected,
        code,
        detail,
      });
      if (d.last) await options.renew(caller, res);
    }
  };
  const first = options.routes.filter((r) => !decl(r).last);
  const last = options.routes
    .filter((r) => decl(r).last)
    .sort((x, y) => Number(x.key === LAST_OF_ALL) - Number(y.key === LAST_OF_ALL));
  const fresh = CALLERS.filter((c) => c !== 'operator(stale)');
  for (const r of first) for (const caller of fresh) await one(r, caller);
  await options.staleReady();
  for (const r of first) await one(r, 'operator(stale)');
  for (const caller of CALLERS) for (const r of last) await one(r, caller);
  return { cells, durationMs: Date.now() - started };
}

const SHORT: Record<string, string> = {
  anonymous: 'anon',
  'key:admin': 'k:adm',
  'key:write': 'k:wr',
  'key:read': 'k:rd',
  'tenant-admin': 't-adm',
  staff: 'stf',
  'staff+read': 'stf+r',
  'staff+rw': 'stf+w',
  'staff+expired': 'stf+x',
  contractor: 'ctr',
  'security-officer': 'sec',
  operator: 'op',
  'operator(stale)': 'op~',
};
const short = (c: Caller) => SHORT[c] ?? c.replace('token:', 't:').replace(/:(\w{2})\w*$/, ':$1');
const SYMBOL: Record<string, string> = { allow: '✓', deny: '·', hidden: '∅', error: '5' };

/** The matrix as text: a row per route, a column per caller; own[/other]; `!` marks a cell against its declaration. */
export function renderMatrix(routes: RouteEntry[], cells: Cell[]): string {
  const width = 7;
  const keyWidth = Math.max(...routes.map((r) => r.key.length)) + 1;
  const lines = [
    'legend: ✓ allowed · refused (401/403) ∅ other tenant hidden (403/404) 5 server error; own/other; !=not as declared (expected in brackets)',
    `${''.padEnd(keyWidth)}${CALLERS.map((c) => short(c).padEnd(width)).join('')}`,
  ];
  for (const r of routes) {
    let line = r.key.padEnd(keyWidth);
    for (const caller of CALLERS) {
      const mine = cells.filter((c) => c.route === r.key && c.caller === caller);
      const text = mine
        .map((c) => (c.ok ? SYMBOL[c.got] : `!${SYMBOL[c.got]}${c.status}[${SYMBOL[c.expected]}]`))
        .join('/');
      line += text.padEnd(width);
    }
    lines.push(line.trimEnd());
  }
  return lines.join('\n');
}
