import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import Database from 'better-sqlite3';
import { GENESIS_HASH, type OpsLogDraft, opsLogHash } from '../../src/keyd/ops-log.ts';
import {
  KEY_STORE_FILE,
  openSqliteKeyStore,
  type SqliteKeyStore,
  type TenantKeyRecord,
  type TenantRecord,
} from '../../src/keyd/store.ts';

const AT = '2026-03-01T00:00:00.000Z';

function draft(op: string, extra: Partial<OpsLogDraft> = {}): OpsLogDraft {
  return { at: AT, caller: 'test', op, tenant: null, keyId: null, outcome: 'ok', detail: null, ...extra };
}

function tenantRecord(id: string): TenantRecord {
  return { id, state: 'active', createdAt: AT, destroyAfter: null, destroyedAt: null };
}

function keyRecord(tenant: string, version: number, fill = version): TenantKeyRecord {
  return {
    tenant,
    version,
    keyId: `tk.${tenant}.v${version}`,
    state: 'active',
    rootVersion: 1,
    wrapped: Buffer.alloc(80, fill),
    createdAt: AT,
    rotateAfter: null,
    encryptions: 0,
    reserved: 0,
  };
}

class Folder {
  readonly dir = mkdtempSync(join(tmpdir(), 'tresor-keystore-'));
  store!: SqliteKeyStore;

  static open(t: TestContext): Folder {
    const f = new Folder();
    f.store = openSqliteKeyStore(f.dir);
    t.after(async () => {
      await f.store.close();
      rmSync(f.dir, { recursive: true, force: true });
    });
    return f;
  }

  get path(): string {
    return join(this.dir, KEY_STORE_FILE);
  }

  walBytes(): number {
    const wal = `${this.path}-wal`;
    return existsSync(wal) ? statSync(wal).size : 0;
  }

  /** Closes the store, runs `fn` on a separate connection, reopens. */
  async offline<T>(fn: (db: Database.Database) => T): Promise<T> {
    await this.store.close();
    const db = new Database(this.path);
    try {
      return fn(db);
    } finally {
      db.close();
      this.store = openSqliteKeyStore(this.dir);
    }
  }
}

describe('keyd store: file and schema', () => {
  test('opens with WAL, synchronous=FULL, secure_delete, foreign keys and an exclusive lock, in a 0600 file', (t) => {
    const f = Folder.open(t);
    assert.deepEqual(f.store.settings(), {
      journalMode: 'wal',
      synchronous: 2,
      secureDelete: 1,
      foreignKeys: 1,
      lockingMode: 'exclusive',
    });
    assert.equal(statSync(f.path).mode & 0o777, 0o600);
  });

  test('a second keyd on the same store is refused', (t) => {
    const f = Folder.open(t);
    assert.throws(() => openSqliteKeyStore(f.dir), { code: 'TRESOR_ERR_CONFIG_INVALID' });
  });

  test('records each schema version once, and refuses a store written by a newer keyd', async (t) => {
    const f = Folder.open(t);
    const versions = await f.offline((db) => db.prepare('SELECT version FROM schema_version').all());
    assert.deepEqual(versions, [
      { version: 1 },
      { version: 2 },
      { version: 3 },
      { version: 4 },
      { version: 5 },
    ]);
    await f.store.close();
    const db = new Database(f.path);
    db.prepare('INSERT INTO schema_version VALUES (99, ?)').run(AT);
    db.close();
    assert.throws(() => openSqliteKeyStore(f.dir), {
      code: 'TRESOR_ERR_STORE_CORRUPT',
      message: /schema version 99 is newer/,
    });
    f.store = openSqliteKeyStore(join(f.dir, 'fresh')); // for the after hook
  });

  test('the schema keeps wrapped blobs consistent with key states and allows one active version per tenant', async (t) => {
    const f = Folder.open(t);
    await f.store.createTenant(tenantRecord('acme'), keyRecord('acme', 1), draft('createTenantKey'));
    await f.offline((db) => {
      const insert = db.prepare(
        `INSERT INTO tenant_keys (tenant, version, key_id, state, root_version, wrapped, created_at)
         VALUES ('acme', ?, ?, ?, ?, ?, '${AT}')`,
      );
      assert.throws(() => insert.run(2, 'k2', 'active', 1, Buffer.alloc(8)), /UNIQUE/);
      assert.throws(() => insert.run(2, 'k2', 'retired', 1, Buffer.alloc(8)), /CHECK/);
      assert.throws(() => insert.run(2, 'k2', 'decrypt-only', null, Buffer.alloc(8)), /CHECK/);
      db.pragma('foreign_keys = ON');
      assert.throws(
        () =>
          db
            .prepare(
              `INSERT INTO tenant_keys (tenant, version, key_id, state, root_version, wrapped, created_at)
               VALUES ('ghost', 1, 'g1', 'active', 1, x'00', '${AT}')`,
            )
            .run(),
        /FOREIGN KEY/,
      );
    });
  });
});

describe('keyd store: operations log', () => {
  test('UPDATE and DELETE on ops_log are refused by triggers', async (t) => {
    const f = Folder.open(t);
    await f.store.appendOps(draft('status'));
    await f.offline((db) => {
      assert.throws(() => db.prepare(`UPDATE ops_log SET op = 'x'`).run(), /ops_log is append-only/);
      assert.throws(() => db.prepare('DELETE FROM ops_log').run(), /ops_log is append-only/);
      assert.equal((db.prepare('SELECT count(*) AS n FROM ops_log').get() as { n: number }).n, 1);
    });
  });

  test('entries are numbered from 1 and chained by SHA-256 over the previous hash', async (t) => {
    const f = Folder.open(t);
    const first = await f.store.appendOps(draft('status', { detail: 'line\nbreak' }));
    const second = await f.store.appendOps(draft('health', { tenant: 'acme', outcome: 'error' }));
    assert.equal(first.seq, 1);
    assert.equal(first.detail, 'line break', 'details are kept on one line');
    assert.equal(first.hash, opsLogHash(GENESIS_HASH, 1, first));
    assert.equal(second.hash, opsLogHash(first.hash, 2, second));
    assert.deepEqual(await f.store.readOpsLog(1, 10), [first, second]);
    assert.deepEqual(await f.store.verifyOpsLog(), { ok: true, entries: 2, headHash: second.hash });
  });

  test('the chain continues across a reopen', async (t) => {
    const f = Folder.open(t);
    await f.store.appendOps(draft('a'));
    const b = await f.store.appendOps(draft('b'));
    await f.store.close();
    f.store = openSqliteKeyStore(f.dir);
    const c = await f.store.appendOps(draft('c'));
    assert.equal(c.seq, 3);
    assert.equal(c.hash, opsLogHash(b.hash, 3, c));
    assert.equal((await f.store.verifyOpsLog()).ok, true);
  });

  test('group commit: 500 concurrent entries are written in one transaction, not one fsync each', async (t) => {
    const f = Folder.open(t);
    await f.store.appendOps(draft('warm-up'));
    const before = f.walBytes();
    const entries = await Promise.all(
      Array.from({ length: 500 }, (_, i) => f.store.appendOps(draft(`op${i}`))),
    );
    assert.deepEqual(
      entries.map((e) => e.seq),
      Array.from({ length: 500 }, (_, i) => i + 2),
    );
    // One commit of 500 small rows writes a few dozen pages; 500 commits would write at least 500.
    const pages = (f.walBytes() - before) / (4096 + 24);
    assert.ok(pages < 100, `the WAL grew by ${pages} pages`);
    assert.equal((await f.store.verifyOpsLog()).ok, true);
  });

  test('encryption counts are committed with their entries', async (t) => {
    const f = Folder.open(t);
    await f.store.createTenant(tenantRecord('acme'), keyRecord('acme', 1), draft('createTenantKey'));
    const counted = { tenant: 'acme', version: 1, count: 1 };
    await Promise.all([
      f.store.appendOps(draft('generateDataKey'), counted),
      f.store.appendOps(draft('generateDataKey'), counted),
      f.store.appendOps(draft('unwrapDataKey')),
    ]);
    await f.store.close();
    f.store = openSqliteKeyStore(f.dir);
    assert.equal((await f.store.getTenant('acme'))?.keys[0]?.encryptions, 2);
  });

  test('verifyOpsLog reports where an entry was deleted', async (t) => {
    const f = Folder.open(t);
    for (const op of ['a', 'b', 'c', 'd']) await f.store.appendOps(draft(op));
    await f.offline((db) => {
      db.exec('DROP TRIGGER ops_log_no_delete');
      db.prepare('DELETE FROM ops_log WHERE seq = 2').run();
    });
    assert.deepEqual(await f.store.verifyOpsLog(), {
      ok: false,
      entries: 1,
      firstBadSeq: 3,
      reason: 'expected seq 2: an entry is missing or out of order',
    });
  });
});

describe('keyd store: atomic changes', () => {
  test('a refused change rolls back alone: queued entries still commit and the change leaves no entry', async (t) => {
    const f = Folder.open(t);
    await f.store.createTenant(tenantRecord('acme'), keyRecord('acme', 1), draft('createTenantKey'));
    const queued = f.store.appendOps(draft('unwrapDataKey'));
    await assert.rejects(
      f.store.addTenantKeyVersion(keyRecord('acme', 5), draft('rotateTenantKey')),
      /not the next version/,
    );
    assert.equal((await queued).seq, 2);
    const view = await f.store.getTenant('acme');
    assert.deepEqual(
      view?.keys.map((k) => [k.version, k.state]),
      [[1, 'active']],
    );
    assert.deepEqual(
      (await f.store.readOpsLog(1, 10)).map((e) => e.op),
      ['createTenantKey', 'unwrapDataKey'],
    );
  });

  test('addTenantKeyVersion makes the new version active and the previous one decrypt-only, together', async (t) => {
    const f = Folder.open(t);
    await f.store.createTenant(tenantRecord('acme'), keyRecord('acme', 1), draft('createTenantKey'));
    await f.store.addTenantKeyVersion(keyRecord('acme', 2), draft('rotateTenantKey'));
    const view = await f.store.getTenant('acme');
    assert.deepEqual(
      view?.keys.map((k) => [k.version, k.state]),
      [
        [1, 'decrypt-only'],
        [2, 'active'],
      ],
    );
  });

  test('destroyTenant zeroes and erases every wrapped version, returns their key ids and empties the WAL', async (t) => {
    const f = Folder.open(t);
    await f.store.createTenant(tenantRecord('acme'), keyRecord('acme', 1, 0xa1), draft('createTenantKey'));
    await f.store.addTenantKeyVersion(keyRecord('acme', 2, 0xa2), draft('rotateTenantKey'));
    await f.store.createTenant(
      tenantRecord('globex'),
      keyRecord('globex', 1, 0xb1),
      draft('createTenantKey'),
    );
    const keyIds = await f.store.destroyTenant('acme', AT, draft('destroyTenantKey'));
    assert.deepEqual(keyIds, ['tk.acme.v1', 'tk.acme.v2']);
    assert.equal(f.walBytes(), 0, 'wal_checkpoint(TRUNCATE) emptied the WAL');
    const view = await f.store.getTenant('acme');
    assert.equal(view?.tenant.state, 'destroyed');
    assert.equal(view?.tenant.destroyedAt, AT);
    assert.ok(
      view?.keys.every((k) => k.state === 'destroyed' && k.wrapped === null && k.rootVersion === null),
    );
    assert.equal((await f.store.getTenant('globex'))?.keys[0]?.wrapped?.length, 80);
    await assert.rejects(f.store.destroyTenant('acme', AT, draft('destroyTenantKey')), /already destroyed/);
  });

  test('rewrapRootRows changes every row or none', async (t) => {
    const f = Folder.open(t);
    await f.store.createTenant(tenantRecord('acme'), keyRecord('acme', 1), draft('createTenantKey'));
    await f.store.createTenant(tenantRecord('globex'), keyRecord('globex', 1), draft('createTenantKey'));
    await assert.rejects(
      f.store.rewrapRootRows(
        2,
        (row) => {
          if (row.table === 'tenant_keys' && row.tenant === 'globex') throw new Error('cannot unwrap');
          return { rootVersion: 2, wrapped: Buffer.alloc(80, 0xee) };
        },
        (n) => draft('rotateRootKey', { detail: `${n}` }),
      ),
    );
    assert.equal(await f.store.countRootVersionUse(1), 2);
    assert.equal(await f.store.countRootVersionUse(2), 0);
    const n = await f.store.rewrapRootRows(
      2,
      () => ({ rootVersion: 2, wrapped: Buffer.alloc(80, 0xee) }),
      (count) => draft('rotateRootKey', { detail: `${count} rewrapped` }),
    );
    assert.equal(n, 2);
    assert.equal(await f.store.countRootVersionUse(1), 0);
    const log = await f.store.readOpsLog(1, 10);
    assert.deepEqual(
      log.map((e) => [e.op, e.detail]),
      [
        ['createTenantKey', null],
        ['createTenantKey', null],
        ['rotateRootKey', '2 rewrapped'],
      ],
    );
  });
});
