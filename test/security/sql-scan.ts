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
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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
}

export interface SqlCredentials {
  /** One tenant key per worker (the per-credential rate limit). */
  tenantKeys: readonly string[];
  session(): { cookie: string; csrf: string };
}

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
    // declare field by field: the blind-index lookup is the query most built from input.
    if (op.key === 'GET /v1/collections/{name}/records' && values.where !== undefined)
      query.push(values.where);
    const url = `${origin}${path}${query.length > 0 ? `?${query.join('&')}` : ''}`;
    const target: SqlTarget = { key: op.key, url, method: op.method, caller: op.caller };
    if (op.body !== undefined) target.data = JSON.stringify(plausible(op.body));
    targets.push(target);
  }
  return targets;
}

/** What sqlmap says when it found something (its log and standard output). */
const INJECTABLE =
  /parameter '[^']+' (is vulnerable|appears to be .*injectable)|identified the following injection point/i;
/** Credentials refused mid-scan: every later request saw only the refusal, the scan was blind. */
const REFUSED = /not authorized, try to provide right HTTP authentication/;

async function scanOne(t: SqlTarget, index: number, key: string, creds: SqlCredentials, outDir: string) {
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
    join(outDir, String(index).padStart(3, '0')),
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
  if (t.caller === 'tenant-key') args.push('-H', `Authorization: Bearer ${key}`);
  if (t.caller === 'admin-session') {
    const s = creds.session();
    args.push('--cookie', s.cookie, '-H', `X-CSRF-Token: ${s.csrf}`);
  }
  const run = await runTool('sqlmap', args, { timeoutMs: 10 * 60_000 });
  // The log holds the credentials sqlmap sent: the kept report has them masked.
  const text = `# ${t.key}\n# ${t.url}\n${run.stdout}${run.stderr}`
    .replaceAll(key, '<tenant key>')
    .replaceAll(creds.session().cookie, '<session cookie>');
  writeFileSync(reportPath(join('sqlmap', `${String(index).padStart(3, '0')}.txt`)), text);
  return { run, text };
}

export async function sqlmapScan(
  targets: readonly SqlTarget[],
  creds: SqlCredentials,
  name = 'sqlmap',
): Promise<ScanResult> {
  const outDir = reportPath(`${name}-output`);
  mkdirSync(reportPath('sqlmap'), { recursive: true });
  const findings: string[] = [];
  const notices: string[] = [];
  // A failed second factor (sqlmap sends hundreds) ends the admin session: those targets go last,
  // alone, so they cannot blind the others.
  const last = targets.filter((t) => ENDS_SESSION.test(t.key));
  const first = targets.filter((t) => !ENDS_SESSION.test(t.key));
  const ordered = [...first, ...last];
  let next = 0;
  const worker = async (w: number, upTo: number) => {
    const key = creds.tenantKeys[w] as string;
    for (let i = next++; i < upTo; i = next++) {
      const t = ordered[i] as SqlTarget;
      const { run, text } = await scanOne(t, i, key, creds, outDir);
      for (const line of text.split('\n')) {
        if (INJECTABLE.test(line)) findings.push(`${t.key}: ${line.trim()}`);
        if (REFUSED.test(line))
          findings.push(`${t.key}: the credentials were refused (401): the scan was blind`);
      }
      if (/\b429\b.*Too Many Requests/i.test(text))
        findings.push(`${t.key}: rate-limited (429) during the scan`);
      if (run.timedOut) findings.push(`${t.key}: sqlmap did not finish within its time limit`);
      else if (run.status !== 0) findings.push(`${t.key}: sqlmap failed (exit ${run.status})`);
      if (/all tested parameters do not appear to be injectable/.test(text))
        notices.push(`${t.key}: not injectable`);
    }
  };
  await Promise.all(creds.tenantKeys.map((_, w) => worker(w, first.length)));
  next = first.length;
  await worker(0, ordered.length);
  // sqlmap's own log of each target holds the injection points it found.
  for (const dir of readdirSync(outDir, { withFileTypes: true })) {
    if (!dir.isDirectory()) continue;
    for (const host of readdirSync(join(outDir, dir.name))) {
      try {
        const log = readFileSync(join(outDir, dir.name, host, 'log'), 'utf8');
        if (log.trim() !== '')
          findings.push(
            `${ordered[Number(dir.name)]?.key ?? dir.name}: sqlmap logged an injection point: ${log.slice(0, 300)}`,
          );
      } catch {
        // no log: nothing found there
      }
    }
  }
  return { findings: [...new Set(findings)], notices, reports: [reportPath('sqlmap'), outDir] };
}
