// backends: sqlite postgres
/**
 * Envelope encryption at rest, checked with the real keyd process and the stores the server really
 * writes:
 *
 * - the vault over the production data-key store (each tenant's wrapped keys in its own tenant
 *   store) and a keyd client: rotation while reads and writes go on, moved ciphertexts refused,
 *   crypto-shredding, keyd gone means 503, not data;
 * - a real `tresor server` process (test/helpers/tresor-stack.ts): no file under its data and keyd
 *   folders (on PostgreSQL also: the database's files, the cluster's WAL, pg_dump), and nothing in
 *   its log, holds a customer value, an unwrapped data key of the tenants it
 *   created, or the unwrapped identity factor key (src/identity/factor-key.ts). The unwrapped keys
 *   come from asking keyd to unwrap the wrapped ones found in the stores; a self-check proves the
 *   scan finds a planted key in each form it looks for.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { auditEventsMigration, type WithAuditEvents } from '../../src/audit/event.ts';
import { createReadOutbox } from '../../src/audit/read-outbox.ts';
import { toProblem } from '../../src/http/problem.ts';
import { FACTOR_KEY_NAME } from '../../src/identity/factor-key.ts';
import { createKeydClient, type KeydClient } from '../../src/keyd/client.ts';
import { createKeyCache, type KeyCache } from '../../src/keyd/key-cache.ts';
import type { DataKeyPurpose } from '../../src/keyd/operations.ts';
import { createPgTenantStores } from '../../src/store/pg/tenant-stores.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store, TenantStores } from '../../src/store/types.ts';
import { createVault, type Vault } from '../../src/vault/collections.ts';
import { createTenantDataKeyStore } from '../../src/vault/data-key-store.ts';
import { createDataKeyring, type DataKeyring } from '../../src/vault/data-keys.ts';
import {
  type TenantDB,
  tenantStoreMigrations,
  tenantStorePgMigrations,
} from '../../src/vault/tenant-store-schema.ts';
import type { AuditOrigin } from '../../src/vault/vault-audit.ts';
import { onPostgres, type TestDatabase, testDatabase } from '../helpers/backend.ts';
import { operatorToken } from '../helpers/console.ts';
import { type KeydProcess, startKeyd, tresor } from '../helpers/keyd-process.ts';
import { controlRows, tenantRows } from '../helpers/stack-sql.ts';
import { type HttpResponse, startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';

const CALLER: AuditOrigin = { actor: { kind: 'api-key', id: 'key_at_rest' } };
const PEOPLE = {
  fields: { email: { type: 'string', classification: 'personal', required: true, searchable: true } },
};

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
 * Bytes as they could appear on disk or in a log: raw, hex (both cases), and base64/base64url at
 * each of the three byte alignments they can have inside a longer encoded blob.
 */
function encodings(raw: Buffer): Buffer[] {
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

interface Needle {
  /** What the needle is, for the failure message: never the secret itself. */
  label: string;
  bytes: Buffer;
}

/** Where any form of any needle occurs: `<haystack>: <label>` for each hit. */
function findNeedles(
  haystacks: readonly { path: string; bytes: Buffer }[],
  needles: readonly Needle[],
): string[] {
  const hits: string[] = [];
  for (const needle of needles) {
    for (const form of encodings(needle.bytes)) {
      for (const h of haystacks) if (h.bytes.includes(form)) hits.push(`${h.path}: ${needle.label}`);
    }
  }
  return hits;
}

describe('the vault’s data at rest with the real keyd', () => {
  let root: string;
  let keyd: KeydProcess;
  let client: KeydClient;
  let cache: KeyCache;
  let ring: DataKeyring;
  let vault: Vault;
  let readOutboxStore: Store<WithAuditEvents> | undefined;
  const opened = new Map<string, Promise<Store<TenantDB>>>();
  /** On the PostgreSQL pass: the tenants' schemas in a fresh database, as the server keeps them. */
  let pgData: TestDatabase | undefined;
  let pgStores: TenantStores<TenantDB> | undefined;
  const stores = (tenant: string) => {
    if (pgStores) return pgStores.open(tenant);
    let s = opened.get(tenant);
    if (!s) {
      s = openSqliteStore<TenantDB>(join(root, 'data', `${tenant}.sqlite`), tenantStoreMigrations);
      opened.set(tenant, s);
    }
    return s;
  };

  const write = async (tenant: string, email: string) =>
    (await vault.createRecord(tenant, 'people', { email }, CALLER)).id;
  const read = async (tenant: string, id: string) =>
    (await vault.readRecord(tenant, 'people', id, CALLER)).data.email;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'tresor-e2e-rest-'));
    const keydDir = join(root, 'keyd');
    mkdirSync(keydDir, { mode: 0o700 });
    mkdirSync(join(root, 'data'), { mode: 0o700 });
    assert.equal(
      tresor(['keyd', 'init', '--provider', 'dev-file', '--dir', keydDir, '--insecure-dev-key-file']).status,
      0,
    );
    const target = { kind: 'unix' as const, path: join(keydDir, 'keyd.sock') };
    keyd = await startKeyd(['--provider', 'dev-file', '--dir', keydDir, '--insecure-dev-key-file'], target);
    // Not keyd.client(): this client must outlive keyd.stop() to see keyd go away.
    client = createKeydClient({ connect: target, clientName: 'tresor-server', retries: 2, timeoutMs: 5000 });
    cache = createKeyCache({ maxEntries: 100, ttlMs: 60_000, maxUses: 10_000 });
    ring = createDataKeyring({ keys: client, store: createTenantDataKeyStore(stores), cache });
    // The reads' audit events go to a control store's outbox, as in the server (read-outbox.ts).
    readOutboxStore = await openSqliteStore<WithAuditEvents>(join(root, 'data', 'control.sqlite'), {
      '0001_audit_events': auditEventsMigration,
    });
    // No collection cache: every request reads the collection row, as a fresh process would.
    vault = createVault({
      stores,
      keys: ring,
      readOutbox: createReadOutbox(readOutboxStore),
      collectionCacheMs: 0,
    });
    if (onPostgres) {
      pgData = await testDatabase();
      if (pgData.database.kind !== 'postgres') throw new Error('a PostgreSQL database was asked for');
      pgStores = await createPgTenantStores<TenantDB>({
        url: pgData.database.url,
        migrations: tenantStorePgMigrations,
      });
      for (const t of ['acme', 'globex']) await pgStores.create(t);
    }
    for (const t of ['acme', 'globex']) {
      await client.call('createTenantKey', { tenant: t });
      await vault.putCollection(t, 'people', PEOPLE, CALLER);
    }
  });
  after(async () => {
    // Each step guarded: a failed start must not leave keyd running (the test process would not end).
    cache?.close();
    for (const s of opened.values()) await (await s).close();
    await readOutboxStore?.close();
    await pgStores?.close();
    await pgData?.drop();
    await client?.close();
    await keyd?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('keeps decrypting while tenant and root keys rotate under concurrent reads and writes', async () => {
    const written = new Map<string, string>();
    const writers = Array.from({ length: 6 }, async (_, w) => {
      let previous: string | undefined;
      for (let i = 0; i < 40; i++) {
        const value = `person-${w}-${i}@example.test`;
        const id = await write('acme', value);
        written.set(id, value);
        if (previous !== undefined) assert.equal(await read('acme', previous), written.get(previous));
        previous = id;
      }
    });
    const rotations = (async () => {
      for (let i = 0; i < 3; i++) {
        await client.call('rotateTenantKey', { tenant: 'acme' });
        await ring.rewrapAll('acme');
        await client.call('rotateRootKey', {});
      }
    })();
    await Promise.all([...writers, rotations]);
    cache.clear();
    for (const [id, value] of written) assert.equal(await read('acme', id), value);
    const status = await client.call('tenantKeyStatus', { tenant: 'acme' });
    assert.equal(status.versions.find((v) => v.state === 'active')?.version, 4);
    // Every data key was re-wrapped by the active version, so the old ones can be retired.
    for (const v of [1, 2, 3]) await client.call('retireTenantKeyVersion', { tenant: 'acme', version: v });
    cache.clear();
    for (const [id, value] of written) assert.equal(await read('acme', id), value);
  });

  it('refuses a ciphertext moved to another record or tenant in the store', async () => {
    const alice = await write('acme', 'alice@example.test');
    const victim = await write('acme', 'victim@example.test');
    const bob = await write('globex', 'bob@example.test');
    const acme = await stores('acme');
    const globex = await stores('globex');
    const { fields } = await acme.db
      .selectFrom('records')
      .select('fields')
      .where('id', '=', alice)
      .executeTakeFirstOrThrow();
    await acme.write((trx) => trx.updateTable('records').set({ fields }).where('id', '=', victim).execute());
    await assert.rejects(read('acme', victim), { code: 'TRESOR_ERR_DECRYPT_FAILED' });
    await globex.write((trx) => trx.updateTable('records').set({ fields }).where('id', '=', bob).execute());
    await assert.rejects(read('globex', bob), { code: 'TRESOR_ERR_DECRYPT_FAILED' });
    assert.equal(await read('acme', alice), 'alice@example.test');
  });

  it('makes a shredded tenant’s ciphertexts undecryptable while the other tenant still reads', async () => {
    const carol = await write('globex', 'carol@example.test');
    const dave = await write('acme', 'dave@example.test');
    const destroyed = await client.call('destroyTenantKey', { tenant: 'globex', mode: 'now' });
    assert.equal(destroyed.state, 'destroyed');
    assert.ok(destroyed.keyIdsDestroyed.length >= 1);
    cache.clear();
    await assert.rejects(read('globex', carol), { code: 'TRESOR_ERR_TENANT_KEY_DESTROYED' });
    assert.equal(await read('acme', dave), 'dave@example.test');
  });

  it('fails closed with 503 when keyd is gone and the key is not cached', async () => {
    const erin = await write('acme', 'erin@example.test');
    await keyd.stop();
    cache.clear();
    const err = await read('acme', erin).catch((e: unknown) => e);
    assert.equal((err as { code?: string }).code, 'TRESOR_ERR_KEYD_UNAVAILABLE');
    const problem = toProblem(err);
    assert.equal(problem.status, 503);
    assert.ok(!JSON.stringify(problem).includes('erin'));
  });
});

describe('the scan for key material and values', () => {
  it('finds a planted key in every form it looks for, anywhere in a file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tresor-scan-check-'));
    try {
      const key = randomBytes(32);
      const needle = { label: 'planted key', bytes: key };
      for (const [i, form] of encodings(key).entries()) {
        const file = join(dir, `planted-${i}`);
        writeFileSync(file, Buffer.concat([randomBytes(1 + i), form, randomBytes(7)]));
        const hits = findNeedles(filesUnder(dir), [needle]);
        assert.ok(
          hits.some((h) => h.startsWith(file)),
          `form ${i} of the key was not found`,
        );
        rmSync(file);
      }
      // Base64 of the key at another alignment inside a longer blob, as a store column could hold it.
      const blob = join(dir, 'blob');
      writeFileSync(
        blob,
        Buffer.from(Buffer.concat([randomBytes(2), key, randomBytes(5)]).toString('base64')),
      );
      assert.equal(findNeedles(filesUnder(dir), [needle]).length > 0, true, 'base64 inside a blob');
      rmSync(blob);
      writeFileSync(join(dir, 'clean'), randomBytes(4096));
      assert.deepEqual(findNeedles(filesUnder(dir), [needle]), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the real server’s data folder and log', () => {
  let s: TresorStack;
  const values: string[] = [];
  const tenants: string[] = [];

  const expect = (res: HttpResponse, status: number, what: string) =>
    assert.equal(res.status, status, `${what}: got ${res.status} ${res.text.slice(0, 300)}`);

  before(async () => {
    s = await startTresorStack();
    for (const name of ['at-rest-a', 'at-rest-b']) {
      const res = await s.request('POST', '/v1/tenants', {
        token: await operatorToken(s, 'tenants:create'),
        body: { name },
      });
      expect(res, 201, `create tenant ${name}`);
      const { id, apiKey } = res.json<{ id: string; apiKey: string }>();
      tenants.push(id);
      expect(
        await s.request('PUT', '/v1/collections/people', { token: apiKey, body: PEOPLE }),
        201,
        'declare people',
      );
      const email = `${name}-${randomBytes(8).toString('hex')}@example.test`;
      values.push(email);
      const created = await s.request('POST', '/v1/collections/people/records', {
        token: apiKey,
        body: { email },
      });
      expect(created, 201, 'create a record');
      const { id: record } = created.json<{ id: string }>();
      const updated = `${name}-${randomBytes(8).toString('hex')}@example.test`;
      values.push(updated);
      expect(
        await s.request('PATCH', `/v1/collections/people/records/${record}`, {
          token: apiKey,
          body: { email: updated },
          headers: { 'if-match': '"1"' },
        }),
        200,
        'update the record',
      );
      // A search: blind-index and audit-hmac keys are used too.
      expect(
        await s.request('POST', '/v1/collections/people/records/search', {
          token: apiKey,
          body: { where: { email: updated } },
        }),
        200,
        'search',
      );
    }
  });
  after(async () => {
    await s?.stop();
  });

  /** Every wrapped data key of `tenant` in its store, unwrapped by the real keyd. */
  async function unwrappedDataKeys(keyd: KeydClient, tenant: string): Promise<Needle[]> {
    const rows = await tenantRows<{
      key_id: string;
      tenant: string;
      purpose: DataKeyPurpose;
      wrapped: Buffer;
    }>(s, tenant, 'SELECT key_id, tenant, purpose, wrapped FROM data_keys');
    const needles: Needle[] = [];
    for (const row of rows) {
      const { key } = await keyd.call('unwrapDataKey', {
        tenant: row.tenant,
        purpose: row.purpose,
        keyId: row.key_id,
        wrapped: Buffer.from(row.wrapped),
      });
      needles.push({ label: `${row.purpose} data key ${row.key_id} of ${tenant}`, bytes: key });
    }
    return needles;
  }

  async function unwrappedFactorKey(keyd: KeydClient): Promise<Needle> {
    const [row] = await controlRows<{ key_id: string; keyd_tenant: string; wrapped: string }>(
      s,
      'SELECT key_id, keyd_tenant, wrapped FROM system_keys WHERE name = ?',
      [FACTOR_KEY_NAME],
    );
    assert.ok(row, 'the control store holds the wrapped factor key');
    const { key } = await keyd.call('unwrapDataKey', {
      tenant: row.keyd_tenant,
      purpose: 'data',
      keyId: row.key_id,
      wrapped: Buffer.from(row.wrapped, 'base64'),
    });
    return { label: 'the identity factor key', bytes: key };
  }

  it('holds no unwrapped data key of its tenants, no unwrapped factor key and no value in any file or its log', async () => {
    const keyd = s.keydClient();
    const needles: Needle[] = [];
    for (const tenant of tenants) {
      const keys = await unwrappedDataKeys(keyd, tenant);
      const purposes = new Set(keys.map((k) => k.label.split(' ')[0]));
      for (const p of ['data', 'blind-index', 'audit-hmac'])
        assert.ok(purposes.has(p), `${tenant} has a ${p} key`);
      needles.push(...keys);
    }
    needles.push(await unwrappedFactorKey(keyd));
    for (const [i, v] of values.entries())
      needles.push({ label: `customer value ${i}`, bytes: Buffer.from(v) });

    const files = filesUnder(s.root);
    if (s.database.kind === 'postgres') {
      // The database's own files (tables, indexes, TOAST) and the cluster's WAL, after a checkpoint,
      // and what pg_dump writes of it.
      const [where] = await controlRows<{ dir: string; oid: number }>(
        s,
        "SELECT current_setting('data_directory') AS dir, oid FROM pg_database WHERE datname = current_database()",
      );
      assert.ok(where);
      await controlRows(s, 'CHECKPOINT');
      const ownFiles = filesUnder(join(where.dir, 'base', String(where.oid)));
      const wal = filesUnder(join(where.dir, 'pg_wal'));
      assert.ok(ownFiles.length > 0 && wal.length > 0, 'the database’s files and the WAL are checked');
      files.push(...ownFiles, ...wal);
      const dump = spawnSync('pg_dump', ['--no-owner', s.database.url], {
        maxBuffer: 256 * 1024 * 1024,
        timeout: 120_000,
      });
      assert.equal(dump.status, 0, dump.stderr?.toString());
      files.push({ path: 'pg_dump', bytes: dump.stdout });
      // The scan sees what the database keeps in clear: a tenant's name, in the control store.
      assert.ok(
        ownFiles.some((f) => f.bytes.includes('at-rest-a')),
        'the database’s files hold a tenant name',
      );
    } else {
      for (const tenant of tenants) {
        assert.ok(
          files.some((f) => f.path.endsWith(`${tenant}.sqlite-wal`) || f.path.endsWith(`${tenant}.sqlite`)),
          `${tenant}'s store is among the files checked`,
        );
      }
      assert.ok(
        files.some((f) => f.path.endsWith('control.sqlite')),
        'the control store is checked',
      );
    }
    assert.ok(
      files.some((f) => f.path.startsWith(s.keydDir)),
      'the keyd folder is checked',
    );
    const log = { path: 'the server log', bytes: Buffer.from(s.serverOutput(), 'utf8') };
    assert.ok(log.bytes.length > 0, 'the server logged');
    assert.deepEqual(findNeedles([...files, log], needles), []);
  });
});
