/**
 * Tresor attacked from outside: one production-like stack (stack.ts: the compiled build, the
 * production rate limits, a dev-CA certificate, HSTS), seeded with a tenant, its admin key and a
 * collection with records, then each tool in turn. Each test fails on any finding of its tool; its
 * notices (expected with the dev CA, or informational) are printed as diagnostics, and its reports
 * are kept under reports/security/.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it, type TestContext } from 'node:test';
import { consoleClient, operatorAdmin, SESSION_COOKIE } from '../helpers/console.ts';
import { fuzz } from './fuzzer.ts';
import { nmapScan, openPorts } from './port-scan.ts';
import { type SqlCredentials, type SqlSession, sqlmapScan, sqlTargets } from './sql-scan.ts';
import { SEEDED_SCHEMA, type SecurityStack, startSecurityStack } from './stack.ts';
import { type OpenApiDocument, operationsOf, sessionEndingLast } from './targets.ts';
import { type ScanResult, sslscan, testssl } from './tls-scan.ts';
import { wapitiScan } from './web-scan.ts';

/** Prints a tool's notices and reports, then fails on its findings. */
function judge(t: TestContext, tool: string, result: ScanResult): void {
  for (const n of result.notices.slice(0, 60)) t.diagnostic(`${tool} notice: ${n}`);
  if (result.notices.length > 60)
    t.diagnostic(`${tool}: ${result.notices.length - 60} more notices in the report`);
  for (const r of result.reports) t.diagnostic(`${tool} report: ${r}`);
  assert.deepEqual(result.findings, [], `${tool} found ${result.findings.length} problem(s)`);
}

describe('Tresor attacked by third-party scanners and the fuzzer', () => {
  let s: SecurityStack;
  let baseline: Set<number>;
  let doc: OpenApiDocument;
  let seeded: string;
  let ca: Buffer;
  const target = () => `127.0.0.1:${s.port}`;
  const session = () => ({
    cookie: `${SESSION_COOKIE}=${s.admin.session.cookie}`,
    csrf: s.admin.session.csrf,
  });

  before(
    async () => {
      baseline = openPorts();
      s = await startSecurityStack();
      ca = readFileSync(s.stack.caFile);
      const res = await s.stack.request('GET', '/v1/openapi.json');
      assert.equal(res.status, 200);
      doc = res.json<OpenApiDocument>();
      seeded = await s.snapshot();
    },
    { timeout: 10 * 60_000 },
  );

  after(async () => {
    await s?.stack.stop();
  });

  it('testssl.sh: nothing below TLS 1.2, no weak cipher or curve, no TLS vulnerability, HSTS', async (t) => {
    judge(t, 'testssl', await testssl(target()));
  });

  it('sslscan: only TLS 1.2 and 1.3, only AEAD suites with ECDHE, groups of 128 bits or more', async (t) => {
    judge(t, 'sslscan', await sslscan(target()));
  });

  it('nmap -sV -p- on every address: only the API port listens for Tresor; keyd and the stores on none', async (t) => {
    judge(t, 'nmap', await nmapScan({ intended: [s.port], baseline, stackRoot: process.pid }));
  });

  it('sqlmap on every parameterised route (path, query, JSON body): no injection', async (t) => {
    const key = s.tenant.apiKey;
    // A scratch collection with records of its own: sqlmap's baseline requests include writes
    // (PATCH, DELETE), which must not touch the seeded data.
    const put = await s.stack.request('PUT', '/v1/collections/scratch', { token: key, body: SEEDED_SCHEMA });
    assert.ok(put.status === 200 || put.status === 201, put.text);
    const recordIds: string[] = [];
    for (let i = 0; i < 3; i++) {
      const rec = await s.stack.request('POST', '/v1/collections/scratch/records', {
        token: key,
        body: { email: `scratch${i}@example.test`, note: 'scratch', visits: i },
      });
      assert.equal(rec.status, 201, rec.text);
      recordIds.push(rec.json<{ id: string }>().id);
    }
    // A second key, so two sqlmap processes each stay within the per-credential rate limit.
    const second = await s.stack.request('POST', '/v1/api-keys', {
      token: key,
      body: { label: 'sqlmap', access: ['read', 'write', 'admin'], collections: '*' },
    });
    const keys = second.status === 201 ? [key, second.json<{ token: string }>().token] : [key];
    if (second.status !== 201)
      t.diagnostic(`a second key could not be made (${second.status}): one sqlmap worker`);
    // The console sessions: the operator admin, and one person of each other role whose routes
    // answer 403 to the admin (alerts and access reviews: the security officer; access requests:
    // a support agent; approvals: the tenant's admin). Each is stepped up by the scan as it goes.
    const sessions: SqlSession[] = [
      {
        role: 'operator-admin',
        current: () => ({
          cookie: `${SESSION_COOKIE}=${s.admin.session.cookie}`,
          csrf: s.admin.session.csrf,
        }),
        stepUp: () => s.admin.stepUp(),
      },
    ];
    const people = consoleClient(s.stack);
    for (const [side, role] of [
      ['operator', 'security-officer'],
      ['operator', 'support-agent'],
      ['customer', 'tenant-admin'],
    ] as const) {
      const account = await people.createAndEnrol({
        side,
        role,
        email: `sqlmap-${role}@example.test`,
        ...(side === 'customer' ? { tenant: s.tenant.id } : {}),
      });
      let current = await people.login(account);
      sessions.push({
        role,
        current: () => ({ cookie: `${SESSION_COOKIE}=${current.cookie}`, csrf: current.csrf }),
        async stepUp() {
          current = people.sessionOf(
            await people.as(current, 'POST', '/v1/auth/reauthenticate', {
              totp: await people.nextCode(account.secret),
            }),
          );
        },
      });
    }
    const admin = await operatorAdmin(s.stack);
    const tokens = new Map<string, Promise<string>>();
    const ops = operationsOf(doc).filter((o) => o.key !== 'GET /v1/audit/stream');
    const targets = sqlTargets(s.url, ops, {
      name: 'scratch',
      id: recordIds[2] as string,
      restoreId: 'rst_1',
      limit: '10',
      from: '0',
      to: '1',
      index: '0',
      treeSize: '1',
      tenant: s.tenant.id,
      state: 'active',
      where: 'where[email]=scratch0%40example.test',
    });
    t.diagnostic(`sqlmap targets: ${targets.length}`);
    const creds: SqlCredentials = {
      tenantKeys: keys,
      sessions,
      origin: s.url,
      operatorToken(scope) {
        let token = tokens.get(scope);
        if (token === undefined) {
          token = admin.token(scope as Parameters<typeof admin.token>[0], { name: `sqlmap ${scope}` });
          tokens.set(scope, token);
        }
        return token;
      },
    };
    judge(t, 'sqlmap', await sqlmapScan(targets, creds));
  });

  it('wapiti on the console pages and the API: nothing above low', async (t) => {
    judge(
      t,
      'wapiti',
      await wapitiScan({
        origin: s.url,
        startPaths: [
          '/signin',
          '/trust',
          '/trust.json',
          '/docs',
          '/v1/openapi.json',
          '/v1/collections',
          '/v1/collections/customers/records?limit=10&cursor=',
          '/v1/audit/entries?from=0&limit=10',
          '/v1/audit/proofs/inclusion?index=0&treeSize=1',
          '/v1/audit/proofs/consistency?from=1&to=2',
          '/v1/audit/checkpoint',
          '/v1/keys',
        ],
        headers: [`Authorization: Bearer ${s.tenant.apiKey}`],
        maxScanSeconds: 300,
      }),
    );
  });

  it('the schema-driven fuzzer: every operation, hostile values: no 5xx, no dropped connection; data unchanged', async (t) => {
    await s.admin.stepUp();
    const ops = sessionEndingLast(operationsOf(doc));
    const seed = Number(process.env.TRESOR_FUZZ_SEED ?? Date.now() % 1_000_000);
    t.diagnostic(`fuzzer seed ${seed} (TRESOR_FUZZ_SEED repeats it); ${ops.length} operations`);
    const report = await fuzz({
      origin: s.url,
      ca,
      ops,
      creds: { tenantKey: s.tenant.apiKey, session },
      perOperation: 12,
      seed,
    });
    t.diagnostic(`fuzzer: ${report.requests} requests, answers ${JSON.stringify(report.statuses)}`);
    const health = await s.stack.request('GET', '/healthz');
    assert.equal(health.status, 200, 'the server is alive after the fuzzing');
    assert.equal(await s.snapshot(), seeded, 'the seeded collection and records are unchanged');
    judge(t, 'fuzzer', { findings: report.findings, notices: [], reports: [] });
  });
});
