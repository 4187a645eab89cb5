// backends: sqlite postgres
/**
 * The archived cursor and the log's DELETE triggers (src/audit/archived-cursor.ts; read by src/audit/archived-end.ts), on a control
 * store of this run's backend with every migration applied: the cursor only advances, by whole
 * tiles, and cannot be deleted or doubled; the log's tables refuse every DELETE that is not wholly
 * below it (and every node of level 8 or more), take the ones that are, and still refuse UPDATEs.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Kysely, sql } from 'kysely';
import { readArchivedEnd } from '../../src/audit/archived-end.ts';
import type { ControlDB } from '../../src/server/control-store.ts';
import { onPostgres } from '../helpers/backend.ts';
import { openTestControlStore, type TestControlStore } from '../helpers/control-store.ts';

const BLOCKS: [number, number][] = [
  [0, 64],
  [64, 64],
  [128, 64],
  [192, 64],
  [256, 64],
  [320, 10],
];
const TENANT_ENTRIES = [5, 255, 256, 300];
/** [level, idx]: level ℓ, index i covers leaves [i·2^ℓ, (i + 1)·2^ℓ). */
const NODES: [number, number][] = [
  [0, 255],
  [0, 256],
  [4, 15],
  [4, 16],
  [7, 1],
  [7, 2],
  [8, 0],
  [9, 0],
];

describe('the archived cursor and the log’s DELETE triggers', () => {
  let store: TestControlStore;
  const db = () => store.control.db as Kysely<ControlDB>;
  const run = (statement: ReturnType<typeof sql>) => store.control.write((trx) => statement.execute(trx));
  const refused = async (statement: ReturnType<typeof sql>, why: RegExp) =>
    assert.rejects(run(statement), (err: Error) => {
      assert.match(err.message, why);
      return true;
    });
  const blocks = async () =>
    (await db().selectFrom('audit_leaves').select('idx').orderBy('idx').execute()).map((r) => Number(r.idx));
  const tenantEntries = async () =>
    (await db().selectFrom('audit_tenant_entries').select('idx').orderBy('idx').execute()).map((r) =>
      Number(r.idx),
    );
  const nodes = async () =>
    (
      await db().selectFrom('audit_nodes').select(['level', 'idx']).orderBy('level').orderBy('idx').execute()
    ).map((r) => [Number(r.level), Number(r.idx)]);
  const PRUNE_REFUSED = /only its archived part may be pruned/;
  const CURSOR_REFUSED = /the archived cursor only advances by whole tiles/;

  before(async () => {
    store = await openTestControlStore('archived-cursor');
    await store.control.write(async (trx) => {
      for (const [idx, n] of BLOCKS)
        await sql`INSERT INTO audit_leaves (idx, n, block) VALUES (${idx}, ${n}, ${Buffer.from([0, idx % 256])})`.execute(
          trx,
        );
      await sql`INSERT INTO audit_tenants (ref, tenant) VALUES (1, 'ten_archived')`.execute(trx);
      for (const idx of TENANT_ENTRIES)
        await sql`INSERT INTO audit_tenant_entries (ref, idx) VALUES (1, ${idx})`.execute(trx);
      for (const [level, idx] of NODES)
        await sql`INSERT INTO audit_nodes (level, idx, hash) VALUES (${level}, ${idx}, ${Buffer.alloc(32, idx)})`.execute(
          trx,
        );
    });
  });
  after(async () => {
    await store?.close();
  });

  test('starts at 0, and below 0 nothing may be deleted', async () => {
    assert.equal(await readArchivedEnd(db()), 0);
    await refused(sql`DELETE FROM audit_leaves WHERE idx = 0`, PRUNE_REFUSED);
    await refused(sql`DELETE FROM audit_tenant_entries WHERE idx = 5`, PRUNE_REFUSED);
    await refused(sql`DELETE FROM audit_nodes WHERE level = 0 AND idx = 255`, PRUNE_REFUSED);
    assert.equal((await blocks()).length, BLOCKS.length);
  });

  test('the cursor only advances, by whole tiles; it cannot be deleted, doubled or renumbered', async () => {
    await refused(sql`UPDATE audit_archived SET end_idx = 100 WHERE id = 1`, CURSOR_REFUSED);
    await run(sql`UPDATE audit_archived SET end_idx = 256 WHERE id = 1`);
    assert.equal(await readArchivedEnd(db()), 256);
    await run(sql`UPDATE audit_archived SET end_idx = 256 WHERE id = 1`); // staying is no change
    await refused(sql`UPDATE audit_archived SET end_idx = 0 WHERE id = 1`, CURSOR_REFUSED);
    await refused(sql`UPDATE audit_archived SET id = 2 WHERE id = 1`, CURSOR_REFUSED);
    await refused(sql`DELETE FROM audit_archived`, CURSOR_REFUSED);
    await refused(sql`INSERT INTO audit_archived (id, end_idx) VALUES (2, 512)`, CURSOR_REFUSED);
    await refused(sql`INSERT INTO audit_archived (id, end_idx) VALUES (1, 512)`, CURSOR_REFUSED);
    if (onPostgres) await refused(sql`TRUNCATE audit_archived`, CURSOR_REFUSED);
    assert.equal(await readArchivedEnd(db()), 256);
  });

  test('refuses every DELETE that is not wholly below the cursor (256), nodes of level 8 and up always', async () => {
    await refused(sql`DELETE FROM audit_leaves WHERE idx = 256`, PRUNE_REFUSED);
    await refused(sql`DELETE FROM audit_leaves WHERE idx = 320`, PRUNE_REFUSED);
    await refused(sql`DELETE FROM audit_tenant_entries WHERE idx = 256`, PRUNE_REFUSED);
    for (const [level, idx] of [
      [0, 256],
      [4, 16],
      [7, 2],
      [8, 0],
      [9, 0],
    ] as const)
      await refused(sql`DELETE FROM audit_nodes WHERE level = ${level} AND idx = ${idx}`, PRUNE_REFUSED);
    // A statement that reaches one refused row deletes nothing at all.
    await refused(sql`DELETE FROM audit_leaves`, PRUNE_REFUSED);
    await refused(sql`DELETE FROM audit_nodes`, PRUNE_REFUSED);
    assert.equal((await blocks()).length, BLOCKS.length);
    assert.equal((await nodes()).length, NODES.length);
    if (onPostgres) await refused(sql`TRUNCATE audit_nodes`, /append-only/);
  });

  test('UPDATEs are refused as before, below the cursor too', async () => {
    await refused(
      sql`UPDATE audit_nodes SET hash = ${Buffer.alloc(32)} WHERE level = 0 AND idx = 255`,
      /append-only/,
    );
    await refused(sql`UPDATE audit_tenant_entries SET idx = 6 WHERE idx = 5`, /append-only/);
    await refused(sql`UPDATE audit_leaves SET n = 10 WHERE idx = 0`, /append-only/);
  });

  test('takes the DELETEs wholly below the cursor', async () => {
    await run(sql`DELETE FROM audit_leaves WHERE idx + n <= 256`);
    await run(sql`DELETE FROM audit_tenant_entries WHERE idx < 256`);
    await run(sql`DELETE FROM audit_nodes WHERE level < 8 AND (idx + 1) * ${sql.raw('(1 << level)')} <= 256`);
    assert.deepEqual(await blocks(), [256, 320]);
    assert.deepEqual(await tenantEntries(), [256, 300]);
    assert.deepEqual(await nodes(), [
      [0, 256],
      [4, 16],
      [7, 2],
      [8, 0],
      [9, 0],
    ]);
  });
});
