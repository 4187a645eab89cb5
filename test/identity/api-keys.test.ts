/**
 * Tenant API keys against a real SQLite control store: issued once, stored as a hash, scoped,
 * expiring, revocable, last use recorded without a write per request, and one uniform refusal.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import {
  type ApiKeyService,
  createApiKeyService,
  hashBearerSecret,
  parseBearerToken,
} from '../../src/identity/api-keys.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import type { TenantState } from '../../src/vault/vault-control-schema.ts';
import { insertTenant } from '../helpers/control-store.ts';
import { refusal } from '../helpers/refusal.ts';

const TENANT = 'ten_aaaaaaaaaaaaaaaaaaaaaaaa';
const OTHER = 'ten_bbbbbbbbbbbbbbbbbbbbbbbb';
/** Tenant rows of the API keys (2030-01-01). */
const addTenant = (control: Store<ControlDB>, id: string, state: TenantState = 'active') =>
  insertTenant(control, id, { at: '2030-01-01T00:00:00.000Z', state });
const ADMIN_CONTEXT = { actor: { kind: 'api-key' as const, id: 'ak_admin' } };

describe('API keys', () => {
  let dir: string;
  let control: Store<ControlDB>;
  let writes: number;
  let now: Date;
  let keys: ApiKeyService;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-apikeys-'));
    const store = await openSqliteStore<ControlDB>(join(dir, 'control.sqlite'), controlStoreMigrations);
    writes = 0;
    control = {
      location: store.location,
      db: store.db,
      write: (work) => {
        writes++;
        return store.write(work);
      },
      healthy: () => store.healthy(),
      close: () => store.close(),
    };
    now = new Date('2030-06-01T00:00:00.000Z');
    await addTenant(control, TENANT);
    await addTenant(control, OTHER);
    keys = createApiKeyService({ control, clock: () => now, logger: { warn: () => {} } });
  });

  afterEach(async () => {
    await keys.flush();
    await control.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('issues a random 256-bit token once, in the form tresor_<keyId>_<secret>', async () => {
    const a = await keys.issue({ tenant: TENANT, collections: ['people'], access: ['read'] }, ADMIN_CONTEXT);
    const b = await keys.issue({ tenant: TENANT, collections: ['people'], access: ['read'] }, ADMIN_CONTEXT);
    assert.match(a.token, /^tresor_ak_[0-9a-f]{24}_[A-Za-z0-9_-]{43}$/);
    assert.ok(a.token.startsWith(`tresor_${a.id}_`));
    const secret = parseBearerToken(a.token)?.secret ?? '';
    assert.equal(Buffer.from(secret, 'base64url').length, 32, '256 bits of secret');
    assert.notEqual(a.token, b.token);
    assert.notEqual(a.id, b.id);
  });

  it('authenticates to a principal scoped to its tenant, collections and access', async () => {
    const issued = await keys.issue(
      { tenant: TENANT, collections: ['people', 'orders', 'people'], access: ['write', 'read'] },
      ADMIN_CONTEXT,
    );
    assert.deepEqual(issued.collections, ['orders', 'people']);
    assert.deepEqual(issued.access, ['read', 'write']);
    const principal = await keys.authenticate(issued.token);
    assert.equal(principal.kind, 'api-key');
    assert.equal(principal.tenant, TENANT);
    assert.equal(principal.keyId, issued.id);
    assert.deepEqual(principal.collections, ['orders', 'people']);
    assert.deepEqual([...principal.access].sort(), ['read', 'write']);
  });

  it('refuses every failure the same way: unknown, wrong secret, malformed, revoked, expired, tenant not active', async () => {
    const good = await keys.issue({ tenant: TENANT, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    const revoked = await keys.issue({ tenant: TENANT, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    await keys.revoke(TENANT, revoked.id, ADMIN_CONTEXT);
    const expiring = await keys.issue(
      { tenant: TENANT, collections: '*', access: ['read'], expiresAt: '2030-06-01T01:00:00Z' },
      ADMIN_CONTEXT,
    );
    const closing = await keys.issue({ tenant: OTHER, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    await control.write((trx) =>
      trx.updateTable('tenants').set({ state: 'closing' }).where('id', '=', OTHER).execute(),
    );

    const parsed = parseBearerToken(good.token);
    assert.ok(parsed);
    const flipped = parsed.secret.startsWith('A')
      ? `B${parsed.secret.slice(1)}`
      : `A${parsed.secret.slice(1)}`;
    now = new Date('2030-06-01T01:00:00.000Z'); // the expiring key's last instant has passed
    const refusals = await Promise.all(
      [
        `tresor_ak_${'0'.repeat(24)}_${parsed.secret}`, // unknown id
        `tresor_${good.id}_${flipped}`, // wrong secret
        good.token.slice(0, -1), // malformed
        `${good.token}x`,
        '',
        'Bearer whatever',
        `tresor_op_${good.id.slice(3)}_${parsed.secret}`, // an operator token's shape
        revoked.token,
        expiring.token,
        closing.token,
      ].map((t) => refusal(keys.authenticate(t))),
    );
    for (const r of refusals) {
      assert.deepEqual(r, refusals[0]);
    }
    assert.equal(refusals[0]?.code, 'TRESOR_ERR_UNAUTHENTICATED');
    // And the good key still works.
    assert.equal((await keys.authenticate(good.token)).keyId, good.id);
  });

  it('lists keys without secrets or hashes, and audits issue and revoke without them', async () => {
    const issued = await keys.issue(
      { tenant: TENANT, collections: '*', access: ['admin'], label: 'ci deploy' },
      ADMIN_CONTEXT,
    );
    const revoked = await keys.revoke(TENANT, issued.id, ADMIN_CONTEXT);
    assert.equal(revoked.revokedAt, now.toISOString());
    assert.equal(
      (await keys.revoke(TENANT, issued.id, ADMIN_CONTEXT)).revokedAt,
      now.toISOString(),
      'idempotent',
    );

    const secret = parseBearerToken(issued.token)?.secret ?? '';
    const hash = hashBearerSecret('ak', issued.id, secret);
    const list = await keys.list(TENANT);
    assert.equal(list.length, 1);
    assert.deepEqual(Object.keys(list[0] ?? {}).sort(), [
      'access',
      'collections',
      'createdAt',
      'expiresAt',
      'id',
      'label',
      'lastUsedAt',
      'revokedAt',
      'tenant',
    ]);
    const events = await control.db.selectFrom('audit_events').selectAll().execute();
    assert.deepEqual(
      events.map((e) => e.action),
      ['api-key.issue', 'api-key.revoke'],
    );
    for (const text of [JSON.stringify(list), JSON.stringify(events)]) {
      assert.ok(!text.includes(secret));
      assert.ok(!text.includes(hash));
    }
    assert.deepEqual(await keys.list(OTHER), []);
  });

  it('keeps only the hash: the token text is in no control store file', async () => {
    const issued = await keys.issue({ tenant: TENANT, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    await keys.authenticate(issued.token);
    await keys.flush();
    const secret = parseBearerToken(issued.token)?.secret ?? '';
    const row = await control.db
      .selectFrom('api_keys')
      .selectAll()
      .where('id', '=', issued.id)
      .executeTakeFirstOrThrow();
    assert.equal(row.secret_hash, hashBearerSecret('ak', issued.id, secret));
    for (const file of readdirSync(dir).filter((f) => f.startsWith('control.sqlite'))) {
      const bytes = readFileSync(join(dir, file));
      assert.equal(bytes.indexOf(secret), -1, file);
    }
  });

  it('records last use at most once a minute per key, without a write per request', async () => {
    const issued = await keys.issue({ tenant: TENANT, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    const before = writes;
    for (let i = 0; i < 20; i++) await keys.authenticate(issued.token);
    await keys.flush();
    assert.equal(writes - before, 1);
    const lastUsed = async () => (await keys.list(TENANT))[0]?.lastUsedAt;
    assert.equal(await lastUsed(), '2030-06-01T00:00:00.000Z');

    now = new Date('2030-06-01T00:00:59.000Z');
    await keys.authenticate(issued.token);
    await keys.flush();
    assert.equal(writes - before, 1);
    assert.equal(await lastUsed(), '2030-06-01T00:00:00.000Z');

    now = new Date('2030-06-01T00:01:00.000Z');
    await keys.authenticate(issued.token);
    await keys.flush();
    assert.equal(writes - before, 2);
    assert.equal(await lastUsed(), '2030-06-01T00:01:00.000Z');
  });

  it('authenticates even when recording last use fails, and logs only the key id', async () => {
    const warnings: unknown[] = [];
    const failing = createApiKeyService({
      control: { ...control, write: () => Promise.reject(new Error('disk full')) },
      clock: () => now,
      logger: { warn: (details, message) => warnings.push({ details, message }) },
    });
    const issued = await keys.issue({ tenant: TENANT, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    assert.equal((await failing.authenticate(issued.token)).keyId, issued.id);
    await failing.flush();
    assert.equal(warnings.length, 1);
    assert.ok(!JSON.stringify(warnings).includes(parseBearerToken(issued.token)?.secret ?? '?'));
  });

  it('refuses keys for unknown or inactive tenants and bad scopes', async () => {
    const code = async (p: Promise<unknown>) => (await refusal(p)).code;
    assert.equal(
      await code(keys.issue({ tenant: 'ten_nope', collections: '*', access: ['read'] }, ADMIN_CONTEXT)),
      'TRESOR_ERR_NOT_FOUND',
    );
    await addTenant(control, 'ten_cccccccccccccccccccccccc', 'closed');
    assert.equal(
      await code(
        keys.issue(
          { tenant: 'ten_cccccccccccccccccccccccc', collections: '*', access: ['read'] },
          ADMIN_CONTEXT,
        ),
      ),
      'TRESOR_ERR_TENANT_STATE',
    );
    for (const bad of [
      { collections: [], access: ['read'] },
      { collections: ['no spaces'], access: ['read'] },
      { collections: '*', access: [] },
      { collections: '*', access: ['delete'] },
      { collections: '*', access: ['read'], expiresAt: '2030-05-01T00:00:00Z' },
      { collections: '*', access: ['read'], expiresAt: 'tomorrow' },
      { collections: '*', access: ['read'], label: 'x'.repeat(101) },
    ]) {
      assert.equal(
        await code(keys.issue({ tenant: TENANT, ...bad } as never, ADMIN_CONTEXT)),
        'TRESOR_ERR_VALIDATION',
        JSON.stringify(bad),
      );
    }
    assert.equal(await code(keys.revoke(TENANT, 'ak_unknown', ADMIN_CONTEXT)), 'TRESOR_ERR_NOT_FOUND');
    const other = await keys.issue({ tenant: OTHER, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    assert.equal(
      await code(keys.revoke(TENANT, other.id, ADMIN_CONTEXT)),
      'TRESOR_ERR_NOT_FOUND',
      "not another tenant's key",
    );
  });
});

describe('API key principal cache', () => {
  let dir: string;
  let control: Store<ControlDB>;
  let selects: number;
  let now: Date;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-apikeys-cache-'));
    const store = await openSqliteStore<ControlDB>(join(dir, 'control.sqlite'), controlStoreMigrations);
    selects = 0;
    // Counts the queries that start from selectFrom (the authentication lookup is one).
    const db = new Proxy(store.db, {
      get(target, property) {
        const value = Reflect.get(target, property, target) as unknown;
        if (property === 'selectFrom') selects++;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    control = {
      location: store.location,
      db,
      write: (work) => store.write(work),
      healthy: () => store.healthy(),
      close: () => store.close(),
    };
    now = new Date('2030-06-01T00:00:00.000Z');
    await addTenant(control, TENANT);
    await addTenant(control, OTHER);
  });

  afterEach(async () => {
    await control.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function service(options: { principalCacheMs?: number; principalCacheMaxEntries?: number } = {}) {
    return createApiKeyService({ control, clock: () => now, logger: { warn: () => {} }, ...options });
  }

  it('answers a repeated authentication from the cache, without a query, for the TTL only', async () => {
    const keys = service();
    const issued = await keys.issue(
      { tenant: TENANT, collections: ['people'], access: ['read'] },
      ADMIN_CONTEXT,
    );
    const first = await keys.authenticate(issued.token);
    const before = selects;
    const second = await keys.authenticate(issued.token);
    assert.equal(selects, before, 'no query on a cached hit');
    assert.deepEqual(second, first);
    assert.notEqual(second.access, first.access, 'each principal gets its own access set');
    now = new Date(now.getTime() + 4_999);
    await keys.authenticate(issued.token);
    assert.equal(selects, before);
    now = new Date(now.getTime() + 1);
    await keys.authenticate(issued.token);
    assert.equal(selects, before + 1, 'the entry is not used once the TTL has passed');
    await keys.flush();
  });

  it('keeps the hash of the token, never the token', async () => {
    const keys = service();
    const issued = await keys.issue({ tenant: TENANT, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    await keys.authenticate(issued.token);
    const secret = parseBearerToken(issued.token)?.secret ?? '';
    // A different secret for the same key id is not served from the cache.
    const wrong = issued.token.replace(
      secret,
      secret.startsWith('A') ? `B${secret.slice(1)}` : `A${secret.slice(1)}`,
    );
    const before = selects;
    await assert.rejects(keys.authenticate(wrong), { code: 'TRESOR_ERR_UNAUTHENTICATED' });
    assert.equal(selects, before + 1);
    await keys.flush();
  });

  it('does not cache failures', async () => {
    const keys = service();
    const issued = await keys.issue({ tenant: TENANT, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    const secret = parseBearerToken(issued.token)?.secret ?? '';
    const wrong = issued.token.replace(
      secret,
      secret.startsWith('A') ? `B${secret.slice(1)}` : `A${secret.slice(1)}`,
    );
    const before = selects;
    await assert.rejects(keys.authenticate(wrong), { code: 'TRESOR_ERR_UNAUTHENTICATED' });
    await assert.rejects(keys.authenticate(wrong), { code: 'TRESOR_ERR_UNAUTHENTICATED' });
    assert.equal(selects, before + 2, 'each refusal does the lookup');
  });

  it('refuses a revoked key at once in this process', async () => {
    const keys = service();
    const issued = await keys.issue({ tenant: TENANT, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    const other = await keys.issue({ tenant: TENANT, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    await keys.authenticate(issued.token);
    await keys.authenticate(other.token);
    await keys.revoke(TENANT, issued.id, ADMIN_CONTEXT);
    await assert.rejects(keys.authenticate(issued.token), { code: 'TRESOR_ERR_UNAUTHENTICATED' });
    const before = selects;
    await keys.authenticate(other.token);
    assert.equal(selects, before, 'other keys stay cached');
    await keys.flush();
  });

  it('does not cache an answer read before a revocation committed', async () => {
    // A control store whose api_keys lookups return their (already read) row only when released.
    let release: () => void = () => {};
    let read: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const wasRead = new Promise<void>((resolve) => {
      read = resolve;
    });
    const hold = (builder: object): object =>
      new Proxy(builder, {
        get(target, property) {
          const value = Reflect.get(target, property, target) as unknown;
          if (typeof value !== 'function') return value;
          if (property === 'executeTakeFirst') {
            return async () => {
              const row = await (value as () => Promise<unknown>).call(target);
              read();
              await held;
              return row;
            };
          }
          return (...args: unknown[]) => hold((value as (...a: unknown[]) => object).apply(target, args));
        },
      });
    const slow: Store<ControlDB> = {
      ...control,
      db: new Proxy(control.db, {
        get(target, property) {
          const value = Reflect.get(target, property, target) as unknown;
          if (property === 'selectFrom')
            return (table: 'api_keys') => hold((value as (t: 'api_keys') => object).call(target, table));
          return typeof value === 'function' ? value.bind(target) : value;
        },
      }),
    };
    const keys = service();
    const slowKeys = createApiKeyService({ control: slow, clock: () => now, logger: { warn: () => {} } });
    const issued = await keys.issue({ tenant: TENANT, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    // The lookup reads the live row, then the revocation commits, then the lookup finishes.
    const inFlight = slowKeys.authenticate(issued.token);
    await wasRead;
    await slowKeys.revoke(TENANT, issued.id, ADMIN_CONTEXT);
    release();
    await inFlight; // it read the key before the revocation: accepted, but not remembered
    await assert.rejects(slowKeys.authenticate(issued.token), { code: 'TRESOR_ERR_UNAUTHENTICATED' });
    await keys.flush();
    await slowKeys.flush();
  });

  it('refuses the keys of a tenant forgotten on close at once', async () => {
    const keys = service();
    const issued = await keys.issue({ tenant: OTHER, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    const mine = await keys.issue({ tenant: TENANT, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    await keys.authenticate(issued.token);
    await keys.authenticate(mine.token);
    await control.write((trx) =>
      trx.updateTable('tenants').set({ state: 'closing' }).where('id', '=', OTHER).execute(),
    );
    keys.forgetTenant(OTHER);
    await assert.rejects(keys.authenticate(issued.token), { code: 'TRESOR_ERR_UNAUTHENTICATED' });
    const before = selects;
    await keys.authenticate(mine.token);
    assert.equal(selects, before, "another tenant's keys stay cached");
    await keys.flush();
  });

  it('honours expiresAt exactly, even for a cached key', async () => {
    const keys = service();
    const issued = await keys.issue(
      { tenant: TENANT, collections: '*', access: ['read'], expiresAt: '2030-06-01T00:00:02Z' },
      ADMIN_CONTEXT,
    );
    await keys.authenticate(issued.token);
    now = new Date('2030-06-01T00:00:01.999Z');
    const before = selects;
    await keys.authenticate(issued.token);
    assert.equal(selects, before, 'still cached');
    now = new Date('2030-06-01T00:00:02.000Z');
    await assert.rejects(keys.authenticate(issued.token), { code: 'TRESOR_ERR_UNAUTHENTICATED' });
    await keys.flush();
  });

  it('with a TTL of 0 queries on every authentication', async () => {
    const keys = service({ principalCacheMs: 0 });
    const issued = await keys.issue({ tenant: TENANT, collections: '*', access: ['read'] }, ADMIN_CONTEXT);
    await keys.authenticate(issued.token);
    const before = selects;
    await keys.authenticate(issued.token);
    await keys.authenticate(issued.token);
    assert.equal(selects, before + 2);
    await keys.flush();
  });

  it('holds at most principalCacheMaxEntries, dropping the least recently used', async () => {
    const keys = service({ principalCacheMaxEntries: 2 });
    const [a, b, c] = await Promise.all(
      [1, 2, 3].map(() => keys.issue({ tenant: TENANT, collections: '*', access: ['read'] }, ADMIN_CONTEXT)),
    );
    assert.ok(a && b && c);
    await keys.authenticate(a.token);
    await keys.authenticate(b.token);
    await keys.authenticate(a.token); // a is now the most recently used
    await keys.authenticate(c.token); // drops b
    let before = selects;
    await keys.authenticate(a.token);
    await keys.authenticate(c.token);
    assert.equal(selects, before);
    before = selects;
    await keys.authenticate(b.token);
    assert.equal(selects, before + 1);
    await keys.flush();
  });
});
