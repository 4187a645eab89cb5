/**
 * The supply chain of the production build: npm audit where an advisory service answers (a notice
 * where none does), the licence of every production package against the allowlist, and the
 * lockfile's provenance and integrity hashes (supply-chain.ts).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { reportPath } from './reports.ts';
import {
  type AuditException,
  type CheckResult,
  licenceProblems,
  lockfileProblems,
  npmAudit,
  productionPackageDirs,
} from './supply-chain.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const readJson = <T>(path: string) => JSON.parse(readFileSync(join(ROOT, path), 'utf8')) as T;

function judge(t: { diagnostic(m: string): void }, name: string, result: CheckResult): void {
  writeFileSync(
    reportPath(`${name}.txt`),
    [...result.findings.map((f) => `FINDING ${f}`), ...result.notices].join('\n'),
  );
  for (const n of result.notices) t.diagnostic(`${name}: ${n}`);
  assert.deepEqual(result.findings, [], `${name}: ${result.findings.length} problem(s)`);
}

describe('the supply chain of the production build', () => {
  it('npm audit --omit=dev: no high or critical advisory beyond the listed, unexpired exceptions', (t) => {
    const { exceptions } = readJson<{ exceptions: AuditException[] }>(
      'scripts/security/audit-exceptions.json',
    );
    judge(t, 'npm-audit', npmAudit(ROOT, exceptions));
  });

  it('every production package is under a licence on the allowlist', (t) => {
    const { allowed } = readJson<{ allowed: string[] }>('scripts/security/licence-allowlist.json');
    const dirs = productionPackageDirs(ROOT);
    t.diagnostic(`${dirs.length} production packages`);
    judge(t, 'licences', licenceProblems(dirs, new Set(allowed)));
  });

  it('every locked package comes from registry.npmjs.org with a sha512 integrity hash', (t) => {
    const registry = spawnSync('npm', ['config', 'get', 'registry'], {
      cwd: ROOT,
      encoding: 'utf8',
    }).stdout.trim();
    judge(t, 'lockfile', lockfileProblems(readJson('package-lock.json'), registry));
  });
});
