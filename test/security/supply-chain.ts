/**
 * The supply-chain checks of `npm run test:security`:
 *
 * - `npm audit --omit=dev --json` where an advisory service answers: no high or critical advisory
 *   unless scripts/security/audit-exceptions.json lists it with a reason and an expiry date (an
 *   expired exception fails). Where none answers — the registry of this machine answers the bulk
 *   advisory endpoint with 405 — a plain notice says the audit could not run, and nothing fails.
 * - A licence check of the production dependency tree (`npm ls --omit=dev --all --parseable`, then
 *   each installed package.json's `license`) against scripts/security/licence-allowlist.json; an
 *   SPDX expression passes when its OR alternatives include an allowed one and all its AND parts do.
 * - A lockfile check: every package has an `integrity` sha512 hash and comes from
 *   https://registry.npmjs.org/. A lockfile written with npm's `omit-lockfile-registry-resolved`
 *   (this project's: npm then fetches from the configured registry) has no `resolved`: then the
 *   registry npm is configured with must be that one, and any `resolved` there is must point to it.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const REGISTRY = 'https://registry.npmjs.org/';

export interface CheckResult {
  findings: string[];
  notices: string[];
}

interface LockPackage {
  version?: string;
  resolved?: string;
  integrity?: string;
  link?: boolean;
  license?: string;
}

/** Lockfile entries, by path (`node_modules/x`), with their problems. */
export function lockfileProblems(
  lock: { packages?: Record<string, LockPackage> },
  registry: string,
): CheckResult {
  const findings: string[] = [];
  const notices: string[] = [];
  let withoutResolved = 0;
  for (const [path, pkg] of Object.entries(lock.packages ?? {})) {
    if (path === '' || pkg.link === true) continue; // the project itself, a workspace link
    if (pkg.resolved === undefined) withoutResolved++;
    else if (!pkg.resolved.startsWith(REGISTRY))
      findings.push(`${path}: resolved from ${pkg.resolved}, not ${REGISTRY}`);
    if (!/^sha512-[A-Za-z0-9+/]{86}==$/.test(pkg.integrity ?? '')) {
      findings.push(`${path}: no sha512 integrity hash (${pkg.integrity ?? 'none'})`);
    }
  }
  if (withoutResolved > 0) {
    const line = `${withoutResolved} packages have no \`resolved\` (omit-lockfile-registry-resolved): npm fetches them from its configured registry, ${registry}`;
    if (registry.replace(/\/?$/, '/') === REGISTRY) notices.push(line);
    else findings.push(`${line}, which is not ${REGISTRY}`);
  }
  return { findings, notices };
}

/** Whether an SPDX licence expression is satisfied by the allowlist. */
export function licenceAllowed(expression: string, allowed: ReadonlySet<string>): boolean {
  const tokens = expression.replace(/[()]/g, ' $& ').trim().split(/\s+/);
  let i = 0;
  // or := and ("OR" and)* ; and := atom ("AND" atom)* ; atom := id | "(" or ")"
  const atom = (): boolean => {
    const t = tokens[i++];
    if (t === '(') {
      const v = or();
      i++; // ')'
      return v;
    }
    return t !== undefined && allowed.has(t.replace(/\+$/, ''));
  };
  const and = (): boolean => {
    let v = atom();
    while (tokens[i] === 'AND') {
      i++;
      v = atom() && v;
    }
    return v;
  };
  const or = (): boolean => {
    let v = and();
    while (tokens[i] === 'OR') {
      i++;
      v = and() || v;
    }
    return v;
  };
  return or() && i === tokens.length;
}

/** The licence field of a package.json, as an SPDX expression (old `licenses` arrays joined by OR). */
function licenceOf(pkg: { license?: unknown; licenses?: unknown }): string | undefined {
  if (typeof pkg.license === 'string') return pkg.license;
  if (typeof pkg.license === 'object' && pkg.license !== null) return (pkg.license as { type?: string }).type;
  if (Array.isArray(pkg.licenses)) return pkg.licenses.map((l: { type?: string }) => l.type).join(' OR ');
  return undefined;
}

/** The licence of each production package directory, checked against the allowlist. */
export function licenceProblems(packageDirs: readonly string[], allowed: ReadonlySet<string>): CheckResult {
  const findings: string[] = [];
  const seen = new Map<string, number>();
  for (const dir of packageDirs) {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      name?: string;
      version?: string;
      license?: unknown;
      licenses?: unknown;
    };
    const licence = licenceOf(pkg);
    seen.set(licence ?? 'none', (seen.get(licence ?? 'none') ?? 0) + 1);
    if (licence === undefined || !licenceAllowed(licence, allowed)) {
      findings.push(
        `${pkg.name}@${pkg.version}: licence ${licence ?? 'not declared'} is not on the allowlist`,
      );
    }
  }
  const notices = [...seen].map(([l, n]) => `${n} packages under ${l}`);
  return { findings, notices };
}

/** The production tree's package folders, from npm itself (without the project's own). */
export function productionPackageDirs(root: string): string[] {
  const r = spawnSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
  });
  const dirs = r.stdout.split('\n').filter((l) => l.trim() !== '');
  if (dirs.length < 2)
    throw new Error(`npm ls listed no packages (exit ${r.status}): ${r.stderr.slice(0, 300)}`);
  return dirs.filter((d) => d !== root);
}

export interface AuditException {
  advisory: string;
  package: string;
  reason: string;
  expires: string;
}

interface AuditVulnerability {
  name: string;
  severity: string;
  via: (string | { source?: number; url?: string; title?: string; severity?: string })[];
}

/** The exceptions file's problems: a missing reason, a bad or past expiry date. */
export function exceptionProblems(exceptions: readonly AuditException[], today: Date): string[] {
  const problems: string[] = [];
  for (const e of exceptions) {
    if (!e.reason || e.reason.trim() === '') problems.push(`exception ${e.advisory}: no reason given`);
    const expires = /^\d{4}-\d{2}-\d{2}$/.test(e.expires ?? '')
      ? new Date(`${e.expires}T23:59:59Z`)
      : undefined;
    if (expires === undefined || Number.isNaN(expires.getTime())) {
      problems.push(`exception ${e.advisory}: expiry date ${e.expires} is not YYYY-MM-DD`);
    } else if (expires < today)
      problems.push(`exception ${e.advisory} for ${e.package} expired on ${e.expires}`);
  }
  return problems;
}

/** `npm audit --omit=dev --json`: findings for high and critical advisories not excepted. */
export function npmAudit(
  root: string,
  exceptions: readonly AuditException[],
  today = new Date(),
): CheckResult {
  const findings = exceptionProblems(exceptions, today);
  const r = spawnSync('npm', ['audit', '--omit=dev', '--json'], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
  });
  let report: { vulnerabilities?: Record<string, AuditVulnerability>; error?: unknown; message?: string } =
    {};
  try {
    report = JSON.parse(r.stdout) as typeof report;
  } catch {
    // no JSON at all: handled below as "no service"
  }
  if (report.vulnerabilities === undefined) {
    const why =
      (r.stderr.match(/\d{3} [A-Za-z ]+ - \w+ \S+/)?.[0] ?? r.stderr.trim().split('\n')[0]) || 'no answer';
    return {
      findings,
      notices: [`npm audit: no advisory service reachable from here (${why}); the audit was not run`],
    };
  }
  const excepted = new Set(exceptions.map((e) => `${e.package} ${e.advisory}`));
  const notices: string[] = [];
  for (const v of Object.values(report.vulnerabilities)) {
    const advisories = v.via.filter((x) => typeof x === 'object');
    for (const a of advisories) {
      const id = a.url ?? String(a.source);
      const line = `${v.name}: ${a.severity} ${id} ${a.title ?? ''}`;
      if ((a.severity === 'high' || a.severity === 'critical') && !excepted.has(`${v.name} ${id}`))
        findings.push(line);
      else notices.push(line);
    }
  }
  return { findings, notices };
}
