// backends: sqlite postgres
/**
 * The vault's promises checked from outside, over real HTTPS against a real `tresor server`
 * process and the real keyd process (test/helpers/tresor-stack.ts): tenants never reach each
 * other's data on any route of openapi.json (Invariant 7), operator tokens never read records,
 * nothing readable lands on disk (Invariant 1), a ciphertext moved in the store is not served
 * (Invariant 3), closing a tenant crypto-shreds it with a signed certificate (Invariant 9), and no
 * input yields a 5xx or changes anything (Invariant 8).
 *
 * One stack serves the whole file; each test creates the tenants it damages or closes, so the
 * tests after it still see tenants A and B intact.
 */
import assert from 'node:assert/strict';
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Decrypter, generateX25519Identity, identityToRecipient } from 'age-encryption';
import fc from 'fast-check';
import type { AuthMode } from '../../src/http/route.ts';
import { allRouteModules, specOnlyDependencies } from '../../src/http/routes/index.ts';
import { OPERATOR_SCOPES } from '../../src/identity/operator-scopes.ts';
import { onPostgres } from '../helpers/backend.ts';
import { operatorAdmin, operatorToken } from '../helpers/console.ts';
import {
  controlLeaves,
  controlRows,
  databaseFiles,
  openStoreSql,
  type StoreSql,
  tenantRows,
  tenantStoreExists,
} from '../helpers/stack-sql.ts';
import { type HttpResponse, startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';

// --- the routes, from the committed openapi.json ---------------------------------------------

interface Operation {
  method: string;
  /** OpenAPI path template, e.g. /v1/collections/{name}/records/{id}. */
  path: string;
  /** `METHOD path` */
  key: string;
  auth: AuthMode;
}

function openapiOperations(): Operation[] {
  const doc = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'openapi.json'), 'utf8')) as {
    paths: Record<string, Record<string, { security?: unknown[] }>>;
  };
  // Who may call each route comes from the route definitions the document was generated from.
  const authOf = new Map<string, AuthMode>();
  for (const route of allRouteModules(specOnlyDependencies()).flatMap((m) => m.routes)) {
    // As openapi.json writes them: `:name` as `{name}`, a trailing wildcard `/*` as `/{*}`.
    const path = route.url.replace(/:([A-Za-z0-9]+)/g, '{$1}').replace(/\/\*$/, '/{*}');
    authOf.set(`${route.method} ${path}`, route.auth);
  }
  const ops: Operation[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [m, op] of Object.entries(methods)) {
      const method = m.toUpperCase();
      const key = `${method} ${path}`;
      const isPublic = Array.isArray(op.security) && op.security.length === 0;
      const auth = authOf.get(key) ?? (isPublic ? 'none' : undefined);
      if (auth === undefined) throw new Error(`${key} is in openapi.json but no route module defines it`);
      ops.push({ method, path, key, auth });
    }
  }
  return ops;
}

const OPS = openapiOperations();
const TENANT_KEY_OPS = OPS.filter((o) => o.auth === 'api-key' || o.auth === 'tenant-data');
const OPERATOR_OPS = OPS.filter((o) => o.auth === 'operator');
/**
 * Every route but the audit stream, whose successful answer never ends by design (it is an SSE
 * stream); its bad inputs (Last-Event-ID, from) are thrown at it in test/e2e/audit-http.test.ts.
 */
const FUZZ_OPS = OPS.filter((o) => o.key !== 'GET /v1/audit/stream');

// --- fixtures ---------------------------------------------------------------------------------

const MISSING_RECORD = `rec_${'0'.repeat(32)}`;
const MISSING_KEY = `ak_${'0'.repeat(24)}`;
const MISSING_COLLECTION = 'no_such_collection';

const PEOPLE_SCHEMA = {
  fields: {
    email: { type: 'string', classification: 'personal', required: true, searchable: true },
    note: { type: 'string', classification: 'confidential' },
  },
};

interface StoredRecord {
  collection: string;
  id: string;
  data: { email: string; note: string };
}

interface TenantFixture {
  id: string;
  apiKey: string;
  apiKeyId: string;
  /** A collection name only this tenant has. */
  only: string;
  /** The collections this tenant has now. */
  collections: Set<string>;
  records: StoredRecord[];
  /** A read-only key of this tenant, which the other tenant tries to revoke. */
  spare: { id: string; token: string };
  /** Every key id this tenant ever had. */
  keyIds: Set<string>;
}

/** Every customer value and every credential the tests wrote or received: none may be on disk. */
const secrets: string[] = [];

function secretValue(label: string): string {
  const value = `${label}-${randomBytes(10).toString('hex')}@example.test`;
  secrets.push(value);
  return value;
}

function expectStatus(res: HttpResponse, status: number, what: string): void {
  assert.equal(res.status, status, `${what}: got ${res.status} ${res.text.slice(0, 400)}`);
}

function bodyOf<T = Record<string, unknown>>(res: HttpResponse, status: number, what: string): T {
  expectStatus(res, status, what);
  return res.json<T>();
}

/** The problem+json body without its per-request id. */
function problemOf(res: HttpResponse, what: string): Record<string, unknown> {
  assert.match(String(res.headers['content-type']), /^application\/problem\+json/, `${what}: content type`);
  const { requestId, ...rest } = res.json();
  assert.equal(typeof requestId, 'string', `${what}: the problem names its request id`);
  return rest;
}

function assertSameAsMissing(res: HttpResponse, missing: HttpResponse, what: string): void {
  expectStatus(missing, 404, `${what} (the missing-id baseline)`);
  expectStatus(res, 404, what);
  assert.deepEqual(problemOf(res, what), problemOf(missing, what), `${what}: same problem as a missing id`);
}

function assertNoneOf(text: string, needles: readonly string[], what: string): void {
  for (const n of needles) assert.equal(text.includes(n), false, `${what} contains ${n}`);
}

/** A path of the template with its parameters filled in (ids by the route family). */
function concrete(path: string, ids: { name: string; record: string; key: string; tenant: string }): string {
  const id = path.startsWith('/v1/api-keys')
    ? ids.key
    : path.startsWith('/v1/tenants')
      ? ids.tenant
      : ids.record;
  return path.replace('{name}', ids.name).replace('{id}', id);
}

function filesUnder(dir: string): { path: string; bytes: Buffer }[] {
  const out: { path: string; bytes: Buffer }[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(p);
    } catch {
      continue; // removed while we walked (a -journal, a temporary file)
    }
    if (st.isDirectory()) out.push(...filesUnder(p));
    else if (st.isFile()) {
      try {
        out.push({ path: p, bytes: readFileSync(p) });
      } catch {
        // removed between stat and read
      }
    }
  }
  return out;
}

/**
 * A value as it could appear on disk: raw UTF-8, hex, and base64/base64url at each of the three
 * byte alignments it can have inside a longer encoded blob.
 */
function encodings(value: string): Buffer[] {
  const raw = Buffer.from(value, 'utf8');
  const out = [raw, Buffer.from(raw.toString('hex')), Buffer.from(raw.toString('hex').toUpperCase())];
  for (let shift = 0; shift < 3; shift++) {
    const shifted = Buffer.concat([Buffer.alloc(shift), raw]);
    const from = Math.ceil((shift * 8) / 6);
    const to = Math.floor(shifted.length / 3) * 4;
    for (const enc of ['base64', 'base64url'] as const) {
      out.push(Buffer.from(shifted.toString(enc).slice(from, to)));
    }
  }
  return out;
}

function tenantStorePath(s: TresorStack, tenant: string): string {
  return join(s.dataDir, 'tenants', `${tenant}.sqlite`);
}

interface AuditRow {
  seq: number;
  action: string;
  event: string;
}

async function decryptExport(base64: string, identity: string): Promise<Record<string, unknown>> {
  const decrypter = new Decrypter();
  decrypter.addIdentity(identity);
  return JSON.parse(await decrypter.decrypt(Buffer.from(base64, 'base64'), 'text')) as Record<
    string,
    unknown
  >;
}

describe('the vault over HTTPS, against the real keyd and server processes', () => {
  let s: TresorStack;
  let A: TenantFixture;
  let B: TenantFixture;
  let identity: string;
  let recipient: string;

  const call = (
    method: string,
    path: string,
    token: string | undefined,
    body?: unknown,
    headers?: Record<string, string>,
  ) =>
    s.request(method, path, {
      ...(token !== undefined ? { token } : {}),
      ...(body !== undefined ? { body } : {}),
      ...(headers ? { headers } : {}),
    });

  async function createTenant(name: string): Promise<{ id: string; apiKey: string; apiKeyId: string }> {
    const created = bodyOf<{ id: string; apiKey: string; apiKeyId: string; state: string }>(
      await call('POST', '/v1/tenants', await operatorToken(s, 'tenants:create'), { name }),
      201,
      `create tenant ${name}`,
    );
    assert.equal(created.state, 'active');
    secrets.push(created.apiKey);
    return created;
  }

  async function putCollection(token: string, name: string): Promise<void> {
    const res = await call('PUT', `/v1/collections/${name}`, token, PEOPLE_SCHEMA);
    assert.ok(res.status === 201 || res.status === 200, `PUT ${name}: ${res.status} ${res.text}`);
  }

  async function createRecord(token: string, collection: string, label: string): Promise<StoredRecord> {
    const data = { email: secretValue(`${label}-email`), note: secretValue(`${label}-note`) };
    const created = bodyOf<{ id: string; version: number; data: StoredRecord['data'] }>(
      await call('POST', `/v1/collections/${collection}/records`, token, data),
      201,
      `create a record in ${collection}`,
    );
    assert.deepEqual(created.data, data);
    return { collection, id: created.id, data };
  }

  async function seedTenant(name: string, only: string): Promise<TenantFixture> {
    const t = await createTenant(name);
    await putCollection(t.apiKey, 'people');
    await putCollection(t.apiKey, only);
    const records = [
      await createRecord(t.apiKey, 'people', `${name}-p1`),
      await createRecord(t.apiKey, 'people', `${name}-p2`),
      await createRecord(t.apiKey, only, `${name}-o1`),
    ];
    const spare = bodyOf<{ id: string; token: string }>(
      await call('POST', '/v1/api-keys', t.apiKey, { collections: '*', access: ['read'], label: 'spare' }),
      201,
      'issue a spare key',
    );
    secrets.push(spare.token);
    return {
      ...t,
      only,
      collections: new Set(['people', only]),
      records,
      spare: { id: spare.id, token: spare.token },
      keyIds: new Set([t.apiKeyId, spare.id]),
    };
  }

  /** What a tenant sees of itself through its own key: collections, every record, its keys. */
  async function snapshot(t: TenantFixture): Promise<unknown> {
    const { collections } = bodyOf<{ collections: { name: string }[] }>(
      await call('GET', '/v1/collections', t.apiKey),
      200,
      'list own collections',
    );
    const records: Record<string, unknown[]> = {};
    for (const c of collections) {
      records[c.name] = bodyOf<{ records: unknown[] }>(
        await call('GET', `/v1/collections/${c.name}/records?limit=500`, t.apiKey),
        200,
        `list own ${c.name}`,
      ).records;
    }
    const { apiKeys } = bodyOf<{ apiKeys: Record<string, unknown>[] }>(
      await call('GET', '/v1/api-keys', t.apiKey),
      200,
      'list own keys',
    );
    const keys = apiKeys.map(({ lastUsedAt: _lastUsed, ...k }) => k);
    return { collections, records, keys };
  }

  before(async () => {
    // Closing shreds at once here (no grace): this file checks the certificate a close returns.
    s = await startTresorStack({ env: { TRESOR_CLOSE_GRACE_DAYS: '0' } });
    identity = await generateX25519Identity();
    recipient = await identityToRecipient(identity);
    A = await seedTenant('Acme', 'only_a');
    B = await seedTenant('Globex', 'only_b');
  });

  after(async () => {
    await s?.stop();
  });

  /**
   * For each tenant-key route: what `me` tries on `them`'s ids and names, and what it must see.
   * Ordered so that the one probe which creates something in `me` (PUT) runs last.
   */
  const CROSS_TENANT_PROBES: [string, (me: TenantFixture, them: TenantFixture) => Promise<void>][] = [
    [
      'GET /v1/collections',
      async (me, them) => {
        const { collections } = bodyOf<{ collections: { name: string }[] }>(
          await call('GET', '/v1/collections', me.apiKey),
          200,
          'list collections',
        );
        assert.deepEqual(
          collections.map((c) => c.name).sort(),
          [...me.collections].sort(),
          `only ${me.id}'s own collections, not ${them.only}`,
        );
      },
    ],
    [
      'GET /v1/collections/{name}/records',
      async (me, them) => {
        const missing = await call('GET', `/v1/collections/${MISSING_COLLECTION}/records`, me.apiKey);
        assertSameAsMissing(
          await call('GET', `/v1/collections/${them.only}/records`, me.apiKey),
          missing,
          `list the other tenant's ${them.only}`,
        );
        const page = await call('GET', '/v1/collections/people/records?limit=500', me.apiKey);
        const ids = bodyOf<{ records: { id: string }[] }>(page, 200, 'list people').records.map((r) => r.id);
        for (const r of them.records) assert.equal(ids.includes(r.id), false, `${r.id} listed to ${me.id}`);
        assertNoneOf(
          page.text,
          them.records.map((r) => r.data.email),
          'own list',
        );
      },
    ],
    [
      'POST /v1/collections/{name}/records/search',
      async (me, them) => {
        const where = { email: 'nobody@example.test' };
        const missing = await call(
          'POST',
          `/v1/collections/${MISSING_COLLECTION}/records/search`,
          me.apiKey,
          { where },
        );
        assertSameAsMissing(
          await call('POST', `/v1/collections/${them.only}/records/search`, me.apiKey, { where }),
          missing,
          `search the other tenant's ${them.only}`,
        );
        for (const r of them.records) {
          const search = await call('POST', '/v1/collections/people/records/search', me.apiKey, {
            where: { email: r.data.email },
          });
          assert.deepEqual(
            bodyOf(search, 200, 'search for the other tenant’s value'),
            { records: [], nextCursor: null },
            'a search for another tenant’s value finds nothing',
          );
        }
      },
    ],
    [
      'GET /v1/collections/{name}/records/{id}',
      async (me, them) => {
        const missing = await call('GET', `/v1/collections/people/records/${MISSING_RECORD}`, me.apiKey);
        for (const r of them.records) {
          for (const name of new Set([r.collection, 'people', them.only])) {
            assertSameAsMissing(
              await call('GET', `/v1/collections/${name}/records/${r.id}`, me.apiKey),
              missing,
              `GET ${name}/${r.id} of the other tenant`,
            );
          }
        }
      },
    ],
    [
      'PATCH /v1/collections/{name}/records/{id}',
      async (me, them) => {
        const patch = { note: 'overwritten-by-the-other-tenant' };
        const ifMatch = { 'if-match': '"1"' };
        const missing = await call(
          'PATCH',
          `/v1/collections/people/records/${MISSING_RECORD}`,
          me.apiKey,
          patch,
          ifMatch,
        );
        for (const r of them.records) {
          assertSameAsMissing(
            await call('PATCH', `/v1/collections/${r.collection}/records/${r.id}`, me.apiKey, patch, ifMatch),
            missing,
            `PATCH ${r.collection}/${r.id} of the other tenant`,
          );
        }
      },
    ],
    [
      'DELETE /v1/collections/{name}/records/{id}',
      async (me, them) => {
        const missing = await call('DELETE', `/v1/collections/people/records/${MISSING_RECORD}`, me.apiKey);
        for (const r of them.records) {
          assertSameAsMissing(
            await call('DELETE', `/v1/collections/${r.collection}/records/${r.id}`, me.apiKey),
            missing,
            `DELETE ${r.collection}/${r.id} of the other tenant`,
          );
        }
      },
    ],
    [
      'POST /v1/collections/{name}/records',
      async (me, them) => {
        const data = { email: 'planted@example.test' };
        assertSameAsMissing(
          await call('POST', `/v1/collections/${them.only}/records`, me.apiKey, data),
          await call('POST', `/v1/collections/${MISSING_COLLECTION}/records`, me.apiKey, data),
          `POST into the other tenant's ${them.only}`,
        );
      },
    ],
    [
      'POST /v1/export',
      async (me, them) => {
        const res = await call('POST', '/v1/export', me.apiKey, { recipient });
        const { export: archive } = bodyOf<{ export: string }>(res, 200, 'export');
        const doc = await decryptExport(archive, identity);
        assert.equal(doc.tenant, me.id, 'the export is of the caller’s own tenant');
        const text = JSON.stringify(doc);
        assertNoneOf(
          text,
          them.records.map((r) => r.id),
          'export',
        );
        assertNoneOf(
          text,
          them.records.flatMap((r) => Object.values(r.data)),
          'export',
        );
        for (const r of me.records) {
          assert.ok(text.includes(r.id), `the export holds ${me.id}'s own record ${r.id}`);
        }
      },
    ],
    [
      'GET /v1/api-keys',
      async (me, them) => {
        const { apiKeys } = bodyOf<{ apiKeys: { id: string; tenant: string }[] }>(
          await call('GET', '/v1/api-keys', me.apiKey),
          200,
          'list keys',
        );
        for (const k of apiKeys) {
          assert.equal(k.tenant, me.id, `key ${k.id} listed to ${me.id}`);
          assert.equal(them.keyIds.has(k.id), false, `the other tenant's key ${k.id} listed`);
        }
      },
    ],
    [
      'POST /v1/api-keys',
      async (me, them) => {
        const naming = await call('POST', '/v1/api-keys', me.apiKey, {
          collections: '*',
          access: ['read', 'write', 'admin'],
          tenant: them.id,
        });
        assert.equal(problemOf(naming, 'a key for another tenant').status, 422, 'naming a tenant is refused');
        const issued = bodyOf<{ id: string; tenant: string; token: string }>(
          await call('POST', '/v1/api-keys', me.apiKey, { collections: '*', access: ['read'] }),
          201,
          'issue a key',
        );
        secrets.push(issued.token);
        me.keyIds.add(issued.id);
        assert.equal(issued.tenant, me.id, 'a key is issued for the caller’s own tenant');
        const r = them.records[0] as StoredRecord;
        assertSameAsMissing(
          await call('GET', `/v1/collections/${r.collection}/records/${r.id}`, issued.token),
          await call('GET', `/v1/collections/people/records/${MISSING_RECORD}`, issued.token),
          'the new key on the other tenant’s record',
        );
        expectStatus(await call('DELETE', `/v1/api-keys/${issued.id}`, me.apiKey), 200, 'revoke the new key');
      },
    ],
    [
      'DELETE /v1/api-keys/{id}',
      async (me, them) => {
        assertSameAsMissing(
          await call('DELETE', `/v1/api-keys/${them.spare.id}`, me.apiKey),
          await call('DELETE', `/v1/api-keys/${MISSING_KEY}`, me.apiKey),
          'revoke the other tenant’s key',
        );
        expectStatus(
          await call('GET', '/v1/collections', them.spare.token),
          200,
          'the other tenant’s key still works',
        );
      },
    ],
    [
      'PUT /v1/collections/{name}',
      async (me, them) => {
        // Declaring a collection that only the other tenant has makes a new one of the caller's own.
        const created = bodyOf<{ created: boolean; version: number }>(
          await call('PUT', `/v1/collections/${them.only}`, me.apiKey, PEOPLE_SCHEMA),
          201,
          `PUT ${them.only}`,
        );
        assert.equal(created.created, true, 'the other tenant’s collection is not visible to the caller');
        assert.equal(created.version, 1);
        me.collections.add(them.only);
      },
    ],
  ];

  it('has a cross-tenant probe for every tenant-key route of openapi.json', () => {
    assert.deepEqual(
      CROSS_TENANT_PROBES.map(([key]) => key).sort(),
      TENANT_KEY_OPS.map((o) => o.key).sort(),
      'the probes and the documented tenant-key routes are the same set',
    );
  });

  it('answers another tenant’s ids and collection names exactly as missing ones on every tenant-key route, both ways, and changes nothing of the other tenant', async () => {
    for (const [me, them] of [
      [A, B],
      [B, A],
    ] as const) {
      const auditBefore = Number(
        (await tenantRows<{ n: number }>(s, them.id, 'SELECT max(seq) AS n FROM audit_events'))[0]?.n,
      );
      const before = await snapshot(them);
      for (const [, probe] of CROSS_TENANT_PROBES) await probe(me, them);
      assert.deepEqual(await snapshot(them), before, `${them.id} is unchanged after ${me.id}'s attempts`);
      const events = await tenantRows<AuditRow>(
        s,
        them.id,
        'SELECT seq, action, event FROM audit_events WHERE seq > ?',
        [auditBefore],
      );
      for (const row of events) {
        const event = JSON.parse(row.event) as { actor: { id: string }; tenant: string };
        assert.equal(event.tenant, them.id, `event ${row.seq} in ${them.id}'s store is about ${them.id}`);
        assert.equal(me.keyIds.has(event.actor.id), false, `${me.id}'s key acted in ${them.id}'s store`);
      }
    }
  });

  it('searches with the values in a POST body, paged like the list, and refuses a GET with where[…] by name (ASVS 14.2.1)', async () => {
    const people = A.records.filter((x) => x.collection === 'people');
    const r = people[0] as StoredRecord;
    const search = (body: unknown) => call('POST', '/v1/collections/people/records/search', A.apiKey, body);
    const found = bodyOf<{ records: { id: string; data: unknown }[]; nextCursor: string | null }>(
      await search({ where: { email: r.data.email } }),
      200,
      'POST search',
    );
    assert.deepEqual(
      found.records.map((x) => x.id),
      [r.id],
      'the search finds exactly the record',
    );
    assert.deepEqual(found.records[0]?.data, r.data);
    assert.equal(found.nextCursor, null);
    // Paging: the same limit and cursor as the list.
    const paged = bodyOf<{ records: unknown[]; nextCursor: string | null }>(
      await search({ where: { email: r.data.email }, limit: 1 }),
      200,
      'POST search with a limit',
    );
    assert.equal(paged.records.length, 1);
    // The value in the URL is refused, by a code that names the POST route, and not echoed.
    for (const query of [
      `?where[email]=${encodeURIComponent(r.data.email)}`,
      `?where%5Bemail%5D=${encodeURIComponent(r.data.email)}&limit=5`,
    ]) {
      const res = await call('GET', `/v1/collections/people/records${query}`, A.apiKey);
      expectStatus(res, 400, `GET ${query.slice(0, 12)}`);
      const problem = problemOf(res, 'GET with where');
      assert.equal(problem.code, 'TRESOR_ERR_SEARCH_IN_URL');
      assert.match(String(problem.detail), /POST .*\/v1\/collections\/people\/records\/search/);
      assert.ok(!res.text.includes(r.data.email), 'the refusal does not echo the value');
    }
    // A list without where stays a GET.
    const listed = bodyOf<{ records: unknown[] }>(
      await call('GET', '/v1/collections/people/records?limit=1', A.apiKey),
      200,
      'list',
    );
    assert.equal(listed.records.length, 1);
    // Bad searches: 4xx, never a value in the answer.
    for (const [body, status] of [
      [{ where: {} }, 422],
      [{}, 422],
      [{ where: { email: { nested: r.data.email } } }, 422],
      [{ where: { note: r.data.note } }, 422],
      [{ where: { nosuch: r.data.email } }, 422],
    ] as const) {
      const res = await search(body);
      expectStatus(res, status, `search ${JSON.stringify(Object.keys(body))}`);
      assert.ok(!res.text.includes(r.data.email) && !res.text.includes(r.data.note), 'no value echoed');
    }
  });

  it('refuses the operator admin token with 403 on every tenant-key route, and answers no data', async () => {
    const before = await snapshot(B);
    const r = B.records[0] as StoredRecord;
    const bodies: Record<string, unknown> = {
      'PUT /v1/collections/{name}': PEOPLE_SCHEMA,
      'POST /v1/collections/{name}/records': { email: 'operator@example.test' },
      'PATCH /v1/collections/{name}/records/{id}': { note: 'operator was here' },
      'POST /v1/export': { recipient },
      'POST /v1/api-keys': { collections: '*', access: ['read'] },
      'POST /v1/collections/{name}/records/search': { where: { email: r.data.email } },
    };
    for (const [op, scope] of TENANT_KEY_OPS.flatMap((o) => OPERATOR_SCOPES.map((sc) => [o, sc] as const))) {
      const path = concrete(op.path, { name: r.collection, record: r.id, key: B.spare.id, tenant: B.id });
      const token = await operatorToken(s, scope);
      const res = await call(op.method, path, token, bodies[op.key], { 'if-match': '"1"' });
      expectStatus(res, 403, `operator token (${scope}) on ${op.key}`);
      assert.equal(problemOf(res, op.key).code, 'TRESOR_ERR_FORBIDDEN');
      assertNoneOf(res.text, [r.id, ...Object.values(r.data)], `the answer to ${op.key}`);
    }
    assert.deepEqual(await snapshot(B), before, 'the operator token changed nothing');
  });

  it('refuses tenant API keys with 403 on every operator route, and changes no tenant', async () => {
    const tenantsBefore = bodyOf(
      await call('GET', '/v1/tenants', await operatorToken(s, 'tenants:read')),
      200,
      'list tenants',
    );
    const bodies: Record<string, unknown> = {
      'POST /v1/tenants': { name: 'Created by a tenant key' },
      'POST /v1/tenants/{id}/close': { reason: 'closed by another tenant', export: { recipient } },
    };
    assert.ok(OPERATOR_OPS.length >= 5, 'openapi.json lists the operator routes');
    for (const key of [A.apiKey, B.apiKey]) {
      for (const target of [A, B]) {
        for (const op of OPERATOR_OPS) {
          const path = concrete(op.path, {
            name: 'people',
            record: MISSING_RECORD,
            key: MISSING_KEY,
            tenant: target.id,
          });
          const res = await call(op.method, path, key, bodies[op.key]);
          expectStatus(res, 403, `tenant key on ${op.key}`);
          assert.equal(problemOf(res, op.key).code, 'TRESOR_ERR_FORBIDDEN');
        }
      }
    }
    assert.deepEqual(
      bodyOf(await call('GET', '/v1/tenants', await operatorToken(s, 'tenants:read')), 200, 'list tenants'),
      tenantsBefore,
      'no tenant was created, closed or changed',
    );
    expectStatus(await call('GET', '/v1/collections', B.apiKey), 200, 'B’s key still works');
  });

  it('writes no customer value (nor its hex or base64) and no API key token to any file under the data and keyd folders, WAL included, nor to the server log', async () => {
    // More history for the files to hold: updates, a delete, searches by value.
    const r = A.records[0] as StoredRecord;
    const patch = { note: secretValue('A-updated-note') };
    expectStatus(
      await call('PATCH', `/v1/collections/${r.collection}/records/${r.id}`, A.apiKey, patch, {
        'if-match': '"1"',
      }),
      200,
      'update',
    );
    r.data = { ...r.data, ...patch };
    const doomed = await createRecord(A.apiKey, 'people', 'A-deleted');
    expectStatus(
      await call('DELETE', `/v1/collections/people/records/${doomed.id}`, A.apiKey),
      204,
      'delete',
    );
    const search = await call('POST', '/v1/collections/people/records/search', A.apiKey, {
      where: { email: r.data.email },
    });
    assert.equal(
      bodyOf<{ records: unknown[] }>(search, 200, 'search').records.length,
      1,
      'the search finds it',
    );

    const files = [...filesUnder(s.dataDir), ...(await databaseFiles(s, filesUnder))];
    assert.ok(
      onPostgres
        ? files.some((f) => f.path.includes('pg_wal'))
        : files.some((f) => f.path.endsWith('.sqlite-wal') && f.path.includes(`${A.id}`)),
      'the tenant store’s WAL is among the files checked',
    );
    assert.ok(
      files.some((f) => f.path.startsWith(s.keydDir)),
      'the keyd folder is among the files checked',
    );
    // Tokens are tresor_<kind>_<id>_<secret>: the whole token, and its 43-character secret alone.
    const adminSecrets = (await operatorAdmin(s)).secrets;
    const tokens = [...secrets, ...adminSecrets].filter((x) => x.startsWith('tresor_'));
    const needles = [...secrets, ...adminSecrets, ...tokens.map((t) => t.slice(-43))];
    assert.ok(needles.length > 20, 'there are values and tokens to look for');
    const log = Buffer.from(s.serverOutput(), 'utf8');
    assert.ok(log.length > 0, 'the server logged');
    for (const needle of needles) {
      for (const form of encodings(needle)) {
        for (const f of files) assert.equal(f.bytes.includes(form), false, `${f.path} holds ${needle}`);
        assert.equal(log.includes(form), false, `the server log holds ${needle}`);
      }
    }
  });

  it('does not serve a record whose ciphertext was moved to another record, collection or tenant in the store: 500 problem+json, no data, failure audited', async () => {
    const from = await createTenant('Moved-from');
    const to = await createTenant('Moved-to');
    const toWithKey = await createTenant('Moved-to-with-key');
    for (const t of [from, to, toWithKey]) {
      await putCollection(t.apiKey, 'people');
      await putCollection(t.apiKey, 'moved');
    }
    const source = await createRecord(from.apiKey, 'people', 'moved-source');
    const targets = {
      otherRecord: await createRecord(from.apiKey, 'people', 'moved-t1'),
      otherCollection: await createRecord(from.apiKey, 'moved', 'moved-t2'),
      otherTenant: await createRecord(to.apiKey, 'people', 'moved-t3'),
      otherTenantWithKey: await createRecord(toWithKey.apiKey, 'people', 'moved-t4'),
    };
    const untouched = await createRecord(to.apiKey, 'people', 'moved-untouched');

    await s.stopServer();
    const fromDb = await openStoreSql(s, { tenant: from.id }, { write: true });
    const toDb = await openStoreSql(s, { tenant: to.id }, { write: true });
    const toWithKeyDb = await openStoreSql(s, { tenant: toWithKey.id }, { write: true });
    try {
      const [moved] = await fromDb.all<{ fields: Buffer }>('SELECT fields FROM records WHERE id = ?', [
        source.id,
      ]);
      assert.ok(moved);
      const setFields = async (db: StoreSql, id: string) =>
        assert.equal(await db.run('UPDATE records SET fields = ? WHERE id = ?', [moved.fields, id]), 1);
      await setFields(fromDb, targets.otherRecord.id);
      await setFields(fromDb, targets.otherCollection.id);
      await setFields(toDb, targets.otherTenant.id);
      // The harder case: the source tenant's data key row is copied along, so the target store
      // knows the key id; keyd must still refuse to unwrap it for the other tenant.
      await setFields(toWithKeyDb, targets.otherTenantWithKey.id);
      const [keyRow] = await fromDb.all<{
        key_id: string;
        purpose: string;
        wrapped: Buffer;
        created_at: string;
        reserved: number;
      }>("SELECT key_id, purpose, wrapped, created_at, reserved FROM data_keys WHERE purpose = 'data'");
      assert.ok(keyRow);
      await toWithKeyDb.run(
        "INSERT INTO data_keys (key_id, tenant, purpose, wrapped, state, created_at, reserved) VALUES (?, ?, ?, ?, 'decrypt-only', ?, ?)",
        [keyRow.key_id, toWithKey.id, keyRow.purpose, keyRow.wrapped, keyRow.created_at, keyRow.reserved],
      );
    } finally {
      await fromDb.close();
      await toDb.close();
      await toWithKeyDb.close();
    }
    await s.startServer();

    // The AAD binds each envelope to its record and collection; across tenants the envelope names
    // a data key the store does not have, or (key row copied) one keyd will not unwrap for it.
    const cases: [string, { id: string; apiKey: string }, StoredRecord, string][] = [
      ['another record', from, targets.otherRecord, 'TRESOR_ERR_DECRYPT_FAILED'],
      ['another collection', from, targets.otherCollection, 'TRESOR_ERR_DECRYPT_FAILED'],
      ['another tenant', to, targets.otherTenant, 'TRESOR_ERR_DECRYPT_FAILED'],
      [
        'another tenant, with its data key row',
        toWithKey,
        targets.otherTenantWithKey,
        'TRESOR_ERR_WRAPPED_KEY_INVALID',
      ],
    ];
    for (const [what, tenant, target, code] of cases) {
      const res = await call(
        'GET',
        `/v1/collections/${target.collection}/records/${target.id}`,
        tenant.apiKey,
      );
      assert.equal(res.status, 500, `moved to ${what}: ${res.status} ${res.text}`);
      const problem = problemOf(res, what);
      assert.equal(problem.detail, undefined, `moved to ${what}: a 5xx says nothing more`);
      assert.equal(problem.code, code, `moved to ${what}`);
      assertNoneOf(
        res.text,
        [...Object.values(source.data), ...Object.values(target.data)],
        `moved to ${what}`,
      );
      // A read's event, failed or not, goes to the control store's outbox (src/audit/read-outbox.ts),
      // and from there into the log under its tenant: looked for in both.
      const failures = [
        ...(await controlRows<{ event: string }>(
          s,
          "SELECT event FROM audit_events WHERE action = 'record.read' AND tenant = ?",
          [tenant.id],
        )),
        ...(await controlLeaves(s))
          .filter((leaf) => (JSON.parse(leaf) as { tenant?: string }).tenant === tenant.id)
          .map((leaf) => ({ event: leaf })),
      ]
        .filter((row) => (JSON.parse(row.event) as { action: string }).action === 'record.read')
        .map((row) => JSON.parse(row.event) as { outcome: string; target?: Record<string, unknown> })
        .filter(
          (e) =>
            e.outcome === 'failure' &&
            ((e.target?.recordIds as string[] | undefined)?.includes(target.id) ||
              (e.target?.params as { id?: string } | undefined)?.id === target.id),
        );
      assert.ok(failures.length >= 1, `moved to ${what}: the failed read is in the audit log`);
    }
    // The decrypt failures are the moves' doing, not the restart's.
    assert.deepEqual(
      bodyOf<{ data: unknown }>(
        await call('GET', `/v1/collections/people/records/${untouched.id}`, to.apiKey),
        200,
        'an untouched record',
      ).data,
      untouched.data,
    );
    assert.deepEqual(
      bodyOf<{ data: unknown }>(
        await call('GET', `/v1/collections/people/records/${source.id}`, from.apiKey),
        200,
        'the source record',
      ).data,
      source.data,
    );
  });

  it('closes a tenant over HTTP: a deletion certificate signed by keyd, a final export only its recipient decrypts, its key refused, its store gone, none of its values left', async () => {
    const t = await createTenant('Closing');
    await putCollection(t.apiKey, 'people');
    const records = [
      await createRecord(t.apiKey, 'people', 'closing-1'),
      await createRecord(t.apiKey, 'people', 'closing-2'),
    ];
    const values = records.flatMap((r) => Object.values(r.data));
    assert.equal(await tenantStoreExists(s, t.id), true, 'the tenant has a store before closing');

    const closed = bodyOf<{
      certificate: Record<string, unknown> & { tenant: string; keyIdsDestroyed: string[] };
      body: string;
      signature: string;
      keyName: string;
      export: string;
    }>(
      await (await operatorAdmin(s)).request('POST', `/v1/tenants/${t.id}/close`, {
        reason: 'contract ended',
        export: { recipient },
      }),
      200,
      'close',
    );
    assert.equal(closed.certificate.tenant, t.id);
    assert.ok(closed.certificate.keyIdsDestroyed.length >= 1, 'the certificate names the destroyed keys');
    assert.deepEqual(JSON.parse(closed.body), closed.certificate, 'the signed body is the certificate');

    // Verified as an outsider would: keyd's raw Ed25519 key and node:crypto, nothing of Tresor's.
    const { publicKey } = await s.keydClient().call('publicKey', { purpose: 'deletion-certificate' });
    const verifier = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') },
      format: 'jwk',
    });
    const signature = Buffer.from(closed.signature, 'base64');
    assert.equal(
      verify(null, Buffer.from(closed.body, 'utf8'), verifier, signature),
      true,
      'signature verifies',
    );
    assert.equal(
      verify(null, Buffer.from(closed.body.replace(t.id, `${t.id}x`), 'utf8'), verifier, signature),
      false,
      'a changed body does not verify',
    );
    const stored = bodyOf<{ body: string; signature: string }>(
      await call('GET', `/v1/tenants/${t.id}/deletion-certificate`, await operatorToken(s, 'tenants:read')),
      200,
      'the stored certificate',
    );
    assert.equal(stored.body, closed.body);
    assert.equal(stored.signature, closed.signature);

    const doc = (await decryptExport(closed.export, identity)) as {
      tenant: string;
      collections: { name: string; records: { id: string; data: Record<string, string> }[] }[];
    };
    assert.equal(doc.tenant, t.id);
    const exported = doc.collections.find((c) => c.name === 'people')?.records ?? [];
    for (const r of records) {
      assert.deepEqual(exported.find((e) => e.id === r.id)?.data, r.data, `the export holds ${r.id}`);
    }
    const stranger = new Decrypter();
    stranger.addIdentity(await generateX25519Identity());
    await assert.rejects(
      stranger.decrypt(Buffer.from(closed.export, 'base64')),
      'another identity cannot decrypt',
    );

    const refused = await call('GET', '/v1/collections', t.apiKey);
    expectStatus(refused, 401, 'the closed tenant’s key');
    assert.equal(problemOf(refused, 'closed key').code, 'TRESOR_ERR_UNAUTHENTICATED');
    assert.equal(await tenantStoreExists(s, t.id), false, 'the store is gone');
    for (const suffix of ['', '-wal', '-shm', '-journal']) {
      assert.equal(existsSync(`${tenantStorePath(s, t.id)}${suffix}`), false, `store file${suffix} is gone`);
    }
    for (const f of [...filesUnder(s.dataDir), ...(await databaseFiles(s, filesUnder))]) {
      for (const v of values) {
        for (const form of encodings(v))
          assert.equal(f.bytes.includes(form), false, `${f.path} still holds ${v}`);
      }
    }
  });

  it('never answers 5xx and changes nothing, whatever body, media type, path or query a valid tenant key sends to any route (property)', async () => {
    const me = A;
    const storeDb = await openStoreSql(s, { tenant: me.id });
    const controlDb = await openStoreSql(s, 'control');
    const READ_ACTIONS = new Set([
      'audit.read',
      'audit.checkpoint',
      'audit.proof',
      'record.read',
      'record.list',
      'record.search',
      'collection.list',
      'api-key.list',
      'tenant.export',
    ]);
    const digest = (rows: unknown[]) =>
      createHash('sha256')
        .update(JSON.stringify(rows, (_k, v) => (Buffer.isBuffer(v) ? v.toString('hex') : v)))
        .digest('hex');
    /** Everything a request could change, except the audit log (checked by its own rule) and last-use times. */
    const state = async () => ({
      records: digest(
        await storeDb.all('SELECT id, collection, version, expires_at, fields FROM records ORDER BY seq'),
      ),
      collections: digest(await storeDb.all('SELECT * FROM collections ORDER BY name')),
      blindIndex: digest(await storeDb.all('SELECT * FROM blind_index ORDER BY record_id, field')),
      dataKeys: digest(
        await storeDb.all('SELECT key_id, purpose, state, wrapped FROM data_keys ORDER BY key_id'),
      ),
      apiKeys: digest(
        await controlDb.all(
          'SELECT id, collections, access, expires_at, revoked_at, label FROM api_keys WHERE tenant = ? ORDER BY id',
          [me.id],
        ),
      ),
      tenants: digest(await controlDb.all('SELECT id, state, closed_at FROM tenants ORDER BY id')),
    });
    const lastAuditSeq = async () =>
      Number((await storeDb.all<{ n: number }>('SELECT max(seq) AS n FROM audit_events'))[0]?.n);

    const baseline = await state();
    const recordCount = Number((await storeDb.all<{ n: number }>('SELECT count(*) AS n FROM records'))[0]?.n);
    assert.ok(recordCount >= 3, 'the tenant has records to lose');

    const TRICKS = [
      '',
      '.',
      '..',
      '%2e%2e',
      '%2E%2E',
      '..%2F..%2Fcontrol.sqlite',
      '%2e%2e%2f%2e%2e%2fcontrol.sqlite',
      '..%5C..%5Ccontrol.sqlite',
      '%c0%ae%c0%ae',
      '%00',
      'people%00',
      'people%00.sqlite',
      `${MISSING_RECORD}%00`,
      '%',
      '%zz',
      '%ff%fe',
      'people%2Frecords',
      'PEOPLE',
      'people%20',
      '%E2%80%AEelpoep',
      'p%C3%A9ople',
      '%F0%9F%92%A9',
      "'%20OR%201=1--",
      'people;records',
      `rec_${'f'.repeat(5000)}`,
      'ten_..%2F..%2F',
      'ak_%2e%2e',
      me.id,
      B.id,
      B.only,
      'people',
      me.only,
      MISSING_COLLECTION,
      MISSING_RECORD,
      MISSING_KEY,
    ];
    const missingRecordId = fc
      .string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 32, maxLength: 32 })
      .map((h) => `rec_${h}`);
    const anySegment = fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...TRICKS) },
      { weight: 2, arbitrary: fc.string({ maxLength: 40 }).map(encodeURIComponent) },
      { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }).map(encodeURIComponent) },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }).map(encodeURIComponent) },
    );
    // Plausible values most of the time, so requests get past the path checks to the body's;
    // never one of the tenant's real record or key ids: a valid DELETE of one is a legitimate write.
    const nameSegment = fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom('people', me.only, MISSING_COLLECTION) },
      { weight: 2, arbitrary: anySegment },
    );
    const idSegment = fc.oneof(
      { weight: 3, arbitrary: fc.oneof(missingRecordId, fc.constantFrom(MISSING_KEY, me.id, B.id)) },
      { weight: 2, arbitrary: anySegment },
    );
    const RAW_PATHS = [
      '/v1/collections/people/records/../../../control.sqlite',
      '/v1/collections/people/records/%2e%2e/%2e%2e/%2e%2e/control.sqlite',
      `/v1/collections/../tenants/${me.id}`,
      '//v1//collections',
      '/v1/collections/people/records/',
      '/V1/COLLECTIONS',
      `/v1/collections/people/records/${MISSING_RECORD}/extra`,
      '/v1/collections?',
      `/v1/tenants/${me.id}/../${B.id}/close`,
      '/v1/export/..',
      '/',
      '*',
    ];
    const path = fc.oneof(
      {
        weight: 6,
        arbitrary: fc
          .tuple(fc.constantFrom(...FUZZ_OPS), nameSegment, idSegment)
          .map(([op, a, b]) => ({ op, path: op.path.replace('{name}', a).replace('{id}', b) })),
      },
      {
        weight: 1,
        arbitrary: fc
          .tuple(fc.constantFrom(...FUZZ_OPS), fc.constantFrom(...RAW_PATHS))
          .map(([op, p]) => ({ op, path: p })),
      },
    );
    const query = fc.oneof(
      { weight: 3, arbitrary: fc.constant('') },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          '?limit=0',
          '?limit=-1',
          '?limit=99999',
          '?limit=1e3',
          '?limit=1&limit=2',
          '?cursor=AAAA',
          `?cursor=${'A'.repeat(600)}`,
          '?where[email]=x',
          '?where[__proto__]=1',
          '?__proto__[admin]=1',
          '?constructor[prototype][admin]=1',
          '?where[email]=a&where[email]=b',
          '?where[note]=x',
          '?where[]=1',
          '?state=closed',
          '?state=%00',
          `?where[email]=${'x'.repeat(5000)}`,
        ),
      },
      {
        weight: 1,
        arbitrary: fc
          .dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }), { maxKeys: 4 })
          .map((d) => `?${new URLSearchParams(d).toString()}`),
      },
    );
    const HUGE = `{"email":"${'a'.repeat(2 * 1024 * 1024)}"}`;
    const LARGE = `{"email":"${'b'.repeat(900 * 1024)}"}`;
    // Shaped like the routes' bodies, each with one thing always wrong, so none is a valid write.
    const wrongEmail = fc.oneof(
      fc.integer(),
      fc.boolean(),
      fc.array(fc.string()),
      fc.object({ maxDepth: 1 }),
    );
    const shaped = fc.oneof(
      fc.record({ email: wrongEmail, note: fc.jsonValue({ maxDepth: 1 }) }, { requiredKeys: ['email'] }),
      fc.record({
        fields: fc.dictionary(
          fc.string({ maxLength: 12 }),
          fc.record({
            type: fc.constantFrom('string', 'number', 'object', 'bogus'),
            classification: fc.constantFrom('public', 'personal', 'secret'),
            searchable: fc.jsonValue({ maxDepth: 0 }),
          }),
          { maxKeys: 3 },
        ),
        retentionDays: fc.constantFrom(-1, 0, 36501, '30', 1.5, true),
      }),
      fc.record({
        collections: fc.oneof(fc.constant('**'), fc.array(fc.string(), { maxLength: 3 })),
        access: fc.array(fc.constantFrom('read', 'write', 'admin', 'root', ''), { maxLength: 4 }),
        expiresAt: fc.constantFrom('yesterday', '2000-01-01T00:00:00Z', 0),
      }),
      fc.record(
        {
          recipient: fc.string({ maxLength: 70 }),
          passphrase: fc.string({ maxLength: 11 }),
        },
        { requiredKeys: [] },
      ),
    );
    const body = fc.oneof(
      { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? 'null') },
      { weight: 3, arbitrary: shaped.map((v) => JSON.stringify(v)) },
      {
        weight: 3,
        arbitrary: fc.constantFrom(
          '{"email":"a@example.test","email":"b@example.test"}',
          '{"fields":{},"fields":{"x":{"type":"string","classification":"public"}}}',
          '{"__proto__":{"admin":true}}',
          '{"constructor":{"prototype":{"admin":true}}}',
          '{"email":"a@example.test","__proto__":{"access":["admin"]}}',
          '{"fields":{"__proto__":{"type":"string","classification":"public"}}}',
          '{"collections":"*","access":["admin"],"__proto__":{"tenant":"x"}}',
          '{"email":"\\ud800"}',
          '{"email":{"$gt":""}}',
          '{"email":123}',
          '{"email":["a","b"]}',
          '{"email":null,"note":null}',
          '{"email":"a@example.test","unknown":1}',
          '{"reason":"x","export":{"recipient":"age1zzzz"}}',
          '{"recipient":"age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"}',
          '{"passphrase":"short"}',
          '{"collections":"*","access":["root"]}',
          '{"collections":["../x"],"access":["read"]}',
          '{"fields":{"email":{"type":"string","classification":"bogus"}}}',
          '{"fields":{"x":{"type":"object","classification":"public","default":{"__proto__":1}}}}',
          '{"retentionDays":-1,"fields":{}}',
          '[]',
          '""',
          'null',
          '{',
          '{"a":1}garbage',
          '\ufeff{"email":"a@example.test"}',
          `${'['.repeat(100_000)}${']'.repeat(100_000)}`,
          `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`,
          // NUL characters are a valid string value (a create with them succeeds): this one is
          // refused for its unknown field, after the parser has taken the NULs.
          `{"email":"${'\\u0000'.repeat(1000)}","unknown":"\\u0000"}`,
          LARGE,
          HUGE,
        ),
      },
      {
        weight: 1,
        arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('latin1')),
      },
    );
    const contentType = fc.oneof(
      { weight: 4, arbitrary: fc.constant('application/json') },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          'application/json; charset=utf-8',
          'application/json; charset=latin1',
          'APPLICATION/JSON',
          'application/json; boundary=x',
          'text/plain',
          'text/json',
          'application/x-www-form-urlencoded',
          'multipart/form-data; boundary=x',
          'application/problem+json',
          'application/vnd.api+json',
          'application/octet-stream',
          '*/*',
          ';',
          null,
        ),
      },
    );
    const ifMatch = fc.constantFrom(undefined, '"1"', 'W/"1"', '*', '"x"', '-1', '9'.repeat(30), '"1", "2"');
    const request = fc.record({
      target: path,
      query,
      // Mostly the route's own method (null), sometimes another one.
      method: fc.oneof(
        { weight: 5, arbitrary: fc.constant(null) },
        { weight: 1, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD') },
      ),
      body: fc.option(body, { freq: 5 }),
      contentType,
      ifMatch,
    });

    let runs = 0;
    const statuses = new Map<number, number>();
    let auditSeq = await lastAuditSeq();
    try {
      await fc.assert(
        fc.asyncProperty(request, async (r) => {
          runs++;
          const method = r.method ?? r.target.op.method;
          const target = `${r.target.path}${r.query}`;
          const res = await s.request(method, target, {
            token: me.apiKey,
            ...(r.body !== null ? { rawBody: r.body, contentType: r.contentType } : {}),
            ...(r.ifMatch !== undefined ? { headers: { 'if-match': r.ifMatch } } : {}),
          });
          const what = `${method} ${target.slice(0, 200)} (${r.contentType}, body ${String(r.body).slice(0, 80)})`;
          assert.ok(res.status < 500, `${what} → ${res.status} ${res.text.slice(0, 300)}`);
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (res.status >= 400 && method !== 'HEAD') {
            assert.match(
              String(res.headers['content-type']),
              /^application\/problem\+json/,
              `${what}: problem+json`,
            );
          }
          assert.deepEqual(await state(), baseline, `${what} changed stored data`);
          const events = await storeDb.all<AuditRow>(
            'SELECT seq, action, event FROM audit_events WHERE seq > ?',
            [auditSeq],
          );
          for (const e of events) {
            const outcome = (JSON.parse(e.event) as { outcome: string }).outcome;
            assert.ok(
              outcome !== 'success' || READ_ACTIONS.has(e.action),
              `${what} was audited as a successful ${e.action}`,
            );
          }
          auditSeq = Math.max(auditSeq, ...events.map((e) => Number(e.seq)));
        }),
        { numRuns: 300, endOnFailure: true },
      );
    } finally {
      await storeDb.close();
      await controlDb.close();
    }
    assert.equal(runs, 300, 'every run ran');
    // The inputs reached every layer: refused early (400/405/415), at validation (422), in the
    // handler (404), and some were plain successful reads.
    const seen = [...statuses.keys()].sort();
    for (const status of [200, 400, 404, 422]) {
      assert.ok(statuses.has(status), `some request answered ${status} (answers seen: ${seen.join(', ')})`);
    }
  });
});
