// backends: sqlite postgres
/**
 * Sessions: random tokens stored hashed, a new token at every authentication, idle and absolute
 * timeouts per side, CSRF tokens, logout, and listing and revoking by the user and by admins.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { createLoginService, type LoginService } from '../../src/identity/login.ts';
import { createPeopleService, type PeopleService } from '../../src/identity/people.ts';
import {
  createSessionService,
  SESSION_COOKIE_NAME,
  type SessionService,
} from '../../src/identity/sessions.ts';
import type { ControlDB } from '../../src/server/control-store.ts';
import type { Store } from '../../src/store/types.ts';
import { type EnrolArgs, enrolAccount } from '../helpers/console-accounts.ts';
import { insertTenant, openTestControlStore, type TestControlStore } from '../helpers/control-store.ts';
import { refusal } from '../helpers/refusal.ts';

const MINUTE = 60_000;

describe('sessions', () => {
  let store: TestControlStore;
  let dir: string;
  let control: Store<ControlDB>;
  let now: Date;
  let people: PeopleService;
  let sessions: SessionService;
  let login: LoginService;

  const advance = (ms: number) => {
    now = new Date(now.getTime() + ms);
  };

  const tenant = (id: string) => insertTenant(control, id, { at: now.toISOString() });
  const enrolled = (...args: EnrolArgs) => enrolAccount({ people, login, now: () => now, advance }, ...args);

  const audit = async () =>
    (await control.db.selectFrom('audit_events').selectAll().orderBy('seq').execute()).map(
      (r) => JSON.parse(r.event) as { action: string; outcome: string; target?: Record<string, unknown> },
    );

  beforeEach(async () => {
    store = await openTestControlStore('sessions');
    ({ dir, control } = store);
    now = new Date('2030-06-01T00:00:15.000Z');
    const factorKey = randomBytes(32);
    sessions = createSessionService({ control, now: () => now });
    people = createPeopleService({ control, now: () => now, factorKey: async () => factorKey });
    login = createLoginService({ control, now: () => now, factorKey: async () => factorKey, sessions });
  });

  afterEach(() => store.close());

  it('a session token is replaced at every authentication, so a planted token is never promoted', async () => {
    const ada = await enrolled('ada@example.test');
    const planted = randomBytes(32).toString('base64url');
    const first = await ada.logIn();
    const second = await ada.logIn();
    assert.notEqual(first.token, second.token);
    assert.notEqual(first.token, planted);
    assert.equal(Buffer.from(first.token, 'base64url').length, 32, '256-bit tokens');
    assert.equal((await refusal(sessions.authenticate(planted))).code, 'TRESOR_ERR_UNAUTHENTICATED');
  });

  it('stores only hashes of session and CSRF tokens', async () => {
    const ada = await enrolled('ada@example.test');
    const s = await ada.logIn();
    const row = await control.db.selectFrom('sessions').selectAll().executeTakeFirstOrThrow();
    assert.notEqual(row.token_hash, s.token);
    assert.notEqual(row.csrf_hash, s.csrfToken);
    for (const file of readdirSync(dir).filter((f) => f.startsWith('control.sqlite'))) {
      const bytes = readFileSync(join(dir, file));
      assert.equal(bytes.indexOf(s.token), -1, `${file} holds the session token`);
      assert.equal(bytes.indexOf(s.csrfToken), -1, `${file} holds the CSRF token`);
    }
  });

  it('a cookie reused after logout is refused, and the refusal is audited', async () => {
    const ada = await enrolled('ada@example.test');
    const s = await ada.logIn();
    await sessions.authenticate(s.token);
    await sessions.logout(s.token);
    assert.equal((await refusal(sessions.authenticate(s.token))).code, 'TRESOR_ERR_UNAUTHENTICATED');
    const events = await audit();
    assert.ok(events.some((e) => e.action === 'auth.logout' && e.outcome === 'success'));
    const refused = events.filter((e) => e.action === 'auth.session' && e.outcome === 'failure').at(-1);
    assert.deepEqual(refused?.target, { reason: 'revoked', sessionId: s.session.id });
  });

  it('ends a staff session after 15 idle minutes and a customer session after 30', async () => {
    await tenant('ten_a');
    const staff = await enrolled('ada@example.test');
    const customer = await enrolled('cy@example.test', 'tenant-admin', 'customer', 'ten_a');
    const s = await staff.logIn();
    const c = await customer.logIn();
    advance(15 * MINUTE);
    assert.equal((await refusal(sessions.authenticate(s.token))).code, 'TRESOR_ERR_UNAUTHENTICATED');
    assert.equal((await sessions.authenticate(c.token)).personId, customer.person.id);
    advance(30 * MINUTE - 1);
    assert.equal(
      (await sessions.authenticate(c.token)).personId,
      customer.person.id,
      'activity slides the idle timeout',
    );
    advance(30 * MINUTE);
    assert.equal((await refusal(sessions.authenticate(c.token))).code, 'TRESOR_ERR_UNAUTHENTICATED');
  });

  it('ends every session 12 hours after login, however active', async () => {
    const ada = await enrolled('ada@example.test');
    const s = await ada.logIn();
    for (let t = 0; t < 12 * 60 - 10; t += 10) {
      advance(10 * MINUTE);
      await sessions.authenticate(s.token);
    }
    advance(10 * MINUTE);
    assert.equal((await refusal(sessions.authenticate(s.token))).code, 'TRESOR_ERR_UNAUTHENTICATED');
  });

  it('writes last-seen at most once a minute', async () => {
    const ada = await enrolled('ada@example.test');
    const s = await ada.logIn();
    const lastSeen = async () =>
      (
        await control.db
          .selectFrom('sessions')
          .select('last_seen_at')
          .where('id', '=', s.session.id)
          .executeTakeFirstOrThrow()
      ).last_seen_at;
    const created = await lastSeen();
    advance(Date.parse(created) + 59_000 - now.getTime());
    await sessions.authenticate(s.token);
    assert.equal(await lastSeen(), created);
    advance(1_000);
    await sessions.authenticate(s.token);
    assert.equal(await lastSeen(), now.toISOString());
  });

  it('refuses a state-changing request without the CSRF token, and audits it', async () => {
    const ada = await enrolled('ada@example.test');
    const a = await ada.logIn();
    const b = await ada.logIn();
    const principal = await sessions.authenticate(a.token);
    await sessions.verifyCsrf(principal, a.csrfToken);
    // The last character changed to another one: 32 bytes in base64url end in one of 16 characters,
    // 'A' among them, so a fixed replacement would be the token itself one run in 16.
    const altered = `${a.csrfToken.slice(0, -1)}${a.csrfToken.endsWith('A') ? 'E' : 'A'}`;
    for (const token of [undefined, '', b.csrfToken, altered]) {
      assert.equal((await refusal(sessions.verifyCsrf(principal, token))).code, 'TRESOR_ERR_CSRF');
    }
    const denied = (await audit()).filter((e) => e.action === 'auth.csrf' && e.outcome === 'denied');
    assert.equal(denied.length, 4);
    assert.ok(!JSON.stringify(denied).includes(b.csrfToken));
  });

  it('lets a person list and revoke their sessions, and an admin who manages them; not another tenant', async () => {
    await tenant('ten_a');
    await tenant('ten_b');
    const admin = await enrolled('admin@a.test', 'tenant-admin', 'customer', 'ten_a');
    const creator = await sessions.authenticate((await admin.logIn()).token);
    const member = await enrolled('member@a.test', 'tenant-member', 'customer', 'ten_a', creator);
    const other = await enrolled('admin@b.test', 'tenant-admin', 'customer', 'ten_b');
    const m1 = await member.logIn();
    const m2 = await member.logIn();
    const self = await sessions.authenticate(m1.token);
    assert.deepEqual(
      (await sessions.list(self, member.person.id)).map((s) => s.id).sort(),
      [m1.session.id, m2.session.id].sort(),
    );
    await sessions.revoke(self, m2.session.id);
    assert.equal((await refusal(sessions.authenticate(m2.token))).code, 'TRESOR_ERR_UNAUTHENTICATED');

    const otherAdmin = await sessions.authenticate((await other.logIn()).token);
    assert.equal((await refusal(sessions.list(otherAdmin, member.person.id))).code, 'TRESOR_ERR_FORBIDDEN');
    assert.equal(
      (await refusal(sessions.revokeAll(otherAdmin, member.person.id))).code,
      'TRESOR_ERR_FORBIDDEN',
    );
    assert.equal((await sessions.authenticate(m1.token)).personId, member.person.id, 'still live');

    const tenantAdmin = await sessions.authenticate((await admin.logIn()).token);
    assert.equal((await sessions.list(tenantAdmin, member.person.id)).length, 1);
    assert.notEqual(tenantAdmin.sessionId, creator.sessionId);
    assert.equal(await sessions.revokeAll(tenantAdmin, member.person.id), 1);
    assert.equal((await refusal(sessions.authenticate(m1.token))).code, 'TRESOR_ERR_UNAUTHENTICATED');
    const denied = (await audit()).filter((e) => e.outcome === 'denied' && e.action.startsWith('session.'));
    assert.equal(denied.length, 2, 'the cross-tenant attempts are audited');
  });

  it('names the cookie __Host-tresor_session, HttpOnly, Secure, SameSite=Strict, Path=/', () => {
    assert.deepEqual(sessions.cookieOptions(), {
      name: SESSION_COOKIE_NAME,
      httpOnly: true,
      secure: true,
      sameSite: 'strict',
      path: '/',
    });
    assert.equal(SESSION_COOKIE_NAME, '__Host-tresor_session');
  });

  it('takes its timeouts from the configuration', async () => {
    sessions = createSessionService({
      control,
      now: () => now,
      config: { operator: { idleMs: 5 * MINUTE, absoluteMs: 60 * MINUTE } },
    });
    const row = await control
      .write((trx) =>
        sessions.createIn(trx, {
          personId: 'psn_x',
          side: 'operator',
          tenant: null,
          factors: ['password', 'totp'],
          fresh2faAt: now.toISOString(),
        }),
      )
      .catch((e: unknown) => e);
    // psn_x does not exist: the foreign key refuses a session for nobody.
    assert.ok(row instanceof Error);
    const ada = await enrolled('ada@example.test');
    const s = await control.write((trx) =>
      sessions.createIn(trx, {
        personId: ada.person.id,
        side: 'operator',
        tenant: null,
        factors: ['password', 'totp'],
        fresh2faAt: now.toISOString(),
      }),
    );
    assert.equal(Date.parse(s.session.idleExpiresAt) - now.getTime(), 5 * MINUTE);
    assert.equal(Date.parse(s.session.absoluteExpiresAt) - now.getTime(), 60 * MINUTE);
  });
});
