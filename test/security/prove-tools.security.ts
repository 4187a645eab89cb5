/**
 * Each check of test:security catches a deliberately weakened build: the same functions that judge
 * the real stack (tls-scan, port-scan, sql-scan, web-scan, fuzzer, supply-chain) are run against a
 * test-only server or file with one flaw (weak-servers.ts), and each must report it. A check that
 * passes here has been shown able to fail; without this, a scanner that saw nothing (blind, wrong
 * port, crashed, misparsed) would look like a clean result.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { fuzz } from './fuzzer.ts';
import { nmapScan, openPorts } from './port-scan.ts';
import { sqlmapScan, sqlTargets } from './sql-scan.ts';
import { exceptionProblems, licenceProblems, lockfileProblems, REGISTRY } from './supply-chain.ts';
import { type OpenApiDocument, operationsOf } from './targets.ts';
import { type ScanResult, sslscan, testssl } from './tls-scan.ts';
import {
  extraListener,
  reflectingServer,
  sqlConcatServer,
  THROWING_API_DOCUMENT,
  throwingApiServer,
  weakTlsServer,
} from './weak-servers.ts';
import { wapitiScan } from './web-scan.ts';

/** The weakened servers' ports: 18710–18719 of the security run's range. */
const PORT = { tls: 18710, extra: 18711, sql: 18712, web: 18713, fuzz: 18714 };
const ROOT = join(import.meta.dirname, '..', '..');

function caught(t: TestContext, tool: string, result: ScanResult, expected: RegExp[]): void {
  for (const f of result.findings) t.diagnostic(`${tool} caught: ${f.slice(0, 300)}`);
  for (const want of expected) {
    assert.ok(
      result.findings.some((f) => want.test(f)),
      `${tool} did not report ${want} on the weakened build; its findings: ${JSON.stringify(result.findings)}`,
    );
  }
}

describe('each tool catches a deliberately weakened build', () => {
  it('testssl.sh and sslscan: TLS 1.0, a CBC/SHA-1 suite and no HSTS', async (t) => {
    const weak = await weakTlsServer(PORT.tls);
    try {
      const target = `127.0.0.1:${weak.port}`;
      caught(t, 'testssl', await testssl(target, 'weak-testssl', ['-p', '-s', '-h']), [
        /^TLS1: offered/,
        /^HSTS/,
      ]);
      caught(t, 'sslscan', await sslscan(target, 'weak-sslscan'), [
        /protocol tls 1\.0 enabled/,
        /weak cipher .*ECDHE-ECDSA-AES128-SHA\b/,
      ]);
    } finally {
      await weak.close();
    }
  });

  it('nmap: a port beside the intended one', async (t) => {
    const baseline = openPorts();
    const intended = await weakTlsServer(PORT.tls);
    const extra = await extraListener(PORT.extra);
    try {
      const result = await nmapScan({
        intended: [intended.port],
        baseline,
        stackRoot: process.pid,
        name: 'weak-nmap',
      });
      caught(t, 'nmap', result, [new RegExp(`:${PORT.extra} .*listens for the stack`)]);
      assert.ok(!result.findings.some((f) => f.includes('was blind')), 'the intended port was found');
    } finally {
      await extra.close();
      await intended.close();
    }
  });

  it('sqlmap: a route whose SQL is built by concatenation; a route that refuses every request', async (t) => {
    const weak = await sqlConcatServer(PORT.sql);
    try {
      const doc: OpenApiDocument = {
        paths: {
          '/v1/weak/people/{id}': {
            get: { parameters: [{ in: 'path', name: 'id', schema: { type: 'string' } }] },
          },
          '/v1/weak/people': {
            get: { parameters: [{ in: 'query', name: 'id', schema: { type: 'string' } }] },
          },
          '/v1/weak/locked': {
            get: { parameters: [{ in: 'query', name: 'id', schema: { type: 'string' } }] },
          },
        },
      };
      const ops = operationsOf(doc, (key) => (key.includes('locked') ? 'api-key' : 'none'));
      const targets = sqlTargets(weak.url, ops, { id: 'p1' });
      const result = await sqlmapScan(targets, { tenantKeys: ['none'], sessions: [] }, 'weak-sqlmap');
      caught(t, 'sqlmap', result, [
        /GET \/v1\/weak\/people\/\{id\}: .*injectable|is vulnerable/,
        /GET \/v1\/weak\/people: /,
        // A target refused throughout is a failure, not a pass: the scan there proved nothing.
        /GET \/v1\/weak\/locked: \d+ of \d+ answers were 401\/403\/429 .*proved nothing/,
      ]);
    } finally {
      await weak.close();
    }
  });

  it('wapiti: a page reflecting its query into HTML, without security headers', async (t) => {
    const weak = await reflectingServer(PORT.web);
    try {
      const result = await wapitiScan({
        origin: weak.url,
        startPaths: ['/search?q=hello'],
        maxScanSeconds: 180,
        name: 'weak-wapiti',
      });
      caught(t, 'wapiti', result, [/Cross Site Scripting/]);
    } finally {
      await weak.close();
    }
  });

  it('the fuzzer: a handler that throws on a hostile value (500)', async (t) => {
    const weak = await throwingApiServer(PORT.fuzz);
    try {
      const ops = operationsOf(THROWING_API_DOCUMENT as unknown as OpenApiDocument, () => 'none');
      const report = await fuzz({
        origin: weak.url,
        ca: weak.ca as Buffer,
        ops,
        creds: { tenantKey: '', session: () => ({ cookie: '', csrf: '' }) },
        perOperation: 40,
        seed: 1,
      });
      caught(t, 'fuzzer', { findings: report.findings, notices: [], reports: [] }, [
        /POST \/v1\/things .*: 500/,
      ]);
    } finally {
      await weak.close();
    }
  });

  it('supply chain: a disallowed licence, a package without integrity, an expired exception', (t) => {
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { integrity?: string; resolved?: string }>;
    };
    const [first] = Object.keys(lock.packages).filter((k) => k !== '');
    const copy = structuredClone(lock);
    delete (copy.packages[first as string] as { integrity?: string }).integrity;
    copy.packages['node_modules/from-elsewhere'] = {
      resolved: 'https://example.test/from-elsewhere-1.0.0.tgz',
      integrity: `sha512-${'A'.repeat(86)}==`,
    };
    caught(t, 'lockfile', { ...lockfileProblems(copy, REGISTRY), reports: [] }, [
      new RegExp(`${first}: no sha512 integrity`),
      /from-elsewhere: resolved from https:\/\/example\.test/,
    ]);

    const dir = mkdtempSync(join(tmpdir(), 'scanners-licence-'));
    try {
      const pkg = join(dir, 'copyleft');
      mkdirSync(pkg);
      writeFileSync(
        join(pkg, 'package.json'),
        JSON.stringify({ name: 'copyleft', version: '1.0.0', license: 'GPL-3.0-only' }),
      );
      caught(t, 'licences', { ...licenceProblems([pkg], new Set(['MIT'])), reports: [] }, [
        /copyleft@1\.0\.0: licence GPL-3\.0-only is not on the allowlist/,
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    const expired = exceptionProblems(
      [
        {
          advisory: 'GHSA-xxxx-xxxx-xxxx',
          package: 'left-pad',
          reason: 'not reachable',
          expires: '2020-01-01',
        },
      ],
      new Date(),
    );
    caught(t, 'audit exceptions', { findings: expired, notices: [], reports: [] }, [/expired on 2020-01-01/]);
  });
});
