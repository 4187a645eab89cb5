/**
 * The server side of envelope encryption against the real keyd process: field values encrypted
 * with data keys from keyd land in a tenant's SQLite file; nothing on disk holds a plaintext value
 * or an unwrapped key; rotation runs while reads and writes go on; keyd gone means 503, not data.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type Database from 'better-sqlite3';
import { openEnvelope, readEnvelopeHeader, sealEnvelope } from '../../src/crypto/index.ts';
import { toProblem } from '../../src/http/problem.ts';
import { createKeydClient, type KeydClient } from '../../src/keyd/client.ts';
import { createKeyCache, type KeyCache } from '../../src/keyd/key-cache.ts';
import { createSqliteDataKeyStore } from '../../src/store/sqlite/data-key-store.ts';
import { openSqlite } from '../../src/store/sqlite/open.ts';
import { createDataKeyring, type DataKeyring } from '../../src/vault/data-keys.ts';
import { type KeydProcess, startKeyd, tresor } from '../helpers/keyd-process.ts';

interface Rig {
  root: string;
  keydDir: string;
  dataDir: string;
  keyd: KeydProcess;
  client: KeydClient;
  db: Database.Database;
  cache: KeyCache;
  ring: DataKeyring;
}

const context = (tenant: string, record: string, field: string, version: number) => ({
  tenant,
  collection: 'people',
  record,
  field,
  version,
});

async function writeField(
  r: Rig,
  tenant: string,
  record: string,
  field: string,
  value: string,
): Promise<void> {
  const ct = await r.ring.withEncryptionKey(tenant, 'data', 1, (key, keyId) =>
    sealEnvelope(key, keyId, Buffer.from(value, 'utf8'), 'field', context(tenant, record, field, 1)),
  );
  r.db
    .prepare('INSERT OR REPLACE INTO fields (tenant, record, field, ct) VALUES (?, ?, ?, ?)')
    .run(tenant, record, field, ct);
}

async function readField(r: Rig, tenant: string, record: string, field: string): Promise<string> {
  const row = r.db
    .prepare('SELECT ct FROM fields WHERE tenant = ? AND record = ? AND field = ?')
    .get(tenant, record, field) as { ct: Buffer } | undefined;
  assert.ok(row, 'row exists');
  const { keyId } = readEnvelopeHeader(row.ct);
  return r.ring.withDecryptionKey(tenant, 'data', keyId, (key) =>
    openEnvelope(key, keyId, row.ct, 'field', context(tenant, record, field, 1)).toString('utf8'),
  );
}

function filesUnder(dir: string): { path: string; bytes: Buffer }[] {
  const out: { path: string; bytes: Buffer }[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) out.push(...filesUnder(p));
    else if (st.isFile()) out.push({ path: p, bytes: readFileSync(p) });
  }
  return out;
}

describe('envelope encryption at rest with the real keyd', () => {
  let r: Rig;
  before(async () => {
    const root = mkdtempSync(join(tmpdir(), 'tresor-e2e-rest-'));
    const keydDir = join(root, 'keyd');
    const dataDir = join(root, 'data');
    mkdirSync(keydDir, { mode: 0o700 });
    mkdirSync(dataDir, { mode: 0o700 });
    assert.equal(tresor(['keyd', 'init', '--provider', 'dev-file', '--dir', keydDir]).status, 0);
    const target = { kind: 'unix' as const, path: join(keydDir, 'keyd.sock') };
    const keyd = await startKeyd(['--provider', 'dev-file', '--dir', keydDir], target);
    // Not keyd.client(): this client must outlive keyd.stop() to see keyd go away.
    const client = createKeydClient({
      connect: target,
      clientName: 'tresor-server',
      retries: 2,
      timeoutMs: 5000,
    });
    const db = openSqlite(join(dataDir, 'tenant.sqlite'));
    db.exec(
      'CREATE TABLE fields (tenant TEXT, record TEXT, field TEXT, ct BLOB, PRIMARY KEY (tenant, record, field))',
    );
    const cache = createKeyCache({ maxEntries: 100, ttlMs: 60_000, maxUses: 10_000 });
    const ring = createDataKeyring({ keys: client, store: createSqliteDataKeyStore(db), cache });
    for (const t of ['acme', 'globex']) await client.call('createTenantKey', { tenant: t });
    r = { root, keydDir, dataDir, keyd, client, db, cache, ring };
  });
  after(async () => {
    r.cache.close();
    r.db.close();
    await r.client.close();
    await r.keyd.stop();
    rmSync(r.root, { recursive: true, force: true });
  });

  it('keeps decrypting while tenant and root keys rotate under concurrent reads and writes', async () => {
    const written = new Map<string, string>();
    const writers = Array.from({ length: 6 }, async (_, w) => {
      for (let i = 0; i < 40; i++) {
        const record = `r${w}-${i}`;
        const value = `person-${w}-${i}@example.test`;
        await writeField(r, 'acme', record, 'email', value);
        written.set(record, value);
        if (i > 0) {
          const prev = `r${w}-${i - 1}`;
          assert.equal(await readField(r, 'acme', prev, 'email'), written.get(prev));
        }
      }
    });
    const rotations = (async () => {
      for (let i = 0; i < 3; i++) {
        await r.client.call('rotateTenantKey', { tenant: 'acme' });
        await r.ring.rewrapAll('acme');
        await r.client.call('rotateRootKey', {});
      }
    })();
    await Promise.all([...writers, rotations]);
    r.cache.clear();
    for (const [record, value] of written) assert.equal(await readField(r, 'acme', record, 'email'), value);
    const status = await r.client.call('tenantKeyStatus', { tenant: 'acme' });
    assert.equal(status.versions.find((v) => v.state === 'active')?.version, 4);
    // Every data key was re-wrapped by the active version, so the old ones can be retired.
    for (const v of [1, 2, 3]) await r.client.call('retireTenantKeyVersion', { tenant: 'acme', version: v });
    r.cache.clear();
    for (const [record, value] of written) assert.equal(await readField(r, 'acme', record, 'email'), value);
  });

  it('refuses a ciphertext moved to another record or tenant in the store', async () => {
    await writeField(r, 'acme', 'alice', 'email', 'alice@example.test');
    await writeField(r, 'globex', 'bob', 'email', 'bob@example.test');
    r.db
      .prepare(
        "UPDATE fields SET ct = (SELECT ct FROM fields WHERE tenant = 'acme' AND record = 'alice') WHERE tenant = 'acme' AND record = 'r0-0'",
      )
      .run();
    await assert.rejects(readField(r, 'acme', 'r0-0', 'email'), { code: 'TRESOR_ERR_DECRYPT_FAILED' });
    r.db
      .prepare(
        "UPDATE fields SET ct = (SELECT ct FROM fields WHERE tenant = 'acme' AND record = 'alice') WHERE tenant = 'globex' AND record = 'bob'",
      )
      .run();
    await assert.rejects(readField(r, 'globex', 'bob', 'email'), (err: { code?: string }) =>
      ['TRESOR_ERR_KEY_ID_UNKNOWN', 'TRESOR_ERR_DECRYPT_FAILED'].includes(err.code ?? ''),
    );
  });

  it('leaves no plaintext value and no unwrapped data key anywhere under the data and keyd folders', async () => {
    const secretValue = 'needle-7f3a9c-plaintext@example.test';
    await writeField(r, 'acme', 'needle', 'email', secretValue);
    const dataKeys: Buffer[] = [];
    for (const row of r.db.prepare('SELECT key_id, tenant, purpose, wrapped FROM data_keys').all() as {
      key_id: string;
      tenant: string;
      purpose: 'data';
      wrapped: Buffer;
    }[]) {
      const { key } = await r.client.call('unwrapDataKey', {
        tenant: row.tenant,
        purpose: row.purpose,
        keyId: row.key_id,
        wrapped: row.wrapped,
      });
      dataKeys.push(key);
    }
    assert.ok(dataKeys.length >= 2);
    r.db.pragma('wal_checkpoint(PASSIVE)');
    const files = filesUnder(r.root);
    assert.ok(files.some((f) => f.path.endsWith('tenant.sqlite-wal') || f.path.endsWith('tenant.sqlite')));
    const needles = [
      Buffer.from(secretValue),
      Buffer.from('needle-7f3a9c'),
      Buffer.from('alice@example.test'),
      Buffer.from('person-0-0@example.test'),
      ...dataKeys.flatMap((k) => [k, Buffer.from(k.toString('hex')), Buffer.from(k.toString('base64'))]),
    ];
    for (const f of files) {
      for (const n of needles)
        assert.ok(!f.bytes.includes(n), `${f.path} contains plaintext or key material`);
    }
  });

  it('makes a shredded tenant’s ciphertexts undecryptable while the other tenant still reads', async () => {
    await writeField(r, 'globex', 'carol', 'email', 'carol@example.test');
    const destroyed = await r.client.call('destroyTenantKey', { tenant: 'globex', mode: 'now' });
    assert.equal(destroyed.state, 'destroyed');
    assert.ok(destroyed.keyIdsDestroyed.length >= 1);
    r.cache.clear();
    await assert.rejects(readField(r, 'globex', 'carol', 'email'), {
      code: 'TRESOR_ERR_TENANT_KEY_DESTROYED',
    });
    assert.equal(await readField(r, 'acme', 'alice', 'email'), 'alice@example.test');
  });

  it('fails closed with 503 when keyd is gone and the key is not cached', async () => {
    await r.keyd.stop();
    r.cache.clear();
    const err = await readField(r, 'acme', 'alice', 'email').catch((e: unknown) => e);
    assert.equal((err as { code?: string }).code, 'TRESOR_ERR_KEYD_UNAVAILABLE');
    const problem = toProblem(err);
    assert.equal(problem.status, 503);
    assert.ok(!JSON.stringify(problem).includes('alice'));
  });
});
