/**
 * docs/security/asvs.md, the OWASP ASVS 5.0.0 map, kept honest: every requirement in its scope has
 * exactly one row with its level, every row's status is one of met / partly / not met / n/a, every
 * row that claims met or partly names code (a path under src/, docs/, scripts/ or deploy/) and a
 * test (a path under test/), and every path any row names exists. The requirement ids below are
 * ASVS 5.0.0's (L1 and L2 of every chapter but V10 OAuth and V17 WebRTC, which the map declares
 * not applicable as a whole, and L3 of V4, V7, V8, V11 and V16).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAP = readFileSync(join(ROOT, 'docs', 'security', 'asvs.md'), 'utf8');

const IN_SCOPE: Readonly<Record<string, string>> = {
  '1': '1.2.1 1.2.2 1.2.3 1.2.4 1.2.5 1.3.1 1.3.2 1.5.1 2.1.1 2.2.1 2.2.2 2.3.1 3.2.1 3.2.2 3.3.1 3.4.1 3.4.2 3.5.1 3.5.2 3.5.3 4.1.1 4.4.1 5.2.1 5.2.2 5.3.1 5.3.2 6.1.1 6.2.1 6.2.2 6.2.3 6.2.4 6.2.5 6.2.6 6.2.7 6.2.8 6.3.1 6.3.2 6.4.1 6.4.2 7.2.1 7.2.2 7.2.3 7.2.4 7.4.1 7.4.2 8.1.1 8.2.1 8.2.2 8.3.1 9.1.1 9.1.2 9.1.3 9.2.1 11.3.1 11.3.2 11.4.1 12.1.1 12.2.1 12.2.2 13.4.1 14.2.1 14.3.1 15.1.1 15.2.1 15.3.1',
  '2': '1.1.1 1.1.2 1.2.6 1.2.7 1.2.8 1.2.9 1.3.3 1.3.4 1.3.5 1.3.6 1.3.7 1.3.8 1.3.9 1.3.10 1.3.11 1.4.1 1.4.2 1.4.3 1.5.2 2.1.2 2.1.3 2.2.3 2.3.2 2.3.3 2.3.4 2.4.1 3.3.2 3.3.3 3.3.4 3.4.3 3.4.4 3.4.5 3.4.6 3.5.4 3.5.5 3.7.1 3.7.2 4.1.2 4.1.3 4.2.1 4.3.1 4.3.2 4.4.2 4.4.3 4.4.4 5.1.1 5.2.3 5.4.1 5.4.2 5.4.3 6.1.2 6.1.3 6.2.9 6.2.10 6.2.11 6.2.12 6.3.3 6.3.4 6.4.3 6.4.4 6.5.1 6.5.2 6.5.3 6.5.4 6.5.5 6.6.1 6.6.2 6.6.3 6.8.1 6.8.2 6.8.3 6.8.4 7.1.1 7.1.2 7.1.3 7.3.1 7.3.2 7.4.3 7.4.4 7.4.5 7.5.1 7.5.2 7.6.1 7.6.2 8.1.2 8.2.3 8.4.1 9.2.2 9.2.3 9.2.4 11.1.1 11.1.2 11.2.1 11.2.2 11.2.3 11.3.3 11.4.2 11.4.3 11.4.4 11.5.1 11.6.1 12.1.2 12.1.3 12.3.1 12.3.2 12.3.3 12.3.4 13.1.1 13.2.1 13.2.2 13.2.3 13.2.4 13.2.5 13.3.1 13.3.2 13.4.2 13.4.3 13.4.4 13.4.5 14.1.1 14.1.2 14.2.2 14.2.3 14.2.4 14.3.2 14.3.3 15.1.2 15.1.3 15.2.2 15.2.3 15.3.2 15.3.3 15.3.4 15.3.5 15.3.6 15.3.7 16.1.1 16.2.1 16.2.2 16.2.3 16.2.4 16.2.5 16.3.1 16.3.2 16.3.3 16.3.4 16.4.1 16.4.2 16.4.3 16.5.1 16.5.2 16.5.3',
  '3': '4.1.4 4.1.5 4.2.2 4.2.3 4.2.4 4.2.5 7.5.3 8.1.3 8.1.4 8.2.4 8.3.2 8.3.3 8.4.2 11.1.3 11.1.4 11.2.4 11.2.5 11.3.4 11.3.5 11.5.2 11.6.2 11.7.1 11.7.2 16.5.4',
};

const STATUSES = new Set(['met', 'partly', 'not met', 'n/a']);

interface Row {
  id: string;
  level: string;
  status: string;
  evidence: string;
}

const ROWS: Row[] = [...MAP.matchAll(/^\| (\d+\.\d+\.\d+) \| ([^|]*) \|[^|]*\| ([^|]*) \|(.*)\|\s*$/gm)].map(
  (m) => ({
    id: m[1] ?? '',
    level: (m[2] ?? '').trim(),
    status: (m[3] ?? '').trim(),
    evidence: m[4] ?? '',
  }),
);

const pathsIn = (text: string) =>
  [
    ...text.matchAll(
      /`((?:src|docs|scripts|deploy|test|bench)\/[^`\s]*|openapi\.json|biome\.json|tsconfig\.json|package-lock\.json)`/g,
    ),
  ].map((m) => m[1] ?? '');

describe('the ASVS map', () => {
  it('has one row for every requirement in scope, at its level, and no other', () => {
    const expected = new Map<string, string>();
    for (const [level, ids] of Object.entries(IN_SCOPE))
      for (const id of ids.split(' ')) expected.set(id, level);
    assert.equal(expected.size, 241);
    const seen = new Map<string, string>();
    for (const row of ROWS) {
      assert.ok(!seen.has(row.id), `${row.id} has two rows`);
      seen.set(row.id, row.level);
    }
    const missing = [...expected.keys()].filter((id) => !seen.has(id));
    const extra = [...seen.keys()].filter((id) => !expected.has(id));
    assert.deepEqual({ missing, extra }, { missing: [], extra: [] });
    for (const [id, level] of expected) assert.equal(seen.get(id), level, `level of ${id}`);
  });

  it('declares V10 and V17 not applicable as a whole', () => {
    assert.match(MAP, /## V10 OAuth and OIDC\s+n\/a:/);
    assert.match(MAP, /## V17 WebRTC\s+n\/a:/);
  });

  it('gives every row a known status, and code and a test for every met or partly', () => {
    const problems: string[] = [];
    for (const row of ROWS) {
      if (!STATUSES.has(row.status)) problems.push(`${row.id}: status "${row.status}"`);
      if (row.status !== 'met' && row.status !== 'partly') continue;
      const paths = pathsIn(row.evidence);
      if (!paths.some((p) => !p.startsWith('test/'))) problems.push(`${row.id}: names no code`);
      if (!paths.some((p) => p.startsWith('test/') || p === 'scripts/security/'))
        problems.push(`${row.id}: names no test`);
    }
    assert.deepEqual(problems, []);
  });

  it('names only paths that exist', () => {
    const gone = [...new Set(pathsIn(MAP))].filter((p) => !existsSync(join(ROOT, p)));
    assert.deepEqual(gone, []);
  });

  it('lists the requirements not met in its summary', () => {
    const summary = MAP.slice(MAP.indexOf('## Summary'));
    assert.ok(summary.length < MAP.length, 'the map has a summary');
    for (const row of ROWS.filter((r) => r.status === 'not met')) {
      assert.ok(summary.includes(row.id), `${row.id} is not met but not in the summary`);
    }
  });
});
