/**
 * A refusal by the access domain is audited exactly once over HTTP: the grant and review services
 * write their refusal event (with the grant's tenant and the reason refused) in their own
 * transaction, so the pipeline's error path must not add a second event for the same request.
 * Refusals made by the pipeline itself (validation, before the domain runs) are still its own.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { createAccessReviewService } from '../../src/access/review.ts';
import { accessRoutes } from '../../src/http/routes/access.ts';
import type { SessionPrincipal } from '../../src/identity/session-principal.ts';
import { buildTestApp, type Harness, NOW, session, sessionsOf } from '../http/fixtures/harness.ts';
import { type AccessFixture, openAccessFixture } from './fixture.ts';

const T = 'ten_000000000000000000000aaa';

const ask = {
  tenant: T,
  collections: ['customers'],
  access: 'read',
  reason: 'customer reports a wrong invoice address',
  ticket: 'SUP-1234',
};

describe('access refusals over HTTP', () => {
  let f: AccessFixture;
  let h: Harness;
  let caller: SessionPrincipal;

  beforeEach(async () => {
    // The store's clock a minute before the app's: the session's second factor is fresh for both.
    f = await openAccessFixture(new Date(NOW.getTime() - 60_000).toISOString());
    await f.tenant(T);
    caller = await f.login(await f.person('support-agent'));
    h = await buildTestApp({
      routes: () => [
        accessRoutes({
          grants: f.grants,
          reviews: createAccessReviewService({ control: f.control, now: f.now }),
        }),
      ],
      sessions: sessionsOf(() => caller),
    });
  });

  afterEach(async () => {
    await h.app.close();
    await f.close();
  });

  /** Every audit event of one request: the domain's (control store outbox) and the pipeline's. */
  async function eventsOf(request: () => Promise<{ statusCode: number }>, status: number) {
    const domainBefore = (await f.audit()).length;
    const pipelineBefore = h.audit.events.length;
    const res = await request();
    assert.equal(res.statusCode, status);
    return {
      domain: (await f.audit()).slice(domainBefore),
      pipeline: h.audit.events.slice(pipelineBefore),
    };
  }

  const post = (url: string, body?: unknown) =>
    h.app.inject({
      method: 'POST',
      url,
      headers: {
        ...session('adminFresh2fa'),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
    });

  it('a grant request the domain refuses (unknown tenant) is audited once, by the domain', async () => {
    const e = await eventsOf(() => post('/v1/grants', { ...ask, tenant: 'ten_nobody' }), 404);
    assert.equal(e.domain.length + e.pipeline.length, 1, 'exactly one audit event for the refusal');
    assert.equal(e.domain[0]?.action, 'grant.request');
    assert.equal(e.domain[0]?.target?.refusal, 'TRESOR_ERR_NOT_FOUND');
    assert.equal(e.domain[0]?.target?.refused, 'unknown-tenant');
  });

  it('approving one’s own request is audited once, by the domain, as denied', async () => {
    const made = await post('/v1/grants', ask);
    assert.equal(made.statusCode, 201, made.body);
    const { id } = JSON.parse(made.body) as { id: string };
    const e = await eventsOf(() => post(`/v1/grants/${id}/approve`), 403);
    assert.equal(e.domain.length + e.pipeline.length, 1, 'exactly one audit event for the refusal');
    assert.equal(e.domain[0]?.outcome, 'denied');
    assert.equal(e.domain[0]?.tenant, T);
    assert.equal(e.domain[0]?.target?.refused, 'own-request');
  });

  it('break-glass without a second factor on the session’s record is audited once, as denied', async () => {
    // The principal claims a fresh factor (the pipeline's step-up passes); the session row, which
    // the grant service reads, has none.
    const officer = await f.login(await f.person('security-officer'), { fresh2faAt: null });
    caller = { ...officer, fresh2faAt: f.now().toISOString() };
    const e = await eventsOf(() => post('/v1/grants/break-glass', ask), 401);
    assert.equal(e.domain.length + e.pipeline.length, 1, 'exactly one audit event for the refusal');
    assert.equal(e.domain[0]?.action, 'grant.break-glass');
    assert.equal(e.domain[0]?.outcome, 'denied', 'as the pipeline classes a missing second factor');
    assert.equal(e.domain[0]?.target?.refusal, 'TRESOR_ERR_SECOND_FACTOR_REQUIRED');
  });

  it('reading a grant that does not exist is audited once, by the domain', async () => {
    const e = await eventsOf(
      () =>
        h.app.inject({
          method: 'GET',
          url: `/v1/grants/grt_${'0'.repeat(24)}`,
          headers: session('adminFresh2fa'),
        }),
      404,
    );
    assert.equal(e.domain.length + e.pipeline.length, 1, 'exactly one audit event for the refusal');
    assert.equal(e.domain[0]?.action, 'grant.read');
  });

  it('an access review the domain refuses is audited once, by the domain', async () => {
    caller = await f.login(await f.person('security-officer'));
    const e = await eventsOf(
      () =>
        h.app.inject({
          method: 'GET',
          url: '/v1/access/review?from=2026-02-01&to=2026-01-01',
          headers: session('adminFresh2fa'),
        }),
      422,
    );
    assert.equal(e.domain.length + e.pipeline.length, 1, 'exactly one audit event for the refusal');
    assert.equal(e.domain[0]?.action, 'access.review');
  });

  it('a request the pipeline refuses before the domain runs is still audited once, by the pipeline', async () => {
    const e = await eventsOf(() => post('/v1/grants', { ...ask, access: 'everything' }), 422);
    assert.equal(e.domain.length, 0);
    assert.equal(e.pipeline.length, 1);
    assert.equal(e.pipeline[0]?.outcome, 'failure');
  });
});
