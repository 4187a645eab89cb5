// backends: sqlite postgres
// drill: a deployment with a pruned audit log restored
/**
 * Issue 19, a backup of a PRUNED audit log: a real stack (keyd child process, the server in process,
 * this run's backend) with archiving and pruning on (`audit.archiveKeepEntries` small, one tile per
 * segment, the archive job every 300 ms) on one folder destination. Once the archived cursor E is
 * past 0 — entries [0, E) are only in the sealed segments — `tresor backup now --wait` takes a
 * backup whose trial restore passes (its audit check reads [0, E) from the segments through keyd:
 * on SQLite the worker asks the event loop for it). `tresor restore` brings it into a NEW data folder
 * (PostgreSQL: a fresh empty database) and verifies the restored log with the segments; `tresor
 * audit verify` of the restored deployment passes with the segments copied to its own destination;
 * without the segments the restored log's check fails, never passes on its live rows; a restore
 * from a copy of the destination with a tampered segment is refused and leaves nothing.
 */
import assert from 'node:assert/strict';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Kysely } from 'kysely';
import { readArchivedEnd, readArchivedEndOfFile, readArchivedEndOfPg } from '../../src/audit/archived-end.ts';
import { type AuditEvent, appendAuditEvent } from '../../src/audit/event.ts';
import { segmentObjectKey } from '../../src/audit/segment.ts';
import type { BackupManifest } from '../../src/backup/index.ts';
import { CONTROL_SCHEMA, type ControlDB, controlStorePath } from '../../src/server/control-store.ts';
import { pgDatabaseEmptyAt } from '../../src/server/pg-restore-database.ts';
import { checkRestoredLog, pgRestoredLog, sqliteRestoredLog } from '../../src/server/restored-audit.ts';
import { exited, type Run, tresor } from '../cli/cli-run.ts';
import { onPostgres } from '../helpers/backend.ts';
import { backupNow } from '../helpers/backup-now.ts';
import { type FreshPgDatabase, freshPgDatabase, testPgPrefix } from '../helpers/pg.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const KEEP = 40;
const FIRST_SEGMENT = 'audit.0000000000000000-0000000000000256';

function event(i: number): AuditEvent {
  return {
    at: new Date(Date.UTC(2026, 11, 7, 10, 0, 0, i)).toISOString(),
    actor: { kind: 'system', id: 'pruned-restore-test' },
    tenant: null,
    action: 'system.job',
    target: { n: i },
    outcome: 'success',
  };
}

describe('a backup of a pruned audit log restores, and its trial restore passes', () => {
  let base: string;
  let s: TresorStack;
  let folder: string;
  let backupId: string;
  let manifest: BackupManifest;
  let publicKey: string;
  const databases: FreshPgDatabase[] = [];

  /** Where a restore goes: a new data folder, or on PostgreSQL a fresh empty database. */
  const restoreTarget = async (
    dir: string,
  ): Promise<{ args: string[]; env: NodeJS.ProcessEnv; url?: string; empty(): Promise<boolean> }> => {
    if (!onPostgres) return { args: ['--to', dir], env: {}, empty: async () => !existsSync(dir) };
    const db = await freshPgDatabase({ prefix: testPgPrefix('tresor_test') });
    databases.push(db);
    return {
      args: ['--database-url', db.url],
      env: { TRESOR_DATABASE_URL: db.url },
      url: db.url,
      empty: () => pgDatabaseEmptyAt(db.url),
    };
  };
  const cli = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> => tresor(args, { env });
  const destinations = (path: string) => JSON.stringify([{ name: 'c', kind: 'folder', path }]);

  before(async () => {
    base = mkdtempSync(join(tmpdir(), 'tresor-pruned-restore-'));
    folder = join(base, 'dest-a');
    s = await startTresorStack({
      server: 'in-process',
      dataDir: join(base, 'data'),
      logLevel: 'warn',
      env: {
        TRESOR_BACKUP_INTERVAL_MINUTES: '0',
        TRESOR_AUDIT_ARCHIVE_KEEP_ENTRIES: String(KEEP),
        TRESOR_AUDIT_ARCHIVE_SEGMENT_TILES: '1',
        TRESOR_AUDIT_ARCHIVE_PRUNE: 'true',
        TRESOR_BACKUP_DESTINATIONS: JSON.stringify([{ name: 'a', kind: 'folder', path: folder }]),
      },
      serverOptions: { archiveIntervalMs: 300 },
    });
  });

  after(async () => {
    await s?.stop();
    for (const db of databases) await db.drop().catch(() => undefined);
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it('prunes the live log, then backs it up: the trial restore reads the pruned part from the segments', {
    timeout: 300_000,
  }, async () => {
    const server = s.server;
    assert.ok(server);
    const db = server.control.db as Kysely<ControlDB>;
    for (let at = 0; at < 400; at += 100)
      await server.control.write(async (trx) => {
        for (let i = at; i < at + 100; i++) await appendAuditEvent(trx, event(i));
      });
    const end = await waitFor(
      'the archived cursor past 0',
      async () => {
        const cursor = await readArchivedEnd(db);
        return cursor > 0 ? cursor : undefined;
      },
      { timeoutMs: 120_000 },
    );
    assert.ok(end >= 256, `E = ${end}`);
    const pub = await s.request('GET', '/v1/audit/public-key');
    assert.equal(pub.status, 200, pub.text);
    publicKey = pub.text.trim();

    const { run: now, backup } = await backupNow({ stack: s, dir: base });
    assert.equal(backup.outcome, 'done', now.stdout);
    assert.equal(backup.verification?.result, 'passed', `the trial restore of a pruned log: ${now.stdout}`);
    backupId = backup.id;
    manifest = JSON.parse(readFileSync(join(folder, backupId, 'manifest.json'), 'utf8')) as BackupManifest;
    assert.equal(manifest.auditSegments?.[0]?.id, FIRST_SEGMENT);
  });

  it('`tresor restore` verifies the pruned log with the segments; `tresor audit verify` of the restored deployment passes', {
    timeout: 300_000,
  }, async () => {
    assert.ok(backupId, 'the backup of the first test');
    const third = join(base, 'dest-c');
    mkdirSync(third, { mode: 0o700 });
    const dataDir = join(base, 'restored');
    const target = await restoreTarget(dataDir);
    const run = exited(
      await cli(
        [
          'restore',
          '--keyd-socket',
          s.keydSocket,
          '--json',
          '--from',
          folder,
          '--backup',
          backupId,
          ...target.args,
        ],
        { TRESOR_BACKUP_DESTINATIONS: destinations(third) },
      ),
      0,
    );
    const done = JSON.parse(run.stdout) as {
      audit: { size: number; checkpointSize: number };
      auditSegments: { copied: { destination: string; segments: string[] }[] };
    };
    assert.ok(done.auditSegments.copied[0]?.segments.includes(FIRST_SEGMENT));
    assert.equal(await target.empty(), false, 'the data folder (database) is there');

    // The restored store is pruned: its live rows start at E > 0.
    const restoredLog =
      target.url === undefined
        ? sqliteRestoredLog(dataDir)
        : pgRestoredLog({ url: target.url, shown: 'restored', schema: CONTROL_SCHEMA });
    const end =
      target.url === undefined
        ? readArchivedEndOfFile(controlStorePath(dataDir))
        : await readArchivedEndOfPg({ url: target.url, shown: 'restored', schema: CONTROL_SCHEMA });
    assert.ok(end >= 256, `the restored store's archived end ${end}`);
    assert.ok(done.audit.size > end && done.audit.checkpointSize > 0);

    // Without the segments the check fails, naming the archived range: never a pass on live rows.
    const keys = await s.keydClient().call('publicKey', { purpose: 'audit-checkpoint' });
    const bare = await checkRestoredLog(restoredLog, manifest, keys.publicKey);
    assert.equal(bare.ok, false);
    assert.equal(bare.problems[0]?.kind, 'segment');
    assert.match(
      bare.problems[0]?.message ?? '',
      new RegExp(`entries \\[0, ${end}\\) of the restored log are archived`),
    );

    // The restored deployment's verify reads [0, E) from the segments copied to its destination.
    if (target.url !== undefined) mkdirSync(dataDir, { mode: 0o700 });
    const verify = exited(
      await cli(
        [
          'audit',
          'verify',
          '--data-dir',
          dataDir,
          '--public-key',
          publicKey,
          '--keyd-socket',
          s.keydSocket,
          '--no-witness',
          '--json',
        ],
        { ...target.env, TRESOR_BACKUP_DESTINATIONS: destinations(third) },
      ),
      0,
    );
    const report = JSON.parse(verify.stdout) as { ok: boolean; size: number };
    assert.equal(report.ok, true, verify.stdout);
    assert.equal(report.size, done.audit.size);
  });

  it('refuses a restore whose segment was tampered with, and leaves nothing', {
    timeout: 300_000,
  }, async () => {
    assert.ok(backupId, 'the backup of the first test');
    const tampered = join(base, 'tampered');
    cpSync(folder, tampered, { recursive: true });
    const tile = join(tampered, segmentObjectKey('tile/entries/000'));
    const bytes = readFileSync(tile);
    bytes[60] = (bytes[60] ?? 0) ^ 0x01;
    writeFileSync(tile, bytes);
    const third = join(base, 'dest-c2');
    mkdirSync(third, { mode: 0o700 });
    const parent = join(base, 'refused');
    mkdirSync(parent, { mode: 0o700 });
    const target = await restoreTarget(join(parent, 'data'));
    const run = exited(
      await cli(
        ['restore', '--keyd-socket', s.keydSocket, '--from', tampered, '--backup', backupId, ...target.args],
        {
          TRESOR_BACKUP_DESTINATIONS: destinations(third),
        },
      ),
      1,
    );
    assert.match(
      run.stderr,
      /TRESOR_ERR_BACKUP_INVALID: backup \S+ refused: audit segment audit\.0000000000000000-0000000000000256/,
    );
    assert.ok(await target.empty(), 'no data folder (an empty database)');
    assert.deepEqual(readdirSync(parent), [], 'no staging folder');
    assert.deepEqual(readdirSync(third), [], 'nothing copied');
  });
});
