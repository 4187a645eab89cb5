/**
 * sqlmap against every parameterised operation: path parameters (marked with `*`), query
 * parameters and the JSON body's values, each with the credentials that fit the operation.
 *
 * Chosen so the whole run stays within minutes on a busy machine: `--level 1 --risk 1` (no
 * cookie/header injection, no OR-based payloads that could change data), techniques boolean-blind,
 * error-based and UNION (`BEU`; time-based blind is left out: on a machine shared with other test
 * runs a delay proves nothing, and stacked queries cannot run through better-sqlite3's one-statement
 * prepare), and the back end fixed to SQLite, the store of this stack. `--flush-session` so no
 * earlier run's conclusions are reused; `--disable-coloring`, and sqlmap never updates itself unless
 * asked (`--update`), so it runs offline.
 *
 * Pass: no parameter sqlmap calls injectable or vulnerable, and no answer 429 (a rate-limited scan
 * would have seen nothing).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuthMode } from '../../src/http/route.ts';
import { reportPath, runTool } from './reports.ts';
import { type Caller, ENDS_SESSION, type JsonSchema, type Operation } from './targets.ts';
import type { ScanResult } from './tls-scan.ts';

export interface SqlTarget {
  key: string;
  url: string;
  method: string;
  /** A JSON body, its values injected. */
  data?: string;
  caller: Caller;
  /** Who the route admits and the operator-token scope that does (targets.ts). */
  auth?: AuthMode;
  scope?: string | undefined;
}

/** One console person's session, as the scan holds it. */
export interface SqlSession {
  /** The role, for the reports ("operator-admin", "security-officer", "tenant-admin", …). */
  role: string;
  /** The current cookie header value and CSRF token (a step-up replaces both). */
  current(): { cookie: string; csrf: string };
  /** Passes a second factor again: a new, fresh session; the old cookie stops working. */
  stepUp(): Promise<void>;
}

export interface SqlCredentials {
  /** One tenant key per worker (the per-credential rate limit). */
  tenantKeys: readonly string[];
  /** The console sessions the scan may use, the operator admin's first. */
  sessions: readonly SqlSession[];
  /**
   * The console's origin, sent as `Origin` with a session: the server refuses a cookie-borne
   * change from anywhere else (403 TRESOR_ERR_ORIGIN_REFUSED), as a browser would send it.
   */
  origin?: string;
  /** An operator token of `scope`, for the routes a scoped token may call (minted once per scope). */
  operatorToken?(scope: string): Promise<string>;
}

/** A credential a target is scanned with. */
export type SqlCredential =
  | { kind: 'none' }
  | { kind: 'tenant-key' }
  | { kind: 'operator-token'; scope: string }
  | { kind: 'session'; session: SqlSession };

/**
 * The credentials that fit a target, tried in this order until one lets most of the scan's
 * requests through: a tenant key for the tenant's routes; for routes any caller may reach, the
 * tenant key, then an operator token of the route's scope, then each session; for operator and
 * console routes, the scoped token, then each session (a route gated on a role answers 403 to the
 * others: the next session, of another role, is tried).
 */
export function credentialsFor(t: SqlTarget, creds: SqlCredentials): SqlCredential[] {
  const token: SqlCredential[] =
    t.scope !== undefined && creds.operatorToken !== undefined
      ? [{ kind: 'operator-token', scope: t.scope }]
      : [];
  const sessions: SqlCredential[] = creds.sessions.map((session) => ({ kind: 'session', session }));
  if (t.caller === 'anonymous') return [{ kind: 'none' }];
  if (t.auth === 'any-authenticated') return [{ kind: 'tenant-key' }, ...token, ...sessions];
  if (t.caller === 'admin-session') return [...token, ...sessions];
  return [{ kind: 'tenant-key' }];
}

const describeCredential = (c: SqlCredential) =>
  c.kind === 'session'
    ? `the ${c.session.role} session`
    : c.kind === 'operator-token'
      ? `an operator token (${c.scope})`
      : c.kind === 'tenant-key'
        ? 'the tenant key'
        : 'no credential';

function plausible(schema: JsonSchema | undefined, depth = 0): unknown {
  if (schema === undefined || depth > 3) return 'x';
  if (schema.const !== undefined) return schema.const;
  if (schema.enum !== undefined && schema.enum.length > 0) return schema.enum[0];
  const alt = schema.anyOf?.[0] ?? schema.oneOf?.[0];
  if (alt !== undefined) return plausible(alt, depth + 1);
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  if (type === 'integer' || type === 'number') return typeof schema.minimum === 'number' ? schema.minimum : 1;
  if (type === 'boolean') return true;
  if (type === 'array') return [];
  if (type === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(schema.properties ?? {})) out[k] = plausible(v, depth + 1);
    return out;
  }
  return 'sqlmap';
}

/** The record search by JSON body, when the served document has it. */
export const POST_SEARCH = 'POST /v1/collections/{name}/records/search';

/**
 * The targets: each operation with a parameter or a body. `values` gives real values for path and
 * query parameters where the stack has them (the scratch collection, a record of it, the tenant),
 * so a true and a false condition can answer differently.
 */
export function sqlTargets(
  origin: string,
  ops: readonly Operation[],
  values: Record<string, string>,
): SqlTarget[] {
  const targets: SqlTarget[] = [];
  const postSearch = ops.some((o) => o.key === POST_SEARCH);
  for (const op of ops) {
    const params = op.parameters.filter((p) => p.in === 'path' || p.in === 'query');
    if (params.length === 0 && op.body === undefined) continue;
    let path = op.path;
    for (const p of params.filter((p) => p.in === 'path')) {
      path = path.replace(`{${p.name}}`, `${encodeURIComponent(values[p.name] ?? `${p.name}1`)}*`);
    }
    const query = params
      .filter((p) => p.in === 'query')
      .map((p) => `${p.name}=${encodeURIComponent(values[p.name] ?? '1')}`);
    // The equality search on a searchable field (`where[field]=value`), which the document cannot
    // declare field by field: the blind-index lookup is the query most built from input. Only while
    // the search is that GET form: once the document has `POST …/records/search`, the search's
    // JSON body is scanned like any body, and the GET form is refused (400).
    if (op.key === 'GET /v1/collections/{name}/records' && values.where !== undefined && !postSearch)
      query.push(values.where);
    const url = `${origin}${path}${query.length > 0 ? `?${query.join('&')}` : ''}`;
    const target: SqlTarget = {
      key: op.key,
      url,
      method: op.method,
      caller: op.caller,
      auth: op.auth,
      scope: op.scope,
    };
    if (op.body !== undefined) target.data = JSON.stringify(plausible(op.body));
    targets.push(target);
  }
  return targets;
}

/** What sqlmap says when it found something (its log and standard output). */
const INJECTABLE =
  /parameter '[^']+' (is vulnerable|appears to be .*injectable)|identified the following injection point/i;
/** Answers that mean the credential did not get the request through: the scan saw nothing there. */
const REFUSALS = new Set([401, 403, 429]);
/** Step-up routes need a second factor within 5 minutes: a session is stepped up when older than this. */
const STEP_UP_EVERY_MS = 2 * 60_000;
/** How many times a target is scanned again after its session was refused (401) mid-scan. */
const SESSION_RETRIES = 1;

/** The answers of one sqlmap run, from its traffic file: how many, and how many were refusals. */
export function answerCounts(traffic: string): {
  total: number;
  refused: number;
  byStatus: Record<string, number>;
} {
  const byStatus: Record<string, number> = {};
  let total = 0;
  let refused = 0;
  for (const m of traffic.matchAll(/^HTTP response \[#\d+\] \((\d{3})\b/gm)) {
    const code = Number(m[1]);
    total += 1;
    if (REFUSALS.has(code)) refused += 1;
    byStatus[code] = (byStatus[code] ?? 0) + 1;
  }
  return { total, refused, byStatus };
}

/** Whether most answers were refusals (401/403/429), or there were none: the scan proved nothing. */
export const blind = (c: { total: number; refused: number }) => c.total === 0 || c.refused * 2 > c.total;

interface Attempt {
  run: Awaited<ReturnType<typeof runTool>>;
  text: string;
  counts: ReturnType<typeof answerCounts>;
}

async function scanOnce(
  t: SqlTarget,
  index: number,
  attempt: number,
  credential: SqlCredential,
  key: string,
  creds: SqlCredentials,
  outDir: string,
): Promise<Attempt> {
  const name = `${String(index).padStart(3, '0')}${attempt > 0 ? `-${attempt}` : ''}`;
  // The traffic file holds the credentials: kept in a folder of its own, read, then removed.
  const trafficDir = mkdtempSync(join(tmpdir(), 'sqlmap-traffic-'));
  const args = [
    '-u',
    t.url,
    '--method',
    t.method,
    '--batch',
    '--level',
    '1',
    '--risk',
    '1',
    '--technique',
    'BEU',
    // The UNION columns level 1 tries (1 to 10), held there: on a route whose answers differ with
    // the value's length, sqlmap's ORDER BY probe otherwise "finds" 999 columns and spends
    // thousands of requests on them.
    '--union-cols',
    '1-10',
    '--dbms',
    'SQLite',
    '--flush-session',
    // Our strict validation answers sqlmap's probe with a 400, which it would take for a WAF.
    '--skip-waf',
    // A 404 is an answer like another (a deleted scratch record, an id of no such thing).
    '--ignore-code',
    '404',
    '--disable-coloring',
    // One folder per target: sqlmap processes running side by side must not share a session file.
    '--output-dir',
    join(outDir, name),
    '-t',
    join(trafficDir, 'traffic.txt'),
    '--answers',
    'follow=N,JSON=Y,URI=Y,keep testing=N,reduce=Y',
    '--timeout',
    '30',
    '--retries',
    '1',
    '-v',
    '1',
  ];
  if (t.data !== undefined) args.push('--data', t.data, '-H', 'Content-Type: application/json');
  const secrets: [string, string][] = [[key, '<tenant key>']];
  if (credential.kind === 'tenant-key') args.push('-H', `Authorization: Bearer ${key}`);
  if (credential.kind === 'operator-token') {
    const token = await (creds.operatorToken as (scope: string) => Promise<string>)(credential.scope);
    secrets.push([token, '<operator token>']);
    args.push('-H', `Authorization: Bearer ${token}`);
  }
  if (credential.kind === 'session') {
    const s = credential.session.current();
    secrets.push([s.cookie, '<session cookie>'], [s.csrf, '<csrf token>']);
    args.push('--cookie', s.cookie, '-H', `X-CSRF-Token: ${s.csrf}`);
    if (creds.origin !== undefined) args.push('-H', `Origin: ${creds.origin}`);
  }
  try {
    const run = await runTool('sqlmap', args, { timeoutMs: 10 * 60_000 });
    let traffic = '';
    try {
      traffic = readFileSync(join(trafficDir, 'traffic.txt'), 'utf8');
    } catch {
      // no request was made
    }
    const counts = answerCounts(traffic);
    // The log holds the credentials sqlmap sent: the kept report has them masked.
    let text = `# ${t.key}\n# ${t.url}\n# with ${describeCredential(credential)}; answers ${JSON.stringify(counts.byStatus)}\n${run.stdout}${run.stderr}`;
    for (const [secret, mask] of secrets) if (secret !== '') text = text.replaceAll(secret, mask);
    writeFileSync(reportPath(join('sqlmap', `${name}.txt`)), text);
    return { run, text, counts };
  } finally {
    rmSync(trafficDir, { recursive: true, force: true });
  }
}

/** Runs one session scan at a time: a step-up replaces the session every other scan would be using. */
function sessionLock() {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(work: () => Promise<T>): Promise<T> => {
    const run = tail.then(work, work);
    tail = run.catch(() => undefined);
    return run;
  };
}

/**
 * Operations sqlmap cannot get past, by construction: their body is a WebAuthn response, verified
 * (a signature over a challenge the server issued) before any value of it reaches a query, and a
 * response that does not verify is a failed ceremony, answered 401 with the session left intact.
 * sqlmap's values never verify, it stops at the first 401, and a scan there would see only
 * refusals: they are reported as not scanned (a notice), never counted as scanned. Their WebAuthn
 * handling is tested with real credentials elsewhere (test/identity/webauthn*.test.ts, the
 * browser e2e tests).
 */
export const NOT_SCANNABLE: ReadonlyMap<string, string> = new Map([
  [
    'POST /v1/factors/webauthn',
    'a WebAuthn registration response, verified before use (sqlmap would see only 401s)',
  ],
  [
    'POST /v1/auth/reauthenticate/webauthn',
    'a WebAuthn assertion, verified before use (sqlmap would see only 401s)',
  ],
  // The current password is verified (argon2id against the session's own person) before either
  // value is used, and only as a hash; every wrong guess is a failed login (403, then lockout).
  [
    'POST /v1/auth/password',
    'the current password is verified before either value is used, and each wrong guess counts as a failed login (sqlmap would see only 403s and lock the account)',
  ],
]);

export async function sqlmapScan(
  targets: readonly SqlTarget[],
  creds: SqlCredentials,
  name = 'sqlmap',
): Promise<ScanResult> {
  const outDir = reportPath(`${name}-output`);
  mkdirSync(reportPath('sqlmap'), { recursive: true });
  const findings: string[] = [];
  const notices: string[] = [];
  const withSession = sessionLock();
  const steppedUpAt = new Map<SqlSession, number>();
  const fresh = async (s: SqlSession, force = false) => {
    if (force || Date.now() - (steppedUpAt.get(s) ?? 0) > STEP_UP_EVERY_MS) {
      await s.stepUp();
      steppedUpAt.set(s, Date.now());
    }
  };
  /** Every log sqlmap wrote for a target (its own log holds the injection points it found). */
  const outputs = new Map<string, string>();

  const scanTarget = async (t: SqlTarget, index: number, key: string) => {
    let attempt = 0;
    let last: { credential: SqlCredential; counts: Attempt['counts'] } | undefined;
    let lastRun: Attempt['run'] | undefined;
    // Every attempt's injection reports count; whether sqlmap ran through, only the kept attempt's.
    const judgeRun = (a: Attempt) => {
      for (const line of a.text.split('\n'))
        if (INJECTABLE.test(line)) findings.push(`${t.key}: ${line.trim()}`);
      lastRun = a.run;
    };
    for (const credential of credentialsFor(t, creds)) {
      if (credential.kind === 'session') {
        const s = credential.session;
        // The session is refreshed before the scan, and once more if it was refused (401) during it.
        const outcome = await withSession(async () => {
          let a: Attempt | undefined;
          for (let retry = 0; retry <= SESSION_RETRIES; retry++) {
            await fresh(s, retry > 0);
            outputs.set(`${index}-${attempt}`, t.key);
            a = await scanOnce(t, index, attempt++, credential, key, creds, outDir);
            judgeRun(a);
            if (!blind(a.counts) || (a.counts.byStatus[401] ?? 0) === 0) break;
          }
          return a as Attempt;
        });
        last = { credential, counts: outcome.counts };
      } else {
        outputs.set(`${index}-${attempt}`, t.key);
        const a = await scanOnce(t, index, attempt++, credential, key, creds, outDir);
        judgeRun(a);
        last = { credential, counts: a.counts };
      }
      if (!blind(last.counts)) break;
    }
    if (last === undefined || lastRun === undefined) return;
    if (lastRun.timedOut) findings.push(`${t.key}: sqlmap did not finish within its time limit`);
    else if (lastRun.status !== 0 && !blind(last.counts))
      findings.push(`${t.key}: sqlmap failed (exit ${lastRun.status})`);
    if (blind(last.counts))
      findings.push(
        `${t.key}: ${last.counts.refused} of ${last.counts.total} answers were 401/403/429 with every credential that fits (the last: ${describeCredential(last.credential)}): the scan proved nothing`,
      );
    else
      notices.push(
        `${t.key}: not injectable (${describeCredential(last.credential)}; answers ${JSON.stringify(last.counts.byStatus)})`,
      );
  };

  // A failed second factor ends or locks the admin session: those targets go last, alone, so they
  // cannot blind the others.
  for (const t of targets.filter((t) => NOT_SCANNABLE.has(t.key)))
    notices.push(`${t.key}: not scanned: ${NOT_SCANNABLE.get(t.key)}`);
  const scanned = targets.filter((t) => !NOT_SCANNABLE.has(t.key));
  const last = scanned.filter((t) => ENDS_SESSION.test(t.key));
  const first = scanned.filter((t) => !ENDS_SESSION.test(t.key));
  const ordered = [...first, ...last];
  let next = 0;
  const worker = async (w: number, upTo: number) => {
    const key = creds.tenantKeys[w] as string;
    for (let i = next++; i < upTo; i = next++) await scanTarget(ordered[i] as SqlTarget, i, key);
  };
  await Promise.all(creds.tenantKeys.map((_, w) => worker(w, first.length)));
  next = first.length;
  await worker(0, ordered.length);
  for (const dir of readdirSync(outDir, { withFileTypes: true })) {
    if (!dir.isDirectory()) continue;
    for (const host of readdirSync(join(outDir, dir.name))) {
      try {
        const log = readFileSync(join(outDir, dir.name, host, 'log'), 'utf8');
        const [index, attempt] = dir.name.split('-');
        if (log.trim() !== '')
          findings.push(
            `${outputs.get(`${Number(index)}-${Number(attempt ?? 0)}`) ?? dir.name}: sqlmap logged an injection point: ${log.slice(0, 300)}`,
          );
      } catch {
        // no log: nothing found there
      }
    }
  }
  return { findings: [...new Set(findings)], notices, reports: [reportPath('sqlmap'), outDir] };
}
