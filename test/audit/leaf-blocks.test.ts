// backends: sqlite (the block format is the same bytes on both; the PostgreSQL migration's tables and triggers are compared in test/store/pg-schema-parity.test.ts, its reader runs in test/e2e/pg-backend-invariants.test.ts)
/**
 * The leaves stored in compressed blocks (src/audit/leaf-codec.ts, leaf-store.ts): a block gives back
 * its leaves byte for byte, says its codec, refuses what it cannot read; an earlier log's `audit_log`
 * rows are converted by the migration exactly (leaves, tenants, order); the sequencer then grows the
 * log's last block up to its 64-aligned range and no further, and the tables refuse other changes.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { sql } from 'kysely';
import { canonicalJson } from '../../src/audit/canonical.ts';
import { appendAuditEvent, auditEventsMigration, type WithAuditEvents } from '../../src/audit/event.ts';
import { auditLeafBlocksMigration } from '../../src/audit/leaf-blocks-migration.ts';
import {
  decodeLeafBlock,
  encodeLeafBlock,
  LEAF_CODEC,
  LeafBlockError,
  leafTexts,
} from '../../src/audit/leaf-codec.ts';
import { createAuditLogReader } from '../../src/audit/log.ts';
import { openAuditLogReader } from '../../src/audit/log-reader.ts';
import {
  auditLogMigration,
  auditNodesLevelsMigration,
  type WithAuditLog,
} from '../../src/audit/log-schema.ts';
import { InMemoryMerkleTree, leafHash } from '../../src/audit/merkle.ts';
import { createAuditSequencer } from '../../src/audit/sequencer.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import { readEvent } from './fixtures/outbox-rig.ts';
import { fixtureEntry } from './log-fixture.ts';

const dir = mkdtempSync(join(tmpdir(), 'tresor-leaf-blocks-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('leaf blocks', { timeout: 120_000 }, () => {
  test('a block gives back its leaves byte for byte, behind its codec byte', () => {
    const leaves = Array.from({ length: 64 }, (_, i) => canonicalJson(fixtureEntry(i)));
    leaves[3] = canonicalJson({ index: 3, note: 'ünïcödé \u2028 \\u0000 "quoted" 😀' });
    const block = encodeLeafBlock(leaves);
    assert.equal(block[0], LEAF_CODEC);
    assert.deepEqual(leafTexts(block), leaves);
    assert.deepEqual(decodeLeafBlock(block), Buffer.from(`${leaves.join('\u0000')}\u0000`, 'utf8'));
    assert.deepEqual(leafTexts(encodeLeafBlock([leaves[0] as string])), [leaves[0]]);
  });

  test('refuses an unknown codec, corrupt data, and a leaf holding U+0000', () => {
    const block = encodeLeafBlock(['{"index":0}']);
    assert.throws(() => decodeLeafBlock(Buffer.concat([Buffer.of(99), block.subarray(1)])), LeafBlockError);
    assert.throws(() => decodeLeafBlock(Buffer.of(LEAF_CODEC, 0xff, 0xff, 0xff)), LeafBlockError);
    assert.throws(() => decodeLeafBlock(Buffer.alloc(0)), LeafBlockError);
    assert.throws(() => encodeLeafBlock(['{"a":"\u0000"}']), RangeError);
  });

  test('what a leaf costs in a block of 64, with random ids (reported)', (t) => {
    const leaves = Array.from({ length: 64 }, (_, i) =>
      canonicalJson({
        ...fixtureEntry(i),
        actor: { id: `ak_${randomUUID()}`, kind: 'api-key' },
        requestId: randomUUID(),
        target: { collection: 'patients', fields: ['email', 'name'], recordIds: [`rec_${randomUUID()}`] },
      }),
    );
    const raw = leaves.reduce((n, l) => n + Buffer.byteLength(l), 0) / 64;
    const one = leaves.reduce((n, l) => n + encodeLeafBlock([l]).length, 0) / 64;
    const blocked = encodeLeafBlock(leaves).length / 64;
    t.diagnostic(
      `leaf ${raw.toFixed(0)} B; alone in a block ${one.toFixed(0)} B; in a block of 64 ${blocked.toFixed(0)} B`,
    );
    assert.ok(blocked < one && one < raw);
  });

  test('an earlier log is converted exactly; the sequencer grows the last block to its range, no further', async () => {
    const path = join(dir, 'control.sqlite');
    const OLD = {
      '0001-audit-events': auditEventsMigration,
      '0003-audit-log': auditLogMigration,
      '0016-audit-nodes-levels': auditNodesLevelsMigration,
    };
    const N = 203;
    const tenantOf = (i: number) => (i % 3 === 0 ? null : `tn_${i % 5}`);
    const tree = new InMemoryMerkleTree();
    const rows: { idx: number; tenant: string | null; leaf: string }[] = [];
    const old = await openSqliteStore<WithAuditLog>(path, OLD);
    await old.write(async (trx) => {
      for (let i = 0; i < N; i++) {
        const leaf = canonicalJson({ ...readEvent(i, tenantOf(i)), index: i });
        rows.push({ idx: i, tenant: tenantOf(i), leaf });
        tree.append(leafHash(Buffer.from(leaf, 'utf8')));
        await sql`INSERT INTO audit_log (idx, tenant, leaf) VALUES (${i}, ${tenantOf(i)}, ${leaf})`.execute(
          trx,
        );
        await sql`INSERT INTO audit_nodes (level, idx, hash) VALUES (0, ${i}, ${tree.perfectSubtreeHash(0, i)})`.execute(
          trx,
        );
      }
      for (let level = 4; 2 ** level <= N; level++)
        for (let idx = 0; (idx + 1) * 2 ** level <= N; idx++)
          await sql`INSERT INTO audit_nodes (level, idx, hash) VALUES (${level}, ${idx}, ${tree.perfectSubtreeHash(level, idx)})`.execute(
            trx,
          );
      await sql`INSERT INTO audit_cursors (source, seq) VALUES ('control', 0)`.execute(trx);
    });
    await old.close();

    const store = await openSqliteStore<WithAuditLog & WithAuditEvents>(path, {
      ...OLD,
      '0019-audit-leaf-blocks': auditLeafBlocksMigration,
    });
    try {
      const blocks = await sql<{
        idx: number;
        n: number;
      }>`SELECT idx, n FROM audit_leaves ORDER BY idx`.execute(store.db);
      assert.deepEqual(
        blocks.rows.map((b) => [b.idx, b.n]),
        [
          [0, 64],
          [64, 64],
          [128, 64],
          [192, 11],
        ],
      );
      const tables = await sql<{
        name: string;
      }>`SELECT name FROM sqlite_master WHERE name = 'audit_log'`.execute(store.db);
      assert.equal(tables.rows.length, 0, 'audit_log is gone');
      const reader = createAuditLogReader(store.db, () => N);
      const all = await reader.entries({ from: 0, limit: 1000 });
      assert.deepEqual(
        all.map((e) => [e.index, e.tenant, e.leaf]),
        rows.map((r) => [r.idx, r.tenant, r.leaf]),
      );
      assert.deepEqual(
        all.map((e) => e.leafHash),
        rows.map((_, i) => tree.perfectSubtreeHash(0, i).toString('base64')),
      );
      const tn2 = await reader.entries({ from: 10, limit: 7, tenant: 'tn_2' });
      assert.deepEqual(
        tn2.map((e) => e.index),
        rows
          .filter((r) => r.tenant === 'tn_2' && r.idx >= 10)
          .slice(0, 7)
          .map((r) => r.idx),
      );
      const none = await reader.entries({ from: 0, limit: 5, tenant: null });
      assert.deepEqual(
        none.map((e) => e.index),
        [0, 3, 6, 9, 12],
      );

      // One entry, then 60 more: the block [192, 256) grows to 64 leaves, the rest starts [256, …).
      const sequencer = createAuditSequencer({
        control: store,
        openSource: async () => store as unknown as Store<WithAuditEvents>,
        listSources: async () => [],
      });
      await sequencer.start();
      for (const count of [1, 60]) {
        await store.write(async (trx) => {
          for (let k = 0; k < count; k++)
            await appendAuditEvent(trx as never, readEvent(tree.size + k, 'tn_9'));
        });
        for (let k = 0; k < count; k++)
          tree.append(
            leafHash(
              Buffer.from(canonicalJson({ ...readEvent(tree.size, 'tn_9'), index: tree.size }), 'utf8'),
            ),
          );
        sequencer.notify('control');
        await sequencer.drain();
      }
      await sequencer.close();
      assert.deepEqual(sequencer.treeHead(), { size: N + 61, root: tree.root() });
      const after = await sql<{
        idx: number;
        n: number;
      }>`SELECT idx, n FROM audit_leaves ORDER BY idx`.execute(store.db);
      assert.deepEqual(
        after.rows.slice(3).map((b) => [b.idx, b.n]),
        [
          [192, 64],
          [256, 8],
        ],
      );
      await assert.rejects(
        sql`UPDATE audit_leaves SET n = 7 WHERE idx = 256`.execute(store.db),
        /append-only/,
      );
      await assert.rejects(
        sql`UPDATE audit_leaves SET n = 65 WHERE idx = 192`.execute(store.db),
        /append-only/,
      );
      await assert.rejects(sql`DELETE FROM audit_leaves WHERE idx = 256`.execute(store.db), /append-only/);
      await assert.rejects(sql`UPDATE audit_tenants SET tenant = 'x'`.execute(store.db), /append-only/);
      await assert.rejects(sql`DELETE FROM audit_tenant_entries`.execute(store.db), /append-only/);
    } finally {
      await store.close();
    }

    // The verifier's reader hands the same leaves, with their stored hashes, in LeafBatches.
    const file = openAuditLogReader(path);
    try {
      assert.equal(file.size(), N + 61);
      const seen: string[] = [];
      for (const e of file.entries()) {
        assert.equal(Buffer.from(e.storedLeafHash as string, 'latin1').length, 32);
        seen.push(e.leaf);
      }
      assert.deepEqual(
        seen.slice(0, N),
        rows.map((r) => r.leaf),
      );
      assert.equal(seen.length, N + 61);
    } finally {
      file.close();
    }
    const db = new Database(path, { readonly: true });
    db.close();
  });
});
