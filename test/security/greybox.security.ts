/**
 * The greybox matrix against a real server (issue 20): the compiled build as production runs it
 * (test/security/stack.ts, production rate limits) on this suite's ports, real credentials of every
 * kind (greybox-fixtures.ts), every route × every caller × own/other tenant judged against the
 * declarations in test/security/greybox/ (greybox-matrix.ts), the table printed and written to the
 * reports folder; then the attack probes, each against the same server.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { STEP_UP_MAX_AGE_MS } from '../../src/http/layers/second-factor.ts';
import { SESSION_COOKIE } from '../helpers/console.ts';
import { DECLARATIONS } from './greybox/index.ts';
import type { Fixtures } from './greybox-declare.ts';
import { type GreyboxWorld, greyboxWorld, type Person } from './greybox-fixtures.ts';
import { coverage, renderMatrix, routeTable, runMatrix, send } from './greybox-matrix.ts';
import { plainRequest, rawRequest, trickle } from './greybox-raw.ts';
import { reportPath } from './reports.ts';
import { type SecurityStack, startSecurityStack } from './stack.ts';

/** This suite's ports: 18800 (HTTPS API) and 18801 (the plain-HTTP redirect listener). */
const PORT = 18800;
const REDIRECT_PORT = 18801;
/** Lowered from the defaults (10 s, 30 s) so the slow-client probes finish quickly. */
const HEADERS_TIMEOUT_MS = 3000;
const REQUEST_TIMEOUT_MS = 6000;

describe('greybox: every route × every caller against a real server, and the attack probes', () => {
  let sec: SecurityStack;
  let world: GreyboxWorld;
  let f: Fixtures;
  let ca: Buffer;
  const get = (path: string, headers: Record<string, string> = {}) => send(sec.url, ca, 'GET', path, headers);
  const post = (path: string, headers: Record<string, string>, body: unknown, method = 'POST') =>
    send(sec.url, ca, method, path, headers, body);
  const keyA = () => ({ authorization: `Bearer ${world.keys.admin}` });
  const sessionHeaders = (p: Person, extra: Record<string, string> = {}) => ({
    cookie: `${SESSION_COOKIE}=${p.session.cookie}`,
    'x-csrf-token': p.session.csrf,
    ...extra,
  });

  before(async () => {
    sec = await startSecurityStack(PORT, {
      TRESOR_REDIRECT_PORT: String(REDIRECT_PORT),
      TRESOR_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      TRESOR_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      // Request logs (the log-injection probe reads them).
      TRESOR_LOG_LEVEL: 'info',
      // The matrix's public sign-in cells fail on purpose from one address; the per-address
      // sign-in delay would only slow them (the request rate limits stay at production values).
      TRESOR_LOGIN_ADDRESS_DELAY_AFTER: '100000',
    });
    ca = readFileSync(sec.stack.caFile);
    world = await greyboxWorld(sec);
    f = world.fixtures;
  });

  after(async () => {
    await sec?.stack.stop();
  });

  it('declares every registered route and nothing else (test/security/greybox/<module>.ts)', async () => {
    const routes = routeTable();
    assert.deepEqual(coverage(routes, DECLARATIONS), []);
    // The compiled server serves what the route table says: every operation of its OpenAPI document is declared.
    const doc = (await get('/v1/openapi.json')).text;
    const served = Object.entries(JSON.parse(doc).paths as Record<string, Record<string, unknown>>).flatMap(
      ([path, methods]) =>
        Object.keys(methods).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
    );
    const keys = new Set(routes.map((r) => r.key));
    assert.deepEqual(
      served.filter((k) => !keys.has(k)),
      [],
      'served operations missing from the route table',
    );
  });

  it('gives every cell the declared outcome, on the real server with real credentials', async () => {
    const routes = routeTable();
    const run = await runMatrix({
      origin: sec.url,
      ca,
      routes,
      declared: DECLARATIONS,
      fixtures: f,
      headersOf: world.headersOf,
      staleReady: async () => {
        const wait = world.staleSince + STEP_UP_MAX_AGE_MS + 5000 - Date.now();
        if (wait > 0) await sleep(wait);
      },
    });
    const table = renderMatrix(routes, run.cells);
    const wrong = run.cells.filter((c) => !c.ok);
    const summary = `${run.cells.length} cells, ${routes.length} routes, ${wrong.length} not as declared, ${Math.round(run.durationMs / 1000)} s`;
    writeFileSync(reportPath('greybox-matrix.txt'), `${table}\n\n${summary}\n`);
    console.log(`${table}\n${summary}`);
    for (const secret of world.secrets()) assert.ok(!table.includes(secret), 'no credential in the table');
    assert.deepEqual(
      wrong.map(
        (c) => `${c.route} × ${c.caller} (${c.side}): expected ${c.expected}, got ${c.got} ${c.status}`,
      ),
      [],
    );
  });

  it('IDOR: guessed ids and the other tenant’s ids answer 404, never the other tenant’s data', async () => {
    const guesses = [f.b.record, f.ghost.record, `rec_${'0'.repeat(32)}`, `rec_${'f'.repeat(32)}`];
    for (const id of guesses) {
      for (const method of ['GET', 'PATCH', 'DELETE']) {
        const res = await send(
          sec.url,
          ca,
          method,
          `/v1/collections/${f.a.collection}/records/${id}`,
          keyA(),
          method === 'PATCH' ? { visits: 1 } : undefined,
        );
        assert.equal(res.status, 404, `${method} ${id}: ${res.status}`);
        assert.ok(!res.text.includes(f.b.canary));
      }
    }
    // B's record is intact.
    const own = await get(`/v1/collections/${f.b.collection}/records/${f.b.record}`, {
      authorization: `Bearer ${world.keys.b}`,
    });
    assert.equal(own.status, 200);
    assert.ok(own.text.includes(f.b.canary));
    // Tenant A's admin never sees tenant B's people or grants.
    const tadmin = world.people['tenant-admin'] as Person;
    for (const path of [
      `/v1/people/${f.b.member}`,
      `/v1/grants/${f.b.grant}`,
      `/v1/people/${f.ghost.person}`,
    ]) {
      const res = await get(path, sessionHeaders(tadmin));
      assert.ok([403, 404].includes(res.status), `${path}: ${res.status}`);
      assert.ok(!res.text.includes('beta.test'), `${path} shows nothing of tenant B`);
    }
  });

  it('mass assignment: fields a caller may not set are refused with 400 and change nothing', async () => {
    const keysBefore = (await get('/v1/api-keys', keyA())).text;
    const attempts: [string, string, Record<string, string>, unknown][] = [
      ['POST', '/v1/api-keys', keyA(), { collections: '*', access: ['read'], tenant: f.b.tenant }],
      [
        'POST',
        '/v1/api-keys',
        keyA(),
        { collections: '*', access: ['read'], id: 'ak_0123', tenantId: f.b.tenant },
      ],
      [
        'POST',
        `/v1/collections/${f.a.collection}/records`,
        keyA(),
        { email: 'x@example.test', id: f.b.record },
      ],
      [
        'POST',
        `/v1/collections/${f.a.collection}/records`,
        keyA(),
        { email: 'x@example.test', tenantId: f.b.tenant },
      ],
      ['PATCH', `/v1/collections/${f.a.collection}/records/${f.a.record}`, keyA(), { id: f.ghost.record }],
      [
        'PATCH',
        `/v1/people/${f.a.member}`,
        sessionHeaders(world.people['tenant-admin'] as Person),
        { role: 'tenant-admin', tenant: f.b.tenant },
      ],
      [
        'PATCH',
        `/v1/people/${f.a.member}`,
        sessionHeaders(world.people['tenant-admin'] as Person),
        { role: 'tenant-member', side: 'operator' },
      ],
      [
        'POST',
        '/v1/grants',
        sessionHeaders(world.people.staff as Person),
        {
          tenant: f.a.tenant,
          collections: '*',
          access: 'read',
          reason: 'x reason text',
          ticket: 'T-1',
          state: 'active',
        },
      ],
    ];
    for (const [method, path, headers, body] of attempts) {
      const res = await post(path, headers, body, method);
      assert.equal(
        res.status,
        400,
        `${method} ${path} ${JSON.stringify(Object.keys(body as object))}: ${res.status} ${res.text.slice(0, 200)}`,
      );
    }
    assert.equal((await get('/v1/api-keys', keyA())).text, keysBefore, 'no key made');
    const member = await get(
      `/v1/people/${f.a.member}`,
      sessionHeaders(world.people['tenant-admin'] as Person),
    );
    assert.match(member.text, /"role":"tenant-member"/);
  });
});
