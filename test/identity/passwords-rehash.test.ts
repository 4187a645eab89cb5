// backends: sqlite postgres
/**
 * Transparent rehash: a right password whose stored hash was made with older argon2id settings
 * (here the former OWASP minimum, m=19456 KiB, t=2, p=1) is hashed again at today's settings during
 * the password step of a login, in the same write as that step's audit entry; a wrong password, or a
 * hash already at today's settings, changes nothing. No hash ever reaches the audit log.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { hash as argon2Hash } from '@node-rs/argon2';
import { createLoginService, type LoginService } from '../../src/identity/login.ts';
import { argon2idOptions, needsRehash, verifyPassword } from '../../src/identity/passwords.ts';
import { createPeopleService, type PeopleService } from '../../src/identity/people.ts';
import { createSessionService } from '../../src/identity/sessions.ts';
import type { ControlDB } from '../../src/server/control-store.ts';
import type { Store } from '../../src/store/types.ts';
import { enrolAccount, PASSWORD } from '../helpers/console-accounts.ts';
import { openTestControlStore, type TestControlStore } from '../helpers/control-store.ts';

const FORMER_OWASP = {
  algorithm: 2,
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
  outputLen: 32,
} as const;

describe('transparent password rehash at login', () => {
  let store: TestControlStore;
  let control: Store<ControlDB>;
  let now: Date;
  let people: PeopleService;
  let login: LoginService;

  const advance = (ms: number) => {
    now = new Date(now.getTime() + ms);
  };

  const begin = (email: string, password = PASSWORD) =>
    login.beginLogin({ email, password, side: 'operator', address: '192.0.2.7', userAgent: 'test' });

  const person = async (id: string) =>
    control.db.selectFrom('people').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

  const passwordSteps = async () =>
    (await control.db.selectFrom('audit_events').selectAll().orderBy('seq').execute())
      .map(
        (r) => JSON.parse(r.event) as { action: string; outcome: string; target?: Record<string, unknown> },
      )
      .filter((e) => e.action === 'auth.password');

  /** An enrolled account whose stored hash is the same password at the former OWASP settings. */
  async function withFormerHash(email: string) {
    const account = await enrolAccount({ people, login, now: () => now, advance }, email);
    const former = await argon2Hash(PASSWORD, FORMER_OWASP);
    await control.write((trx) =>
      trx.updateTable('people').set({ password_hash: former }).where('id', '=', account.person.id).execute(),
    );
    return { id: account.person.id, former };
  }

  beforeEach(async () => {
    store = await openTestControlStore('passwords-rehash');
    ({ control } = store);
    now = new Date('2030-06-01T00:00:15.000Z');
    const factorKey = randomBytes(32);
    const sessions = createSessionService({ control, now: () => now });
    people = createPeopleService({ control, now: () => now, factorKey: async () => factorKey });
    login = createLoginService({ control, now: () => now, factorKey: async () => factorKey, sessions });
  });

  afterEach(() => store.close());

  it('replaces a hash made with older settings once the password is verified, and says so in the audit', async () => {
    const { id, former } = await withFormerHash('ada@example.test');
    assert.equal(needsRehash(former), true);
    const before = await person(id);
    const stepsBefore = (await passwordSteps()).length;

    await begin('ada@example.test');

    const after = await person(id);
    assert.ok(after.password_hash, 'a hash is stored');
    assert.notEqual(after.password_hash, former, 'the old hash is gone');
    const { memoryCost, timeCost, parallelism } = argon2idOptions();
    assert.match(
      after.password_hash,
      new RegExp(`^\\$argon2id\\$v=19\\$m=${memoryCost},t=${timeCost},p=${parallelism}\\$`),
    );
    assert.equal(needsRehash(after.password_hash), false);
    assert.equal(
      await verifyPassword(after.password_hash, PASSWORD),
      true,
      'the same password still opens it',
    );
    assert.equal(after.password_set_at, before.password_set_at, 'not a password change');

    const steps = (await passwordSteps()).slice(stepsBefore);
    assert.equal(steps.length, 1);
    assert.equal(steps[0]?.outcome, 'success');
    assert.equal(steps[0]?.target?.rehashed, true);
    const events = (await control.db.selectFrom('audit_events').select('event').execute()).map(
      (r) => r.event,
    );
    assert.ok(!events.some((e) => e.includes('$argon2')), 'no hash, old or new, in any audit entry');

    await begin('ada@example.test');
    const again = await passwordSteps();
    assert.equal(again.at(-1)?.target?.rehashed, undefined, 'a current hash is not rehashed again');
    assert.equal((await person(id)).password_hash, after.password_hash);
  });

  it('leaves the old hash alone when the password is wrong', async () => {
    const { id, former } = await withFormerHash('bob@example.test');
    await begin('bob@example.test', 'not the password at all, no');
    assert.equal((await person(id)).password_hash, former);
    assert.ok(!(await passwordSteps()).some((e) => e.target?.rehashed === true));
  });

  it('leaves the old hash alone when the account is disabled, even with the right password', async () => {
    const { id, former } = await withFormerHash('cyd@example.test');
    await control.write((trx) =>
      trx.updateTable('people').set({ disabled_at: now.toISOString() }).where('id', '=', id).execute(),
    );
    await begin('cyd@example.test');
    assert.equal((await person(id)).password_hash, former);
  });
});
