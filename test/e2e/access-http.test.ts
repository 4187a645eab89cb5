// backends: sqlite postgres
/**
 * Staff access to customer data, end to end over real HTTPS against a real `tresor server` and
 * keyd, with real console sessions (password + TOTP from oathtool, cookie + CSRF): a support agent
 * asks for a grant, the customer's admin approves it (lockbox), the agent activates it with a
 * second factor passed after the request, reads a record naming the grant — and the customer sees
 * that read live on their audit stream with the grant's reason and ticket. Then every refusal the
 * issue lists: self-approval, another tenant's admin, activation without the fresh factor, a write
 * on a read grant, another tenant's record, a revoked grant at the very next request, a contractor
 * without an employee's approval, break-glass by anyone but a security officer; and the ends: a
 * role removed ends its grants at once, the access review lists it all and is attested.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { after, before, describe, it } from 'node:test';
import {
  type ConsoleAccount,
  type ConsoleSession,
  consoleClient,
  operatorAdmin,
  operatorToken,
} from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor as waitForHelper } from '../helpers/wait.ts';

interface Grant {
  id: string;
  state: string;
  awaiting: string[];
  breakGlass: boolean;
  tenant: string;
}

interface Entry {
  index: number;
  entry: {
    action: string;
    outcome: string;
    tenant: string | null;
    actor: { kind: string; id: string; grantId?: string };
    grant?: { id: string; reason: string; ticket: string; breakGlass?: boolean };
    target?: Record<string, unknown>;
  };
}

const waitFor = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs?: number) =>
  waitForHelper(what, probe, { ...{ timeoutMs: 10_000 }, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });

describe('staff access grants over HTTPS', () => {
  let s: TresorStack;
  let c: ReturnType<typeof consoleClient>;
  const tenantA = { id: '', key: '', record: '' };
  const tenantB = { id: '', key: '', record: '' };
  const people: Record<string, { account: ConsoleAccount; session: ConsoleSession }> = {};
  const REASON = 'customer asked for help with a duplicate profile';
  const TICKET = 'SUP-4711';

  const as = (
    who: string,
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ) => {
    const p = people[who];
    assert.ok(p, who);
    return c.as(p.session, method, path, body, headers);
  };
  const fresh = async (who: string) => {
    const p = people[who];
    assert.ok(p, who);
    p.session = await c.reauthenticate(p.account, p.session);
  };
  const request = (who: string, body: Record<string, unknown>) =>
    as(who, 'POST', '/v1/grants', {
      collections: ['people'],
      access: 'read',
      reason: REASON,
      ticket: TICKET,
      ...body,
    });
  const entriesOf = async (key: string) =>
    (await s.request('GET', '/v1/audit/entries?limit=1000', { token: key })).json<{ entries: Entry[] }>()
      .entries;

  before(async () => {
    s = await startTresorStack({
      env: { TRESOR_LOGIN_DELAY_AFTER: '100', TRESOR_LOGIN_ADDRESS_DELAY_AFTER: '100000' },
    });
    c = consoleClient(s);
    for (const [t, name] of [
      [tenantA, 'Alpha'],
      [tenantB, 'Beta'],
    ] as const) {
      const created = await s.request('POST', '/v1/tenants', {
        token: await operatorToken(s, 'tenants:create'),
        body: { name },
      });
      assert.equal(created.status, 201, created.text);
      const body = created.json<{ id: string; apiKey: string }>();
      t.id = body.id;
      t.key = body.apiKey;
      const put = await s.request('PUT', '/v1/collections/people', {
        token: t.key,
        body: { fields: { email: { type: 'string', classification: 'confidential', searchable: true } } },
      });
      assert.equal(put.status, 201, put.text);
      const rec = await s.request('POST', '/v1/collections/people/records', {
        token: t.key,
        body: { email: `${name.toLowerCase()}-canary@example.test` },
      });
      assert.equal(rec.status, 201, rec.text);
      t.record = rec.json<{ id: string }>().id;
    }
    const accounts = {
      sam: { side: 'operator', role: 'support-agent', email: 'sam@tresor.test' },
      sue: { side: 'operator', role: 'support-agent', email: 'sue@tresor.test' },
      cora: { side: 'operator', role: 'contractor', email: 'cora@tresor.test' },
      sec: { side: 'operator', role: 'security-officer', email: 'sec@tresor.test' },
      tad: { side: 'customer', role: 'tenant-admin', email: 'tad@alpha.test', tenant: tenantA.id },
      tbd: { side: 'customer', role: 'tenant-admin', email: 'tbd@beta.test', tenant: tenantB.id },
    } as const;
    for (const [who, spec] of Object.entries(accounts)) {
      const account = await c.createAndEnrol(spec);
      people[who] = { account, session: await c.login(account) };
    }
  });

  after(async () => {
    await s?.stop();
  });

  let grant: Grant;

  it('lockbox: the customer’s admin approves; nobody approves their own request, another tenant’s admin cannot', async () => {
    const res = await request('sam', { tenant: tenantA.id });
    assert.equal(res.status, 201, res.text);
    grant = res.json<Grant>();
    assert.equal(grant.state, 'pending');
    assert.deepEqual(grant.awaiting, ['customer']);

    const own = await as('sam', 'POST', `/v1/grants/${grant.id}/approve`);
    assert.equal(own.status, 403, own.text);
    const otherTenant = await as('tbd', 'POST', `/v1/grants/${grant.id}/approve`);
    assert.ok([403, 404].includes(otherTenant.status), otherTenant.text);
    const employee = await as('sue', 'POST', `/v1/grants/${grant.id}/approve`);
    assert.equal(employee.status, 403, 'under lockbox an employee cannot stand in for the customer');

    const approved = await as('tad', 'POST', `/v1/grants/${grant.id}/approve`);
    assert.equal(approved.status, 200, approved.text);
    assert.equal(approved.json<Grant>().state, 'approved');
  });

  it('activation needs a second factor passed after the request; then the grant reads, and only reads, its tenant’s records', async () => {
    const early = await as('sam', 'POST', `/v1/grants/${grant.id}/activate`);
    assert.equal(early.status, 401, early.text);
    assert.equal(early.json<{ code: string }>().code, 'TRESOR_ERR_SECOND_FACTOR_REQUIRED');
    const url = `/v1/collections/people/records/${tenantA.record}`;
    assert.equal((await as('sam', 'GET', url, undefined, { 'tresor-grant': grant.id })).status, 403);

    await fresh('sam');
    const active = await as('sam', 'POST', `/v1/grants/${grant.id}/activate`);
    assert.equal(active.status, 200, active.text);
    assert.equal(active.json<Grant>().state, 'active');

    // The customer watches their stream while staff read.
    const seen: Entry[] = [];
    const stream = httpsRequest(new URL('/v1/audit/stream', s.url), {
      ca: readFileSync(s.caFile),
      headers: { authorization: `Bearer ${tenantA.key}`, accept: 'text/event-stream' },
    });
    await new Promise<void>((resolve, reject) => {
      stream.on('response', (res) => {
        res.setEncoding('utf8');
        let buffered = '';
        res.on('data', (chunk: string) => {
          buffered += chunk;
          for (let end = buffered.indexOf('\n\n'); end >= 0; end = buffered.indexOf('\n\n')) {
            const data = buffered
              .slice(0, end)
              .split('\n')
              .find((l) => l.startsWith('data: '));
            buffered = buffered.slice(end + 2);
            if (data) seen.push(JSON.parse(data.slice(6)) as Entry);
          }
        });
        resolve();
      });
      stream.on('error', reject);
      stream.end();
    });
    try {
      const read = await as('sam', 'GET', url, undefined, { 'tresor-grant': grant.id });
      assert.equal(read.status, 200, read.text);
      assert.equal(read.json<{ data: { email: string } }>().data.email, 'alpha-canary@example.test');
      const live = await waitFor('the staff read on the customer’s stream', async () =>
        seen.find((e) => e.entry.action === 'record.read' && e.entry.actor.grantId === grant.id),
      );
      assert.equal(live.entry.actor.kind, 'staff');
      assert.equal(live.entry.actor.id, people.sam?.account.id);
      assert.deepEqual(live.entry.grant, { id: grant.id, reason: REASON, ticket: TICKET });
      assert.equal(live.entry.tenant, tenantA.id);
    } finally {
      stream.destroy();
    }

    // Read only: no write; no record of another tenant; no record without naming the grant.
    const write = await as(
      'sam',
      'PATCH',
      url,
      { email: 'changed@example.test' },
      { 'tresor-grant': grant.id, 'if-match': '"1"' },
    );
    assert.equal(write.status, 403, write.text);
    const otherTenant = await as(
      'sam',
      'GET',
      `/v1/collections/people/records/${tenantB.record}`,
      undefined,
      {
        'tresor-grant': grant.id,
      },
    );
    assert.equal(otherTenant.status, 404, 'the grant reaches only its own tenant’s store');
    assert.equal((await as('sam', 'GET', url)).status, 403, 'a staff session alone reaches no record');
    // Another person cannot use sam's grant.
    assert.equal((await as('sue', 'GET', url, undefined, { 'tresor-grant': grant.id })).status, 403);
    // Tenant B's admin sees none of it.
    const bEntries = await entriesOf(tenantB.key);
    assert.ok(!bEntries.some((e) => e.entry.actor.grantId === grant.id));
  });

  it('a revoked grant is refused at the very next request', async () => {
    const url = `/v1/collections/people/records/${tenantA.record}`;
    const revoked = await as('tad', 'POST', `/v1/grants/${grant.id}/revoke`);
    assert.equal(revoked.status, 200, revoked.text);
    assert.equal(revoked.json<Grant>().state, 'revoked');
    const after = await as('sam', 'GET', url, undefined, { 'tresor-grant': grant.id });
    assert.equal(after.status, 403, after.text);
    const again = await as('sam', 'POST', `/v1/grants/${grant.id}/activate`);
    assert.ok(again.status === 409 || again.status === 401, again.text);
  });

  it('the customer sees the refused attempts on its data, and no other tenant’s person in them', async () => {
    const sam = people.sam?.account.id;
    const sue = people.sue?.account.id;
    const tbd = people.tbd?.account.id;
    assert.ok(sam && sue && tbd);
    const refusedReads = (list: Entry[]) =>
      list.filter((e) => e.entry.action === 'record.read' && e.entry.outcome === 'denied');
    const entries = await waitFor('the refused reads in the customer’s log', async () => {
      const list = await entriesOf(tenantA.key);
      return refusedReads(list).length >= 3 ? list : undefined;
    });
    const byWhy = (why: string) => refusedReads(entries).find((e) => e.entry.target?.refused === why);
    // sam read through the grant before activating it, and after it was revoked: the customer sees
    // both with the grant's reason and ticket.
    for (const why of ['approved', 'revoked']) {
      const e = byWhy(why);
      assert.ok(e, `a refused read through a ${why} grant is in the customer’s log`);
      assert.equal(e.entry.tenant, tenantA.id);
      assert.deepEqual(e.entry.actor, { kind: 'staff', id: sam });
      assert.deepEqual(e.entry.grant, { id: grant.id, reason: REASON, ticket: TICKET });
      assert.equal(e.entry.target?.grantId, grant.id);
      assert.equal(e.entry.target?.problem, 'TRESOR_ERR_FORBIDDEN');
    }
    // sue named sam's grant: the attempt is the customer's to see, without the grant's details.
    const foreignGrant = byWhy('not-yours');
    assert.ok(foreignGrant, 'a read through another person’s grant is in the customer’s log');
    assert.deepEqual(foreignGrant.entry.actor, { kind: 'staff', id: sue });
    assert.equal(foreignGrant.entry.grant, undefined);
    // Tenant B's admin tried to approve: the customer sees the attempt, not who at tenant B made it.
    const approve = entries.find(
      (e) =>
        e.entry.action === 'grant.approve' &&
        e.entry.outcome === 'denied' &&
        e.entry.actor.kind === 'customer',
    );
    assert.ok(approve, 'the other tenant’s refused approval is in the customer’s log');
    assert.deepEqual(approve.entry.actor, { kind: 'customer', id: 'another-tenant' });
    assert.equal((approve.entry as { sourceAddress?: string }).sourceAddress, undefined);
    assert.equal((approve.entry as { userAgent?: string }).userAgent, undefined);
    assert.ok(!JSON.stringify(entries).includes(tbd), 'tenant B’s admin is named nowhere in tenant A’s log');
    // And none of it reaches tenant B.
    const bEntries = await entriesOf(tenantB.key);
    assert.ok(!bEntries.some((e) => e.entry.target?.grantId === grant.id));
  });

  it('four eyes and automatic policies; a contractor always needs an employee', async () => {
    const set = await as('tad', 'PUT', `/v1/tenants/${tenantA.id}/grant-policy`, { policy: 'automatic' });
    assert.equal(set.status, 200, set.text);
    const auto = await request('sue', { tenant: tenantA.id });
    assert.equal(auto.status, 201, auto.text);
    assert.equal(auto.json<Grant>().state, 'approved', 'an employee under automatic: approved at once');

    const contractor = await request('cora', { tenant: tenantA.id, access: 'read-write' });
    assert.equal(contractor.status, 201, contractor.text);
    const pending = contractor.json<Grant>();
    assert.equal(pending.state, 'pending');
    assert.deepEqual(pending.awaiting, ['employee']);
    assert.equal((await as('tad', 'POST', `/v1/grants/${pending.id}/approve`)).status, 403);
    const approved = await as('sue', 'POST', `/v1/grants/${pending.id}/approve`);
    assert.equal(approved.status, 200, approved.text);
    await fresh('cora');
    assert.equal((await as('cora', 'POST', `/v1/grants/${pending.id}/activate`)).status, 200);
    const write = await as(
      'cora',
      'PATCH',
      `/v1/collections/people/records/${tenantA.record}`,
      { email: 'fixed@example.test' },
      { 'tresor-grant': pending.id, 'if-match': '"1"' },
    );
    assert.equal(write.status, 200, write.text);
    // The tenant's admin sets the policy back; another tenant's admin cannot touch it.
    assert.equal(
      (await as('tbd', 'PUT', `/v1/tenants/${tenantA.id}/grant-policy`, { policy: 'automatic' })).status >=
        400,
      true,
    );
    assert.equal(
      (await as('tad', 'PUT', `/v1/tenants/${tenantA.id}/grant-policy`, { policy: 'customer' })).status,
      200,
    );
  });

  it('break-glass: only a security officer, with a fresh factor; recorded as such with high severity in the customer’s log', async () => {
    const body = {
      tenant: tenantA.id,
      collections: '*',
      access: 'read',
      reason: 'incident 88: data leak check',
      ticket: 'INC-88',
    };
    const agent = await as('sam', 'POST', '/v1/grants/break-glass', body);
    assert.equal(agent.status, 403, agent.text);
    await fresh('sec');
    const opened = await as('sec', 'POST', '/v1/grants/break-glass', body);
    assert.equal(opened.status, 201, opened.text);
    const bg = opened.json<Grant>();
    assert.equal(bg.state, 'active');
    assert.equal(bg.breakGlass, true);
    const read = await as('sec', 'GET', `/v1/collections/people/records/${tenantA.record}`, undefined, {
      'tresor-grant': bg.id,
    });
    assert.equal(read.status, 200, read.text);
    const entries = await waitFor('the break-glass entries in the customer’s log', async () => {
      const list = await entriesOf(tenantA.key);
      return list.some((e) => e.entry.action === 'record.read' && e.entry.grant?.breakGlass)
        ? list
        : undefined;
    });
    const event = entries.find(
      (e) => e.entry.action === 'grant.break-glass' && e.entry.outcome === 'success',
    );
    assert.ok(event, 'the break-glass grant is in the customer’s log');
    assert.equal((event.entry.target as { severity?: string }).severity, 'high');
  });

  it('removing a role ends the person’s grants and sessions at once', async () => {
    const res = await request('sue', { tenant: tenantA.id });
    const g = res.json<Grant>();
    await as('tad', 'POST', `/v1/grants/${g.id}/approve`);
    const changed = await (await operatorAdmin(s)).request('PATCH', `/v1/people/${people.sue?.account.id}`, {
      role: 'contractor',
    });
    assert.equal(changed.status, 200, changed.text);
    assert.equal((await as('sue', 'GET', '/v1/auth/session')).status, 401);
    const ended = await s.request('GET', `/v1/grants/${g.id}`, {
      token: await operatorToken(s, 'access:read'),
    });
    assert.equal(ended.status, 200, ended.text);
    assert.equal(ended.json<Grant>().state, 'revoked');
  });

  it('the access review lists every grant and staff access, and a security officer attests it', async () => {
    // The period ends now: everything above happened in it, and it has ended (only an ended period
    // can be attested) by the time the server looks — no waiting for a future end to pass.
    const from = new Date(Date.now() - 3_600_000).toISOString();
    const to = new Date().toISOString();
    const report = await s.request(
      'GET',
      `/v1/access/review?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`,
      { token: await operatorToken(s, 'access:read') },
    );
    assert.equal(report.status, 200, report.text);
    const r = report.json<{
      grants: Grant[];
      accesses: { grantId: string; person: string; action: string }[];
      byPerson: Record<string, { grants: number; accesses: number }>;
      unreviewed: boolean;
    }>();
    assert.ok(r.grants.some((g) => g.id === grant.id));
    assert.ok(r.accesses.some((a) => a.grantId === grant.id && a.action === 'record.read'));
    assert.ok((r.byPerson[people.sam?.account.id ?? '']?.accesses ?? 0) >= 1);
    assert.equal(r.unreviewed, true);

    const notOfficer = await as('tad', 'POST', '/v1/access/reviews', { from, to, note: 'looked at it' });
    assert.equal(notOfficer.status, 403, notOfficer.text);
    await fresh('sec');
    const attested = await as('sec', 'POST', '/v1/access/reviews', {
      from,
      to,
      tenant: null,
      note: 'all grants had tickets',
    });
    assert.equal(attested.status, 201, attested.text);
    const again = await s.request(
      'GET',
      `/v1/access/review?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`,
      { token: await operatorToken(s, 'access:read') },
    );
    assert.equal(again.json<{ unreviewed: boolean }>().unreviewed, false);

    // Tenant A's admin reviews only their own tenant.
    const own = await as(
      'tad',
      'GET',
      `/v1/access/review?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`,
    );
    assert.equal(own.status, 200, own.text);
    assert.ok(own.json<{ grants: Grant[] }>().grants.every((g) => g.tenant === tenantA.id));

    // Every refusal is in the log: the self-approval, the other tenant's admin, the early
    // activation, and the use of the revoked grant — each denied, naming the person.
    const log = await entriesOf(await operatorToken(s, 'audit:read'));
    const sam = people.sam?.account.id;
    const denied = (action: string, by?: string) =>
      log.some(
        (e) => e.entry.action === action && e.entry.outcome === 'denied' && (!by || e.entry.actor.id === by),
      );
    assert.ok(denied('grant.approve', sam), 'self-approval audited');
    assert.ok(denied('grant.approve', people.tbd?.account.id), 'another tenant’s admin audited');
    assert.ok(denied('grant.activate', sam), 'activation without a fresh factor audited');
    assert.ok(
      log.some(
        (e) =>
          e.entry.action === 'record.read' &&
          e.entry.outcome === 'denied' &&
          e.entry.actor.id === sam &&
          (e.entry.target as { problem?: string } | undefined)?.problem === 'TRESOR_ERR_FORBIDDEN',
      ),
      'the revoked grant’s use audited',
    );

    // No secret the test handled is anywhere in the log.
    const all = JSON.stringify(log);
    for (const secret of c.secrets) assert.ok(!all.includes(secret), 'a secret in the audit log');
    assert.ok(!all.includes('alpha-canary'), 'a record value in the audit log');
  });
});
