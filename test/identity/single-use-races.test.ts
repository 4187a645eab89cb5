// backends: sqlite postgres
/**
 * "Used once" holds when two nodes race: every single-use rule is a conditional update (or a
 * DELETE … RETURNING) whose affected-row count decides, never a read followed by a write. Each test
 * opens two handles on one control store file (two connections, as two server processes would) and
 * races the same use through both: exactly one succeeds, the other gets the usual refusal.
 *
 * On SQLite a write transaction starts with BEGIN IMMEDIATE, which already serialises the two
 * handles; PostgreSQL under READ COMMITTED does not, and there the row counts are what decide. The
 * same tests run against PostgreSQL when the store helpers open one.
 */
// First: it must see @node-rs/argon2 before passwords.ts does.
import '../helpers/argon2-calls.ts';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { createLoginService, type LoginService } from '../../src/identity/login.ts';
import { createPeopleService, type PeopleService } from '../../src/identity/people.ts';
import { createSessionService, type SessionService } from '../../src/identity/sessions.ts';
import { createSqliteWebAuthnStore } from '../../src/identity/webauthn-store.ts';
import { openControlOf } from '../../src/server/backend.ts';
import type { ControlDB } from '../../src/server/control-store.ts';
import type { Store } from '../../src/store/types.ts';
import { ADMIN, enrolAccount, PASSWORD } from '../helpers/console-accounts.ts';
import { openTestControlStore, type TestControlStore } from '../helpers/control-store.ts';
import { totpCode } from '../helpers/totp.ts';

const ADDRESS = '192.0.2.1';
const NEW_PASSWORD = 'a different horse battery staple';

/** One node's identity services over its own handle on the shared control store. */
interface Node {
  control: Store<ControlDB>;
  people: PeopleService;
  sessions: SessionService;
  login: LoginService;
}

/** Exactly one of two racing attempts succeeded; the other was refused with `code`. */
function assertExactlyOne(results: PromiseSettledResult<unknown>[], code: string, what: string): void {
  const ok = results.filter((r) => r.status === 'fulfilled');
  const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(ok.length, 1, `${what}: ${ok.length} of ${results.length} succeeded`);
  for (const r of refused) assert.equal((r.reason as { code?: string }).code, code, `${what}: ${r.reason}`);
}

describe('single-use rules under races between two store handles', () => {
  let shared: TestControlStore;
  let a: Node;
  let b: Node;
  let now: Date;
  const factorKey = randomBytes(32);

  const node = (control: Store<ControlDB>): Node => {
    const sessions = createSessionService({ control, now: () => now });
    return {
      control,
      sessions,
      people: createPeopleService({ control, now: () => now, factorKey: async () => factorKey }),
      login: createLoginService({ control, now: () => now, factorKey: async () => factorKey, sessions }),
    };
  };
  const advance = (ms: number) => {
    now = new Date(now.getTime() + ms);
  };
  const enrolled = (email: string) =>
    enrolAccount({ people: a.people, login: a.login, now: () => now, advance }, email);
  const begin = (n: Node, email: string) =>
    n.login.beginLogin({ email, password: PASSWORD, side: 'operator', address: ADDRESS, userAgent: 'test' });

  beforeEach(async () => {
    now = new Date('2030-06-01T00:00:15.000Z'); // mid-step
    shared = await openTestControlStore('guarantees-races');
    // A second handle on the same store: the same SQLite file, or the same PostgreSQL database.
    const second = await openControlOf({ dataDir: shared.dir, database: shared.database });
    a = node(shared.control);
    b = node(second);
  });

  afterEach(async () => {
    await b.control.close();
    await shared.close();
  });

  it('accepts a TOTP code once when two logins race with it', async () => {
    const ada = await enrolled('ada@example.test');
    const [ha, hb] = [await begin(a, 'ada@example.test'), await begin(b, 'ada@example.test')];
    const code = totpCode(ada.secret, now);
    const results = await Promise.allSettled([
      a.login.completeLogin(ha.handle, { totp: code }),
      b.login.completeLogin(hb.handle, { totp: code }),
    ]);
    assertExactlyOne(results, 'TRESOR_ERR_UNAUTHENTICATED', 'the same TOTP code');
  });

  it('accepts a recovery code once when two logins race with it', async () => {
    const ada = await enrolled('ada@example.test');
    const [code] = ada.recoveryCodes;
    assert.ok(code);
    const [ha, hb] = [await begin(a, 'ada@example.test'), await begin(b, 'ada@example.test')];
    const results = await Promise.allSettled([
      a.login.completeLogin(ha.handle, { recoveryCode: code }),
      b.login.completeLogin(hb.handle, { recoveryCode: code }),
    ]);
    assertExactlyOne(results, 'TRESOR_ERR_UNAUTHENTICATED', 'the same recovery code');
    const recovery = (await a.people.listFactors(ada.person.id)).find((f) => f.kind === 'recovery');
    assert.equal(recovery?.remaining, 9, 'one code spent');
  });

  it('spends two different recovery codes of one set when they race (neither is lost)', async () => {
    const ada = await enrolled('ada@example.test');
    const [first, second] = ada.recoveryCodes;
    assert.ok(first && second);
    const [ha, hb] = [await begin(a, 'ada@example.test'), await begin(b, 'ada@example.test')];
    const results = await Promise.allSettled([
      a.login.completeLogin(ha.handle, { recoveryCode: first }),
      b.login.completeLogin(hb.handle, { recoveryCode: second }),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled'],
    );
    const recovery = (await a.people.listFactors(ada.person.id)).find((f) => f.kind === 'recovery');
    assert.equal(recovery?.remaining, 8, 'both codes spent');
  });

  it('completes a pending login once when two requests race with one handle', async () => {
    const ada = await enrolled('ada@example.test');
    const [code] = ada.recoveryCodes;
    assert.ok(code);
    const pending = await begin(a, 'ada@example.test');
    // Two different valid proofs, so only the handle can stop the second.
    const results = await Promise.allSettled([
      a.login.completeLogin(pending.handle, { totp: totpCode(ada.secret, now) }),
      b.login.completeLogin(pending.handle, { recoveryCode: code }),
    ]);
    assertExactlyOne(results, 'TRESOR_ERR_UNAUTHENTICATED', 'one login handle');
    const live = await a.control.db
      .selectFrom('sessions')
      .select('id')
      .where('person', '=', ada.person.id)
      .where('revoked_at', 'is', null)
      .execute();
    assert.equal(live.length, 1, 'one session');
  });

  it('sets a password once when two requests race with one reset token', async () => {
    const ada = await enrolled('ada@example.test');
    const { resetToken } = await a.people.resetPassword(ADMIN, ada.person.id);
    const results = await Promise.allSettled([
      a.people.setPassword(resetToken, NEW_PASSWORD),
      b.people.setPassword(resetToken, `${NEW_PASSWORD} too`),
    ]);
    assertExactlyOne(results, 'TRESOR_ERR_UNAUTHENTICATED', 'one reset token');
  });

  it('confirms a TOTP factor being enrolled once, and issues one set of recovery codes', async () => {
    const { person, enrolmentToken } = await a.people.createPerson(ADMIN, {
      side: 'operator',
      role: 'support-agent',
      email: 'bo@example.test',
    });
    await a.people.setPassword(enrolmentToken, PASSWORD);
    const totp = await a.people.beginTotpEnrolment({ enrolmentToken });
    const code = totpCode(totp.secret, now);
    const results = await Promise.allSettled([
      a.people.confirmTotpEnrolment({ enrolmentToken }, totp.factorId, code),
      b.people.confirmTotpEnrolment({ enrolmentToken }, totp.factorId, code),
    ]);
    assertExactlyOne(results, 'TRESOR_ERR_UNAUTHENTICATED', 'one enrolment confirmation');
    const sets = await a.control.db
      .selectFrom('second_factors')
      .select('id')
      .where('person', '=', person.id)
      .where('kind', '=', 'recovery')
      .execute();
    assert.equal(sets.length, 1, 'one recovery code set');
  });

  it('hands a WebAuthn challenge to one of two racing ceremonies', async () => {
    const ada = await enrolled('ada@example.test');
    const [sa, sb] = [createSqliteWebAuthnStore(a.control), createSqliteWebAuthnStore(b.control)];
    await sa.putChallenge({
      person: ada.person.id,
      kind: 'authentication',
      challenge: randomBytes(32).toString('base64url'),
      expiresAt: new Date(now.getTime() + 60_000).toISOString(),
    });
    const taken = await Promise.all([
      sa.takeChallenge(ada.person.id, 'authentication'),
      sb.takeChallenge(ada.person.id, 'authentication'),
    ]);
    assert.equal(taken.filter((t) => t !== undefined).length, 1);
  });
});
