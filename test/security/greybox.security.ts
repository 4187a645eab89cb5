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
        // `{name}` as `:name`, a trailing wildcard `/{*}` (the audit tiles) as the route's `/*`.
        Object.keys(methods).map(
          (m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1').replace(/\/\{\*\}$/, '/*')}`,
        ),
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
      contextOf: world.contextOf,
      renew: world.renew,
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
    if (wrong.some((c) => c.route === 'POST /v1/auth/reauthenticate')) {
      // Why the step-ups were refused, as the audit log recorded it (reasons and ids only).
      const audit = await get(
        '/v1/audit/entries?limit=1000',
        await world.headersOf('token:audit:read', 'GET'),
      );
      const entries = (
        JSON.parse(audit.text) as { entries?: { entry: { action?: string; outcome?: string } }[] }
      ).entries;
      const refused = (entries ?? []).filter(
        (e) => e.entry.action === 'auth.reauthenticate' && e.entry.outcome !== 'success',
      );
      console.log(`step-up refusals (${audit.status}):`, JSON.stringify(refused.slice(-4)));
    }
    assert.deepEqual(
      wrong.map(
        (c) =>
          `${c.route} × ${c.caller} (${c.side}): expected ${c.expected}, got ${c.got} ${c.status} ${c.code ?? ''} ${c.detail ?? ''}`,
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
          { ...keyA(), ...(method === 'GET' ? {} : { 'if-match': '"1"' }) },
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
    // The record's current version, so a PATCH reaches its body's validation (412 otherwise).
    const etag = String(
      (await get(`/v1/collections/${f.a.collection}/records/${f.a.record}`, keyA())).headers.etag ?? '"1"',
    );
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
      [
        'PATCH',
        `/v1/collections/${f.a.collection}/records/${f.a.record}`,
        { ...keyA(), 'if-match': etag },
        { id: f.ghost.record },
      ],
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
        { role: 'tenant-admin', side: 'operator' },
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
      const what = `${method} ${path} ${JSON.stringify(Object.keys(body as object))}: ${res.status} ${res.text.slice(0, 200)}`;
      // 422 TRESOR_ERR_UNKNOWN_FIELDS: a field the operation does not have; 400: a value it refuses.
      assert.ok(res.status === 422 || res.status === 400, what);
      if (res.status === 422) assert.match(res.text, /TRESOR_ERR_UNKNOWN_FIELDS/, what);
    }
    assert.equal((await get('/v1/api-keys', keyA())).text, keysBefore, 'no key made');
    const member = await get(
      `/v1/people/${f.a.member}`,
      sessionHeaders(world.people['tenant-admin'] as Person),
    );
    assert.match(member.text, /"role":"tenant-admin"/);
  });

  it('prototype pollution: __proto__ and constructor.prototype keys are refused, nothing is polluted', async () => {
    const path = `/v1/collections/${f.a.collection}/records`;
    const bodies = [
      '{"email":"p1@example.test","__proto__":{"polluted":"yes"}}',
      '{"email":"p2@example.test","constructor":{"prototype":{"polluted":"yes"}}}',
      '{"__proto__":{"isAdmin":true},"collections":"*","access":["read"]}',
    ];
    for (const raw of bodies) {
      for (const target of [path, '/v1/api-keys']) {
        const res = await sec.stack.request('POST', target, { token: world.keys.admin, rawBody: raw });
        assert.equal(res.status, 400, `${target} ${raw}: ${res.status} ${res.text.slice(0, 200)}`);
      }
    }
    const list = await get(`${path}?limit=100`, keyA());
    assert.equal(list.status, 200);
    assert.ok(!list.text.includes('polluted') && !list.text.includes('p1@example.test'), 'nothing stored');
    // A later answer built from plain objects shows no inherited property.
    const session = await get('/v1/auth/session', sessionHeaders(world.people['tenant-admin'] as Person));
    assert.equal(session.status, 200);
    assert.ok(!session.text.includes('polluted') && !session.text.includes('isAdmin'));
  });

  it('huge bodies answer 413 and deeply nested JSON 400; the server is alive after', async () => {
    const path = `/v1/collections/${f.a.collection}/records`;
    const huge = `{"email":"h@example.test","note":"${'x'.repeat(2 * 1024 * 1024)}"}`;
    const big = await sec.stack.request('POST', path, { token: world.keys.admin, rawBody: huge });
    assert.equal(big.status, 413, big.text.slice(0, 200));
    const deep = `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`;
    const nested = await sec.stack.request('POST', path, { token: world.keys.admin, rawBody: deep });
    assert.equal(nested.status, 400, nested.text.slice(0, 200));
    const deepArray = `{"email":"d@example.test","note":${'['.repeat(50_000)}${']'.repeat(50_000)}}`;
    assert.equal(
      (await sec.stack.request('POST', path, { token: world.keys.admin, rawBody: deepArray })).status,
      400,
    );
    assert.equal((await get('/healthz')).status, 200);
    assert.equal((await get(`/v1/collections/${f.a.collection}/records/${f.a.record}`, keyA())).status, 200);
  });

  it('slowloris: headers sent byte by byte and a body trickled are cut by the server’s timeouts', async () => {
    const limitMs = 60_000;
    const head = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${PORT}\r\nX-Slow: `;
    const slowHeaders = await trickle({
      port: PORT,
      ca,
      chunks: head.split(''),
      filler: 'a',
      everyMs: 250,
      limitMs,
    });
    assert.ok(
      slowHeaders.closedByServer,
      `the server kept a connection whose headers never ended (${slowHeaders.elapsedMs} ms)`,
    );
    const body = `POST /v1/collections/${f.a.collection}/records HTTP/1.1\r\nHost: 127.0.0.1:${PORT}\r\nAuthorization: Bearer ${world.keys.admin}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"email":"`;
    const slowBody = await trickle({ port: PORT, ca, chunks: [body], filler: 'a', everyMs: 250, limitMs });
    assert.ok(
      slowBody.closedByServer,
      `the server kept a connection whose body never ended (${slowBody.elapsedMs} ms)`,
    );
    assert.ok(!slowBody.received.includes('201'), 'no record made from a partial body');
    assert.equal((await get('/healthz')).status, 200);
  });

  it('CRLF and log injection: a newline in a header or a value never splits an answer or a log line', async () => {
    const crlf = await rawRequest(
      PORT,
      ca,
      `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${PORT}\r\nX-Evil: a\rInjected: yes\r\nConnection: close\r\n\r\n`,
    );
    assert.match(crlf, /^HTTP\/1\.1 400/, 'a bare CR inside a header value is refused');
    const marker = `gbinject${Date.now()}`;
    const before = sec.stack.serverOutput().length;
    await get(`/v1/collections/${f.a.collection}/records?cursor=x%0D%0A${marker}%0A{"level":50}`, keyA());
    await get(`/v1/collections/${f.a.collection}/records/%0A${marker}`, keyA());
    await sec.stack.request('POST', '/v1/auth/login', {
      body: { side: 'operator', email: `a\n${marker}@x.test`, password: 'pw' },
      headers: { 'user-agent': `ua ${marker}\tend` },
    });
    await sleep(500);
    const lines = sec.stack
      .serverOutput()
      .slice(before)
      .split('\n')
      .filter((l) => l.length > 0);
    assert.ok(lines.length > 0, 'the requests were logged');
    for (const line of lines) {
      assert.ok(
        !line.startsWith(marker) && !line.startsWith('{"level":50}'),
        `a forged log line: ${line.slice(0, 200)}`,
      );
      if (line.startsWith('{'))
        assert.doesNotThrow(
          () => JSON.parse(line),
          `a log line that is not one JSON object: ${line.slice(0, 200)}`,
        );
    }
    // An answer never carries a header a request value made.
    const res = await get(
      `/v1/collections/${f.a.collection}/records?cursor=%0D%0ASet-Cookie:%20evil=1`,
      keyA(),
    );
    assert.equal(res.headers['set-cookie'], undefined);
  });

  it('open redirect: every redirect stays on the server’s own origin', async () => {
    for (const target of [
      '/signin',
      '//evil.example/x',
      '/\\evil.example',
      '/%2F%2Fevil.example',
      'http://evil.example/',
    ]) {
      const answer = await plainRequest(
        REDIRECT_PORT,
        `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${REDIRECT_PORT}\r\nConnection: close\r\n\r\n`,
      );
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);
      assert.ok(status === 301 || (status >= 400 && status < 500), `${target}: ${answer.slice(0, 100)}`);
      const location = /\r\nlocation: ([^\r\n]*)/i.exec(answer)?.[1];
      if (location !== undefined) {
        assert.equal(new URL(location).origin, `https://127.0.0.1:${PORT}`, `${target} → ${location}`);
      }
    }
    // The HTTPS side: the sign-in page with a foreign `next` does not redirect off the origin.
    for (const path of [
      '/signin?next=https://evil.example/',
      '/signin?returnTo=//evil.example',
      '/docs?url=https://evil.example/',
    ]) {
      const res = await get(path);
      const location = res.headers.location;
      if (typeof location === 'string')
        assert.equal(new URL(location, sec.url).origin, sec.url, `${path} → ${location}`);
    }
  });

  it('cookie flags: the session cookie is __Host-, Secure, HttpOnly, SameSite=Strict, Path=/ and has no Domain', async () => {
    const probe = world.people['login-probe'] as Person;
    const begun = await post(
      '/v1/auth/login',
      {},
      { side: 'operator', email: probe.account.email, password: f.loginPassword },
    );
    assert.equal(begun.status, 200, begun.text);
    const handle = JSON.parse(begun.text).handle as string;
    const done = await post(
      '/v1/auth/login/second-factor',
      {},
      { handle, totp: await world.c.nextCode(probe.account.secret) },
    );
    assert.equal(done.status, 200, done.text);
    const cookies = ([] as string[]).concat(done.headers['set-cookie'] ?? []);
    assert.equal(cookies.length, 1, 'one cookie');
    const cookie = cookies[0] as string;
    assert.ok(cookie.startsWith(`${SESSION_COOKIE}=`), '__Host- prefix');
    const attrs = cookie
      .split(';')
      .slice(1)
      .map((a) => a.trim().toLowerCase());
    assert.ok(attrs.includes('secure'), cookie.replace(/=[^;]+/, '=…'));
    assert.ok(attrs.includes('httponly'));
    assert.ok(attrs.includes('samesite=strict'));
    assert.ok(attrs.includes('path=/'));
    assert.ok(!attrs.some((a) => a.startsWith('domain=')));
  });

  it('every HTML page carries a CSP with frame-ancestors and X-Frame-Options (no clickjacking)', async () => {
    for (const path of ['/signin', '/trust', '/docs']) {
      const res = await get(path);
      assert.equal(res.status, 200, path);
      assert.match(String(res.headers['content-type']), /text\/html/, path);
      const csp = String(res.headers['content-security-policy'] ?? '');
      assert.match(csp, /frame-ancestors 'none'/, `${path}: ${csp}`);
      assert.match(csp, /default-src|script-src/, `${path}: ${csp}`);
      assert.doesNotMatch(csp, /script-src[^;]*'unsafe-inline'/, `${path}: inline scripts allowed`);
      assert.equal(String(res.headers['x-frame-options']).toUpperCase(), 'DENY', path);
      assert.equal(res.headers['x-content-type-options'], 'nosniff', path);
    }
  });

  it('CSRF: every cookie-authenticated change is refused without the token and from a foreign origin, before any effect', async () => {
    const operator = await world.headersOf('operator', 'POST');
    const tadmin = world.people['tenant-admin'] as Person;
    // Both sessions work: the refusals below are for the missing token or the origin, not a dead session.
    assert.equal((await get('/v1/auth/session', operator)).status, 200);
    assert.equal((await get('/v1/auth/session', sessionHeaders(tadmin))).status, 200);
    const routes = routeTable().filter((r) => !r.key.startsWith('GET '));
    let checked = 0;
    for (const r of routes) {
      const decl = DECLARATIONS[r.module]?.[r.key];
      if (!decl || decl.allow === 'everyone') continue;
      const method = r.key.split(' ')[0] as string;
      const req = await decl.own(f, world.contextOf('operator'));
      for (const base of [operator, sessionHeaders(tadmin)]) {
        const { 'x-csrf-token': _csrf, ...noToken } = base;
        const missing = await send(sec.url, ca, method, req.path, noToken, req.body);
        assert.equal(missing.status, 403, `${r.key} without the CSRF token: ${missing.status}`);
        const foreign = await send(
          sec.url,
          ca,
          method,
          req.path,
          { ...base, origin: 'https://evil.example' },
          req.body,
        );
        assert.equal(foreign.status, 403, `${r.key} from a foreign origin: ${foreign.status}`);
        const wrong = await send(
          sec.url,
          ca,
          method,
          req.path,
          { ...base, 'x-csrf-token': 'A'.repeat(43) },
          req.body,
        );
        assert.equal(wrong.status, 403, `${r.key} with another token: ${wrong.status}`);
        checked += 1;
      }
    }
    assert.ok(checked > 40, `${checked} routes checked`);
    // Nothing happened: the sessions still work.
    assert.equal((await get('/v1/auth/session', sessionHeaders(tadmin))).status, 200);
  });

  it('session fixation: a session id chosen by the client is never adopted; login and step-up issue new ones', async () => {
    const probe = world.people['login-probe'] as Person;
    const planted = 'A'.repeat(43);
    const begun = await post(
      '/v1/auth/login',
      { cookie: `${SESSION_COOKIE}=${planted}` },
      { side: 'operator', email: probe.account.email, password: f.loginPassword },
    );
    assert.equal(begun.status, 200, begun.text);
    const done = await post(
      '/v1/auth/login/second-factor',
      { cookie: `${SESSION_COOKIE}=${planted}` },
      {
        handle: JSON.parse(begun.text).handle,
        totp: await world.c.nextCode(probe.account.secret),
      },
    );
    assert.equal(done.status, 200, done.text);
    const issued = /=([A-Za-z0-9_-]{43});/.exec(String(done.headers['set-cookie']))?.[1] as string;
    assert.ok(issued && issued !== planted, 'a new id at login');
    assert.equal((await get('/v1/auth/session', { cookie: `${SESSION_COOKIE}=${planted}` })).status, 401);
    const csrf = JSON.parse(done.text).csrfToken as string;
    const stepped = await post(
      '/v1/auth/reauthenticate',
      { cookie: `${SESSION_COOKIE}=${issued}`, 'x-csrf-token': csrf },
      {
        totp: await world.c.nextCode(probe.account.secret),
      },
    );
    assert.equal(stepped.status, 200, stepped.text);
    const renewed = /=([A-Za-z0-9_-]{43});/.exec(String(stepped.headers['set-cookie']))?.[1] as string;
    assert.ok(renewed && renewed !== issued, 'a new id at step-up');
    assert.equal(
      (await get('/v1/auth/session', { cookie: `${SESSION_COOKIE}=${issued}` })).status,
      401,
      'the old id is dead',
    );
    assert.equal((await get('/v1/auth/session', { cookie: `${SESSION_COOKIE}=${renewed}` })).status, 200);
  });

  it('TOTP replay: a code accepted once is refused at its second use within its window', async () => {
    const probe = world.people['login-probe'] as Person;
    const code = await world.c.nextCode(probe.account.secret);
    const begin = async () => {
      const res = await post(
        '/v1/auth/login',
        {},
        { side: 'operator', email: probe.account.email, password: f.loginPassword },
      );
      assert.equal(res.status, 200, res.text);
      return JSON.parse(res.text).handle as string;
    };
    const first = await post('/v1/auth/login/second-factor', {}, { handle: await begin(), totp: code });
    assert.equal(first.status, 200, first.text);
    const replay = await post('/v1/auth/login/second-factor', {}, { handle: await begin(), totp: code });
    assert.equal(replay.status, 401, `a replayed code: ${replay.status}`);
    assert.equal(replay.headers['set-cookie'], undefined);
    // And inside a session: the step-up refuses the code the login just spent.
    const cookie = /=([A-Za-z0-9_-]{43});/.exec(String(first.headers['set-cookie']))?.[1] as string;
    const again = await post(
      '/v1/auth/reauthenticate',
      { cookie: `${SESSION_COOKIE}=${cookie}`, 'x-csrf-token': JSON.parse(first.text).csrfToken },
      { totp: code },
    );
    assert.equal(again.status, 401, `a replayed code at step-up: ${again.status}`);
  });
});
