// backends: sqlite postgres
/**
 * Console identity from outside, over real HTTPS against a real `tresor server` process and keyd,
 * with the real session cookie and CSRF header: accounts made with the operator token, enrolment
 * (TOTP codes computed by oathtool), login, the cookie's attributes, CSRF, re-authentication,
 * logout, session fixation, refused and replayed codes, no user enumeration, lockout, sessions that
 * end when an account changes, tenant confinement, session lists and revocation, factor reset — and
 * every refusal in the audit log, without a secret in it.
 *
 * One stack for the whole file (argon2id makes every password step cost); the tests run in order
 * and build on each other's accounts.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { openAuditStream } from '../helpers/audit-stream.ts';
import { operatorAdmin, operatorToken, totpCodes } from '../helpers/console.ts';
import type { HttpResponse, RequestOptions } from '../helpers/tresor-stack.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';

const COOKIE = '__Host-tresor_session';
const PASSWORD = 'violet staple orbit 4 lantern';
const LOCKOUT_THRESHOLD = 5;

interface Session {
  cookie: string;
  csrf: string;
  id: string;
}

interface Account {
  id: string;
  email: string;
  secret: string;
  recoveryCodes: string[];
}

/** Every secret the test handled: none may appear in the audit log. */
const secrets: string[] = [];

const { oathtool, nextCode } = totpCodes();

describe('console identity over HTTPS', () => {
  let s: TresorStack;
  let admin: Account;
  let adminSession: Session;
  let bob: Account;
  let carol: Account;

  const req = (method: string, path: string, options: RequestOptions = {}) =>
    s.request(method, path, options);
  /** The stack's operator admin at the console, its second factor fresh (people changes need it). */
  const op = async (method: string, path: string, body?: unknown) =>
    (await operatorAdmin(s)).request(method, path, body);
  /** A request from a console session: its cookie, and its CSRF token unless `csrf: false`. */
  const as = (session: Session, method: string, path: string, body?: unknown, csrf = true) =>
    req(method, path, {
      headers: {
        cookie: `${COOKIE}=${session.cookie}`,
        ...(csrf && method !== 'GET' ? { 'x-csrf-token': session.csrf } : {}),
      },
      ...(body !== undefined ? { body } : {}),
    });
  const code = (res: HttpResponse) => res.json<{ code: string }>().code;

  function sessionOf(res: HttpResponse): Session {
    assert.equal(res.status, 200, res.text);
    const setCookie = res.headers['set-cookie']?.[0] ?? '';
    const value = new RegExp(`^${COOKIE}=([A-Za-z0-9_-]{43});`).exec(setCookie)?.[1];
    assert.ok(value, `a session cookie: ${setCookie}`);
    const body = res.json<{ csrfToken: string; session: { id: string } }>();
    secrets.push(value, body.csrfToken);
    return { cookie: value, csrf: body.csrfToken, id: body.session.id };
  }

  async function createPerson(
    body: Record<string, unknown>,
    by: (m: string, p: string, b: unknown) => Promise<HttpResponse> = op,
  ) {
    const res = await by('POST', '/v1/people', body);
    assert.equal(res.status, 201, res.text);
    const created = res.json<{ person: { id: string; email: string }; enrolmentToken: string }>();
    secrets.push(created.enrolmentToken);
    return created;
  }

  async function enrol(token: string, first = true): Promise<{ secret: string; recoveryCodes: string[] }> {
    if (first) {
      const pw = await req('POST', '/v1/enrolment/password', {
        body: { enrolmentToken: token, password: PASSWORD },
      });
      assert.equal(pw.status, 200, pw.text);
      assert.deepEqual(pw.json(), { enrolmentComplete: false });
    }
    const begun = await req('POST', '/v1/enrolment/totp', {
      body: { enrolmentToken: token, label: 'phone' },
    });
    assert.equal(begun.status, 200, begun.text);
    assert.equal(begun.headers['cache-control'], 'no-store');
    const { factorId, secret, uri } = begun.json<{ factorId: string; secret: string; uri: string }>();
    assert.match(uri, /^otpauth:\/\/totp\//);
    secrets.push(secret);
    const confirmed = await req('POST', '/v1/enrolment/totp/confirm', {
      body: { enrolmentToken: token, factorId, code: await nextCode(secret) },
    });
    assert.equal(confirmed.status, 200, confirmed.text);
    const step = confirmed.json<{ enrolmentComplete: boolean; recoveryCodes: string[] }>();
    assert.equal(step.enrolmentComplete, true);
    assert.equal(step.recoveryCodes.length, 10);
    secrets.push(...step.recoveryCodes);
    return { secret, recoveryCodes: step.recoveryCodes };
  }

  async function createAndEnrol(body: Record<string, unknown>, by = op): Promise<Account> {
    const created = await createPerson(body, by);
    const enrolled = await enrol(created.enrolmentToken);
    return { id: created.person.id, email: created.person.email, ...enrolled };
  }

  async function beginLogin(email: string, password = PASSWORD, extra: Record<string, unknown> = {}) {
    const res = await req('POST', '/v1/auth/login', {
      body: { side: 'operator', email, password, ...extra },
    });
    return res;
  }

  async function login(account: Account, proof?: Record<string, string>, tenant?: string): Promise<Session> {
    const begun = await beginLogin(account.email, PASSWORD, tenant ? { side: 'customer', tenant } : {});
    assert.equal(begun.status, 200, begun.text);
    const { handle } = begun.json<{ handle: string }>();
    const done = await req('POST', '/v1/auth/login/second-factor', {
      body: { handle, ...(proof ?? { totp: await nextCode(account.secret) }) },
    });
    return sessionOf(done);
  }

  before(async () => {
    s = await startTresorStack({
      env: {
        TRESOR_LOGIN_LOCKOUT_THRESHOLD: String(LOCKOUT_THRESHOLD),
        // No growing delays in a test that fails on purpose; the lockout is what is tested.
        TRESOR_LOGIN_DELAY_AFTER: '100',
        TRESOR_LOGIN_ADDRESS_DELAY_AFTER: '100000',
      },
    });
    secrets.push(...(await operatorAdmin(s)).secrets);
  });

  after(async () => {
    await s?.stop();
  });

  it('creates a staff account with the operator token and enrols it; the recovery codes are shown once', async () => {
    const created = await createPerson({
      side: 'operator',
      role: 'operator-admin',
      email: 'ada@tresor.test',
    });
    const enrolled = await enrol(created.enrolmentToken);
    admin = { id: created.person.id, email: created.person.email, ...enrolled };
    // The enrolment token is spent: nothing more is shown, to anyone.
    const again = await req('POST', '/v1/enrolment/totp', {
      body: { enrolmentToken: created.enrolmentToken },
    });
    assert.equal(again.status, 401, again.text);
    assert.equal(code(again), 'TRESOR_ERR_UNAUTHENTICATED');
    const listed = await op('GET', `/v1/people/${admin.id}`);
    assert.equal(listed.status, 200, listed.text);
    assert.ok(listed.json<{ enrolledAt: string | null }>().enrolledAt);
    assert.ok(!listed.text.includes('recovery'), 'the person view carries no factor secret');
  });

  it('logs in with password and TOTP to a __Host- cookie that is HttpOnly, Secure, SameSite=Strict, Path=/', async () => {
    const begun = await beginLogin(admin.email);
    assert.equal(begun.status, 200, begun.text);
    assert.equal(begun.headers['set-cookie'], undefined, 'no session before the second factor');
    const { handle } = begun.json<{ handle: string }>();
    const done = await req('POST', '/v1/auth/login/second-factor', {
      body: { handle, totp: await nextCode(admin.secret) },
    });
    adminSession = sessionOf(done);
    const cookie = done.headers['set-cookie']?.[0] ?? '';
    const attributes = cookie
      .split(';')
      .slice(1)
      .map((a) => a.trim().toLowerCase());
    assert.ok(cookie.startsWith(`${COOKIE}=`), cookie);
    for (const a of ['httponly', 'secure', 'samesite=strict', 'path=/']) assert.ok(attributes.includes(a), a);
    assert.ok(!attributes.some((a) => a.startsWith('domain')), '__Host- cookies have no Domain');
    assert.equal(done.headers['cache-control'], 'no-store');
  });

  it('answers GET /v1/auth/session with who the caller is, and does not send the CSRF token again', async () => {
    const res = await as(adminSession, 'GET', '/v1/auth/session');
    assert.equal(res.status, 200, res.text);
    const body = res.json<{
      session: { id: string; role: string; fresh2faAt: string };
      person: { email: string };
    }>();
    assert.equal(body.session.id, adminSession.id);
    assert.equal(body.session.role, 'operator-admin');
    assert.equal(body.person.email, admin.email);
    assert.ok(body.session.fresh2faAt);
    assert.ok(!res.text.includes(adminSession.csrf), 'no CSRF token');
  });

  it('refuses a state-changing request without X-CSRF-Token with 403 TRESOR_ERR_CSRF, and changes nothing', async () => {
    const created = await createPerson({ side: 'operator', role: 'support-agent', email: 'bob@tresor.test' });
    const enrolled = await enrol(created.enrolmentToken);
    bob = { id: created.person.id, email: created.person.email, ...enrolled };
    for (const csrf of [undefined, 'x'.repeat(43)]) {
      const res = await req('POST', `/v1/people/${bob.id}/disable`, {
        headers: { cookie: `${COOKIE}=${adminSession.cookie}`, ...(csrf ? { 'x-csrf-token': csrf } : {}) },
      });
      assert.equal(res.status, 403, res.text);
      assert.equal(code(res), 'TRESOR_ERR_CSRF');
    }
    const person = await op('GET', `/v1/people/${bob.id}`);
    assert.equal(person.json<{ disabledAt: string | null }>().disabledAt, null, 'bob is not disabled');
  });

  it('re-authentication gives a new cookie and CSRF token; the old cookie is refused', async () => {
    const res = await as(adminSession, 'POST', '/v1/auth/reauthenticate', {
      totp: await nextCode(admin.secret),
    });
    const renewed = sessionOf(res);
    assert.notEqual(renewed.cookie, adminSession.cookie);
    assert.notEqual(renewed.csrf, adminSession.csrf);
    assert.equal((await as(adminSession, 'GET', '/v1/auth/session')).status, 401);
    assert.equal((await as(renewed, 'GET', '/v1/auth/session')).status, 200);
    adminSession = renewed;
  });

  it('never accepts a cookie value planted before login (session fixation)', async () => {
    const planted = randomBytes(32).toString('base64url');
    const begun = await req('POST', '/v1/auth/login', {
      headers: { cookie: `${COOKIE}=${planted}` },
      body: { side: 'operator', email: bob.email, password: PASSWORD },
    });
    const { handle } = begun.json<{ handle: string }>();
    const done = await req('POST', '/v1/auth/login/second-factor', {
      headers: { cookie: `${COOKIE}=${planted}` },
      body: { handle, totp: await nextCode(bob.secret) },
    });
    const session = sessionOf(done);
    assert.notEqual(session.cookie, planted);
    const fixed = await req('GET', '/v1/auth/session', { headers: { cookie: `${COOKIE}=${planted}` } });
    assert.equal(fixed.status, 401);
    assert.equal((await as(session, 'GET', '/v1/auth/session')).status, 200);
  });

  it('refuses a wrong, a replayed and an out-of-window TOTP code with the one 401', async () => {
    const created = await createPerson({
      side: 'operator',
      role: 'security-officer',
      email: 'carol@tresor.test',
    });
    carol = { id: created.person.id, email: created.person.email, ...(await enrol(created.enrolmentToken)) };
    const accepted = await nextCode(carol.secret); // used at enrolment's next step below
    const first = await beginLogin(carol.email);
    const ok = await req('POST', '/v1/auth/login/second-factor', {
      body: { handle: first.json<{ handle: string }>().handle, totp: accepted },
    });
    sessionOf(ok);
    const current = Math.floor(Date.now() / 30_000);
    const wrong = String((Number(accepted) + 1) % 1_000_000).padStart(6, '0');
    const refusedBodies: unknown[] = [];
    for (const totp of [wrong, accepted, oathtool(carol.secret, current - 20)]) {
      const begun = await beginLogin(carol.email);
      const res = await req('POST', '/v1/auth/login/second-factor', {
        body: { handle: begun.json<{ handle: string }>().handle, totp },
      });
      assert.equal(res.status, 401, `${totp}: ${res.text}`);
      assert.equal(res.headers['set-cookie'], undefined);
      const { requestId: _r, instance: _i, ...problem } = res.json<Record<string, unknown>>();
      refusedBodies.push(problem);
    }
    assert.equal(
      refusedBodies[0] && (refusedBodies[0] as { code: string }).code,
      'TRESOR_ERR_UNAUTHENTICATED',
    );
    assert.deepEqual(refusedBodies[1], refusedBodies[0], 'a replayed code answers like a wrong one');
    assert.deepEqual(refusedBodies[2], refusedBodies[0], 'an old code answers like a wrong one');
  });

  it('answers an unknown e-mail and a wrong password identically (no user enumeration)', async () => {
    const shapes: unknown[] = [];
    for (const [email, password] of [
      ['nobody@tresor.test', PASSWORD],
      [bob.email, 'not the password at all'],
    ] as const) {
      const begun = await beginLogin(email, password);
      assert.equal(begun.status, 200, begun.text);
      const pending = begun.json<{ handle: string; next: string; factors: string[]; expiresAt: string }>();
      const done = await req('POST', '/v1/auth/login/second-factor', {
        body: { handle: pending.handle, totp: '123456' },
      });
      const { requestId: _r, instance: _i, ...problem } = done.json<Record<string, unknown>>();
      shapes.push({
        begin: {
          status: begun.status,
          keys: Object.keys(pending).sort(),
          next: pending.next,
          factors: pending.factors,
        },
        done: { status: done.status, problem, cookie: done.headers['set-cookie'] ?? null },
      });
    }
    assert.deepEqual(shapes[0], shapes[1]);
  });

  it(`locks an account after ${LOCKOUT_THRESHOLD} failures, until an admin unlocks it`, async () => {
    const dave = await createAndEnrol({ side: 'operator', role: 'contractor', email: 'dave@tresor.test' });
    for (let i = 0; i < LOCKOUT_THRESHOLD; i++) {
      assert.equal((await beginLogin(dave.email, `wrong password number ${i}`)).status, 200);
    }
    const locked = await beginLogin(dave.email);
    assert.equal(locked.status, 429, locked.text);
    assert.equal(code(locked), 'TRESOR_ERR_RATE_LIMITED');
    const unlocked = await as(adminSession, 'POST', `/v1/people/${dave.id}/unlock`);
    assert.equal(unlocked.status, 204, unlocked.text);
    await login(dave);
  });

  it('ends the sessions of an account at once when its role changes or it is disabled', async () => {
    const bobSession = await login(bob, { recoveryCode: bob.recoveryCodes[0] ?? '' });
    assert.equal((await as(bobSession, 'GET', '/v1/auth/session')).status, 200);
    const changed = await as(adminSession, 'PATCH', `/v1/people/${bob.id}`, { role: 'contractor' });
    assert.equal(changed.status, 200, changed.text);
    assert.equal(changed.json<{ role: string }>().role, 'contractor');
    assert.equal(
      (await as(bobSession, 'GET', '/v1/auth/session')).status,
      401,
      'role change ends the session',
    );

    const again = await login(bob, { recoveryCode: bob.recoveryCodes[1] ?? '' });
    const disabled = await op('POST', `/v1/people/${bob.id}/disable`);
    assert.equal(disabled.status, 204, disabled.text);
    assert.equal((await as(again, 'GET', '/v1/auth/session')).status, 401, 'disabling ends the session');
    // A disabled account's login fails like any other.
    const begun = await beginLogin(bob.email);
    const done = await req('POST', '/v1/auth/login/second-factor', {
      body: { handle: begun.json<{ handle: string }>().handle, recoveryCode: bob.recoveryCodes[2] ?? '' },
    });
    assert.equal(done.status, 401);
  });

  let tenantAdmin: Account;
  let tenantAdminSession: Session;
  let otherTenantAdmin: string;
  let tenantA: string;

  it("keeps a tenant admin to their own tenant's people (404 to read, 403 to change; audited)", async () => {
    let apiKey = '';
    const mk = async (name: string) => {
      const res = await op('POST', '/v1/tenants', { name });
      assert.equal(res.status, 201, res.text);
      apiKey = res.json<{ apiKey: string }>().apiKey;
      secrets.push(apiKey);
      return res.json<{ id: string }>().id;
    };
    tenantA = await mk('Alpha Ltd');
    const tenantB = await mk('Beta Ltd');
    tenantAdmin = await createAndEnrol({
      side: 'customer',
      role: 'tenant-admin',
      tenant: tenantA,
      email: 'tina@alpha.test',
    });
    otherTenantAdmin = (
      await createPerson({ side: 'customer', role: 'tenant-admin', tenant: tenantB, email: 'ben@beta.test' })
    ).person.id;
    tenantAdminSession = await login(tenantAdmin, undefined, tenantA);

    // Their own tenant: a member, made and listed by the tenant admin.
    const member = await createPerson(
      { side: 'customer', role: 'tenant-member', tenant: tenantA, email: 'mo@alpha.test' },
      (m, p, b) => as(tenantAdminSession, m, p, b),
    );
    const listed = await as(tenantAdminSession, 'GET', '/v1/people');
    assert.equal(listed.status, 200, listed.text);
    const ids = listed.json<{ people: { id: string; tenant: string }[] }>().people.map((p) => p.id);
    assert.ok(ids.includes(member.person.id));
    assert.ok(!ids.includes(otherTenantAdmin), "another tenant's people are not listed");

    const read = await as(tenantAdminSession, 'GET', `/v1/people/${otherTenantAdmin}`);
    assert.equal(read.status, 404, read.text);
    for (const [method, path, body] of [
      ['PATCH', `/v1/people/${otherTenantAdmin}`, { role: 'tenant-member' }],
      ['POST', `/v1/people/${otherTenantAdmin}/disable`, undefined],
      ['POST', `/v1/people/${otherTenantAdmin}/password-reset`, undefined],
      [
        'POST',
        '/v1/people',
        { side: 'customer', role: 'tenant-member', tenant: tenantB, email: 'x@beta.test' },
      ],
    ] as const) {
      const res = await as(tenantAdminSession, method, path, body);
      assert.equal(res.status, 403, `${method} ${path}: ${res.text}`);
      assert.equal(code(res), 'TRESOR_ERR_FORBIDDEN');
    }
    const still = await op('GET', `/v1/people/${otherTenantAdmin}`);
    assert.equal(still.json<{ role: string; disabledAt: null }>().role, 'tenant-admin');
    // API keys never manage people.
    const keyed = await req('GET', '/v1/people', { token: apiKey });
    assert.equal(keyed.status, 403);
  });

  it('lists sessions and revokes them: one’s own, and by an admin', async () => {
    const second = await login(admin, { recoveryCode: admin.recoveryCodes[0] ?? '' });
    const own = await as(adminSession, 'GET', '/v1/sessions');
    assert.equal(own.status, 200, own.text);
    const list = own.json<{ sessions: { id: string; current: boolean }[] }>().sessions;
    assert.ok(list.some((x) => x.id === adminSession.id && x.current));
    assert.ok(list.some((x) => x.id === second.id && !x.current));
    assert.ok(!own.text.includes(second.cookie) && !own.text.includes(second.csrf), 'no token in the list');
    const revoked = await as(adminSession, 'DELETE', `/v1/sessions/${second.id}`);
    assert.equal(revoked.status, 204, revoked.text);
    assert.equal((await as(second, 'GET', '/v1/auth/session')).status, 401);

    const theirs = await op('GET', `/v1/sessions?person=${tenantAdmin.id}`);
    assert.equal(theirs.status, 200, theirs.text);
    assert.ok(
      theirs.json<{ sessions: { id: string }[] }>().sessions.some((x) => x.id === tenantAdminSession.id),
    );
    const ended = await op('DELETE', `/v1/sessions/${tenantAdminSession.id}`);
    assert.equal(ended.status, 204, ended.text);
    assert.equal((await as(tenantAdminSession, 'GET', '/v1/auth/session')).status, 401);

    // A tenant admin cannot see the operator admin's sessions.
    tenantAdminSession = await login(
      tenantAdmin,
      { recoveryCode: tenantAdmin.recoveryCodes[0] ?? '' },
      tenantA,
    );
    const peek = await as(tenantAdminSession, 'GET', `/v1/sessions?person=${admin.id}`);
    assert.equal(peek.status, 403, peek.text);
    const all = await op('POST', `/v1/people/${tenantAdmin.id}/sessions/revoke-all`);
    assert.equal(all.status, 200, all.text);
    assert.equal(all.json<{ revoked: number }>().revoked, 1);
    assert.equal((await as(tenantAdminSession, 'GET', '/v1/auth/session')).status, 401);
  });

  it('an admin factor reset revokes every factor, ends the sessions, and forces re-enrolment', async () => {
    // A recovery code, not TOTP: carol's next TOTP step is kept for the old code tried below, which
    // must be one the server would have taken (not a replay) but for the reset.
    const carolSession = await login(carol, { recoveryCode: carol.recoveryCodes[1] ?? '' });
    const reset = await as(adminSession, 'POST', `/v1/people/${carol.id}/factors/reset`);
    assert.equal(reset.status, 200, reset.text);
    const { enrolmentToken } = reset.json<{ enrolmentToken: string }>();
    secrets.push(enrolmentToken);
    assert.equal((await as(carolSession, 'GET', '/v1/auth/session')).status, 401);
    // The old TOTP and recovery codes no longer log in.
    for (const proof of [
      { totp: await nextCode(carol.secret) },
      { recoveryCode: carol.recoveryCodes[0] ?? '' },
    ]) {
      const begun = await beginLogin(carol.email);
      const res = await req('POST', '/v1/auth/login/second-factor', {
        body: { handle: begun.json<{ handle: string }>().handle, ...proof },
      });
      assert.equal(res.status, 401, res.text);
    }
    const enrolled = await enrol(enrolmentToken, false);
    carol = { ...carol, ...enrolled };
    await login(carol);
  });

  it('changes one’s own password: the current one is checked and throttled like a login, the policy applies, every other session ends and the caller’s is renewed (ASVS 6.2.3, 7.4.3)', async () => {
    const NEW_PASSWORD = 'copper meadow 9 quartz harbour';
    const WRONG = 'not my password at all 17';
    secrets.push(NEW_PASSWORD, WRONG);
    const erin = await createAndEnrol({ side: 'operator', role: 'support-agent', email: 'erin@tresor.test' });
    const here = await login(erin);
    const elsewhere = await login(erin, { recoveryCode: erin.recoveryCodes[0] ?? '' });
    const change = (session: Session, body: unknown) => as(session, 'POST', '/v1/auth/password', body);
    const live = async (session: Session) => (await as(session, 'GET', '/v1/auth/session')).status;

    // A wrong current password: 403 with its code, nothing changed, both sessions still live.
    const wrong = await change(here, { currentPassword: WRONG, newPassword: NEW_PASSWORD });
    assert.equal(wrong.status, 403, wrong.text);
    assert.equal(code(wrong), 'TRESOR_ERR_PASSWORD_INCORRECT');
    assert.equal(wrong.headers['set-cookie'], undefined);
    assert.equal(await live(here), 200);
    assert.equal(await live(elsewhere), 200);
    // A new password the policy refuses: 422 with the reasons, nothing changed.
    const weak = await change(here, { currentPassword: PASSWORD, newPassword: 'password1234' });
    assert.equal(weak.status, 422, weak.text);
    assert.equal(code(weak), 'TRESOR_ERR_VALIDATION');
    assert.ok(weak.json<{ errors: { reasons: string[] } }>().errors.reasons.includes('common'), weak.text);
    assert.equal(await live(elsewhere), 200);
    // Without CSRF: refused before anything is read.
    const noCsrf = await as(
      here,
      'POST',
      '/v1/auth/password',
      { currentPassword: PASSWORD, newPassword: NEW_PASSWORD },
      false,
    );
    assert.equal(noCsrf.status, 403, noCsrf.text);
    assert.equal(code(noCsrf), 'TRESOR_ERR_CSRF');

    // Guessing the current password here counts as failed logins: the account locks at the same
    // threshold, and then even the right password is refused, here and at the login.
    for (let i = 1; i < LOCKOUT_THRESHOLD; i++) {
      const res = await change(here, { currentPassword: `${WRONG} ${i}`, newPassword: NEW_PASSWORD });
      assert.equal(res.status, 403, res.text);
    }
    const locked = await change(here, { currentPassword: PASSWORD, newPassword: NEW_PASSWORD });
    assert.equal(locked.status, 429, locked.text);
    assert.equal(code(locked), 'TRESOR_ERR_RATE_LIMITED');
    assert.equal((await beginLogin(erin.email)).status, 429, 'the login is locked too');
    assert.equal((await as(adminSession, 'POST', `/v1/people/${erin.id}/unlock`)).status, 204);

    // The change: 200 with a new session for the caller; the old cookie and every other session end.
    const changed = await change(here, { currentPassword: PASSWORD, newPassword: NEW_PASSWORD });
    const renewed = sessionOf(changed);
    assert.notEqual(renewed.id, here.id);
    assert.notEqual(renewed.cookie, here.cookie);
    assert.ok(!changed.text.includes(PASSWORD) && !changed.text.includes(NEW_PASSWORD));
    assert.equal(await live(here), 401, 'the caller’s old session id is worthless');
    assert.equal(await live(elsewhere), 401, 'the other session ended');
    assert.equal(await live(renewed), 200);
    const sessions = (await as(renewed, 'GET', '/v1/sessions')).json<{ sessions: { id: string }[] }>()
      .sessions;
    assert.deepEqual(
      sessions.map((x) => x.id),
      [renewed.id],
      'one live session left: the caller’s new one',
    );

    // The old password no longer logs in; the new one does.
    const old = await beginLogin(erin.email, PASSWORD);
    const oldDone = await req('POST', '/v1/auth/login/second-factor', {
      body: { handle: old.json<{ handle: string }>().handle, recoveryCode: erin.recoveryCodes[1] ?? '' },
    });
    assert.equal(oldDone.status, 401, oldDone.text);
    const fresh = await beginLogin(erin.email, NEW_PASSWORD);
    sessionOf(
      await req('POST', '/v1/auth/login/second-factor', {
        body: { handle: fresh.json<{ handle: string }>().handle, recoveryCode: erin.recoveryCodes[2] ?? '' },
      }),
    );
  });

  it('ends every other session of one’s own account in one step (after a factor change: ASVS 7.4.3)', async () => {
    const frank = await createAndEnrol({ side: 'operator', role: 'contractor', email: 'frank@tresor.test' });
    const here = await login(frank);
    const phone = await login(frank, { recoveryCode: frank.recoveryCodes[0] ?? '' });
    const laptop = await login(frank, { recoveryCode: frank.recoveryCodes[1] ?? '' });
    const noCsrf = await as(here, 'POST', '/v1/sessions/revoke-others', undefined, false);
    assert.equal(noCsrf.status, 403, noCsrf.text);
    assert.equal((await as(phone, 'GET', '/v1/auth/session')).status, 200);
    const ended = await as(here, 'POST', '/v1/sessions/revoke-others');
    assert.equal(ended.status, 200, ended.text);
    assert.deepEqual(ended.json(), { revoked: 2 });
    assert.equal((await as(phone, 'GET', '/v1/auth/session')).status, 401);
    assert.equal((await as(laptop, 'GET', '/v1/auth/session')).status, 401);
    assert.equal((await as(here, 'GET', '/v1/auth/session')).status, 200, 'the caller’s own session stays');
    assert.deepEqual((await as(here, 'POST', '/v1/sessions/revoke-others')).json(), { revoked: 0 });
  });

  it('logs out: 204, the cookie cleared with Max-Age=0, and the same cookie refused after', async () => {
    const res = await as(adminSession, 'POST', '/v1/auth/logout');
    assert.equal(res.status, 204, res.text);
    const cleared = res.headers['set-cookie']?.[0] ?? '';
    assert.match(cleared, new RegExp(`^${COOKIE}=;`));
    assert.match(cleared, /Max-Age=0/);
    const reused = await as(adminSession, 'GET', '/v1/auth/session');
    assert.equal(reused.status, 401);
    assert.equal(code(reused), 'TRESOR_ERR_UNAUTHENTICATED');
    assert.equal((await as(adminSession, 'POST', '/v1/auth/logout')).status, 401);
  });

  it('records each refusal in the audit log, and no secret anywhere in it', async () => {
    const entries: { action: string; outcome: string; target?: Record<string, unknown> }[] = [];
    let text = '';
    const want = (e: (typeof entries)[number], action: string, outcome: string, reason?: string) =>
      e.action === action && e.outcome === outcome && (reason === undefined || e.target?.reason === reason);
    const expected: [string, string, string?][] = [
      ['auth.csrf', 'denied', 'missing'],
      ['auth.csrf', 'denied', 'mismatch'],
      ['auth.session', 'failure', 'revoked'],
      ['auth.session', 'failure', 'unknown'],
      ['auth.login', 'failure', 'invalid'],
      ['auth.login', 'failure', 'replayed'],
      ['auth.login', 'failure', 'unknown-account'],
      ['auth.login', 'failure', 'wrong-password'],
      ['auth.login', 'denied', 'throttled'],
      ['auth.lockout', 'success'],
      ['person.role-change', 'denied'],
      ['person.disable', 'denied'],
      ['person.read', 'failure'],
      ['session.list', 'denied'],
      ['person.factors-reset', 'success'],
      ['person.password-change', 'failure', 'wrong-password'],
      ['person.password-change', 'failure', 'password-policy'],
      ['person.password-change', 'denied', 'throttled'],
      ['person.password-change', 'success'],
      ['session.revoke-others', 'success'],
      ['auth.logout', 'success'],
    ];
    // Awaited on the live stream (every entry from the first), not polled: done at the event that
    // completes the set.
    type Entry = (typeof entries)[number];
    const missingFrom = (list: Entry[]) =>
      expected.filter(([a, o, r]) => !list.some((e) => want(e, a, o, r)));
    const stream = openAuditStream<{ entry: Entry }>(
      s,
      await operatorToken(s, 'audit:read'),
      {},
      '/v1/audit/stream?from=0',
    );
    try {
      assert.equal(await stream.opened, 200);
      await stream
        .until('every refusal', (events) => missingFrom(events.map((e) => e.data.entry)).length === 0)
        .catch((err: Error) => {
          const seen = stream.events.map((e) => e.data.entry);
          assert.fail(`${err.message}; not in the audit log: ${JSON.stringify(missingFrom(seen))}`);
        });
    } finally {
      stream.close();
    }
    for (let from = 0; ; ) {
      const res = await req('GET', `/v1/audit/entries?from=${from}&limit=1000`, {
        token: await operatorToken(s, 'audit:read'),
      });
      assert.equal(res.status, 200, res.text);
      text += res.text;
      const page = res.json<{ entries: { index: number; entry: Entry }[] }>().entries;
      entries.push(...page.map((e) => e.entry));
      if (page.length < 1000) break;
      from = (page.at(-1)?.index ?? from) + 1;
    }
    assert.deepEqual(missingFrom(entries), [], 'the entries read back hold every refusal too');
    for (const secret of [...secrets, PASSWORD]) {
      assert.ok(!text.includes(secret), 'no secret in the audit log');
    }
  });
});
