// backends: sqlite postgres
/**
 * Operator tokens (src/identity/operator-tokens.ts, operator-token-auth.ts): one scope each, owned
 * by an operator-admin person, with a mandatory expiry; they stop working when they expire, are
 * revoked or rotated away, or their owner is disabled; every action is audited with the token id
 * and no secret ever reaches a list or the audit log.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { AuditEvent } from '../../src/audit/event.ts';
import { createOperatorTokenAuthenticator } from '../../src/identity/operator-token-auth.ts';
import { createOperatorTokenService, type OperatorTokenService } from '../../src/identity/operator-tokens.ts';
import type { SessionPrincipal } from '../../src/identity/session-principal.ts';
import {
  insertPerson,
  openTestControlStore,
  sessionOfPerson,
  type TestControlStore,
} from '../helpers/control-store.ts';
import { refusal } from '../helpers/refusal.ts';

const DAY = 86_400_000;

describe('operator tokens', () => {
  let store: TestControlStore;
  let now: Date;
  let tokens: OperatorTokenService;
  let auth: ReturnType<typeof createOperatorTokenAuthenticator>;
  let adminId: string;
  let admin: SessionPrincipal;

  const audit = async (action?: string) => {
    const rows = await store.control.db
      .selectFrom('audit_events')
      .select(['action', 'event'])
      .orderBy('seq')
      .execute();
    return rows
      .filter((r) => action === undefined || r.action === action)
      .map((r) => JSON.parse(r.event) as AuditEvent);
  };
  const allAuditText = async () =>
    (await store.control.db.selectFrom('audit_events').select('event').execute())
      .map((r) => r.event)
      .join('\n');

  beforeEach(async () => {
    store = await openTestControlStore('operator-tokens');
    now = new Date('2030-06-01T00:00:00.000Z');
    const clock = () => now;
    tokens = createOperatorTokenService({ control: store.control, now: clock });
    auth = createOperatorTokenAuthenticator({ control: store.control, clock, logger: { warn: () => {} } });
    adminId = await insertPerson(store.control, { now: clock });
    admin = sessionOfPerson(adminId, now);
  });

  afterEach(async () => {
    await auth.flush();
    await store.close();
  });

  it('creates a token of one scope, shown once, stored only as a hash, proving its owner and scope', async () => {
    const issued = await tokens.create(admin, { scope: 'tenants:create', name: 'provisioning' });
    assert.match(issued.token, /^tresor_op_[0-9a-f]{24}_[A-Za-z0-9_-]{43}$/);
    assert.equal(issued.id, `op_${issued.token.slice(10, 34)}`);
    assert.equal(issued.owner, adminId);
    assert.equal(issued.expiresAt, new Date(now.getTime() + 30 * DAY).toISOString(), 'default 30 days');
    const row = await store.control.db.selectFrom('operator_tokens').selectAll().executeTakeFirstOrThrow();
    assert.ok(!JSON.stringify(row).includes(issued.token.slice(-43)), 'the secret is not stored');
    assert.deepEqual(await auth.authenticate(issued.token), {
      kind: 'operator-token',
      tokenId: issued.id,
      personId: adminId,
      scope: 'tenants:create',
    });
  });

  it('refuses an unknown scope, a bad name and a lifetime outside 1-90 whole days, creating nothing', async () => {
    for (const input of [
      { scope: 'tenants:*', name: 'x' },
      { scope: 'admin', name: 'x' },
      { scope: 'jobs:read', name: '' },
      { scope: 'jobs:read', name: 'x'.repeat(65) },
      { scope: 'jobs:read', name: 'bell\u0007' },
      { scope: 'jobs:read', name: 'x', expiresInDays: 0 },
      { scope: 'jobs:read', name: 'x', expiresInDays: 91 },
      { scope: 'jobs:read', name: 'x', expiresInDays: 1.5 },
    ]) {
      const e = await refusal(tokens.create(admin, input));
      assert.equal(e.code, 'TRESOR_ERR_VALIDATION', JSON.stringify(input));
    }
    assert.equal((await store.control.db.selectFrom('operator_tokens').select('id').execute()).length, 0);
    const longest = await tokens.create(admin, { scope: 'jobs:read', name: 'x', expiresInDays: 90 });
    assert.equal(longest.expiresAt, new Date(now.getTime() + 90 * DAY).toISOString());
  });

  it('lets only an active operator admin’s session manage tokens; other people are refused and audited', async () => {
    const officer = sessionOfPerson(
      await insertPerson(store.control, { role: 'security-officer' }),
      now,
      'security-officer',
    );
    for (const attempt of [
      tokens.create(officer, { scope: 'jobs:read', name: 'x' }),
      tokens.list(officer),
      tokens.revoke(officer, 'op_000000000000000000000000'),
    ]) {
      assert.equal((await refusal(attempt)).code, 'TRESOR_ERR_FORBIDDEN');
    }
    // An operator token's owner acting without a session (as a token would) cannot manage tokens either.
    const e = await refusal(
      tokens.create(
        { kind: 'operator-admin', id: adminId, tokenId: 'op_x' },
        { scope: 'jobs:read', name: 'x' },
      ),
    );
    assert.equal(e.code, 'TRESOR_ERR_FORBIDDEN');
    const denied = (await audit()).filter((ev) => ev.outcome === 'denied');
    assert.deepEqual(
      denied.map((ev) => ev.action),
      ['operator-token.create', 'operator-token.list', 'operator-token.revoke', 'operator-token.create'],
    );
  });

  it('stops a token when it expires', async () => {
    const issued = await tokens.create(admin, { scope: 'jobs:read', name: 'status', expiresInDays: 1 });
    now = new Date(now.getTime() + DAY - 1);
    await auth.authenticate(issued.token);
    now = new Date(now.getTime() + 1);
    assert.equal((await refusal(auth.authenticate(issued.token))).code, 'TRESOR_ERR_UNAUTHENTICATED');
  });

  it('revokes a token at once, idempotently, and answers NOT_FOUND for an unknown id', async () => {
    const issued = await tokens.create(admin, { scope: 'jobs:read', name: 'status' });
    await tokens.revoke(admin, issued.id);
    assert.equal((await refusal(auth.authenticate(issued.token))).code, 'TRESOR_ERR_UNAUTHENTICATED');
    await tokens.revoke(admin, issued.id);
    assert.equal(
      (await refusal(tokens.revoke(admin, 'op_000000000000000000000000'))).code,
      'TRESOR_ERR_NOT_FOUND',
    );
    const events = await audit('operator-token.revoke');
    assert.equal(events.length, 2);
    assert.equal(events[0]?.target?.operatorTokenId, issued.id);
    assert.equal(events[1]?.target?.alreadyRevoked, true);
  });

  it('rotates: a new token of the same scope, name and lifetime, owned by the rotating admin; the old one stops', async () => {
    const old = await tokens.create(admin, { scope: 'audit:read', name: 'siem', expiresInDays: 7 });
    now = new Date(now.getTime() + DAY);
    const otherAdminId = await insertPerson(store.control, { now: () => now });
    const fresh = await tokens.rotate(sessionOfPerson(otherAdminId, now), old.id);
    assert.notEqual(fresh.id, old.id);
    assert.equal(fresh.scope, 'audit:read');
    assert.equal(fresh.name, 'siem');
    assert.equal(fresh.owner, otherAdminId);
    assert.equal(fresh.expiresAt, new Date(now.getTime() + 7 * DAY).toISOString());
    assert.equal((await refusal(auth.authenticate(old.token))).code, 'TRESOR_ERR_UNAUTHENTICATED');
    assert.equal((await auth.authenticate(fresh.token)).personId, otherAdminId);
    assert.equal(
      (await refusal(tokens.rotate(admin, old.id))).code,
      'TRESOR_ERR_CONFLICT',
      'a revoked token is not rotated',
    );
    const [event] = await audit('operator-token.rotate');
    assert.equal(event?.target?.operatorTokenId, fresh.id);
    assert.equal(event?.target?.rotatedFrom, old.id);
  });

  it('stops every token of an owner who is disabled, removed or no longer an operator admin', async () => {
    for (const change of [
      { disabled_at: now.toISOString() },
      { removed_at: now.toISOString() },
      { role: 'security-officer' as const },
    ]) {
      const ownerId = await insertPerson(store.control);
      const issued = await tokens.create(sessionOfPerson(ownerId, now), { scope: 'tenants:read', name: 'x' });
      await auth.authenticate(issued.token);
      await store.control.write((trx) =>
        trx.updateTable('people').set(change).where('id', '=', ownerId).execute(),
      );
      assert.equal(
        (await refusal(auth.authenticate(issued.token))).code,
        'TRESOR_ERR_UNAUTHENTICATED',
        JSON.stringify(change),
      );
    }
  });

  it('lists tokens without secrets or hashes, and audits create, list, rotate and revoke with the token id and never a secret', async () => {
    const a = await tokens.create(admin, { scope: 'tenants:create', name: 'provisioning' });
    const b = await tokens.rotate(admin, a.id);
    await tokens.revoke(admin, b.id);
    const list = await tokens.list(admin);
    assert.deepEqual(
      list.map((t) => Object.keys(t).sort()),
      [a, b].map(() => ['createdAt', 'expiresAt', 'id', 'lastUsedAt', 'name', 'owner', 'revokedAt', 'scope']),
    );
    assert.ok(
      !JSON.stringify(list).includes(a.token.slice(-43)) &&
        !JSON.stringify(list).includes(b.token.slice(-43)),
    );
    const events = await audit();
    const byAction = (action: string) => events.filter((e) => e.action === action);
    assert.equal(byAction('operator-token.create')[0]?.target?.operatorTokenId, a.id);
    assert.equal(byAction('operator-token.rotate')[0]?.target?.operatorTokenId, b.id);
    assert.equal(byAction('operator-token.revoke')[0]?.target?.operatorTokenId, b.id);
    assert.equal(byAction('operator-token.list')[0]?.target?.count, 2);
    for (const e of events.filter((ev) => ev.action.startsWith('operator-token.')))
      assert.deepEqual(e.actor, { kind: 'operator-admin', id: adminId });
    const text = await allAuditText();
    for (const secret of [a.token, b.token])
      assert.ok(!text.includes(secret.slice(-43)), 'no secret in the audit log');
    const hashes = await store.control.db.selectFrom('operator_tokens').select('secret_hash').execute();
    for (const h of hashes) assert.ok(!text.includes(h.secret_hash), 'no hash in the audit log');
  });

  it('mints a token for an operator admin as a system job (tresor dev), never for anyone else', async () => {
    const issued = await tokens.issue('tresor-dev', {
      owner: adminId,
      scope: 'tenants:create',
      name: 'dev',
      lifetimeMs: 12 * 3_600_000,
    });
    assert.equal(issued.expiresAt, new Date(now.getTime() + 12 * 3_600_000).toISOString());
    const [event] = await audit('operator-token.create');
    assert.deepEqual(event?.actor, { kind: 'system', id: 'tresor-dev' });
    const officer = await insertPerson(store.control, { role: 'security-officer' });
    const e = await refusal(
      tokens.issue('tresor-dev', { owner: officer, scope: 'tenants:create', name: 'dev', lifetimeMs: 1000 }),
    );
    assert.equal(e.code, 'TRESOR_ERR_NOT_FOUND');
  });

  it('records a token’s last use at most once a minute', async () => {
    const issued = await tokens.create(admin, { scope: 'jobs:read', name: 'status' });
    for (let i = 0; i < 5; i++) await auth.authenticate(issued.token);
    await auth.flush();
    const row = await store.control.db
      .selectFrom('operator_tokens')
      .select('last_used_at')
      .executeTakeFirstOrThrow();
    assert.equal(row.last_used_at, now.toISOString());
  });
});
