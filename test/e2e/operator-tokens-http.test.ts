// backends: sqlite postgres
/**
 * Operator tokens and step-up against a real stack (keyd and `tresor server` processes, HTTPS): the
 * first operator admin — a person — signs in with password and TOTP, mints tokens of one scope,
 * and each reaches only its scope's routes; step-up routes refuse every token; rotated-away, revoked
 * and disabled owners' tokens stop at once; every action is in the audit log with the token id and
 * no secret; a TOTP code is never accepted twice.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { consoleClient, type OperatorAdmin, operatorAdmin } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

interface Entry {
  entry: {
    action: string;
    outcome: string;
    actor: { kind: string; id: string; tokenId?: string };
    target?: Record<string, unknown>;
  };
}

describe('operator tokens and step-up over HTTPS', () => {
  let s: TresorStack;
  let admin: OperatorAdmin;

  before(async () => {
    s = await startTresorStack();
    admin = await operatorAdmin(s);
  });
  after(async () => {
    await s?.stop();
  });

  const entries = async (auditToken: string) => {
    const all: Entry[] = [];
    for (let from: number | null = 0; from !== null; ) {
      const res = await s.request('GET', `/v1/audit/entries?from=${from}&limit=1000`, { token: auditToken });
      assert.equal(res.status, 200, res.text);
      const page = res.json<{ entries: Entry[]; next: number | null }>();
      all.push(...page.entries);
      from = page.next;
    }
    return all;
  };

  it('a token reaches the routes of its scope and nothing else', async () => {
    const reader = await admin.token('tenants:read');
    assert.equal((await s.request('GET', '/v1/tenants', { token: reader })).status, 200);
    for (const [method, path, body] of [
      ['POST', '/v1/tenants', { name: 'Nope' }],
      ['GET', '/v1/people', undefined],
      ['GET', '/v1/system/jobs', undefined],
      ['GET', '/v1/audit/entries', undefined],
      ['GET', '/v1/operator-tokens', undefined],
      ['GET', '/v1/collections', undefined],
    ] as const) {
      const res = await s.request(method, path, { token: reader, ...(body ? { body } : {}) });
      assert.equal(res.status, 403, `${method} ${path}: ${res.text}`);
      assert.equal(res.json().code, 'TRESOR_ERR_FORBIDDEN');
    }
  });

  it('refuses every token on the step-up routes (403), whatever its scope', async () => {
    const creator = await admin.token('tenants:create');
    const tenant = await s.request('POST', '/v1/tenants', { token: creator, body: { name: 'Step-up Ltd' } });
    assert.equal(tenant.status, 201, tenant.text);
    const id = tenant.json<{ id: string }>().id;
    const { personId } = s.admin;
    for (const [method, path, body] of [
      ['POST', `/v1/tenants/${id}/close`, { reason: 'x' }],
      ['POST', `/v1/tenants/${id}/close/cancel`, undefined],
      ['PUT', `/v1/tenants/${id}/grant-policy`, { policy: 'customer' }],
      ['POST', '/v1/people', { side: 'operator', role: 'support-agent', email: 'x@example.test' }],
      ['POST', `/v1/people/${personId}/disable`, undefined],
      ['POST', '/v1/operator-tokens', { scope: 'tenants:create', name: 'more' }],
    ] as const) {
      const res = await s.request(method, path, { token: creator, ...(body ? { body } : {}) });
      assert.equal(res.status, 403, `${method} ${path}: ${res.text}`);
    }
    // The operator admin's fresh session does them.
    const policy = await admin.request('PUT', `/v1/tenants/${id}/grant-policy`, { policy: 'customer' });
    assert.equal(policy.status, 200, policy.text);
  });

  it('rotation stops the old token at once; revocation too; list and audit show ids, never secrets', async () => {
    const old = await admin.token('jobs:read', { name: 'status', expiresInDays: 7 });
    const listed = await admin.request('GET', '/v1/operator-tokens');
    assert.equal(listed.status, 200, listed.text);
    const mine = listed
      .json<{ tokens: { id: string; name: string; scope: string }[] }>()
      .tokens.find((t) => old.includes(t.id.slice(3)));
    assert.ok(mine, 'the new token is listed');
    assert.ok(!listed.text.includes(old.slice(-43)), 'no secret in the list');

    const rotated = await admin.request('POST', `/v1/operator-tokens/${mine.id}/rotate`);
    assert.equal(rotated.status, 201, rotated.text);
    const fresh = rotated.json<{ id: string; token: string; scope: string; name: string }>();
    assert.equal(fresh.scope, 'jobs:read');
    assert.equal(fresh.name, 'status');
    assert.equal((await s.request('GET', '/v1/system/jobs', { token: old })).status, 401);
    assert.equal((await s.request('GET', '/v1/system/jobs', { token: fresh.token })).status, 200);

    assert.equal((await admin.request('DELETE', `/v1/operator-tokens/${fresh.id}`)).status, 204);
    assert.equal(
      (await admin.request('DELETE', `/v1/operator-tokens/${fresh.id}`)).status,
      204,
      'idempotent',
    );
    assert.equal(
      (await admin.request('DELETE', '/v1/operator-tokens/op_000000000000000000000000')).status,
      404,
    );
    assert.equal((await s.request('GET', '/v1/system/jobs', { token: fresh.token })).status, 401);

    // The entries are sequenced into the log a moment after their requests: wait until the last is in.
    const auditToken = await admin.token('audit:read');
    const log = await waitFor(
      'the token events in the audit log',
      async () => {
        const all = await entries(auditToken);
        const has = (action: string, id: string) =>
          all.some(
            (e) =>
              e.entry.action === action &&
              e.entry.outcome === 'success' &&
              e.entry.target?.operatorTokenId === id,
          );
        return has('operator-token.create', mine.id) && has('operator-token.revoke', fresh.id)
          ? all
          : undefined;
      },
      { timeoutMs: 30_000 },
    );
    const of = (action: string) =>
      log.filter((e) => e.entry.action === action && e.entry.outcome === 'success');
    assert.ok(of('operator-token.create').some((e) => e.entry.target?.operatorTokenId === mine.id));
    assert.ok(
      of('operator-token.rotate').some(
        (e) => e.entry.target?.operatorTokenId === fresh.id && e.entry.target?.rotatedFrom === mine.id,
      ),
    );
    assert.ok(of('operator-token.revoke').some((e) => e.entry.target?.operatorTokenId === fresh.id));
    assert.ok(of('operator-token.list').length >= 1);
    const used = of('system.jobs-read').find((e) => e.entry.actor.tokenId === fresh.id);
    assert.deepEqual(
      used?.entry.actor,
      { kind: 'operator-admin', id: s.admin.personId, tokenId: fresh.id },
      'a token request names its owner and the token',
    );
    const text = JSON.stringify(log);
    for (const secret of admin.secrets) assert.ok(!text.includes(secret), 'no secret in the audit log');
    for (const token of [old, fresh.token]) assert.ok(!text.includes(token.slice(-43)));
  });

  it('stops a token when its owner is disabled', async () => {
    const people = consoleClient(s);
    const second = await people.createAndEnrol({
      side: 'operator',
      role: 'operator-admin',
      email: 'second@example.test',
    });
    const session = await people.login(second);
    const made = await people.as(session, 'POST', '/v1/operator-tokens', {
      scope: 'tenants:read',
      name: 'theirs',
    });
    assert.equal(made.status, 201, made.text);
    const theirs = made.json<{ token: string }>().token;
    assert.equal((await s.request('GET', '/v1/tenants', { token: theirs })).status, 200);
    assert.equal((await admin.request('POST', `/v1/people/${second.id}/disable`)).status, 204);
    assert.equal((await s.request('GET', '/v1/tenants', { token: theirs })).status, 401);
  });

  it('refuses a TOTP code already used, at re-authentication', async () => {
    // From the admin's own tracker: a step its enrolment, login and step-ups have not used (with a
    // tracker of its own the test could pick a step the admin's login had already spent).
    const code = await admin.nextCode();
    const first = await admin.request('POST', '/v1/auth/reauthenticate', { totp: code });
    if (first.status !== 200) assert.fail(`the first use is accepted: ${first.text}`);
    const cookie = /__Host-tresor_session=([A-Za-z0-9_-]{43})/.exec(String(first.headers['set-cookie']))?.[1];
    const csrf = first.json<{ csrfToken: string }>().csrfToken;
    const again = await s.request('POST', '/v1/auth/reauthenticate', {
      headers: { cookie: `__Host-tresor_session=${cookie}`, 'x-csrf-token': csrf },
      body: { totp: code },
    });
    assert.equal(again.status, 401, again.text);
  });
});
