/**
 * wapiti against the console pages and the API: it crawls from the origin and the start pages it is
 * given (the sign-in page, the trust page, the API reference, API reads with query parameters),
 * within the server's origin (`--scope domain`), and attacks what it finds, for a bounded time.
 *
 * Modules that make sense for a JSON API and a few static pages: xss, permanentxss, sql, exec,
 * file, crlf, redirect, http_headers, cookieflags, csrf, methods. Left out: ssrf and xxe (they need
 * an outside endpoint this machine cannot reach), nikto, wapp and buster (databases or word lists
 * downloaded or brute force over minutes), blindsql (time-based: meaningless on a shared, loaded
 * machine). `--no-bugreport` and no `--update`: it never reaches out. No `-x` exclusions: Debian's
 * wapiti 3.0.4 builds them into a regular expression Python 3.11 refuses (`\Z(?ms)`, crawler.py)
 * and stops; an endless answer (the audit stream) ends at wapiti's request timeout instead.
 *
 * Pass: no vulnerability above low (wapiti's levels: 1 low, 2 medium, 3 high, 4 critical; a missing
 * optional header is low) and no anomaly of a 5xx answer.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { reportPath, runTool } from './reports.ts';
import type { ScanResult } from './tls-scan.ts';

export const WAPITI_MODULES =
  'xss,permanentxss,sql,exec,file,crlf,redirect,http_headers,cookieflags,csrf,methods';

interface WapitiItem {
  method?: string;
  path?: string;
  info?: string;
  level?: number | string;
  parameter?: string;
}

interface WapitiReport {
  vulnerabilities?: Record<string, WapitiItem[]>;
  anomalies?: Record<string, WapitiItem[]>;
}

export async function wapitiScan(options: {
  origin: string;
  startPaths: readonly string[];
  headers?: readonly string[];
  maxScanSeconds: number;
  name?: string;
}): Promise<ScanResult> {
  const name = options.name ?? 'wapiti';
  const json = reportPath(`${name}.json`);
  const session = mkdtempSync(join(tmpdir(), 'scanners-wapiti-'));
  const args = [
    '-u',
    `${options.origin}/`,
    '--scope',
    'domain',
    '-m',
    WAPITI_MODULES,
    '--flush-session',
    '--store-session',
    session,
    '--no-bugreport',
    '--max-scan-time',
    String(options.maxScanSeconds),
    '--max-attack-time',
    String(Math.max(30, Math.floor(options.maxScanSeconds / 4))),
    '-d',
    '3',
    '-t',
    '30',
    '--verify-ssl',
    '0',
    '-f',
    'json',
    '-o',
    json,
    '-v',
    '1',
  ];
  for (const p of options.startPaths) args.push('-s', `${options.origin}${p}`);
  for (const h of options.headers ?? []) args.push('-H', h);
  try {
    const run = await runTool('wapiti', args, { timeoutMs: (options.maxScanSeconds + 300) * 1000 });
    const findings: string[] = [];
    const notices: string[] = [];
    if (run.timedOut) findings.push('wapiti did not finish within its time limit');
    let report: WapitiReport = {};
    try {
      report = JSON.parse(readFileSync(json, 'utf8')) as WapitiReport;
    } catch {
      findings.push(
        `wapiti wrote no JSON report (exit ${run.status}): ${(run.stderr || run.stdout).slice(-500)}`,
      );
    }
    for (const [category, items] of Object.entries(report.vulnerabilities ?? {})) {
      for (const v of items) {
        const line = `${category} [level ${v.level}] ${v.method ?? ''} ${v.path ?? ''} ${v.parameter ?? ''}: ${v.info ?? ''}`;
        (Number(v.level) > 1 ? findings : notices).push(line);
      }
    }
    for (const [category, items] of Object.entries(report.anomalies ?? {})) {
      for (const a of items) {
        const line = `${category} ${a.method ?? ''} ${a.path ?? ''} ${a.parameter ?? ''}: ${a.info ?? ''}`;
        (/internal server error|5\d\d/i.test(category + (a.info ?? '')) ? findings : notices).push(line);
      }
    }
    return { findings, notices, reports: [json] };
  } finally {
    rmSync(session, { recursive: true, force: true });
  }
}
