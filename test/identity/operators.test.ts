/**
 * Operator admins: the bootstrap admin is made once, its password argon2id-hashed and its token
 * stored as a hash; password and token authenticate to an operator-admin principal, and every
 * failure is the same refusal, paying for the same argon2id verification.
 */
// First: it must see @node-rs/argon2 before operators.ts does.
import '../helpers/argon2-calls.ts';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { createOperatorService, type OperatorService } from '../../src/identity/operators.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import { argon2Counted, takeArgon2Verifications } from '../helpers/argon2-calls.ts';
import { refusal } from '../helpers/refusal.ts';

describe('operator admins', () => {
  let dir: string;
  let control: Store<ControlDB>;
  let now: Date;
  let operators: OperatorService;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-operators-'));
    control = await openSqliteStore<ControlDB>(join(dir, 'control.sqlite'), controlStoreMigrations);
    now = new Date('2030-06-01T00:00:00.000Z');
    operators = createOperatorService({ control, clock: () => now, logger: { warn: () => {} } });
  });

  afterEach(async () => {
    await operators.flush();
    await control.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('verifies a password in its NFKC form, as passwords.ts hashes it', async () => {
    const { hashPassword } = await import('../../src/identity/passwords.ts');
    const password = 'ﬁve ﬁsh swim in the lake'; // U+FB01 ligatures; NFKC → 'five fish …'
    await control.write((trx) =>
      trx
        .insertInto('operators')
        .values({
          id: 'opr_000000000000000000000001',
          email: 'nfkc@example.test',
          password_hash: '',
          created_at: now.toISOString(),
          disabled_at: null,
        })
        .execute(),
    );
    const hash = await hashPassword(password);
    await control.write((trx) =>
      trx
        .updateTable('operators')
        .set({ password_hash: hash })
        .where('email', '=', 'nfkc@example.test')
        .execute(),
    );
    const principal = await operators.verifyOperatorPassword('nfkc@example.test', password);
    assert.equal(principal.kind, 'operator-admin');
    const same = await operators.verifyOperatorPassword('nfkc@example.test', password.normalize('NFKC'));
    assert.equal(same.id, principal.id);
  });

  it('creates the bootstrap admin once and returns its password and token only then', async () => {
    const admin = await operators.ensureBootstrapAdmin({ email: ' Admin@Example.test ' });
    assert.ok(admin);
    assert.equal(admin.email, 'admin@example.test');
    assert.ok(admin.password.length >= 20);
    assert.match(admin.token, /^tresor_op_[0-9a-f]{24}_[A-Za-z0-9_-]{43}$/);
    assert.equal(await operators.ensureBootstrapAdmin({ email: 'admin@example.test' }), undefined);
    assert.equal(await operators.ensureBootstrapAdmin({ email: 'other@example.test' }), undefined);
    const rows = await control.db.selectFrom('operators').selectAll().execute();
    assert.equal(rows.length, 1);
    const events = await control.db.selectFrom('audit_events').selectAll().execute();
    assert.deepEqual(
      events.map((e) => e.action),
      ['operator.create'],
    );
    assert.ok(!JSON.stringify(events).includes(admin.password));
    assert.ok(!JSON.stringify(events).includes(admin.token.slice(-43)));
  });

  it('stores the password only as an argon2id hash with OWASP parameters, and the token only as a hash', async () => {
    const admin = await operators.ensureBootstrapAdmin({ email: 'admin@example.test' });
    assert.ok(admin);
    const row = await control.db.selectFrom('operators').selectAll().executeTakeFirstOrThrow();
    assert.match(row.password_hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    const files = readdirSync(dir).filter((f) => f.startsWith('control.sqlite'));
    assert.ok(files.length > 0);
    for (const file of files) {
      const bytes = readFileSync(join(dir, file));
      assert.equal(bytes.indexOf(admin.password), -1, `${file} holds the password`);
      assert.equal(bytes.indexOf(admin.token.slice(-43)), -1, `${file} holds the token secret`);
    }
  });

  it('verifies the password to an operator-admin principal', async () => {
    const admin = await operators.ensureBootstrapAdmin({ email: 'admin@example.test' });
    assert.ok(admin);
    const principal = await operators.verifyOperatorPassword('ADMIN@example.test', admin.password);
    assert.deepEqual(principal, { kind: 'operator-admin', id: admin.id, method: 'password' });
  });

  it('refuses a wrong password, an unknown e-mail and a disabled operator alike, in comparable time', async () => {
    const admin = await operators.ensureBootstrapAdmin({ email: 'admin@example.test' });
    assert.ok(admin);
    const wrong = await refusal(operators.verifyOperatorPassword('admin@example.test', `${admin.password}x`));
    const unknown = await refusal(operators.verifyOperatorPassword('nobody@example.test', admin.password));
    const malformed = await refusal(operators.verifyOperatorPassword('not an email', admin.password));
    const empty = await refusal(operators.verifyOperatorPassword('admin@example.test', ''));
    assert.equal(wrong.code, 'TRESOR_ERR_UNAUTHENTICATED');
    for (const r of [unknown, malformed, empty]) assert.deepEqual(r, wrong);

    // The unknown e-mail pays for an argon2id verification too, against a dummy hash of the same
    // cost: without it, it would answer in a fraction of the time and tell which e-mails exist.
    assert.ok(await argon2Counted(), 'argon2 verifications are counted');
    takeArgon2Verifications();
    await operators.verifyOperatorPassword('admin@example.test', 'nope').catch(() => undefined);
    const forWrong = takeArgon2Verifications();
    await operators.verifyOperatorPassword('nobody@example.test', 'nope').catch(() => undefined);
    const forUnknown = takeArgon2Verifications();
    assert.equal(forWrong.length, 1, 'a wrong password is verified once');
    assert.match(forWrong[0] ?? '', /^argon2id\$v=19\$m=\d+,t=\d+,p=\d+$/);
    assert.deepEqual(forUnknown, forWrong, 'an unknown e-mail is verified once, at the same cost');

    await control.write((trx) =>
      trx.updateTable('operators').set({ disabled_at: now.toISOString() }).execute(),
    );
    assert.deepEqual(
      await refusal(operators.verifyOperatorPassword('admin@example.test', admin.password)),
      wrong,
    );
    assert.deepEqual(await refusal(operators.authenticateOperatorToken(admin.token)), wrong);
  });

  it('authenticates the automation token as an operator-admin principal; revoked or expired tokens are refused', async () => {
    const admin = await operators.ensureBootstrapAdmin({ email: 'admin@example.test' });
    assert.ok(admin);
    assert.deepEqual(await operators.authenticateOperatorToken(admin.token), {
      kind: 'operator-admin',
      id: admin.id,
      method: 'token',
    });
    const context = { actor: { kind: 'operator-admin' as const, id: admin.id } };
    const expiring = await operators.issueOperatorToken(
      admin.id,
      { expiresAt: '2030-06-02T00:00:00Z' },
      context,
    );
    assert.equal((await operators.authenticateOperatorToken(expiring.token)).id, admin.id);
    await operators.revokeOperatorToken(expiring.id, context);
    const revoked = await refusal(operators.authenticateOperatorToken(expiring.token));
    assert.equal(revoked.code, 'TRESOR_ERR_UNAUTHENTICATED');

    const later = await operators.issueOperatorToken(
      admin.id,
      { expiresAt: '2030-06-02T00:00:00Z' },
      context,
    );
    now = new Date('2030-06-02T00:00:00.000Z');
    assert.deepEqual(await refusal(operators.authenticateOperatorToken(later.token)), revoked);
    const secret = admin.token.slice(-43);
    const wrongSecret = admin.token.slice(0, -43) + (secret.startsWith('A') ? 'B' : 'A') + secret.slice(1);
    assert.deepEqual(await refusal(operators.authenticateOperatorToken(wrongSecret)), revoked);
    const events = JSON.stringify(await control.db.selectFrom('audit_events').selectAll().execute());
    assert.ok(!events.includes(expiring.token.slice(-43)));
  });

  it('records the token last use at most once a minute', async () => {
    const admin = await operators.ensureBootstrapAdmin({ email: 'admin@example.test' });
    assert.ok(admin);
    for (let i = 0; i < 5; i++) await operators.authenticateOperatorToken(admin.token);
    await operators.flush();
    const row = await control.db
      .selectFrom('operator_tokens')
      .select('last_used_at')
      .executeTakeFirstOrThrow();
    assert.equal(row.last_used_at, '2030-06-01T00:00:00.000Z');
  });
});
