// backends: sqlite postgres
/**
 * Accounts: who may create whom, enrolment that completes only with a confirmed second factor,
 * TOTP secrets sealed at rest, factor revocation, resets that keep the second factor, and removal
 * that ends sessions and grants in the same commit — every change audited, no secret in the audit.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { Secret } from 'otpauth';
import { personAuditActor } from '../../src/identity/accounts.ts';
import type { IdentityActor } from '../../src/identity/identity-actor.ts';
import { createLoginService, type LoginService } from '../../src/identity/login.ts';
import { createPeopleService, type PeopleService } from '../../src/identity/people.ts';
import {
  ALL_ROLES,
  canBreakGlass,
  canManageTenants,
  hasStandingRecordAccess,
  isEmployee,
} from '../../src/identity/roles.ts';
import { openTotpSecret } from '../../src/identity/sealed-totp-secret.ts';
import { createSessionService, type SessionService } from '../../src/identity/sessions.ts';
import type { ControlDB } from '../../src/server/control-store.ts';
import type { Store } from '../../src/store/types.ts';
import { ADMIN, type EnrolArgs, enrolAccount, PASSWORD } from '../helpers/console-accounts.ts';
import { insertTenant, openTestControlStore, type TestControlStore } from '../helpers/control-store.ts';
import { refusal } from '../helpers/refusal.ts';
import { databaseFiles } from '../helpers/stack-sql.ts';
import { totpCode } from '../helpers/totp.ts';

const NEW_PASSWORD = 'a completely different passphrase';

describe('people', () => {
  let store: TestControlStore;
  let dir: string;
  let control: Store<ControlDB>;
  let now: Date;
  let factorKey: Buffer;
  let people: PeopleService;
  let sessions: SessionService;
  let login: LoginService;
  let accessRemoved: string[];
  /** Every secret the tests saw: none may appear in an audit event. */
  let secrets: string[];

  const advance = (ms: number) => {
    now = new Date(now.getTime() + ms);
  };

  const enrolled = (...args: EnrolArgs) =>
    enrolAccount({ people, login, now: () => now, advance, secrets }, ...args);

  /** Ten wrong passwords from ten addresses (waiting out the address throttle): the account locks. */
  async function lockOut(email: string): Promise<void> {
    for (let failures = 0; failures < 10; ) {
      try {
        await login.beginLogin({
          email,
          password: 'wrong wrong wrong',
          side: 'operator',
          address: `203.0.113.${failures}`,
        });
        failures++;
      } catch (error) {
        advance(
          ((error as { details?: { retryAfterSeconds?: number } }).details?.retryAfterSeconds ?? 1) * 1000,
        );
      }
    }
  }

  const audit = async () =>
    (await control.db.selectFrom('audit_events').selectAll().orderBy('seq').execute()).map(
      (r) => JSON.parse(r.event) as { action: string; outcome: string; target?: Record<string, unknown> },
    );

  beforeEach(async () => {
    store = await openTestControlStore('people');
    ({ dir, control } = store);
    now = new Date('2030-06-01T00:00:15.000Z');
    factorKey = randomBytes(32);
    accessRemoved = [];
    secrets = [PASSWORD, NEW_PASSWORD];
    sessions = createSessionService({ control, now: () => now });
    people = createPeopleService({
      control,
      now: () => now,
      factorKey: async () => factorKey,
      onAccessRemoved: async (personId, trx) => {
        // The grants module ends grants here, in the same commit; prove the trx is the live one.
        const row = await trx
          .selectFrom('sessions')
          .select('revoked_at')
          .where('person', '=', personId)
          .executeTakeFirst();
        assert.ok(row === undefined || row.revoked_at !== null, 'sessions are already ended in this commit');
        accessRemoved.push(personId);
      },
    });
    login = createLoginService({ control, now: () => now, factorKey: async () => factorKey, sessions });
    await insertTenant(control, 'ten_a', { at: now.toISOString() });
    await insertTenant(control, 'ten_b', { at: now.toISOString() });
  });

  afterEach(() => store.close());

  it('gives no role standing access to tenant records; contractors are not employees', () => {
    for (const role of ALL_ROLES) assert.equal(hasStandingRecordAccess(role), false);
    assert.equal(isEmployee('contractor'), false);
    assert.equal(isEmployee('support-agent'), true);
    assert.equal(canBreakGlass('security-officer'), true);
    assert.equal(canBreakGlass('operator-admin'), false);
    assert.equal(canManageTenants('operator-admin'), true);
    assert.equal(canManageTenants('tenant-admin'), false);
  });

  it('completes enrolment only with a password and a confirmed TOTP code, and shows recovery codes once', async () => {
    const { person, enrolmentToken } = await people.createPerson(ADMIN, {
      side: 'operator',
      role: 'security-officer',
      email: 'Sec@Example.test',
    });
    assert.equal(person.email, 'sec@example.test');
    assert.deepEqual(await people.setPassword(enrolmentToken, PASSWORD), { enrolmentComplete: false });
    const totp = await people.beginTotpEnrolment({ enrolmentToken });
    assert.match(totp.uri, /^otpauth:\/\/totp\/Tresor:sec%40example\.test\?/);
    const wrong = String((Number(totpCode(totp.secret, now)) + 1) % 1_000_000).padStart(6, '0');
    assert.equal(
      (await refusal(people.confirmTotpEnrolment({ enrolmentToken }, totp.factorId, wrong))).code,
      'TRESOR_ERR_UNAUTHENTICATED',
    );
    assert.equal((await people.get(person.id))?.enrolledAt, null, 'not enrolled after a wrong code');
    const pending = await login.beginLogin({
      email: 'sec@example.test',
      password: PASSWORD,
      side: 'operator',
      address: '192.0.2.1',
    });
    const early = await refusal(login.completeLogin(pending.handle, { totp: totpCode(totp.secret, now) }));
    assert.equal(early.code, 'TRESOR_ERR_UNAUTHENTICATED', 'no login before enrolment completes');
    advance(30_000);
    const done = await people.confirmTotpEnrolment(
      { enrolmentToken },
      totp.factorId,
      totpCode(totp.secret, now),
    );
    assert.equal(done.enrolmentComplete, true);
    assert.equal(done.recoveryCodes?.length, 10);
    assert.equal((await people.get(person.id))?.enrolledAt, now.toISOString());
    // The enrolment token is spent.
    assert.equal(
      (await refusal(people.beginTotpEnrolment({ enrolmentToken }))).code,
      'TRESOR_ERR_UNAUTHENTICATED',
    );
  });

  it('refuses passwords that are too short or predictable (SP 800-63B)', async () => {
    const { enrolmentToken } = await people.createPerson(ADMIN, {
      side: 'operator',
      role: 'contractor',
      email: 'c@example.test',
    });
    for (const [password, reason] of [
      ['short', 'too-short'],
      ['password1234', 'common'],
      ['aaaaaaaaaaaaaaaa', 'repetitive-or-sequential'],
    ] as const) {
      const r = await refusal(people.setPassword(enrolmentToken, password));
      assert.equal(r.code, 'TRESOR_ERR_VALIDATION');
      assert.ok((r.details as { reasons: string[] }).reasons.includes(reason), `${password}: ${reason}`);
    }
  });

  it('a tenant admin cannot create a member of another tenant', async () => {
    const adminA = await enrolled('admin@a.test', 'tenant-admin', 'customer', 'ten_a');
    const actor = await sessions.authenticate((await adminA.logIn()).token);
    const own = await people.createPerson(actor, {
      side: 'customer',
      role: 'tenant-member',
      tenant: 'ten_a',
      email: 'm@a.test',
    });
    assert.equal(own.person.tenant, 'ten_a');
    const cross = await refusal(
      people.createPerson(actor, {
        side: 'customer',
        role: 'tenant-member',
        tenant: 'ten_b',
        email: 'm@b.test',
      }),
    );
    const staff = await refusal(
      people.createPerson(actor, { side: 'operator', role: 'support-agent', email: 's@x.test' }),
    );
    assert.equal(cross.code, 'TRESOR_ERR_FORBIDDEN');
    assert.deepEqual(staff, cross, 'one uniform refusal');
    const member = await enrolled('member@a.test', 'tenant-member', 'customer', 'ten_a', actor);
    const memberActor = await sessions.authenticate((await member.logIn()).token);
    assert.deepEqual(
      await refusal(
        people.createPerson(memberActor, {
          side: 'customer',
          role: 'tenant-member',
          tenant: 'ten_a',
          email: 'x@a.test',
        }),
      ),
      cross,
    );
    const denied = (await audit()).filter((e) => e.action === 'person.create' && e.outcome === 'denied');
    assert.equal(denied.length, 3);
    assert.equal(denied[0]?.target?.tenant, 'ten_b');
    assert.equal(
      (await control.db.selectFrom('people').select('id').where('tenant', '=', 'ten_b').execute()).length,
      0,
    );
  });

  it('keeps e-mail addresses unique per side and tenant', async () => {
    await people.createPerson(ADMIN, {
      side: 'customer',
      role: 'tenant-admin',
      tenant: 'ten_a',
      email: 'same@example.test',
    });
    await people.createPerson(ADMIN, {
      side: 'customer',
      role: 'tenant-admin',
      tenant: 'ten_b',
      email: 'same@example.test',
    });
    await people.createPerson(ADMIN, { side: 'operator', role: 'support-agent', email: 'same@example.test' });
    const dup = await refusal(
      people.createPerson(ADMIN, {
        side: 'customer',
        role: 'tenant-admin',
        tenant: 'ten_a',
        email: 'SAME@example.test',
      }),
    );
    assert.equal(dup.code, 'TRESOR_ERR_CONFLICT');
  });

  it("names a person's audit actor for WebAuthn ceremonies: customers with their tenant, staff as staff", async () => {
    const staff = await people.createPerson(ADMIN, {
      side: 'operator',
      role: 'support-agent',
      email: 's@example.test',
    });
    const customer = await people.createPerson(ADMIN, {
      side: 'customer',
      role: 'tenant-admin',
      tenant: 'ten_a',
      email: 'c@example.test',
    });
    assert.deepEqual(await personAuditActor(control, staff.person.id), { kind: 'staff', tenant: null });
    assert.deepEqual(await personAuditActor(control, customer.person.id), {
      kind: 'customer',
      tenant: 'ten_a',
    });
    assert.equal(await personAuditActor(control, 'psn_unknown'), undefined);
  });

  it('the TOTP secret is not stored in plaintext', async () => {
    const ada = await enrolled('ada@example.test');
    const raw = Buffer.from(Secret.fromBase32(ada.secret).bytes);
    // The store's files: control.sqlite and its WAL, or on PostgreSQL the database's files, the
    // cluster's WAL and pg_dump.
    const files =
      store.database.kind === 'postgres'
        ? (await databaseFiles({ dataDir: dir, database: store.database })).map((f) => ({
            name: f.path,
            bytes: f.bytes,
          }))
        : readdirSync(dir)
            .filter((f) => f.startsWith('control.sqlite'))
            .map((f) => ({ name: f, bytes: readFileSync(join(dir, f)) }));
    assert.ok(
      files.some((f) => f.name.endsWith('-wal') || f.name.includes('pg_wal')),
      'the WAL is checked too',
    );
    for (const { name, bytes } of files) {
      assert.equal(bytes.indexOf(ada.secret), -1, `${name} holds the base32 secret`);
      assert.equal(bytes.indexOf(raw), -1, `${name} holds the raw secret`);
    }
    const row = await control.db
      .selectFrom('second_factors')
      .selectAll()
      .where('id', '=', ada.factorId)
      .executeTakeFirstOrThrow();
    assert.match(row.secret_sealed ?? '', /^v1\./);
    assert.equal(openTotpSecret(factorKey, ada.person.id, ada.factorId, row.secret_sealed ?? ''), ada.secret);
    assert.throws(
      () => openTotpSecret(factorKey, 'psn_other', ada.factorId, row.secret_sealed ?? ''),
      'bound to its person',
    );
    assert.throws(() =>
      openTotpSecret(randomBytes(32), ada.person.id, ada.factorId, row.secret_sealed ?? ''),
    );
  });

  it('removing an account ends its sessions and grants at once', async () => {
    const ada = await enrolled('ada@example.test');
    const s1 = await ada.logIn();
    const s2 = await ada.logIn();
    await people.remove(ADMIN, ada.person.id);
    for (const s of [s1, s2])
      assert.equal((await refusal(sessions.authenticate(s.token))).code, 'TRESOR_ERR_UNAUTHENTICATED');
    assert.deepEqual(accessRemoved, [ada.person.id]);
    const removed = (await audit()).find((e) => e.action === 'person.remove');
    assert.deepEqual(
      [...((removed?.target?.sessionIds as string[] | undefined) ?? [])].sort(),
      [s1.session.id, s2.session.id].sort(),
    );
    // The address is free again, the old account stays removed.
    await people.createPerson(ADMIN, { side: 'operator', role: 'support-agent', email: 'ada@example.test' });
  });

  it('an admin factor reset revokes every factor, ends sessions and grants, and makes the person re-enrol', async () => {
    const ada = await enrolled('ada@example.test');
    const session = await ada.logIn();
    const reset = await people.resetFactors(ADMIN, ada.person.id);
    secrets.push(reset.enrolmentToken);
    assert.equal((await refusal(sessions.authenticate(session.token))).code, 'TRESOR_ERR_UNAUTHENTICATED');
    assert.deepEqual(accessRemoved, [ada.person.id]);
    assert.ok(
      (await people.listFactors(ada.person.id)).every((f) => f.revokedAt !== null),
      'all revoked',
    );
    assert.equal((await people.get(ada.person.id))?.enrolledAt, null, 'enrolling again');
    // The old TOTP and recovery codes no longer log in.
    for (const proof of [{ totp: totpCode(ada.secret, now) }, { recoveryCode: ada.recoveryCodes[0] ?? '' }]) {
      const pending = await login.beginLogin({
        email: 'ada@example.test',
        password: PASSWORD,
        side: 'operator',
        address: '192.0.2.1',
      });
      advance(120_000); // past the throttle's delay after the password step's failure (not enrolled)
      const refused = await refusal(login.completeLogin(pending.handle, proof));
      assert.equal(refused.code, 'TRESOR_ERR_UNAUTHENTICATED', String(refused.message));
      advance(120_000);
    }
    // Re-enrolment with the new token: a new TOTP completes it (the password stays) with new codes.
    const auth = { enrolmentToken: reset.enrolmentToken };
    assert.equal((await people.enrollingPerson(auth)).id, ada.person.id);
    const totp = await people.beginTotpEnrolment(auth);
    const done = await people.confirmTotpEnrolment(auth, totp.factorId, totpCode(totp.secret, now));
    secrets.push(totp.secret, ...(done.recoveryCodes ?? []));
    assert.equal(done.enrolmentComplete, true);
    assert.equal(done.recoveryCodes?.length, 10);
    const event = (await audit()).find((e) => e.action === 'person.factors-reset');
    assert.equal(event?.outcome, 'success');
    assert.deepEqual(event?.target?.sessionIds, [session.session.id]);
  });

  it('only a manager resets factors; a tenant admin not across tenants, nobody their own', async () => {
    const ada = await enrolled('ada@example.test');
    const tina = await enrolled('tina@a.test', 'tenant-admin', 'customer', 'ten_a');
    const tinaSession = await tina.logIn();
    const bob = await enrolled('bob@b.test', 'tenant-member', 'customer', 'ten_b', {
      kind: 'operator-admin',
      id: ADMIN.id,
    }).catch(() => undefined);
    assert.equal(bob, undefined, 'an operator admin makes no tenant members');
    const tinaActor = (await sessions.authenticate(tinaSession.token)) as IdentityActor;
    for (const [actor, target] of [
      [tinaActor, ada.person.id],
      [tinaActor, tina.person.id],
    ] as const) {
      assert.equal((await refusal(people.resetFactors(actor, target))).code, 'TRESOR_ERR_FORBIDDEN');
    }
    assert.ok((await audit()).some((e) => e.action === 'person.factors-reset' && e.outcome === 'denied'));
  });

  it('lists the accounts an actor manages: operator admins see staff and tenant admins, a tenant admin their tenant', async () => {
    const ada = await enrolled('ada@example.test');
    const tina = await enrolled('tina@a.test', 'tenant-admin', 'customer', 'ten_a');
    const ben = await enrolled('ben@b.test', 'tenant-admin', 'customer', 'ten_b');
    const tinaActor = (await sessions.authenticate((await tina.logIn()).token)) as IdentityActor;
    const member = await people.createPerson(tinaActor, {
      side: 'customer',
      role: 'tenant-member',
      tenant: 'ten_a',
      email: 'mo@a.test',
    });
    const byAdmin = (await people.list(ADMIN)).map((p) => p.id);
    assert.deepEqual(byAdmin.sort(), [ada.person.id, tina.person.id, ben.person.id].sort());
    const byTina = (await people.list(tinaActor)).map((p) => p.id);
    assert.deepEqual(byTina.sort(), [tina.person.id, member.person.id].sort());
    assert.deepEqual(
      (await people.list(ADMIN, { tenant: 'ten_b' })).map((p) => p.id),
      [ben.person.id],
    );
    assert.ok((await audit()).some((e) => e.action === 'person.list' && e.outcome === 'success'));
  });

  it('removing a role ends the sessions of the account too', async () => {
    const ada = await enrolled('ada@example.test');
    const s = await ada.logIn();
    const changed = await people.changeRole(ADMIN, ada.person.id, 'contractor');
    assert.equal(changed.role, 'contractor');
    assert.equal((await refusal(sessions.authenticate(s.token))).code, 'TRESOR_ERR_UNAUTHENTICATED');
    assert.deepEqual(accessRemoved, [ada.person.id]);
    assert.equal(
      (await refusal(people.changeRole(ADMIN, ada.person.id, 'tenant-member'))).code,
      'TRESOR_ERR_FORBIDDEN',
    );
  });

  it('revoking a passkey factor also ends the credential the WebAuthn ceremonies know, in the same commit', async () => {
    const ada = await enrolled('ada@example.test');
    const principal = await sessions.authenticate((await ada.logIn()).token);
    const credentialId = 'Y3JlZGVudGlhbC0xMjM0NTY3ODkw';
    await control.write((trx) =>
      trx
        .insertInto('webauthn_credentials')
        .values({
          id: credentialId,
          person: ada.person.id,
          public_key: 'cHVibGljLWtleS1ieXRlcy1vZi1hLWNvc2Uta2V5',
          counter: 0,
          transports: '[]',
          created_at: now.toISOString(),
          last_used_at: null,
          revoked_at: null,
        })
        .execute(),
    );
    const { factorId } = await people.registerWebauthnFactor(
      { session: principal },
      { credentialId, publicKey: 'cHVibGljLWtleS1ieXRlcy1vZi1hLWNvc2Uta2V5', signCount: 0, label: 'key' },
    );
    assert.ok(await people.findWebauthnCredential(credentialId));
    await people.revokeFactor(principal, factorId);
    const row = await control.db
      .selectFrom('webauthn_credentials')
      .select('revoked_at')
      .where('id', '=', credentialId)
      .executeTakeFirstOrThrow();
    assert.ok(row.revoked_at, 'the ceremony store no longer holds it live');
    assert.equal(await people.findWebauthnCredential(credentialId), undefined);
  });

  it('revokes a factor, but not the last TOTP or passkey without a replacement', async () => {
    const ada = await enrolled('ada@example.test');
    const principal = await sessions.authenticate((await ada.logIn()).token);
    const last = await refusal(people.revokeFactor(principal, ada.factorId));
    assert.equal(last.code, 'TRESOR_ERR_CONFLICT');
    const second = await people.beginTotpEnrolment({ session: principal }, { label: 'backup phone' });
    secrets.push(second.secret);
    await people.confirmTotpEnrolment({ session: principal }, second.factorId, totpCode(second.secret, now));
    await people.revokeFactor(principal, ada.factorId);
    const factors = await people.listFactors(ada.person.id);
    assert.ok(factors.find((f) => f.id === ada.factorId)?.revokedAt);
    assert.ok(!JSON.stringify(factors).includes(ada.secret), 'listing shows no secret');
    // A session whose second factor is not fresh cannot change factors.
    advance(11 * 60_000);
    const stale = await ada.logIn().then(
      () => 'logged in',
      () => 'refused',
    );
    assert.equal(stale, 'refused', 'the revoked factor no longer logs in');
    const refreshed = await sessions.authenticate(
      (
        await login.completeLogin(
          (
            await login.beginLogin({
              email: 'ada@example.test',
              password: PASSWORD,
              side: 'operator',
              address: '192.0.2.1',
            })
          ).handle,
          { totp: totpCode(second.secret, now) },
        )
      ).token,
    );
    advance(11 * 60_000);
    assert.equal(
      (await refusal(people.beginTotpEnrolment({ session: { ...refreshed } }))).code,
      'TRESOR_ERR_UNAUTHENTICATED',
      'a second factor older than 10 minutes is not fresh',
    );
  });

  it('an admin password reset keeps the second factor requirement', async () => {
    const ada = await enrolled('ada@example.test');
    const s = await ada.logIn();
    const { resetToken } = await people.resetPassword(ADMIN, ada.person.id);
    secrets.push(resetToken);
    assert.equal(
      (await refusal(sessions.authenticate(s.token))).code,
      'TRESOR_ERR_UNAUTHENTICATED',
      'sessions end',
    );
    assert.deepEqual(await people.setPassword(resetToken, NEW_PASSWORD), { enrolmentComplete: true });
    const pending = await login.beginLogin({
      email: 'ada@example.test',
      password: NEW_PASSWORD,
      side: 'operator',
      address: '192.0.2.1',
    });
    assert.equal(pending.next, 'second-factor');
    assert.equal(
      (await refusal(login.completeLogin(pending.handle, { totp: '' }))).code,
      'TRESOR_ERR_UNAUTHENTICATED',
      'no session without the second factor',
    );
    assert.equal(
      (await refusal(people.setPassword(resetToken, PASSWORD))).code,
      'TRESOR_ERR_UNAUTHENTICATED',
      'spent',
    );
    advance(60_000);
    const session = await login.completeLogin(
      (
        await login.beginLogin({
          email: 'ada@example.test',
          password: NEW_PASSWORD,
          side: 'operator',
          address: '192.0.2.1',
        })
      ).handle,
      { totp: totpCode(ada.secret, now) },
    );
    assert.ok(session.token);
  });

  it('a recovery code resets the password and lifts a lockout, but gives no session', async () => {
    const ada = await enrolled('ada@example.test');
    await lockOut('ada@example.test');
    const locked = await refusal(
      login.beginLogin({
        email: 'ada@example.test',
        password: PASSWORD,
        side: 'operator',
        address: '192.0.2.1',
      }),
    );
    assert.equal(locked.code, 'TRESOR_ERR_RATE_LIMITED');
    const bad = await refusal(
      people.resetPasswordWithRecoveryCode(
        {
          side: 'operator',
          email: 'ada@example.test',
          recoveryCode: 'AAAA-AAAA-AAAA-AAAA-AAAA-AAAA',
          newPassword: NEW_PASSWORD,
        },
        { sourceAddress: '192.0.2.1' },
      ),
    );
    assert.equal(bad.code, 'TRESOR_ERR_UNAUTHENTICATED');
    const result = await people.resetPasswordWithRecoveryCode(
      {
        side: 'operator',
        email: 'ada@example.test',
        recoveryCode: ada.recoveryCodes[0] ?? '',
        newPassword: NEW_PASSWORD,
      },
      { sourceAddress: '192.0.2.1' },
    );
    assert.equal(result, undefined, 'no session from a reset');
    const pending = await login.beginLogin({
      email: 'ada@example.test',
      password: NEW_PASSWORD,
      side: 'operator',
      address: '192.0.2.1',
    });
    const session = await login.completeLogin(pending.handle, { totp: totpCode(ada.secret, now) });
    assert.ok(session.token, 'lockout lifted, new password works, with the second factor');
  });

  it('lets an admin lift a lockout', async () => {
    const ada = await enrolled('ada@example.test');
    await lockOut('ada@example.test');
    await people.unlock(ADMIN, ada.person.id);
    const pending = await login.beginLogin({
      email: 'ada@example.test',
      password: PASSWORD,
      side: 'operator',
      address: '192.0.2.1',
    });
    assert.ok(await login.completeLogin(pending.handle, { totp: totpCode(ada.secret, now) }));
  });

  it('every change is audited and no audit event contains a password, code or token', async () => {
    const adminA = await enrolled('admin@a.test', 'tenant-admin', 'customer', 'ten_a');
    const actor = await sessions.authenticate((await adminA.logIn()).token);
    const member = await enrolled('member@a.test', 'tenant-member', 'customer', 'ten_a', actor);
    const s = await member.logIn();
    await sessions.logout(s.token);
    await people.changeRole(actor, member.person.id, 'tenant-admin');
    const { resetToken } = await people.resetPassword(actor, member.person.id);
    secrets.push(resetToken);
    await people.setPassword(resetToken, NEW_PASSWORD);
    await people.disable(actor, member.person.id);
    const events = await audit();
    const actions = new Set(events.map((e) => e.action));
    for (const action of [
      'person.create',
      'person.password-set',
      'factor.totp-begin',
      'factor.totp-confirm',
      'person.enrol',
      'auth.password',
      'auth.login',
      'auth.logout',
      'person.role-change',
      'person.password-reset-begin',
      'person.password-reset',
      'person.disable',
    ]) {
      assert.ok(actions.has(action), `${action} is audited`);
    }
    const text = JSON.stringify(await control.db.selectFrom('audit_events').select('event').execute());
    for (const secret of secrets) {
      assert.ok(secret.length >= 6);
      assert.ok(!text.includes(secret), 'a secret in the audit log');
    }
    for (const e of events) {
      if (e.action.startsWith('person.') && e.outcome === 'success') {
        assert.equal((e as unknown as { tenant: string | null }).tenant, 'ten_a');
      }
    }
  });
});
