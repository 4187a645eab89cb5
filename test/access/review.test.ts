/**
 * Access reviews: the report counts every grant that overlapped the period and every staff access
 * the audit log holds (entries whose actor has a grantId, and break-glass), per tenant and person;
 * attestations are a security officer's alone, append-only and audited; unreviewed months are named
 * until an attestation covers them.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { sql } from 'kysely';
import type { GrantInfo } from '../../src/access/grant-state.ts';
import type { GrantRequestInput } from '../../src/access/grant-vocabulary.ts';
import { type AccessReviewService, createAccessReviewService } from '../../src/access/review.ts';
import { covers, parseInstant } from '../../src/access/review-period.ts';
import { appendAuditEvent } from '../../src/audit/event.ts';
import type { PersonInfo } from '../../src/identity/people.ts';
import { type AccessFixture, ADMIN, type AuditRecord, openAccessFixture, refusal } from './fixture.ts';

const HOUR = 3_600_000;
const T = 'ten_000000000000000000000aaa';
const OTHER = 'ten_000000000000000000000bbb';
const CLI = { kind: 'system' as const, job: 'cli' };

const ask = (over: Partial<GrantRequestInput> = {}): GrantRequestInput => ({
  tenant: T,
  collections: '*',
  access: 'read',
  reason: 'customer asked for help with an import',
  ticket: 'SUP-77',
  ...over,
});

describe('access reviews', () => {
  let f: AccessFixture;
  let review: AccessReviewService;
  let agent: PersonInfo;
  let officer: PersonInfo;
  let tenantAdmin: PersonInfo;
  let otherAdmin: PersonInfo;
  let lockboxGrant: GrantInfo;
  let glass: GrantInfo;
  let lateGrant: GrantInfo;

  /** A staff access as the request pipeline records it: the actor carries the grant. */
  async function staffAccess(person: string, grantId: string, tenant: string, outcome = 'success' as const) {
    await f.control.write((trx) =>
      appendAuditEvent(trx, {
        at: f.now().toISOString(),
        actor: { kind: 'staff', id: person, grantId },
        tenant,
        action: 'record.read',
        target: { collection: 'customers', recordIds: ['rec_1'] },
        outcome,
      }),
    );
  }

  async function refusedAndAudited(call: () => Promise<unknown>, code: string, action: string) {
    const before = (await f.audit()).length;
    assert.equal((await refusal(call())).code, code);
    const after = await f.audit();
    assert.equal(after.length, before + 1);
    const e = after.at(-1) as AuditRecord;
    assert.deepEqual([e.action, e.target?.refusal], [action, code]);
    assert.notEqual(e.outcome, 'success');
  }

  beforeEach(async () => {
    f = await openAccessFixture('2030-06-10T09:00:00.000Z');
    review = createAccessReviewService({ control: f.control, now: f.now });
    await f.tenant(T);
    await f.tenant(OTHER);
    agent = await f.person('support-agent');
    officer = await f.person('security-officer');
    tenantAdmin = await f.person('tenant-admin', T);
    otherAdmin = await f.person('tenant-admin', OTHER);

    // June: a lockbox grant to T with three accesses under it (one refused), and a break-glass to OTHER.
    const s = await f.login(agent);
    f.advance(1_000);
    lockboxGrant = await f.grants.request(s, ask());
    await f.grants.approve(await f.login(tenantAdmin), lockboxGrant.id);
    f.advance(1_000);
    lockboxGrant = await f.grants.activate(await f.login(agent), lockboxGrant.id);
    await staffAccess(agent.id, lockboxGrant.id, T);
    await staffAccess(agent.id, lockboxGrant.id, T);
    await staffAccess(agent.id, lockboxGrant.id, T, 'denied' as 'success');
    // A customer's own read is not a staff access.
    await f.control.write((trx) =>
      appendAuditEvent(trx, {
        at: f.now().toISOString(),
        actor: { kind: 'api-key', id: 'ak_1' },
        tenant: T,
        action: 'record.read',
        outcome: 'success',
      }),
    );
    glass = await f.grants.breakGlass(await f.login(officer), ask({ tenant: OTHER, ticket: 'INC-9' }));
    // The last evening of June, a grant that runs into July.
    f.advance(Date.parse('2030-06-30T23:00:00.000Z') - f.now().getTime());
    await f.grants.setPolicy(await f.login(tenantAdmin), T, 'automatic');
    lateGrant = await f.grants.request(await f.login(agent), ask({ durationMinutes: 120 }));
    f.advance(1_000);
    lateGrant = await f.grants.activate(await f.login(agent), lateGrant.id);
    f.advance(HOUR + 30 * 60_000); // 2030-07-01T00:30
    await staffAccess(agent.id, lateGrant.id, T);
    await f.sequence();
    f.advance(Date.parse('2030-08-02T00:00:00.000Z') - f.now().getTime());
  });

  afterEach(() => f.close());

  it('reports every overlapping grant and every staff access of the period, per tenant and person', async () => {
    const june = await review.report(await f.login(officer), { from: '2030-06-01', to: '2030-07-01' });
    assert.equal(june.from, '2030-06-01T00:00:00.000Z');
    assert.deepEqual(june.grants.map((g) => g.id).sort(), [lockboxGrant.id, glass.id, lateGrant.id].sort());
    assert.deepEqual(
      june.accesses.map((a) => [a.person, a.grantId, a.action, a.outcome, a.tenant]),
      [
        [agent.id, lockboxGrant.id, 'record.read', 'success', T],
        [agent.id, lockboxGrant.id, 'record.read', 'success', T],
        [agent.id, lockboxGrant.id, 'record.read', 'denied', T],
        [officer.id, glass.id, 'grant.break-glass', 'success', OTHER],
      ],
    );
    for (const a of june.accesses) assert.ok(Number.isSafeInteger(a.index));
    assert.deepEqual(june.byTenant, { [T]: { grants: 2, accesses: 3 }, [OTHER]: { grants: 1, accesses: 1 } });
    assert.deepEqual(june.byPerson, {
      [agent.id]: { grants: 2, accesses: 3 },
      [officer.id]: { grants: 1, accesses: 1 },
    });
    assert.equal(june.unreviewed, true);
    assert.deepEqual(june.attestations, []);

    const july = await review.report(ADMIN, { from: '2030-07-01', to: '2030-08-01' });
    assert.deepEqual(
      july.grants.map((g) => g.id),
      [lateGrant.id],
      'the grant into July counts in July too',
    );
    assert.equal(july.accesses.length, 1);

    const onePerson = await review.report(ADMIN, {
      from: '2030-06-01',
      to: '2030-07-01',
      person: officer.id,
    });
    assert.deepEqual(
      onePerson.grants.map((g) => g.id),
      [glass.id],
    );
    assert.equal(onePerson.accesses.length, 1);

    const event = (await f.audit()).at(-1) as AuditRecord;
    assert.deepEqual(
      [event.action, event.outcome, event.target?.person],
      ['access.review', 'success', officer.id],
    );
  });

  it('a review that cannot read the archived log is audited as a failure, never as a success', async () => {
    // The log's first tile is archived, and this service has no segments to read it from.
    await sql`UPDATE audit_archived SET end_idx = 256 WHERE id = 1`.execute(f.control.db);
    const before = (await f.audit()).length;
    const err = await refusal(review.report(ADMIN, { from: '2030-06-01', to: '2030-07-01' }));
    assert.equal(err.code, 'TRESOR_ERR_AUDIT_SEGMENT_INVALID');
    const added = (await f.audit()).slice(before);
    assert.deepEqual(
      added.map((e) => [e.action, e.outcome, e.target?.failure]),
      [['access.review', 'failure', 'TRESOR_ERR_AUDIT_SEGMENT_INVALID']],
    );
  });

  it('shows a tenant admin their own tenant only; refuses others, audited', async () => {
    const own = await review.report(await f.login(tenantAdmin), { from: '2030-06-01', to: '2030-07-01' });
    assert.deepEqual(Object.keys(own.byTenant), [T]);
    assert.ok(own.accesses.every((a) => a.tenant === T));
    await refusedAndAudited(
      async () =>
        review.report(await f.login(tenantAdmin), { from: '2030-06-01', to: '2030-07-01', tenant: OTHER }),
      'TRESOR_ERR_FORBIDDEN',
      'access.review',
    );
    await refusedAndAudited(
      async () => review.report(await f.login(agent), { from: '2030-06-01', to: '2030-07-01' }),
      'TRESOR_ERR_FORBIDDEN',
      'access.review',
    );
    await refusedAndAudited(
      () => review.report(ADMIN, { from: '2030-07-01', to: '2030-06-01' }),
      'TRESOR_ERR_VALIDATION',
      'access.review',
    );
    await refusedAndAudited(
      () => review.report(ADMIN, { from: '2030-02-30', to: '2030-06-01' }),
      'TRESOR_ERR_VALIDATION',
      'access.review',
    );
    await refusedAndAudited(
      async () => review.unreviewed(await f.login(agent)),
      'TRESOR_ERR_FORBIDDEN',
      'access.unreviewed',
    );
    assert.deepEqual(
      (await review.unreviewed(await f.login(otherAdmin))).map((p) => [p.from, p.tenant]),
      [['2030-06-01T00:00:00.000Z', OTHER]],
    );
  });

  it('names unreviewed months until attestations cover them', async () => {
    const all = await review.unreviewed(await f.login(officer));
    assert.deepEqual(
      all.map((p) => [p.from, p.to, p.tenant, p.grants, p.accesses]),
      [
        ['2030-06-01T00:00:00.000Z', '2030-07-01T00:00:00.000Z', T, 2, 3],
        ['2030-06-01T00:00:00.000Z', '2030-07-01T00:00:00.000Z', OTHER, 1, 1],
        ['2030-07-01T00:00:00.000Z', '2030-08-01T00:00:00.000Z', T, 1, 1],
      ],
    );
    // Until the end of June only: July is not over yet.
    assert.equal((await review.unreviewed(ADMIN, { until: '2030-07-15' })).length, 2);

    const officerSession = await f.login(officer);
    const a = await review.attest(officerSession, {
      from: '2030-06-01',
      to: '2030-07-01',
      tenant: T,
      note: 'June for the tenant: one lockbox grant, ticket SUP-77 checked',
    });
    assert.equal(a.attestedBy, officer.id);
    assert.equal(a.recordedBy, `staff:${officer.id}`);
    const event = (await f.audit()).at(-1) as AuditRecord;
    assert.deepEqual(
      [event.action, event.outcome, event.tenant, event.target?.reviewId],
      ['access.attest', 'success', T, a.id],
    );
    assert.deepEqual(
      (await review.unreviewed(ADMIN)).map((p) => [p.from, p.tenant]),
      [
        ['2030-06-01T00:00:00.000Z', OTHER],
        ['2030-07-01T00:00:00.000Z', T],
      ],
    );
    const juneT = await review.report(ADMIN, { from: '2030-06-01', to: '2030-07-01', tenant: T });
    assert.equal(juneT.unreviewed, false);
    assert.deepEqual(
      juneT.attestations.map((x) => x.id),
      [a.id],
    );
    assert.equal((await review.report(ADMIN, { from: '2030-06-01', to: '2030-07-01' })).unreviewed, true);

    // One attestation for every tenant, recorded through the CLI for a named officer.
    const b = await review.attest(CLI, {
      from: '2030-06-01',
      to: '2030-08-01',
      tenant: null,
      note: 'June and July, every tenant',
      attestedBy: officer.id,
    });
    assert.equal(b.recordedBy, 'system:cli');
    assert.deepEqual(await review.unreviewed(ADMIN), []);
    assert.equal((await review.report(ADMIN, { from: '2030-06-01', to: '2030-08-01' })).unreviewed, false);
  });

  it('lets only a security officer attest, for a past period, with a short note; keeps attestations', async () => {
    const period = { from: '2030-06-01', to: '2030-07-01', note: 'reviewed' };
    for (const who of [agent, tenantAdmin]) {
      await refusedAndAudited(
        async () => review.attest(await f.login(who), period),
        'TRESOR_ERR_FORBIDDEN',
        'access.attest',
      );
    }
    await refusedAndAudited(() => review.attest(ADMIN, period), 'TRESOR_ERR_FORBIDDEN', 'access.attest');
    await refusedAndAudited(() => review.attest(CLI, period), 'TRESOR_ERR_FORBIDDEN', 'access.attest');
    await refusedAndAudited(
      () => review.attest(CLI, { ...period, attestedBy: agent.id }),
      'TRESOR_ERR_FORBIDDEN',
      'access.attest',
    );
    await refusedAndAudited(
      async () => review.attest(await f.login(officer), { ...period, attestedBy: agent.id }),
      'TRESOR_ERR_FORBIDDEN',
      'access.attest',
    );
    const s = await f.login(officer);
    await refusedAndAudited(
      () => review.attest(s, { ...period, note: 'x'.repeat(1001) }),
      'TRESOR_ERR_VALIDATION',
      'access.attest',
    );
    await refusedAndAudited(
      () => review.attest(s, { ...period, note: ' ' }),
      'TRESOR_ERR_VALIDATION',
      'access.attest',
    );
    await refusedAndAudited(
      () => review.attest(s, { ...period, to: '2030-09-01' }),
      'TRESOR_ERR_VALIDATION',
      'access.attest',
    );
    await refusedAndAudited(
      () => review.attest(s, { ...period, tenant: 'ten_nope' }),
      'TRESOR_ERR_NOT_FOUND',
      'access.attest',
    );
    const disabledOfficer = await f.person('security-officer');
    await f.people.disable(ADMIN, disabledOfficer.id);
    await refusedAndAudited(
      () => review.attest(CLI, { ...period, attestedBy: disabledOfficer.id }),
      'TRESOR_ERR_FORBIDDEN',
      'access.attest',
    );
    assert.equal((await f.control.db.selectFrom('access_reviews').select('id').execute()).length, 0);

    const a = await review.attest(s, { ...period, note: 'x'.repeat(1000) });
    for (const statement of [
      sql`UPDATE access_reviews SET note = 'nothing to see' WHERE id = ${a.id}`,
      sql`DELETE FROM access_reviews WHERE id = ${a.id}`,
    ]) {
      const e = await f.control.write((trx) => statement.execute(trx)).catch((err: unknown) => err);
      assert.match(String(e), /append-only/);
    }
  });

  it('parses instants strictly and computes coverage as a union of intervals', () => {
    assert.equal(parseInstant('2030-06-01'), Date.parse('2030-06-01T00:00:00Z'));
    assert.equal(parseInstant('2030-06-01T12:30:00.5Z'), Date.parse('2030-06-01T12:30:00.500Z'));
    for (const bad of ['2030-6-1', '2030-02-30', '2030-06-01T25:00Z', '2030-06-01T12:00:00+02:00', 20300601])
      assert.equal(parseInstant(bad), undefined, String(bad));
    assert.equal(
      covers(
        [
          { from: 0, to: 5 },
          { from: 5, to: 10 },
        ],
        0,
        10,
      ),
      true,
    );
    assert.equal(
      covers(
        [
          { from: 0, to: 5 },
          { from: 6, to: 10 },
        ],
        0,
        10,
      ),
      false,
    );
    assert.equal(covers([{ from: 2, to: 10 }], 0, 10), false);
    assert.equal(covers([], 0, 1), false);
  });
});
