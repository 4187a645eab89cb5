// backends: sqlite postgres
/**
 * The archived end E (src/audit/archived-end.ts) as the verifier, the export and the access review
 * read it, on a real control store of each backend: 0 on a new store, the row's value once raised, 0
 * for a store of an older version without the `audit_archived` table (or its row), and an unreadable
 * store rather than a guess when the value is not whole tiles.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { readArchivedEnd } from '../../src/audit/archived-end.ts';
import { archivedEndOf } from '../../src/server/backend.ts';
import { openTestControlStore, type TestControlStore } from '../helpers/control-store.ts';

describe('the archived end of the audit log', () => {
  let store: TestControlStore;
  const fromBackend = () => archivedEndOf({ dataDir: store.dir, database: store.database });

  before(async () => {
    store = await openTestControlStore('archived-end');
  });
  after(async () => {
    await store?.close();
  });

  it('is 0 on a new store (the migration’s one row), then the row’s end_idx once pruning raised it', async () => {
    assert.equal(await readArchivedEnd(store.control.db), 0);
    assert.equal(await fromBackend(), 0);
    await sql`UPDATE audit_archived SET end_idx = 4096 WHERE id = 1`.execute(store.control.db);
    assert.equal(await readArchivedEnd(store.control.db), 4096);
    assert.equal(await fromBackend(), 4096);
  });

  it('is 0 for a store of an older version (no audit_archived table, or no row), as the CLI may read', async () => {
    await sql`DROP TABLE audit_archived`.execute(store.control.db);
    assert.equal(await readArchivedEnd(store.control.db), 0);
    assert.equal(await fromBackend(), 0);
    await sql`CREATE TABLE audit_archived (id INTEGER PRIMARY KEY CHECK (id=1), end_idx INTEGER NOT NULL)`.execute(
      store.control.db,
    );
    assert.equal(await readArchivedEnd(store.control.db), 0);
    assert.equal(await fromBackend(), 0);
  });

  it('refuses an end that is not a whole number of tiles (the table without its triggers)', async () => {
    await sql`INSERT INTO audit_archived (id, end_idx) VALUES (1, 100)`.execute(store.control.db);
    const unreadable = { code: 'TRESOR_ERR_AUDIT_STORE_UNREADABLE' };
    await assert.rejects(readArchivedEnd(store.control.db), unreadable);
    await assert.rejects(fromBackend(), unreadable);
  });
});
