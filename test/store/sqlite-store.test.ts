import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { appendAuditEvent, auditEventsMigration, type WithAuditEvents } from '../../src/audit/event.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';

describe('SQLite store', () => {
  it('applies migrations, commits a write with its audit event, and refuses to alter audit events', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tresor-store-'));
    try {
      const store = await openSqliteStore<WithAuditEvents>(join(dir, 's.sqlite'), {
        '0001-audit': auditEventsMigration,
      });
      await store.write((trx) =>
        appendAuditEvent(trx, {
          at: new Date().toISOString(),
          actor: { kind: 'system', id: 'test' },
          tenant: null,
          action: 'test.run',
          outcome: 'success',
        }),
      );
      const rows = await store.db.selectFrom('audit_events').selectAll().execute();
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.action, 'test.run');
      await assert.rejects(
        store.write((trx) => trx.deleteFrom('audit_events').execute()),
        /append-only/,
      );
      assert.equal((await store.db.selectFrom('audit_events').selectAll().execute()).length, 1);
      await store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SQLite files', () => {
  it('are created owner-only, WAL and shared-memory files included', async () => {
    const { statSync } = await import('node:fs');
    const { openSqlite } = await import('../../src/store/sqlite/open.ts');
    const dir = mkdtempSync(join(tmpdir(), 'tresor-mode-'));
    try {
      const db = openSqlite(join(dir, 'm.sqlite'));
      db.exec('CREATE TABLE t (a); INSERT INTO t VALUES (1)');
      for (const name of ['m.sqlite', 'm.sqlite-wal', 'm.sqlite-shm']) {
        assert.equal(statSync(join(dir, name)).mode & 0o777, 0o600, `${name} is 0600`);
      }
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
