// backends: sqlite (the PostgreSQL migration runs the same DELETE between the same triggers; test/store/pg-schema-parity.test.ts checks the triggers are as before on both)
/**
 * audit_nodes keeps the leaf hashes and levels ≥ 4 (src/audit/log-schema.ts, storedLevel): a log
 * written by an earlier version, with every level stored, loses its level 1–3 rows in the migration,
 * and every root, inclusion and consistency proof the reader serves afterwards is the RFC 9162 one of
 * the leaves; the sequencer restores its tree from the remaining rows and appends on.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { sql } from 'kysely';
import { canonicalJson } from '../../src/audit/canonical.ts';
import { appendAuditEvent, auditEventsMigration, type WithAuditEvents } from '../../src/audit/event.ts';
import { auditLeafBlocksMigration } from '../../src/audit/leaf-blocks-migration.ts';
import { createAuditLogReader } from '../../src/audit/log.ts';
import {
  auditLogMigration,
  auditNodesLevelsMigration,
  type WithAuditLog,
} from '../../src/audit/log-schema.ts';
import { InMemoryMerkleTree, leafHash, verifyConsistency, verifyInclusion } from '../../src/audit/merkle.ts';
import { createAuditSequencer } from '../../src/audit/sequencer.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import { readEvent } from './fixtures/outbox-rig.ts';

const dir = mkdtempSync(join(tmpdir(), 'tresor-nodes-levels-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const path = join(dir, 'control.sqlite');
const OLD = { '0001-audit-events': auditEventsMigration, '0003-audit-log': auditLogMigration };
const N = 203;

describe('audit_nodes without levels 1–3', () => {
  test('an earlier log loses its level 1–3 rows, and every proof still holds', async () => {
    // The earlier version's log: every leaf and every perfect subtree of every level.
    const tree = new InMemoryMerkleTree();
    const leaves: Buffer[] = [];
    const old = await openSqliteStore<WithAuditLog>(path, OLD);
    await old.write(async (trx) => {
      for (let i = 0; i < N; i++) {
        const leaf = canonicalJson({ ...readEvent(i, null), index: i });
        leaves.push(Buffer.from(leaf, 'utf8'));
        tree.append(leafHash(Buffer.from(leaf, 'utf8')));
        await sql`INSERT INTO audit_log (idx, tenant, leaf) VALUES (${i}, NULL, ${leaf})`.execute(trx);
      }
      for (let level = 0; 2 ** level <= N; level++)
        for (let idx = 0; (idx + 1) * 2 ** level <= N; idx++)
          await sql`INSERT INTO audit_nodes (level, idx, hash) VALUES (${level}, ${idx}, ${tree.perfectSubtreeHash(level, idx)})`.execute(
            trx,
          );
      await sql`INSERT INTO audit_cursors (source, seq) VALUES ('control', 0)`.execute(trx);
    });
    await old.close();

    const store = await openSqliteStore<WithAuditLog & WithAuditEvents>(path, {
      ...OLD,
      '0016-audit-nodes-levels': auditNodesLevelsMigration,
      '0019-audit-leaf-blocks': auditLeafBlocksMigration,
    });
    try {
      const levels = await sql<{
        level: number;
        n: number;
      }>`SELECT level, count(*) AS n FROM audit_nodes GROUP BY level ORDER BY level`.execute(store.db);
      assert.deepEqual(
        levels.rows.map((r) => r.level),
        [0, 4, 5, 6, 7],
        'levels 1–3 are gone, the others kept',
      );
      assert.equal(levels.rows[0]?.n, N);
      await assert.rejects(sql`DELETE FROM audit_nodes`.execute(store.db), /append-only/);

      const reader = createAuditLogReader(store.db, () => N);
      for (const size of [1, 2, 3, 7, 8, 9, 15, 16, 17, 100, N]) {
        const root = await reader.rootAt(size);
        const want = new InMemoryMerkleTree();
        for (const leaf of leaves.slice(0, size)) want.append(leafHash(leaf));
        assert.deepEqual(root, want.root(), `root at ${size}`);
        for (const index of [0, size - 1, Math.floor(size / 2)]) {
          const proof = await reader.inclusion(index, size);
          assert.ok(
            verifyInclusion(leafHash(leaves[index] as Buffer), index, size, proof, root),
            `inclusion ${index}/${size}`,
          );
        }
        if (size < N) {
          const proof = await reader.consistency(size, N);
          assert.ok(verifyConsistency(size, N, proof, root, tree.root()), `consistency ${size}→${N}`);
        }
      }

      // The sequencer restores its tree from the rows left (peaks of level 1–3 recomputed) and appends on.
      await store.write((trx) => appendAuditEvent(trx as never, readEvent(N, null)));
      const sequencer = createAuditSequencer({
        control: store,
        openSource: async () => store as unknown as Store<WithAuditEvents>,
        listSources: async () => [],
      });
      await sequencer.start();
      await sequencer.drain();
      await sequencer.close();
      tree.append(leafHash(Buffer.from(canonicalJson({ ...readEvent(N, null), index: N }), 'utf8')));
      assert.deepEqual(sequencer.treeHead(), { size: N + 1, root: tree.root() });
      assert.deepEqual(await createAuditLogReader(store.db, () => N + 1).rootAt(N + 1), tree.root());
    } finally {
      await store.close();
    }
  });
});
