/**
 * A refusal by the identity domain is audited exactly once over HTTP: the people service writes its
 * `denied` event in the same transaction as its check, so the pipeline's error path must not add a
 * second event for the same request.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { peopleRoutes } from '../../src/http/routes/people.ts';
import type { SessionPrincipal } from '../../src/identity/session-principal.ts';
import { type AccessFixture, openAccessFixture } from '../access/fixture.ts';
import { buildTestApp, type Harness, NOW, session, sessionsOf } from '../http/fixtures/harness.ts';

const MINE = 'ten_000000000000000000000aaa';

describe('identity refusals over HTTP', () => {
  let f: AccessFixture;
  let h: Harness;
  let caller: SessionPrincipal;

  beforeEach(async () => {
    f = await openAccessFixture(new Date(NOW.getTime() - 60_000).toISOString());
    await f.tenant(MINE);
    caller = await f.login(await f.person('tenant-admin', MINE));
    h = await buildTestApp({
      routes: () => [peopleRoutes({ people: f.people })],
      sessions: sessionsOf(() => caller),
    });
  });

  afterEach(async () => {
    await h.app.close();
    await f.close();
  });

  it('a tenant admin unlocking a staff account is refused and audited once, by the domain', async () => {
    const staff = await f.person('support-agent');
    const domainBefore = (await f.audit()).length;
    const pipelineBefore = h.audit.events.length;
    const res = await h.app.inject({
      method: 'POST',
      url: `/v1/people/${staff.id}/unlock`,
      headers: session('adminFresh2fa'),
    });
    assert.equal(res.statusCode, 403, res.body);
    const domain = (await f.audit()).slice(domainBefore);
    const pipeline = h.audit.events.slice(pipelineBefore);
    assert.equal(domain.length + pipeline.length, 1, 'exactly one audit event for the refusal');
    assert.equal(domain[0]?.action, 'person.unlock');
    assert.equal(domain[0]?.outcome, 'denied');
  });
});
