/**
 * The sequencer over real SQLite files: a tenant store's outbox and a control store holding the log.
 * Large batches are canonicalised, hashed and written by the sequencer's worker thread through its own
 * connection (sequencer-thread.ts), small ones on the calling thread; both must leave exactly the
 * rows the RFC 9162 tree of the entries gives, and a failing write must change nothing, turn health
 * red and recover by itself without appending anything twice.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { sequencerOffloadOf } from '../../src/audit/audit-log.ts';
import { canonicalJson } from '../../src/audit/canonical.ts';
import {
  type AuditEvent,
  appendAuditEvent,
  auditEventsMigration,
  type WithAuditEvents,
} from '../../src/audit/event.ts';
import { auditLeafBlocksMigration } from '../../src/audit/leaf-blocks-migration.ts';
import { auditLogMigration, type WithAuditLog } from '../../src/audit/log-schema.ts';
import { InMemoryMerkleTree, leafHash } from '../../src/audit/merkle.ts';
import { type AuditSequencer, createAuditSequencer } from '../../src/audit/sequencer.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import { waitFor } from '../helpers/wait.ts';
import { readLeafRows } from './leaf-rows.ts';

const TENANT = 'ten_0123456789abcdef01234567';
const dir = mkdtempSync(join(tmpdir(), 'tresor-sequencer-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function event(i: number): AuditEvent {
  return {
    at: new Date(Date.UTC(2026, 11, 1, 9, 0, 0, i)).toISOString(),
    actor: { kind: 'api-key', id: 'ak_0123456789abcdef01234567' },
    tenant: TENANT,
    action: i % 3 === 0 ? 'record.read' : 'record.create',
    target: {
      collection: 'people',
      recordIds: [`rec_${i.toString(16).padStart(24, '0')}`],
      fields: ['email'],
    },
    outcome: 'success',
    requestId: `req-${i}`,
    // Non-ASCII and escapes: the worker and the main thread must give the same canonical bytes.
    userAgent: i % 7 === 0 ? 'agent "ü" \\ \u2028 🙂' : 'tresor-test/1',
  };
}

interface Pair {
  tenant: SqliteStore<WithAuditEvents>;
  control: SqliteStore<WithAuditLog & WithAuditEvents>;
  controlPath: string;
  sequencer: AuditSequencer;
  close(): Promise<void>;
}

let pairs = 0;
async function openPair(options: {
  worker: boolean;
  workerFrom?: number;
  failureBoundMs?: number;
}): Promise<Pair> {
  pairs += 1;
  const tenant = await openSqliteStore<WithAuditEvents>(join(dir, `tenant-${pairs}.sqlite`), {
    '0001-audit': auditEventsMigration,
  });
  const controlPath = join(dir, `control-${pairs}.sqlite`);
  const control = await openSqliteStore<WithAuditLog & WithAuditEvents>(controlPath, {
    '0001-audit-events': auditEventsMigration,
    '0003-audit-log': auditLogMigration,
    '0019-audit-leaf-blocks': auditLeafBlocksMigration,
  });
  const offload = sequencerOffloadOf(control);
  assert.ok(offload, 'a SQLite control store on a file can take the worker');
  const sequencer = createAuditSequencer({
    control,
    ...(options.worker ? { offload: { ...offload, workerFrom: options.workerFrom ?? 1 } } : {}),
    openSource: async (source) =>
      (source === 'control' ? control : tenant) as unknown as Store<WithAuditEvents>,
    listSources: async () => [TENANT],
    gatherMs: 5,
    ...(options.failureBoundMs !== undefined ? { failureBoundMs: options.failureBoundMs } : {}),
  });
  await sequencer.start();
  return {
    tenant,
    control,
    controlPath,
    sequencer,
    async close() {
      await sequencer.close();
      await tenant.close();
      await control.close();
    },
  };
}

async function appendEvents(pair: Pair, from: number, count: number): Promise<void> {
  await pair.tenant.write(async (trx) => {
    for (let i = from; i < from + count; i++) await appendAuditEvent(trx, event(i));
  });
  pair.sequencer.notify(TENANT);
}

function rowsOf(path: string) {
  const db = new Database(path, { readonly: true });
  try {
    return {
      log: readLeafRows(db),
      nodes: db.prepare('SELECT level, idx, hex(hash) AS hash FROM audit_nodes ORDER BY level, idx').all(),
      cursors: db.prepare('SELECT source, seq FROM audit_cursors ORDER BY source').all(),
    };
  } finally {
    db.close();
  }
}

/** The rows the log must hold for events 0..n-1 and the RFC 9162 root over them. */
function expected(n: number) {
  const tree = new InMemoryMerkleTree();
  const leaves: string[] = [];
  for (let i = 0; i < n; i++) {
    const leaf = canonicalJson({ ...event(i), index: i });
    leaves.push(leaf);
    tree.append(leafHash(Buffer.from(leaf, 'utf8')));
  }
  return { leaves, root: tree.root() };
}

describe('the audit sequencer', () => {
  test('the worker thread writes exactly what the main thread writes, and the RFC 9162 tree of the entries', async () => {
    const onWorker = await openPair({ worker: true, workerFrom: 64 });
    const inline = await openPair({ worker: false });
    try {
      // Batches of mixed sizes: some below workerFrom (inline), some above (worker), one above a pass.
      let next = 0;
      for (const count of [1, 5, 64, 300, 2, 5000, 63, 700]) {
        for (const pair of [onWorker, inline]) {
          await appendEvents(pair, next, count);
          await pair.sequencer.drain();
        }
        next += count;
      }
      const a = rowsOf(onWorker.controlPath);
      const b = rowsOf(inline.controlPath);
      const want = expected(next);
      assert.equal(a.log.length, next);
      assert.deepEqual(
        a.log.map((r) => r.leaf),
        want.leaves,
      );
      assert.ok(a.log.every((r, i) => r.idx === i && r.tenant === TENANT));
      assert.deepEqual(a, b, 'both threads leave the same entries, tree nodes and cursors');
      assert.deepEqual(onWorker.sequencer.treeHead(), { size: next, root: want.root });
      assert.deepEqual(inline.sequencer.treeHead(), { size: next, root: want.root });
      const stats = onWorker.sequencer.stats();
      assert.ok(stats.workerPasses >= 3 && stats.workerPasses < stats.passes, JSON.stringify(stats));
      assert.equal(inline.sequencer.stats().workerPasses, 0);
    } finally {
      await onWorker.close();
      await inline.close();
    }
  });

  test('a restart resumes from the store after worker-written passes', async () => {
    const pair = await openPair({ worker: true });
    await appendEvents(pair, 0, 500);
    await pair.sequencer.drain();
    await pair.sequencer.close();
    const again = createAuditSequencer({
      control: pair.control,
      offload: {
        ...(sequencerOffloadOf(pair.control) as NonNullable<ReturnType<typeof sequencerOffloadOf>>),
        workerFrom: 1,
      },
      openSource: async (source) =>
        (source === 'control' ? pair.control : pair.tenant) as unknown as Store<WithAuditEvents>,
      listSources: async () => [TENANT],
    });
    try {
      await again.start();
      assert.deepEqual(again.treeHead(), { size: 500, root: expected(500).root });
      await pair.tenant.write(async (trx) => {
        for (let i = 500; i < 800; i++) await appendAuditEvent(trx, event(i));
      });
      again.notify(TENANT);
      await again.drain();
      assert.deepEqual(again.treeHead(), { size: 800, root: expected(800).root });
      assert.equal(rowsOf(pair.controlPath).log.length, 800);
    } finally {
      await again.close();
      await pair.tenant.close();
      await pair.control.close();
    }
  });

  test('a write the worker cannot commit changes nothing, turns health red, and recovers without duplicates', async () => {
    const pair = await openPair({ worker: true, failureBoundMs: 50 });
    try {
      await appendEvents(pair, 0, 100);
      await pair.sequencer.drain();
      // Another connection makes every insert into the log fail, as a full disk would.
      const blocker = new Database(pair.controlPath);
      blocker.exec(
        "CREATE TRIGGER block_log BEFORE INSERT ON audit_leaves BEGIN SELECT RAISE(ABORT, 'blocked by the test'); END",
      );
      await appendEvents(pair, 100, 400);
      await waitFor('the sequencer to report the failure', async () =>
        pair.sequencer.health().ok ? undefined : true,
      );
      assert.match(pair.sequencer.health().reason ?? '', /cannot write the log/);
      assert.equal(rowsOf(pair.controlPath).log.length, 100, 'nothing of the failed pass was written');
      assert.equal(pair.sequencer.treeHead().size, 100);
      blocker.exec('DROP TRIGGER block_log');
      blocker.close();
      await waitFor('the sequencer to recover', async () =>
        pair.sequencer.treeHead().size === 500 && pair.sequencer.health().ok ? true : undefined,
      );
      const rows = rowsOf(pair.controlPath);
      assert.deepEqual(
        rows.log.map((r) => r.leaf),
        expected(500).leaves,
      );
      assert.deepEqual(pair.sequencer.treeHead().root, expected(500).root);
    } finally {
      await pair.close();
    }
  });
});
