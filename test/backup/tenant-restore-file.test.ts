/**
 * The restored tenant store made to continue the live one (src/backup/tenant-restore-file.ts
 * carryForward), on real SQLite files of the tenant store's schema: the outbox after the swap is the
 * live outbox (the events since the backup under their own seqs, the next seq after the live ones),
 * then the restore's own event; the live key ring comes along and no reservation goes back; a file whose outbox is ahead of
 * the live one is refused and left as it was.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { type AuditEvent, appendAuditEvent } from '../../src/audit/event.ts';
import { carryForward } from '../../src/backup/tenant-restore-file.ts';
import { TresorError } from '../../src/errors.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/store.ts';
import { type TenantDB, tenantStoreMigrations } from '../../src/vault/tenant-store-schema.ts';

const event = (action: string): AuditEvent => ({
  at: new Date().toISOString(),
  actor: { kind: 'system', id: 'test' },
  tenant: 'ten_a',
  action,
  outcome: 'success',
});

describe('carrying the live store forward into a restored one', () => {
  let dir: string;
  let live: SqliteStore<TenantDB>;
  const livePath = () => join(dir, 'ten_a.sqlite');
  const scratch = () => join(dir, '.ten_a.restore-000000000000');

  const addEvents = async (store: SqliteStore<TenantDB>, n: number, prefix: string) => {
    for (let i = 0; i < n; i++) await store.write((trx) => appendAuditEvent(trx, event(`${prefix}.${i}`)));
  };
  const outbox = (path: string) => {
    const db = new Database(path, { readonly: true });
    try {
      return db.prepare('SELECT seq, action FROM audit_events ORDER BY seq').all() as {
        seq: number;
        action: string;
      }[];
    } finally {
      db.close();
    }
  };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-carry-'));
    live = await openSqliteStore<TenantDB>(livePath(), tenantStoreMigrations);
    await live.write(async (trx) => {
      await trx
        .insertInto('data_keys')
        .values({
          key_id: 'dk_1',
          tenant: 'ten_a',
          purpose: 'field',
          wrapped: Buffer.from('wrapped-at-backup'),
          state: 'active',
          created_at: new Date().toISOString(),
          reserved: 65_536,
        })
        .execute();
    });
    await addEvents(live, 3, 'before');
  });
  afterEach(async () => {
    await live.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  /** The backup: a copy of the live file now (closed, so the file is whole). */
  async function backupNow(): Promise<void> {
    await live.close();
    copyFileSync(livePath(), scratch());
    live = await openSqliteStore<TenantDB>(livePath(), tenantStoreMigrations);
  }

  it('gives the restored file the live outbox, under the same seqs, then the restore event; the next event follows', async () => {
    await backupNow();
    await addEvents(live, 4, 'after');
    // Since the backup: dk_1 rewrapped, used further and rotated out by dk_2.
    await live.write(async (trx) => {
      await trx
        .updateTable('data_keys')
        .set({ reserved: 196_608, wrapped: Buffer.from('rewrapped'), state: 'decrypt-only' })
        .where('key_id', '=', 'dk_1')
        .execute();
      await trx
        .insertInto('data_keys')
        .values({
          key_id: 'dk_2',
          tenant: 'ten_a',
          purpose: 'field',
          wrapped: Buffer.from('made-after-backup'),
          state: 'active',
          created_at: new Date().toISOString(),
          reserved: 65_536,
        })
        .execute();
    });
    const liveOutbox = outbox(livePath());
    await live.close();

    carryForward(scratch(), livePath(), event('tenant.restore'));

    const restored = outbox(scratch());
    assert.deepEqual(restored.slice(0, -1), liveOutbox, 'the live outbox, seq for seq');
    assert.deepEqual(restored.at(-1), { seq: 8, action: 'tenant.restore' });
    const reopened = await openSqliteStore<TenantDB>(scratch(), tenantStoreMigrations, {
      fileMustExist: true,
    });
    try {
      await reopened.write((trx) => appendAuditEvent(trx, event('next')));
      assert.deepEqual(outbox(scratch()).at(-1), { seq: 9, action: 'next' });
      const keys = await reopened.db.selectFrom('data_keys').selectAll().orderBy('key_id').execute();
      assert.deepEqual(
        keys.map((k) => [k.key_id, k.state, k.reserved, Buffer.from(k.wrapped).toString()]),
        [
          ['dk_1', 'decrypt-only', 196_608, 'rewrapped'],
          ['dk_2', 'active', 65_536, 'made-after-backup'],
        ],
        'the live key ring, no reservation gone back',
      );
    } finally {
      await reopened.close();
    }
  });

  it('keeps the seq counter past events the live store allocated and rolled away', async () => {
    await backupNow();
    await addEvents(live, 2, 'after');
    await live.close();
    // The live counter ahead of its last row (AUTOINCREMENT never reuses a seq).
    const db = new Database(livePath());
    db.prepare("UPDATE sqlite_sequence SET seq = 40 WHERE name = 'audit_events'").run();
    db.close();
    carryForward(scratch(), livePath(), event('tenant.restore'));
    assert.deepEqual(outbox(scratch()).at(-1), { seq: 41, action: 'tenant.restore' });
  });

  it('refuses a file whose outbox is ahead of the live one, and changes nothing', async () => {
    await addEvents(live, 2, 'more');
    await live.close();
    copyFileSync(livePath(), scratch());
    const before = outbox(scratch());
    // The "live" store is now behind the file: it is not the store the backup was taken of.
    rmSync(livePath());
    live = await openSqliteStore<TenantDB>(livePath(), tenantStoreMigrations);
    await addEvents(live, 1, 'other');
    await live.close();
    assert.throws(
      () => carryForward(scratch(), livePath(), event('tenant.restore')),
      (err: unknown) => err instanceof TresorError && err.code === 'TRESOR_ERR_RESTORE_REFUSED',
    );
    assert.deepEqual(outbox(scratch()), before);
  });
});
