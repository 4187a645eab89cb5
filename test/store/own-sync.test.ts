// backends: sqlite (the SQLite store's own fdatasync of its WAL; PostgreSQL commits with its own WAL flush)
/**
 * A store with `ownSync` (the tenant stores) runs synchronous=NORMAL and fdatasyncs its WAL itself,
 * off the event loop, after each batch's COMMIT. These tests hold or fail that fdatasync (the
 * store's `aroundWalSync` option) and check, without timing anything:
 * - a write resolves only after the fdatasync covering its COMMIT completed; a read of the
 *   committed row returns only then too (durable()); the store's next batch waits for it;
 * - a failed fdatasync rejects every job of its batch and leaves the store unusable (writes, reads,
 *   durable() and healthy() fail) until it is reopened;
 * - the audit sequencer does not move an outbox row whose commit is not yet durable.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import {
  type AuditEvent,
  appendAuditEvent,
  auditEventsMigration,
  type WithAuditEvents,
} from '../../src/audit/event.ts';
import { auditLeafBlocksMigration } from '../../src/audit/leaf-blocks-migration.ts';
import { leafTexts } from '../../src/audit/leaf-codec.ts';
import { auditLogMigration, type WithAuditLog } from '../../src/audit/log-schema.ts';
import { createAuditSequencer } from '../../src/audit/sequencer.ts';
import { TresorError } from '../../src/errors.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { AroundWalSync } from '../../src/store/sqlite/wal-sync.ts';
import type { Store } from '../../src/store/types.ts';
import { waitFor } from '../helpers/wait.ts';
import { insertRecord, RECORDS_MIGRATIONS, type RecordsDb } from './fixtures/records.ts';

const dir = mkdtempSync(join(tmpdir(), 'tresor-own-sync-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** An fdatasync the test holds: `entered` once a sync is waiting, `release()` lets it run. */
function heldSync() {
  let holding = false;
  let completed = 0;
  let entered: () => void = () => {};
  let release: () => void = () => {};
  const around: AroundWalSync = async (sync) => {
    if (holding) {
      holding = false;
      const released = new Promise<void>((r) => {
        release = r;
      });
      entered();
      await released;
    }
    await sync();
    completed++;
  };
  return {
    around,
    completed: () => completed,
    /** The next fdatasync will be held; resolves once it is waiting. */
    holdNext(): Promise<void> {
      holding = true;
      return new Promise<void>((r) => {
        entered = r;
      });
    },
    release: () => release(),
  };
}

function committedIds(path: string): string[] {
  // A plain SQLite connection of the test's own: it sees what is committed, durable or not.
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT id FROM records ORDER BY id').all() as { id: string }[]).map((r) => r.id);
  } finally {
    db.close();
  }
}

describe("a store's own fdatasync of its WAL (ownSync)", () => {
  it('a write and a read of it resolve only after the fdatasync covering its COMMIT completed; the next batch waits for it', async () => {
    const path = join(dir, 'held.sqlite');
    const held = heldSync();
    const store = await openSqliteStore<RecordsDb>(path, RECORDS_MIGRATIONS, {
      ownSync: true,
      aroundWalSync: held.around,
    });
    try {
      assert.equal(held.completed(), 1, 'the WAL was fdatasynced once at open');
      const entered = held.holdNext();
      let syncedWhenWritten: number | undefined;
      const written = store
        .write((trx) => insertRecord(trx, 'a1', 'v'))
        .then((id) => {
          syncedWhenWritten = held.completed();
          return id;
        });
      await entered;
      assert.deepEqual(
        committedIds(path),
        ['a1'],
        'committed (visible to SQLite) while its fdatasync is held',
      );
      assert.equal(syncedWhenWritten, undefined, 'the write has not resolved');

      let syncedWhenRead: number | undefined;
      const read = store.db
        .selectFrom('records')
        .select('id')
        .execute()
        .then((rows) => {
          syncedWhenRead = held.completed();
          return rows.map((r) => r.id);
        });
      let syncedWhenDurable: number | undefined;
      const durable = store.durable().then(() => {
        syncedWhenDurable = held.completed();
      });
      await waitFor('the read to wait for the fdatasync', async () =>
        store.stats().readsWaitingForSync > 0 ? true : undefined,
      );
      // A write requested now must go into a batch of its own, after the held fdatasync.
      const next = store.write((trx) => insertRecord(trx, 'b1', 'v'));
      assert.deepEqual(committedIds(path), ['a1'], 'no next batch commits while the fdatasync is in flight');

      held.release();
      assert.equal(await written, 'a1');
      assert.deepEqual(await read, ['a1']);
      await durable;
      assert.equal(syncedWhenWritten, 2, 'the write resolved after the fdatasync completed');
      assert.equal(syncedWhenRead, 2, 'the read returned after the fdatasync completed');
      assert.equal(syncedWhenDurable, 2, 'durable() resolved after the fdatasync completed');
      assert.equal(await next, 'b1');
      assert.equal(held.completed(), 3, 'the next batch had an fdatasync of its own');
      await store.durable(); // nothing in flight: resolves at once
    } finally {
      await store.close();
    }
  });

  it('a failed fdatasync rejects its whole batch and makes the store unusable until reopened', async () => {
    const path = join(dir, 'failing.sqlite');
    let fail = false;
    const store = await openSqliteStore<RecordsDb>(path, RECORDS_MIGRATIONS, {
      ownSync: true,
      aroundWalSync: async (sync) => {
        if (fail) throw Object.assign(new Error('injected fdatasync failure'), { code: 'EIO' });
        await sync();
      },
    });
    try {
      assert.equal(await store.healthy(), true);
      fail = true;
      const batch = await Promise.allSettled(
        ['a1', 'a2', 'a3'].map((id) => store.write((trx) => insertRecord(trx, id, 'v'))),
      );
      for (const result of batch) {
        assert.equal(result.status, 'rejected');
        assert.ok(result.reason instanceof TresorError);
        assert.equal(result.reason.code, 'TRESOR_ERR_UNAVAILABLE');
      }
      fail = false; // a later fdatasync would succeed: the store must not trust it (fsyncgate)
      assert.equal(await store.healthy(), false, 'unhealthy after the failed fdatasync');
      await assert.rejects(
        store.write((trx) => insertRecord(trx, 'b1', 'v')),
        { code: 'TRESOR_ERR_UNAVAILABLE' },
      );
      await assert.rejects(store.db.selectFrom('records').select('id').execute(), {
        code: 'TRESOR_ERR_UNAVAILABLE',
      });
      await assert.rejects(store.durable(), { code: 'TRESOR_ERR_UNAVAILABLE' });
      assert.equal(store.stats().lastFailure, 'EIO');
    } finally {
      await store.close();
    }
    const reopened = await openSqliteStore<RecordsDb>(path, RECORDS_MIGRATIONS, { ownSync: true });
    try {
      assert.equal(
        await reopened.healthy(),
        true,
        'reopened (and its WAL fdatasynced at open), it takes writes',
      );
      assert.equal(await reopened.write((trx) => insertRecord(trx, 'c1', 'v')), 'c1');
    } finally {
      await reopened.close();
    }
  });

  it('the audit sequencer does not move an outbox row whose commit is not yet durable', async () => {
    const TENANT = 'ten_0123456789abcdef01234567';
    const held = heldSync();
    const tenant = await openSqliteStore<WithAuditEvents>(
      join(dir, 'seq-tenant.sqlite'),
      { '0001-audit': auditEventsMigration },
      { ownSync: true, aroundWalSync: held.around },
    );
    const controlPath = join(dir, 'seq-control.sqlite');
    const control = await openSqliteStore<WithAuditLog & WithAuditEvents>(controlPath, {
      '0001-audit-events': auditEventsMigration,
      '0003-audit-log': auditLogMigration,
      '0019-audit-leaf-blocks': auditLeafBlocksMigration,
    });
    const sequencer = createAuditSequencer({
      control,
      openSource: async (source) =>
        (source === 'control' ? control : tenant) as unknown as Store<WithAuditEvents>,
      listSources: async () => [TENANT],
      gatherMs: 1,
    });
    const event = (requestId: string): AuditEvent => ({
      at: new Date(Date.UTC(2026, 11, 1)).toISOString(),
      actor: { kind: 'system', id: 'test' },
      tenant: TENANT,
      action: 'record.create',
      target: { collection: 'people', recordIds: ['rec_0123456789abcdef01234567'] },
      outcome: 'success',
      requestId,
    });
    const logged = () => {
      const db = new Database(controlPath, { readonly: true, fileMustExist: true });
      try {
        return (db.prepare('SELECT block FROM audit_leaves ORDER BY idx').all() as { block: Buffer }[])
          .flatMap((r) => leafTexts(r.block))
          .map((leaf) => (JSON.parse(leaf) as { requestId?: string }).requestId);
      } finally {
        db.close();
      }
    };
    try {
      await sequencer.start();
      await tenant.write((trx) => appendAuditEvent(trx, event('req-durable')));
      sequencer.notify(TENANT);
      await sequencer.drain(TENANT);
      assert.deepEqual(logged(), ['req-durable']);

      const entered = held.holdNext();
      const written = tenant.write((trx) => appendAuditEvent(trx, event('req-held')));
      await entered; // committed to the outbox, its fdatasync held
      sequencer.notify(TENANT);
      const drained = sequencer.drain(TENANT);
      await waitFor('the sequencer to read the outbox and wait for its fdatasync', async () =>
        tenant.stats().readsWaitingForSync > 0 ? true : undefined,
      );
      assert.deepEqual(logged(), ['req-durable'], 'the not yet durable row is not in the log');
      held.release();
      await written;
      await drained;
      assert.deepEqual(logged(), ['req-durable', 'req-held'], 'moved once durable');
    } finally {
      held.release();
      await sequencer.close();
      await tenant.close();
      await control.close();
    }
  });
});
