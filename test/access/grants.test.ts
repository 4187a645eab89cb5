/**
 * Staff access grants: who may ask, who must approve under each tenant policy (contractors always
 * need an employee), the second factor after the request, states that only move forward, expiry by
 * time, revocation, grants ended with an account, break-glass — and an audit event, on the grant's
 * tenant, for every change and every refusal.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { sql } from 'kysely';
import type { GrantInfo } from '../../src/access/grant-state.ts';
import type { GrantRequestInput } from '../../src/access/grant-vocabulary.ts';
import { FRESH_2FA_MS, type PersonInfo } from '../../src/identity/people.ts';
import type { SessionPrincipal } from '../../src/identity/session-principal.ts';
import { type AccessFixture, ADMIN, type AuditRecord, openAccessFixture, refusal } from './fixture.ts';

const MINUTE = 60_000;
const T = 'ten_000000000000000000000aaa';
const OTHER = 'ten_000000000000000000000bbb';

const ask = (over: Partial<GrantRequestInput> = {}): GrantRequestInput => ({
  tenant: T,
  collections: ['customers'],
  access: 'read',
  reason: 'customer reports a wrong invoice address',
  ticket: 'SUP-1234',
  ...over,
});

describe('grants', () => {
  let f: AccessFixture;
  let agent: PersonInfo;
  let agent2: PersonInfo;
  let contractor: PersonInfo;
  let officer: PersonInfo;
  let officer2: PersonInfo;
  let tenantAdmin: PersonInfo;
  let otherAdmin: PersonInfo;
  let member: PersonInfo;

  /**
   * Runs a call that must be refused with `code`, and returns the audit event it committed on the
   * tenant's stream. A person of another tenant is named only in an operators' entry (no tenant);
   * the tenant's entry, written right after it, says "another-tenant" and carries no address.
   */
  async function refusedAndAudited(call: () => Promise<unknown>, code: string): Promise<AuditRecord> {
    const before = (await f.audit()).length;
    assert.equal((await refusal(call())).code, code);
    const after = await f.audit();
    const event = after.at(-1) as AuditRecord;
    if (event.actor.id === 'another-tenant') {
      assert.equal(after.length, before + 2, 'the refusal wrote the operators’ entry and the tenant’s');
      const named = after.at(-2) as AuditRecord;
      assert.equal(named.tenant, null, 'the entry naming the person is on no tenant’s stream');
      assert.notEqual(named.actor.id, 'another-tenant');
      assert.equal(named.target?.tenant, event.tenant);
      assert.equal(named.target?.refusal, code);
      assert.equal(named.action, event.action);
      assert.equal(event.sourceAddress, undefined);
      assert.equal(event.userAgent, undefined);
      assert.ok(!JSON.stringify(event).includes(named.actor.id), 'the tenant’s entry does not name them');
    } else {
      assert.equal(after.length, before + 1, 'the refusal wrote exactly one audit event');
    }
    assert.notEqual(event.outcome, 'success');
    assert.equal(event.target?.refusal, code);
    return event;
  }

  /** A request by `who`, logged in now (their login's second factor predates the request). */
  async function requested(who: PersonInfo, over: Partial<GrantRequestInput> = {}) {
    const session = await f.login(who);
    f.advance(1_000);
    const grant = await f.grants.request(session, ask(over));
    return { session, grant };
  }

  /** The requester re-authenticates (a new session with a second factor passed now) and activates. */
  async function activated(who: PersonInfo, grant: GrantInfo): Promise<GrantInfo> {
    f.advance(1_000);
    return f.grants.activate(await f.login(who), grant.id);
  }

  beforeEach(async () => {
    f = await openAccessFixture();
    await f.tenant(T);
    await f.tenant(OTHER);
    agent = await f.person('support-agent');
    agent2 = await f.person('support-agent');
    contractor = await f.person('contractor');
    officer = await f.person('security-officer');
    officer2 = await f.person('security-officer');
    tenantAdmin = await f.person('tenant-admin', T);
    otherAdmin = await f.person('tenant-admin', OTHER);
    member = await f.person('tenant-member', T, await f.login(tenantAdmin));
  });

  afterEach(() => f.close());

  it('lockbox: only a tenant admin of that tenant approves; another tenant’s admin is refused and audited', async () => {
    const { grant } = await requested(agent);
    assert.equal(grant.state, 'pending');
    assert.equal(grant.policy, 'customer');
    assert.deepEqual(grant.awaiting, ['customer']);
    assert.match(grant.id, /^grt_[0-9a-f]{24}$/);

    const cross = await refusedAndAudited(
      async () => f.grants.approve(await f.login(otherAdmin), grant.id),
      'TRESOR_ERR_FORBIDDEN',
    );
    assert.equal(cross.outcome, 'denied');
    assert.equal(cross.tenant, T, 'the grant’s tenant sees the attempt');
    assert.deepEqual(cross.actor, { kind: 'customer', id: 'another-tenant' }, 'not who at the other tenant');
    assert.equal(cross.action, 'grant.approve');
    await refusedAndAudited(
      async () => f.grants.approve(await f.login(officer), grant.id),
      'TRESOR_ERR_FORBIDDEN',
    );
    await refusedAndAudited(
      async () => f.grants.approve(await f.login(member), grant.id),
      'TRESOR_ERR_FORBIDDEN',
    );

    const approved = await f.grants.approve(await f.login(tenantAdmin), grant.id);
    assert.equal(approved.state, 'approved');
    assert.equal(approved.decidedBy, tenantAdmin.id);
    assert.deepEqual(
      approved.approvals.map((a) => [a.as, a.by]),
      [['customer', tenantAdmin.id]],
    );
    const event = (await f.audit()).at(-1) as AuditRecord;
    assert.deepEqual(
      [event.action, event.outcome, event.tenant, event.actor.id],
      ['grant.approve', 'success', T, tenantAdmin.id],
    );
    assert.equal(event.target?.reason, 'customer reports a wrong invoice address');
    assert.equal(event.target?.ticket, 'SUP-1234');
    assert.deepEqual(event.target?.collections, ['customers']);
    assert.equal(event.target?.access, 'read');
    assert.equal(await f.grants.liveGrant(agent.id, grant.id), undefined, 'approved is not yet live');
  });

  it('refuses activation without a second factor passed after the request, then activates after one', async () => {
    const { session, grant } = await requested(agent);
    await f.grants.approve(await f.login(tenantAdmin), grant.id);
    // The login's second factor came before the request: it does not open the grant.
    const early = await refusedAndAudited(
      () => f.grants.activate(session, grant.id),
      'TRESOR_ERR_SECOND_FACTOR_REQUIRED',
    );
    assert.deepEqual(
      [early.action, early.tenant, early.target?.refused],
      ['grant.activate', T, 'second-factor'],
    );
    // A principal that claims a fresh factor its session row does not have is refused too.
    await refusedAndAudited(
      () => f.grants.activate({ ...session, fresh2faAt: f.now().toISOString() }, grant.id),
      'TRESOR_ERR_SECOND_FACTOR_REQUIRED',
    );
    // A re-authentication after the request, but too long ago.
    f.advance(1_000);
    const stale = await f.login(agent);
    f.advance(FRESH_2FA_MS + 1);
    await refusedAndAudited(() => f.grants.activate(stale, grant.id), 'TRESOR_ERR_SECOND_FACTOR_REQUIRED');
    // Nobody but the requester starts the clock.
    await refusedAndAudited(
      async () => f.grants.activate(await f.login(agent2), grant.id),
      'TRESOR_ERR_FORBIDDEN',
    );

    const live = await activated(agent, grant);
    assert.equal(live.state, 'active');
    assert.equal(Date.parse(live.expiresAt ?? '') - Date.parse(live.activatedAt ?? ''), 60 * MINUTE);
    const lg = await f.grants.liveGrant(agent.id, grant.id);
    assert.deepEqual(lg, {
      id: grant.id,
      tenant: T,
      personId: agent.id,
      collections: ['customers'],
      access: 'read',
      reason: 'customer reports a wrong invoice address',
      ticket: 'SUP-1234',
      expiresAt: live.expiresAt,
      breakGlass: false,
    });
    assert.equal(await f.grants.liveGrant(agent2.id, grant.id), undefined, 'only the requester’s');
    const event = (await f.audit()).at(-1) as AuditRecord;
    assert.deepEqual([event.action, event.outcome, event.tenant], ['grant.activate', 'success', T]);
  });

  it('refuses self-approval and self-denial under four-eyes; another employee approves', async () => {
    await f.grants.setPolicy(await f.login(tenantAdmin), T, 'four-eyes');
    const { session, grant } = await requested(officer);
    assert.deepEqual(grant.awaiting, ['employee']);
    const own = await refusedAndAudited(() => f.grants.approve(session, grant.id), 'TRESOR_ERR_FORBIDDEN');
    assert.equal(own.target?.refused, 'own-request');
    await refusedAndAudited(() => f.grants.deny(session, grant.id), 'TRESOR_ERR_FORBIDDEN');
    // Under four-eyes the tenant admin is not the approver…
    await refusedAndAudited(
      async () => f.grants.approve(await f.login(tenantAdmin), grant.id),
      'TRESOR_ERR_FORBIDDEN',
    );
    // …a contractor is not an employee, and an operator admin does not approve grants.
    await refusedAndAudited(
      async () => f.grants.approve(await f.login(contractor), grant.id),
      'TRESOR_ERR_FORBIDDEN',
    );
    await refusedAndAudited(() => f.grants.approve(ADMIN as never, grant.id), 'TRESOR_ERR_FORBIDDEN');
    const approved = await f.grants.approve(await f.login(officer2), grant.id);
    assert.equal(approved.state, 'approved');
    assert.equal(approved.decidedBy, officer2.id);
  });

  it('a tenant admin may always deny a request to their tenant; a denied grant never activates', async () => {
    await f.grants.setPolicy(await f.login(tenantAdmin), T, 'four-eyes');
    const { grant } = await requested(agent);
    await refusedAndAudited(
      async () => f.grants.deny(await f.login(otherAdmin), grant.id),
      'TRESOR_ERR_FORBIDDEN',
    );
    const denied = await f.grants.deny(await f.login(tenantAdmin), grant.id);
    assert.equal(denied.state, 'denied');
    assert.equal(denied.endReason, 'denied');
    await refusedAndAudited(
      async () => f.grants.approve(await f.login(agent2), grant.id),
      'TRESOR_ERR_GRANT_STATE',
    );
    await refusedAndAudited(() => activated(agent, grant), 'TRESOR_ERR_GRANT_STATE');
    assert.equal(await f.grants.liveGrant(agent.id, grant.id), undefined);
  });

  it('automatic policy approves at once and tells the tenant — but not for a contractor', async () => {
    await f.grants.setPolicy(await f.login(tenantAdmin), T, 'automatic');
    const { grant } = await requested(agent);
    assert.equal(grant.state, 'approved');
    assert.deepEqual(grant.awaiting, []);
    const events = (await f.audit()).slice(-2);
    assert.deepEqual(
      events.map((e) => [e.action, e.outcome, e.tenant, e.actor.kind]),
      [
        ['grant.request', 'success', T, 'staff'],
        ['grant.approve', 'success', T, 'system'],
      ],
    );
    assert.equal(events[1]?.target?.policy, 'automatic');
    assert.equal((await activated(agent, grant)).state, 'active');

    const c = await requested(contractor);
    assert.equal(c.grant.state, 'pending', 'a contractor’s request is never automatic');
    assert.deepEqual(c.grant.awaiting, ['employee']);
    await refusedAndAudited(() => activated(contractor, c.grant), 'TRESOR_ERR_GRANT_STATE');
    await refusedAndAudited(
      async () => f.grants.approve(await f.login(tenantAdmin), c.grant.id),
      'TRESOR_ERR_FORBIDDEN',
    );
    const approved = await f.grants.approve(await f.login(agent), c.grant.id);
    assert.equal(approved.state, 'approved');
    assert.deepEqual(
      approved.approvals.map((a) => a.as),
      ['employee'],
    );
  });

  it('under lockbox a contractor needs the tenant admin AND an employee', async () => {
    const { grant } = await requested(contractor);
    assert.deepEqual(grant.awaiting, ['customer', 'employee']);
    const half = await f.grants.approve(await f.login(tenantAdmin), grant.id);
    assert.equal(half.state, 'pending');
    assert.deepEqual(half.awaiting, ['employee']);
    await refusedAndAudited(() => activated(contractor, grant), 'TRESOR_ERR_GRANT_STATE');
    // The customer side is given; a second tenant admin adds nothing.
    const admin2 = await f.person('tenant-admin', T);
    await refusedAndAudited(
      async () => f.grants.approve(await f.login(admin2), grant.id),
      'TRESOR_ERR_GRANT_STATE',
    );
    const full = await f.grants.approve(await f.login(officer), grant.id);
    assert.equal(full.state, 'approved');
    assert.deepEqual(
      full.approvals.map((a) => [a.as, a.by]),
      [
        ['customer', tenantAdmin.id],
        ['employee', officer.id],
      ],
    );
    assert.equal((await activated(contractor, grant)).state, 'active');
  });

  it('a contractor cannot approve another contractor’s request', async () => {
    await f.grants.setPolicy(await f.login(tenantAdmin), T, 'four-eyes');
    const { grant } = await requested(contractor);
    const other = await f.person('contractor');
    await refusedAndAudited(
      async () => f.grants.approve(await f.login(other), grant.id),
      'TRESOR_ERR_FORBIDDEN',
    );
  });

  it('lets only requesting roles ask, and only for an existing, active tenant', async () => {
    for (const who of [tenantAdmin, member, await f.person('operator-admin')]) {
      const e = await refusedAndAudited(
        async () => f.grants.request(await f.login(who), ask()),
        'TRESOR_ERR_FORBIDDEN',
      );
      assert.deepEqual([e.action, e.outcome, e.tenant], ['grant.request', 'denied', T]);
    }
    await refusedAndAudited(
      async () => f.grants.request(await f.login(agent), ask({ tenant: 'ten_nope' })),
      'TRESOR_ERR_NOT_FOUND',
    );
    await f.tenant('ten_closed', 'closed');
    await refusedAndAudited(
      async () => f.grants.request(await f.login(agent), ask({ tenant: 'ten_closed' })),
      'TRESOR_ERR_TENANT_STATE',
    );
    assert.equal((await f.control.db.selectFrom('grants').select('id').execute()).length, 0);
  });

  it('refuses bad input with a validation error (no clamping), audited, nothing stored', async () => {
    const session = await f.login(agent);
    const bad: [Partial<GrantRequestInput> | Record<string, unknown>, string][] = [
      [{ reason: 'too short' }, 'reason'],
      [{ reason: 'x'.repeat(501) }, 'reason'],
      [{ reason: 'a reason\u0000with a NUL' }, 'reason'],
      [{ ticket: '' }, 'ticket'],
      [{ ticket: 'SUP 1234; DROP' }, 'ticket'],
      [{ ticket: 'T'.repeat(101) }, 'ticket'],
      [{ collections: [] }, 'collections'],
      [{ collections: ['Bad-Name'] }, 'collections'],
      [{ collections: ['a', 'a'] }, 'collections'],
      [{ collections: Array.from({ length: 65 }, (_, i) => `c${i}`) }, 'collections'],
      [{ access: 'admin' as never }, 'access'],
      [{ durationMinutes: 8 * 60 + 1 }, 'durationMinutes'],
      [{ durationMinutes: 0 }, 'durationMinutes'],
      [{ durationMinutes: 1.5 }, 'durationMinutes'],
    ];
    for (const [over, field] of bad) {
      const e = await refusedAndAudited(
        () => f.grants.request(session, ask(over as Partial<GrantRequestInput>)),
        'TRESOR_ERR_VALIDATION',
      );
      assert.equal(e.target?.field, field, JSON.stringify(over).slice(0, 60));
      assert.equal(e.outcome, 'failure');
    }
    assert.equal((await f.control.db.selectFrom('grants').select('id').execute()).length, 0);
    const max = await f.grants.request(session, ask({ durationMinutes: 8 * 60, collections: '*' }));
    assert.equal(max.durationMs, 8 * 60 * MINUTE);
    assert.equal(max.collections, '*');
  });

  it('expires by time: not live at expiry, recorded by the sweep, never activated later', async () => {
    const { grant } = await requested(agent, { durationMinutes: 30 });
    await f.grants.approve(await f.login(tenantAdmin), grant.id);
    const live = await activated(agent, grant);
    f.advance(30 * MINUTE - 1);
    assert.ok(await f.grants.liveGrant(agent.id, grant.id), 'live until its last millisecond');
    f.advance(1);
    assert.equal(await f.grants.liveGrant(agent.id, grant.id), undefined, 'not live at expiresAt');
    const seen = await f.grants.get(ADMIN, grant.id);
    assert.equal(seen.state, 'expired');
    assert.equal(seen.endedAt, live.expiresAt);
    assert.equal(await f.grants.expireDue(), 1);
    assert.equal(await f.grants.expireDue(), 0);
    const event = (await f.audit()).at(-1) as AuditRecord;
    assert.deepEqual(
      [event.action, event.tenant, event.actor.kind, event.target?.grantId],
      ['grant.expire', T, 'system', grant.id],
    );
    await refusedAndAudited(() => activated(agent, grant), 'TRESOR_ERR_GRANT_STATE');
    await refusedAndAudited(() => f.grants.revoke(ADMIN, grant.id), 'TRESOR_ERR_GRANT_STATE');
  });

  it('expires a request nobody decided, and an approval nobody activated, after the request TTL', async () => {
    const a = await requested(agent);
    const b = await requested(agent2);
    await f.grants.approve(await f.login(tenantAdmin), b.grant.id);
    f.advance(72 * 60 * MINUTE);
    await refusedAndAudited(
      async () => f.grants.approve(await f.login(tenantAdmin), a.grant.id),
      'TRESOR_ERR_GRANT_STATE',
    );
    await refusedAndAudited(() => activated(agent2, b.grant), 'TRESOR_ERR_GRANT_STATE');
    assert.equal(await f.grants.expireDue(), 2);
    const states = await f.control.db.selectFrom('grants').select(['state', 'end_reason']).execute();
    assert.deepEqual(states.map((s) => s.state).sort(), ['expired', 'expired']);
  });

  it('keeps states moving forward in the store itself, and keeps every grant', async () => {
    const { grant } = await requested(agent);
    await f.grants.revoke(await f.login(agent), grant.id);
    const reopen = await f.control
      .write((trx) => sql`UPDATE grants SET state = 'active' WHERE id = ${grant.id}`.execute(trx))
      .catch((e: unknown) => e);
    assert.match(String(reopen), /only move forward/);
    const pending = (await requested(agent)).grant;
    const widen = await f.control
      .write((trx) => sql`UPDATE grants SET collections = '"*"' WHERE id = ${pending.id}`.execute(trx))
      .catch((e: unknown) => e);
    assert.match(String(widen), /does not change/);
    const drop = await f.control
      .write((trx) => sql`DELETE FROM grants WHERE id = ${grant.id}`.execute(trx))
      .catch((e: unknown) => e);
    assert.match(String(drop), /kept/);
  });

  it('a revoked grant is not live at the very next call; who may revoke', async () => {
    const grants: GrantInfo[] = [];
    for (let i = 0; i < 5; i++) {
      const { grant } = await requested(agent);
      await f.grants.approve(await f.login(tenantAdmin), grant.id);
      grants.push(await activated(agent, grant));
    }
    const [byRequester, byOfficer, byOperator, byTenantAdmin, kept] = grants as [
      GrantInfo,
      GrantInfo,
      GrantInfo,
      GrantInfo,
      GrantInfo,
    ];
    assert.ok(await f.grants.liveGrant(agent.id, byRequester.id));
    const revoked = await f.grants.revoke(await f.login(agent), byRequester.id);
    assert.equal(revoked.state, 'revoked');
    assert.equal(await f.grants.liveGrant(agent.id, byRequester.id), undefined);
    const event = (await f.audit()).at(-1) as AuditRecord;
    assert.deepEqual(
      [event.action, event.tenant, event.target?.endReason],
      ['grant.revoke', T, 'revoked-by-requester'],
    );

    assert.equal(
      (await f.grants.revoke(await f.login(officer), byOfficer.id)).endReason,
      'revoked-by-security-officer',
    );
    assert.equal((await f.grants.revoke(ADMIN, byOperator.id)).endReason, 'revoked-by-operator-admin');
    assert.equal(
      (await f.grants.revoke(await f.login(tenantAdmin), byTenantAdmin.id)).endReason,
      'revoked-by-tenant-admin',
    );
    for (const who of [otherAdmin, agent2, contractor, member]) {
      await refusedAndAudited(
        async () => f.grants.revoke(await f.login(who), kept.id),
        'TRESOR_ERR_FORBIDDEN',
      );
    }
    assert.ok(await f.grants.liveGrant(agent.id, kept.id));
    await refusedAndAudited(() => f.grants.revoke(ADMIN, byRequester.id), 'TRESOR_ERR_GRANT_STATE');
  });

  it('ends a person’s grants in the same commit when they are disabled, removed or change role', async () => {
    const setup = async (who: PersonInfo) => {
      const live = (await requested(who)).grant;
      await f.grants.approve(await f.login(tenantAdmin), live.id);
      await activated(who, live);
      const pending = (await requested(who)).grant;
      return [live, pending] as const;
    };
    const [live, pending] = await setup(agent);
    const [live2] = await setup(agent2);
    const [live3] = await setup(officer);

    await f.people.disable(ADMIN, agent.id);
    await f.people.remove(ADMIN, agent2.id);
    await f.people.changeRole(ADMIN, officer.id, 'operator-admin');
    for (const [who, g] of [
      [agent, live],
      [agent2, live2],
      [officer, live3],
    ] as const) {
      assert.equal(await f.grants.liveGrant(who.id, g.id), undefined);
      assert.equal((await f.grants.get(ADMIN, g.id)).state, 'revoked');
    }
    assert.equal((await f.grants.get(ADMIN, pending.id)).endReason, 'access-removed');
    const events = await f.audit();
    const disable = events.findIndex((e) => e.action === 'person.disable');
    const ended = events.filter((e) => e.action === 'grant.end');
    assert.equal(ended.length, 6);
    for (const e of ended) assert.deepEqual([e.tenant, e.actor.kind], [T, 'system']);
    // grant.end events come just before the person.disable event of the same commit.
    assert.deepEqual(
      events.slice(disable - 2, disable + 1).map((e) => e.action),
      ['grant.end', 'grant.end', 'person.disable'],
    );
  });

  it('re-reads the actor in the transaction: a disabled approver or a stale role is refused', async () => {
    const { grant } = await requested(agent);
    const admin = await f.login(tenantAdmin);
    const adminBy = await f.person('tenant-admin', T);
    await f.people.disable(await f.login(adminBy), tenantAdmin.id);
    await refusedAndAudited(() => f.grants.approve(admin, grant.id), 'TRESOR_ERR_FORBIDDEN');
    // A principal claiming a role the person does not have.
    const forged: SessionPrincipal = { ...(await f.login(agent2)), role: 'tenant-admin', tenant: T };
    await refusedAndAudited(() => f.grants.approve(forged, grant.id), 'TRESOR_ERR_FORBIDDEN');
    // liveGrant checks the person itself, even without the hook having run.
    await f.grants.approve(await f.login(adminBy), grant.id);
    await activated(agent, grant);
    await f.control.write((trx) =>
      trx
        .updateTable('people')
        .set({ disabled_at: f.now().toISOString() })
        .where('id', '=', agent.id)
        .execute(),
    );
    assert.equal(await f.grants.liveGrant(agent.id, grant.id), undefined);
  });

  it('break-glass: the security officer only, with a fresh second factor; active at once, severity high', async () => {
    for (const who of [agent, contractor, tenantAdmin, await f.person('operator-admin')]) {
      const e = await refusedAndAudited(
        async () => f.grants.breakGlass(await f.login(who), ask()),
        'TRESOR_ERR_FORBIDDEN',
      );
      assert.deepEqual([e.action, e.tenant, e.target?.severity], ['grant.break-glass', T, 'high']);
    }
    const stale = await f.login(officer);
    f.advance(FRESH_2FA_MS + 1);
    await refusedAndAudited(() => f.grants.breakGlass(stale, ask()), 'TRESOR_ERR_SECOND_FACTOR_REQUIRED');
    await refusedAndAudited(
      async () => f.grants.breakGlass(await f.login(officer, { fresh2faAt: null }), ask()),
      'TRESOR_ERR_SECOND_FACTOR_REQUIRED',
    );
    await refusedAndAudited(
      async () => f.grants.breakGlass(await f.login(officer), ask({ durationMinutes: 9 * 60 })),
      'TRESOR_ERR_VALIDATION',
    );

    const g = await f.grants.breakGlass(await f.login(officer), ask({ access: 'read-write' }));
    assert.equal(g.state, 'active');
    assert.equal(g.breakGlass, true);
    assert.equal(g.decidedBy, null);
    assert.deepEqual(g.approvals, []);
    const live = await f.grants.liveGrant(officer.id, g.id);
    assert.equal(live?.breakGlass, true);
    assert.equal(live?.access, 'read-write');
    const event = (await f.audit()).at(-1) as AuditRecord;
    assert.deepEqual(
      [
        event.action,
        event.outcome,
        event.tenant,
        event.actor.id,
        event.target?.severity,
        event.target?.grantId,
      ],
      ['grant.break-glass', 'success', T, officer.id, 'high', g.id],
    );
    assert.equal(event.target?.reason, 'customer reports a wrong invoice address');
  });

  it('policy: the tenant’s admin chooses; an operator admin may only restore the lockbox', async () => {
    assert.equal(await f.grants.getPolicy(T), 'customer');
    await f.grants.setPolicy(await f.login(tenantAdmin), T, 'automatic');
    assert.equal(await f.grants.getPolicy(T), 'automatic');
    const event = (await f.audit()).at(-1) as AuditRecord;
    assert.deepEqual(
      [event.action, event.tenant, event.target?.policy, event.target?.from],
      ['grant.policy', T, 'automatic', 'customer'],
    );
    await refusedAndAudited(
      async () => f.grants.setPolicy(await f.login(otherAdmin), T, 'customer'),
      'TRESOR_ERR_FORBIDDEN',
    );
    await refusedAndAudited(() => f.grants.setPolicy(ADMIN, OTHER, 'automatic'), 'TRESOR_ERR_FORBIDDEN');
    await refusedAndAudited(
      async () => f.grants.setPolicy(await f.login(officer), T, 'customer'),
      'TRESOR_ERR_FORBIDDEN',
    );
    await refusedAndAudited(
      async () => f.grants.setPolicy(await f.login(tenantAdmin), T, 'nobody' as never),
      'TRESOR_ERR_VALIDATION',
    );
    await f.grants.setPolicy(ADMIN, T, 'customer');
    assert.equal(await f.grants.getPolicy(T), 'customer');
    // A running request keeps the policy it was made under.
    await f.grants.setPolicy(await f.login(tenantAdmin), T, 'four-eyes');
    const { grant } = await requested(agent);
    await f.grants.setPolicy(await f.login(tenantAdmin), T, 'customer');
    assert.equal((await f.grants.approve(await f.login(agent2), grant.id)).state, 'approved');
  });

  it('shows grants only to those concerned; a bad id is a not-found, never a crash', async () => {
    const { grant } = await requested(agent);
    assert.equal((await f.grants.get(await f.login(agent), grant.id)).id, grant.id);
    assert.equal((await f.grants.get(await f.login(tenantAdmin), grant.id)).id, grant.id);
    assert.equal((await f.grants.get(await f.login(officer), grant.id)).id, grant.id);
    for (const who of [otherAdmin, contractor, member, agent2]) {
      await refusedAndAudited(async () => f.grants.get(await f.login(who), grant.id), 'TRESOR_ERR_NOT_FOUND');
    }
    await refusedAndAudited(() => f.grants.get(ADMIN, 'grt_nope'), 'TRESOR_ERR_NOT_FOUND');
    await refusedAndAudited(
      () => f.grants.approve(ADMIN as never, { x: 1 } as never),
      'TRESOR_ERR_NOT_FOUND',
    );
    assert.equal(await f.grants.liveGrant(agent.id, 'grt_nope'), undefined);
    assert.equal(await f.grants.liveGrant(agent.id, null as never), undefined);
    assert.equal(await f.grants.liveGrant(undefined as never, grant.id), undefined);

    assert.deepEqual(
      (await f.grants.list(await f.login(tenantAdmin))).map((g) => g.id),
      [grant.id],
    );
    assert.deepEqual(await f.grants.list(await f.login(otherAdmin)), []);
    await refusedAndAudited(
      async () => f.grants.list(await f.login(otherAdmin), { tenant: T }),
      'TRESOR_ERR_FORBIDDEN',
    );
    assert.deepEqual(await f.grants.list(await f.login(contractor)), []);
    assert.deepEqual((await f.grants.list(ADMIN, { person: agent.id, state: 'pending' })).length, 1);
    assert.deepEqual(await f.grants.list(ADMIN, { state: 'active' }), []);
    await refusedAndAudited(() => f.grants.list(ADMIN, { state: 'open' as never }), 'TRESOR_ERR_VALIDATION');
  });
});
