// backends: sqlite postgres
/**
 * Two-step console login: password, then a second factor, then a new session. Every failure looks
 * the same from outside, is throttled and audited; codes are good once and only in their window.
 */
// First: it must see @node-rs/argon2 before passwords.ts does.
import '../helpers/argon2-calls.ts';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { createLoginService, type LoginService } from '../../src/identity/login.ts';
import { createPeopleService, type PeopleService } from '../../src/identity/people.ts';
import { createSessionService, type SessionService } from '../../src/identity/sessions.ts';
import { createWebAuthnService } from '../../src/identity/webauthn.ts';
import { createSqliteWebAuthnStore } from '../../src/identity/webauthn-store.ts';
import type { ControlDB } from '../../src/server/control-store.ts';
import type { Store } from '../../src/store/types.ts';
import { argon2Counted, takeArgon2Verifications } from '../helpers/argon2-calls.ts';
import { ADMIN, type EnrolArgs, enrolAccount, PASSWORD } from '../helpers/console-accounts.ts';
import { openTestControlStore, type TestControlStore } from '../helpers/control-store.ts';
import { refusal } from '../helpers/refusal.ts';
import { oathtool, totpCode } from '../helpers/totp.ts';

const ADDRESS = '192.0.2.1';

/** oathtool comes from the Debian package (.ci/run installs it); say so instead of failing obscurely. */
/** The independent generator must be there (.ci/run installs it): its absence fails, never skips. */
function requireOathtool(): void {
  try {
    execFileSync('oathtool', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('oathtool is not installed: apt-get install oathtool');
  }
}

describe('login', () => {
  let store: TestControlStore;
  let control: Store<ControlDB>;
  let now: Date;
  let people: PeopleService;
  let sessions: SessionService;
  let login: LoginService;

  const advance = (ms: number) => {
    now = new Date(now.getTime() + ms);
  };

  const enrolled = (...args: EnrolArgs) => enrolAccount({ people, login, now: () => now, advance }, ...args);

  const begin = (email: string, password = PASSWORD, address = ADDRESS) =>
    login.beginLogin({ email, password, side: 'operator', address, userAgent: 'test' });

  const audit = async () =>
    (await control.db.selectFrom('audit_events').selectAll().orderBy('seq').execute()).map(
      (r) => JSON.parse(r.event) as { action: string; outcome: string; target?: Record<string, unknown> },
    );

  beforeEach(async () => {
    store = await openTestControlStore('login');
    ({ control } = store);
    now = new Date('2030-06-01T00:00:15.000Z'); // mid-step
    const factorKey = randomBytes(32);
    sessions = createSessionService({ control, now: () => now });
    people = createPeopleService({ control, now: () => now, factorKey: async () => factorKey });
    login = createLoginService({ control, now: () => now, factorKey: async () => factorKey, sessions });
  });

  afterEach(() => store.close());

  it('logs in with a password and a TOTP code to a new session, never before the second factor', async () => {
    const ada = await enrolled('ada@example.test');
    const pending = await begin('ADA@example.test');
    assert.deepEqual(Object.keys(pending).sort(), ['expiresAt', 'factors', 'handle', 'next']);
    assert.equal(pending.next, 'second-factor');
    assert.equal((await control.db.selectFrom('sessions').selectAll().execute()).length, 0, 'no session yet');
    const session = await login.completeLogin(pending.handle, { totp: totpCode(ada.secret, now) });
    assert.match(session.token, /^[A-Za-z0-9_-]{43}$/);
    const principal = await sessions.authenticate(session.token);
    assert.equal(principal.personId, ada.person.id);
    assert.deepEqual(principal.factors, ['password', 'totp']);
    assert.equal(principal.fresh2faAt, now.toISOString());
  });

  it('gives the same WebAuthn options for a right and a wrong password, naming no credential', async () => {
    const webauthn = createWebAuthnService({
      rpId: 'localhost',
      rpName: 'Tresor',
      origins: ['https://localhost:8443'],
      store: createSqliteWebAuthnStore(control),
      now: () => now,
    });
    const withWebauthn = createLoginService({
      control,
      now: () => now,
      factorKey: async () => randomBytes(32),
      sessions,
      webauthn,
    });
    await enrolled('ada@example.test');
    const right = await begin('ada@example.test');
    const wrong = await begin('ada@example.test', 'not the password at all');
    const shapes = [];
    for (const pending of [right, wrong]) {
      const options = await withWebauthn.webauthnLoginOptions(pending.handle);
      assert.deepEqual(options.allowCredentials ?? [], [], 'discoverable: no credential named');
      const { challenge, ...rest } = options;
      assert.match(challenge, /^[A-Za-z0-9_-]{43}$/);
      shapes.push(rest);
    }
    assert.deepEqual(shapes[0], shapes[1]);
    // A refused assertion counts like a wrong code: the one 401, audited as a login failure.
    const bogus = {
      id: 'AAAAAAAAAAAAAAAAAAAAAA',
      rawId: 'AAAAAAAAAAAAAAAAAAAAAA',
      type: 'public-key',
      response: {},
    };
    for (const pending of [right, wrong]) {
      const refused = await refusal(withWebauthn.completeWebauthnLogin(pending.handle, bogus));
      assert.equal(refused.code, 'TRESOR_ERR_UNAUTHENTICATED');
    }
    const failures = (await audit()).filter(
      (e) => e.action === 'auth.login' && e.outcome === 'failure' && e.target?.step === 'second-factor',
    );
    assert.equal(failures.length, 2);
    // An unknown handle gets no options.
    const unknown = await refusal(withWebauthn.webauthnLoginOptions(randomBytes(32).toString('base64url')));
    assert.equal(unknown.code, 'TRESOR_ERR_UNAUTHENTICATED');
  });

  it('accepts a code computed by oathtool', async () => {
    requireOathtool();
    const ada = await enrolled('ada@example.test');
    const pending = await begin('ada@example.test');
    const session = await login.completeLogin(pending.handle, { totp: oathtool(ada.secret, now) });
    assert.equal((await sessions.authenticate(session.token)).personId, ada.person.id);
  });

  it('refuses a replayed TOTP code', async () => {
    const ada = await enrolled('ada@example.test');
    const used = totpCode(ada.secret, now);
    await login.completeLogin((await begin('ada@example.test')).handle, { totp: used });
    advance(1_000); // same 30 s step
    const again = await refusal(
      login.completeLogin((await begin('ada@example.test')).handle, { totp: used }),
    );
    assert.equal(again.code, 'TRESOR_ERR_UNAUTHENTICATED');
    const failure = (await audit())
      .filter((e) => e.action === 'auth.login' && e.outcome === 'failure')
      .at(-1);
    assert.equal(failure?.target?.reason, 'replayed');
  });

  it('refuses wrong and out-of-window codes with one error, and audits them without the code', async () => {
    const ada = await enrolled('ada@example.test');
    const wrong = () => String((Number(totpCode(ada.secret, now)) + 1) % 1_000_000).padStart(6, '0');
    const old = () => totpCode(ada.secret, new Date(now.getTime() - 90_000)); // three steps back
    const future = () => totpCode(ada.secret, new Date(now.getTime() + 90_000));
    const refusals = [];
    const tried: string[] = [];
    for (const make of [wrong, old, future, () => 'abcdef', () => '']) {
      const totp = make();
      tried.push(totp);
      refusals.push(await refusal(login.completeLogin((await begin('ada@example.test')).handle, { totp })));
      advance(60_000); // past the throttle's delays
    }
    for (const r of refusals) assert.deepEqual(r, refusals[0]);
    assert.equal(refusals[0]?.code, 'TRESOR_ERR_UNAUTHENTICATED');
    const events = JSON.stringify(await audit());
    for (const c of tried.slice(0, 3)) assert.ok(!events.includes(`"${c}"`), 'no code in the audit');
  });

  it('an unknown account and a wrong password answer the same', async () => {
    const ada = await enrolled('ada@example.test');
    const valid = totpCode(ada.secret, now);
    const unknown = await begin('nobody@example.test');
    const wrong = await begin('ada@example.test', 'a wrong but long passphrase');
    assert.deepEqual(Object.keys(unknown), Object.keys(wrong));
    assert.deepEqual(unknown.factors, wrong.factors);
    assert.equal(unknown.expiresAt, wrong.expiresAt);
    const a = await refusal(login.completeLogin(unknown.handle, { totp: valid }));
    const b = await refusal(login.completeLogin(wrong.handle, { totp: valid }));
    assert.deepEqual(a, b);

    // The same work: the unknown account pays for an argon2id verification too, at the same cost.
    assert.ok(await argon2Counted(), 'argon2 verifications are counted');
    advance(3_600_000); // no throttle in the way
    takeArgon2Verifications();
    await begin('nobody2@example.test', 'x', '198.51.100.2').catch(() => undefined);
    const forUnknown = takeArgon2Verifications();
    await begin('ada@example.test', 'x', '198.51.100.12').catch(() => undefined);
    const forWrong = takeArgon2Verifications();
    assert.equal(forWrong.length, 1, 'a wrong password is verified once');
    assert.match(forWrong[0] ?? '', /^argon2id\$v=19\$m=\d+,t=\d+,p=\d+$/);
    assert.deepEqual(forUnknown, forWrong, 'an unknown account is verified once, at the same cost');
  });

  it('answers a disabled account like a wrong password', async () => {
    const ada = await enrolled('ada@example.test');
    await people.disable(ADMIN, ada.person.id);
    const pending = await begin('ada@example.test');
    assert.equal(pending.next, 'second-factor');
    const r = await refusal(login.completeLogin(pending.handle, { totp: totpCode(ada.secret, now) }));
    assert.equal(r.code, 'TRESOR_ERR_UNAUTHENTICATED');
    const failures = (await audit()).filter((e) => e.action === 'auth.login' && e.outcome === 'failure');
    assert.equal(failures[0]?.target?.reason, 'disabled');
  });

  it('refuses an expired pending login and a handle spent by three wrong codes', async () => {
    const ada = await enrolled('ada@example.test');
    const pending = await begin('ada@example.test');
    advance(5 * 60_000);
    assert.equal(
      (await refusal(login.completeLogin(pending.handle, { totp: totpCode(ada.secret, now) }))).code,
      'TRESOR_ERR_UNAUTHENTICATED',
    );
    const spent = await begin('ada@example.test');
    for (let i = 0; i < 3; i++) {
      await refusal(login.completeLogin(spent.handle, { totp: '000000' }));
      advance(10_000);
    }
    advance(60_000);
    assert.equal(
      (await refusal(login.completeLogin(spent.handle, { totp: totpCode(ada.secret, now) }))).code,
      'TRESOR_ERR_UNAUTHENTICATED',
    );
  });

  it('logs in once with each recovery code', async () => {
    const ada = await enrolled('ada@example.test');
    const [first] = ada.recoveryCodes;
    assert.ok(first);
    const session = await login.completeLogin((await begin('ada@example.test')).handle, {
      recoveryCode: first,
    });
    assert.deepEqual((await sessions.authenticate(session.token)).factors, ['password', 'recovery']);
    const again = await refusal(
      login.completeLogin((await begin('ada@example.test')).handle, { recoveryCode: first }),
    );
    assert.equal(again.code, 'TRESOR_ERR_UNAUTHENTICATED');
    const recovery = (await people.listFactors(ada.person.id)).find((f) => f.kind === 'recovery');
    assert.equal(recovery?.remaining, 9);
  });

  it('accepts a verified WebAuthn assertion only for a live credential of the account', async () => {
    const ada = await enrolled('ada@example.test');
    const bob = await enrolled('bob@example.test');
    const credentialId = randomBytes(32).toString('base64url');
    const session = await login.completeLogin((await begin('ada@example.test')).handle, {
      totp: totpCode(ada.secret, now),
    });
    const principal = await sessions.authenticate(session.token);
    const passkey = await people.registerWebauthnFactor(
      { session: principal },
      { credentialId, publicKey: randomBytes(77).toString('base64url'), signCount: 0 },
    );
    assert.equal((await people.findWebauthnCredential(credentialId))?.personId, ada.person.id);
    const viaPasskey = await login.completeLogin((await begin('ada@example.test')).handle, {
      webauthnVerified: { credentialId, signCount: 7 },
    });
    assert.equal((await people.findWebauthnCredential(credentialId))?.signCount, 7);
    assert.deepEqual((await sessions.authenticate(viaPasskey.token)).factors, ['password', 'webauthn']);
    const asBob = await refusal(
      login.completeLogin((await begin('bob@example.test')).handle, { webauthnVerified: { credentialId } }),
    );
    assert.equal(asBob.code, 'TRESOR_ERR_UNAUTHENTICATED');
    assert.ok(bob.person.id);
    await people.revokeFactor(principal, passkey.factorId);
    advance(60_000);
    const revoked = await refusal(
      login.completeLogin((await begin('ada@example.test')).handle, { webauthnVerified: { credentialId } }),
    );
    assert.equal(revoked.code, 'TRESOR_ERR_UNAUTHENTICATED');
    assert.equal(await people.findWebauthnCredential(credentialId), undefined);
  });

  it('locks the account after 10 failed tries, for a real and an unknown account alike', async () => {
    await enrolled('ada@example.test');
    for (const email of ['ada@example.test', 'nobody@example.test']) {
      let failures = 0;
      while (failures < 10) {
        try {
          await begin(email, 'not the password at all', `203.0.113.${failures}`);
          failures++;
        } catch (error) {
          const retry =
            (error as { details?: { retryAfterSeconds?: number } }).details?.retryAfterSeconds ?? 1;
          advance(retry * 1000);
        }
      }
      const locked = await refusal(begin(email, PASSWORD, '203.0.113.99'));
      assert.equal(locked.code, 'TRESOR_ERR_RATE_LIMITED', `${email} is locked even with the right password`);
    }
    const events = await audit();
    assert.equal(events.filter((e) => e.action === 'auth.lockout').length, 2);
    assert.ok(events.some((e) => e.action === 'auth.login' && e.outcome === 'denied'));
  });

  it('re-authentication replaces the session token and records a fresh second factor', async () => {
    const ada = await enrolled('ada@example.test');
    const first = await login.completeLogin((await begin('ada@example.test')).handle, {
      totp: totpCode(ada.secret, now),
    });
    advance(5 * 60_000);
    const principal = await sessions.authenticate(first.token);
    const second = await login.reauthenticate(principal, { totp: totpCode(ada.secret, now) });
    assert.notEqual(second.token, first.token);
    assert.notEqual(second.csrfToken, first.csrfToken);
    assert.equal((await refusal(sessions.authenticate(first.token))).code, 'TRESOR_ERR_UNAUTHENTICATED');
    const fresh = await sessions.authenticate(second.token);
    assert.equal(fresh.fresh2faAt, now.toISOString());
    assert.equal(
      second.session.absoluteExpiresAt,
      first.session.absoluteExpiresAt,
      'no extension without a password',
    );
    const replay = await refusal(login.reauthenticate(fresh, { totp: totpCode(ada.secret, now) }));
    assert.equal(replay.code, 'TRESOR_ERR_UNAUTHENTICATED');
  });
});
