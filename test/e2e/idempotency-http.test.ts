// backends: sqlite postgres
/**
 * Idempotency-Key on record and tenant creates, over real HTTPS against a real `tresor server` process and
 * the real keyd (test/helpers/tresor-stack.ts): a retry returns the first answer and creates
 * nothing; the key is scoped to the caller; the same key with another request is a 422; a malformed
 * key a 400; two concurrent requests with one key make one record. No value reaches the key's row.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { operatorToken } from '../helpers/console.ts';
import { tenantRows } from '../helpers/stack-sql.ts';
import { type HttpResponse, startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';

const SCHEMA = {
  fields: {
    email: { type: 'string', classification: 'personal', required: true, searchable: true },
  },
};

interface Tenant {
  id: string;
  apiKey: string;
}

describe('Idempotency-Key on record creates', () => {
  let s: TresorStack;
  let tenant: Tenant;
  let other: Tenant;

  const post = (token: string, body: unknown, key?: string, collection = 'people'): Promise<HttpResponse> =>
    s.request('POST', `/v1/collections/${collection}/records`, {
      token,
      body,
      ...(key !== undefined ? { headers: { 'idempotency-key': key } } : {}),
    });

  async function newTenant(name: string): Promise<Tenant> {
    const res = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name },
    });
    assert.equal(res.status, 201, res.text);
    const t = res.json<Tenant>();
    const put = await s.request('PUT', '/v1/collections/people', { token: t.apiKey, body: SCHEMA });
    assert.ok(put.status === 201 || put.status === 200, put.text);
    return t;
  }

  /** The tenant's records, counted in its store (read-only, beside the running server). */
  async function recordCount(t: Tenant): Promise<number> {
    const rows = await tenantRows<{ n: number | string }>(s, t.id, 'SELECT count(*) AS n FROM records');
    return Number(rows[0]?.n);
  }

  function keyRows(t: Tenant): Promise<{ key: string; response: string | null }[]> {
    return tenantRows(s, t.id, 'SELECT key, response FROM idempotency_keys');
  }

  before(async () => {
    s = await startTresorStack();
    tenant = await newTenant('Idempotent');
    other = await newTenant('Other');
  });

  after(async () => {
    await s?.stop();
  });

  it('returns the first answer to a retry with the same key and request, and creates nothing', async () => {
    const key = `create-${randomBytes(8).toString('hex')}`;
    const body = { email: `first-${randomBytes(4).toString('hex')}@example.test` };
    const before = await recordCount(tenant);
    const first = await post(tenant.apiKey, body, key);
    assert.equal(first.status, 201, first.text);
    const retry = await post(tenant.apiKey, body, key);
    assert.equal(retry.status, 201, retry.text);
    assert.deepEqual(retry.json(), first.json(), 'same status, same id, same body');
    assert.equal(retry.headers.location, first.headers.location);
    assert.equal(await recordCount(tenant), before + 1, 'one record');
    const rows = (await keyRows(tenant)).filter((r) => r.key === key);
    assert.equal(rows.length, 1);
    assert.ok(!rows[0]?.response?.includes(body.email), 'no value is kept with the key');
  });

  it('refuses the same key with a different request with 422, changing nothing', async () => {
    const key = `reuse-${randomBytes(8).toString('hex')}`;
    assert.equal((await post(tenant.apiKey, { email: 'a@example.test' }, key)).status, 201);
    const before = await recordCount(tenant);
    const res = await post(tenant.apiKey, { email: 'b@example.test' }, key);
    assert.equal(res.status, 422, res.text);
    assert.equal(res.json<{ code: string }>().code, 'TRESOR_ERR_IDEMPOTENCY_KEY_REUSED');
    assert.equal(await recordCount(tenant), before);
  });

  it('scopes a key to its caller: another tenant with the same key creates its own record', async () => {
    const key = `shared-${randomBytes(8).toString('hex')}`;
    const body = { email: 'same@example.test' };
    const mine = await post(tenant.apiKey, body, key);
    const theirs = await post(other.apiKey, body, key);
    assert.equal(mine.status, 201);
    assert.equal(theirs.status, 201);
    assert.notEqual(mine.json<{ id: string }>().id, theirs.json<{ id: string }>().id);
  });

  it('refuses a malformed key with 400 and creates nothing', async () => {
    const before = await recordCount(tenant);
    for (const bad of ['', 'x'.repeat(256), 'with space', 'ümlaut']) {
      const res = await post(tenant.apiKey, { email: 'bad@example.test' }, bad);
      assert.equal(res.status, 400, `${JSON.stringify(bad)}: ${res.text}`);
    }
    assert.equal(await recordCount(tenant), before);
  });

  it('makes one record of concurrent requests with one key: the others replay it or are told it is running', async () => {
    const key = `race-${randomBytes(8).toString('hex')}`;
    const body = { email: 'race@example.test' };
    const before = await recordCount(tenant);
    const results = await Promise.all(Array.from({ length: 6 }, () => post(tenant.apiKey, body, key)));
    const statuses = results.map((r) => r.status);
    assert.ok(
      statuses.every((st) => st === 201 || st === 409),
      `statuses: ${statuses.join(', ')}`,
    );
    const ids = new Set(results.filter((r) => r.status === 201).map((r) => r.json<{ id: string }>().id));
    assert.equal(ids.size, 1, 'every 201 names the same record');
    for (const r of results.filter((res) => res.status === 409)) {
      assert.equal(r.json<{ code: string }>().code, 'TRESOR_ERR_IDEMPOTENCY_IN_PROGRESS');
    }
    assert.equal(await recordCount(tenant), before + 1, 'one record');
    // Once the first has finished, a retry replays it.
    const late = await post(tenant.apiKey, body, key);
    assert.equal(late.status, 201);
    assert.ok(ids.has(late.json<{ id: string }>().id));
  });

  it('lets a retry run again after the first attempt failed (nothing was created)', async () => {
    const key = `failed-${randomBytes(8).toString('hex')}`;
    const missing = await post(tenant.apiKey, { email: 'x@example.test' }, key, 'no_such_collection');
    assert.equal(missing.status, 404, missing.text);
    const again = await post(tenant.apiKey, { email: 'x@example.test' }, key, 'no_such_collection');
    assert.equal(again.status, 404, 'not a replay of a stored answer, and not "in progress"');
  });

  it('creates a tenant once per key: the retry gets the first tenant and its key id, never the key again', async () => {
    const token = await operatorToken(s, 'tenants:create');
    const key = `tenant-${randomBytes(8).toString('hex')}`;
    const name = `Idem${randomBytes(4).toString('hex')}`;
    const create = (body: unknown) =>
      s.request('POST', '/v1/tenants', { token, body, headers: { 'idempotency-key': key } });
    const first = await create({ name });
    assert.equal(first.status, 201, first.text);
    const made = first.json<{ id: string; apiKey: string; apiKeyId: string; replayed?: boolean }>();
    assert.equal(made.replayed, undefined);
    const retry = await create({ name });
    assert.equal(retry.status, 201, retry.text);
    const replayed = retry.json<{
      id: string;
      apiKey: string | null;
      apiKeyId: string;
      replayed?: boolean;
    }>();
    assert.deepEqual(
      { id: replayed.id, apiKey: replayed.apiKey, apiKeyId: replayed.apiKeyId, replayed: replayed.replayed },
      { id: made.id, apiKey: null, apiKeyId: made.apiKeyId, replayed: true },
    );
    assert.ok(!retry.text.includes(made.apiKey), 'the key is shown once');
    const listed = await s.request('GET', '/v1/tenants', { token: await operatorToken(s, 'tenants:read') });
    assert.equal(
      listed.json<{ tenants: { name: string }[] }>().tenants.filter((t) => t.name === name).length,
      1,
    );
    const reused = await create({ name: `${name}x` });
    assert.equal(reused.status, 422, reused.text);
    assert.equal(reused.json<{ code: string }>().code, 'TRESOR_ERR_IDEMPOTENCY_KEY_REUSED');
  });
});
