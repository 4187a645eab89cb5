// backends: sqlite (these read the SQLite files of a backup; PostgreSQL's backups, trial and restore: e2e/pg-backup-drill)
// drill: the server stopped in the middle of a trial restore
/**
 * Stopping the server during a backup (SIGTERM), on a real stack: the backup stops at its next
 * object instead of running to its end, its partial objects are removed at every destination, it is
 * recorded `interrupted` by the stopping server itself (not by the next start's recovery), and the
 * process exits. Told by the order of events, not by time: an S3 destination (s3rver) sits behind a
 * proxy that holds the chunk's PUT; SIGTERM comes while it is held, the PUT is let through once the
 * server has begun stopping, and no signature or manifest is ever sent.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { type FaultProxy, startFaultProxy } from '../backup/fault-proxy.ts';
import {
  type LocalS3,
  S3RVER_ACCESS_KEY_ID,
  S3RVER_SECRET_ACCESS_KEY,
  startLocalS3,
} from '../backup/s3-server.ts';
import { auditLog } from '../cli/cli-run.ts';
import { operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

describe('SIGTERM during a backup', () => {
  let s: TresorStack;
  let dir: string;
  let folder: string;
  let s3: LocalS3;
  let proxy: FaultProxy;

  before(async () => {
    dir = `/tmp/tresor-shutdown-${process.pid}-${Date.now().toString(36)}`;
    mkdirSync(dir, { mode: 0o700 });
    folder = join(dir, 'a');
    s3 = await startLocalS3('shutdown');
    proxy = await startFaultProxy(Number(new URL(s3.endpoint).port));
    writeFileSync(join(dir, 'key-id'), S3RVER_ACCESS_KEY_ID, { mode: 0o600 });
    writeFileSync(join(dir, 'secret'), S3RVER_SECRET_ACCESS_KEY, { mode: 0o600 });
    s = await startTresorStack({
      env: {
        TRESOR_BACKUP_INTERVAL_MINUTES: '0',
        TRESOR_BACKUP_VERIFY_INTERVAL_MINUTES: '0',
        TRESOR_BACKUP_DESTINATIONS: JSON.stringify([
          { name: 'a', kind: 'folder', path: folder },
          {
            name: 's3',
            kind: 's3',
            endpoint: proxy.endpoint,
            region: 'us-east-1',
            bucket: s3.bucket,
            forcePathStyle: true,
            accessKeyIdFile: join(dir, 'key-id'),
            secretAccessKeyFile: join(dir, 'secret'),
          },
        ]),
      },
    });
  });
  after(async () => {
    await s?.stop();
    await proxy?.close();
    await s3?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('stops the backup at its next object, removes what it wrote, records it interrupted, and exits', async () => {
    const token = await operatorToken(s, 'backups:run');
    proxy.setMode('hold');
    const started = await s.request('POST', '/v1/backups', { token });
    assert.equal(started.status, 202, started.text);
    const { id } = started.json<{ id: string }>();
    // The chunk's PUT to S3 has begun (and is held): the backup is in the middle of writing.
    await waitFor(
      'the first chunk PUT at the S3 destination',
      async () => (proxy.seen().includes(`PUT /${s3.bucket}/${id}/chunk-000000`) ? true : undefined),
      { timeoutMs: 120_000, intervalMs: 100 },
    );

    const stopped = s.stopServer();
    await waitFor(
      'the server beginning to stop',
      async () => (s.serverOutput().includes('finishing in-flight requests') ? true : undefined),
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    // The object being written may finish (so nothing lands after the clean-up); then the backup ends.
    proxy.release();
    await stopped;

    // Recorded by the stopping server: the control store says so before any restart.
    const db = new Database(join(s.dataDir, 'control.sqlite'), { readonly: true, fileMustExist: true });
    let run: { outcome: string; ended_at: string | null; error_code: string | null } | undefined;
    let copies: { destination: string; state: string; error_code: string | null }[];
    try {
      run = db.prepare('SELECT outcome, ended_at, error_code FROM backup_runs WHERE id = ?').get(id) as
        | typeof run
        | undefined;
      copies = db
        .prepare(
          'SELECT destination, state, error_code FROM backup_copies WHERE backup = ? ORDER BY destination',
        )
        .all(id) as typeof copies;
    } finally {
      db.close();
    }
    assert.equal(run?.outcome, 'interrupted');
    assert.ok(run?.ended_at, 'ended by the stopping server');
    assert.equal(run?.error_code, 'TRESOR_ERR_BACKUP_INTERRUPTED');
    assert.deepEqual(
      copies.map((c) => [c.destination, c.state, c.error_code]),
      [
        ['a', 'failed', 'TRESOR_ERR_BACKUP_INTERRUPTED'],
        ['s3', 'failed', 'TRESOR_ERR_BACKUP_INTERRUPTED'],
      ],
    );
    const audited = auditLog(s.dataDir).filter(
      (e) => e.action === 'backup.create' && e.target?.backupId === id,
    );
    assert.equal(audited.length, 1);
    assert.equal(audited[0]?.target?.outcome, 'interrupted');

    // It never got to its signature or manifest, and nothing of it is left anywhere.
    // (The clean-up DELETEs the manifest first, in case it was there: only a PUT would be a write.)
    assert.equal(
      proxy.seen().includes(`PUT /${s3.bucket}/${id}/manifest`),
      false,
      'no signature or manifest sent',
    );
    assert.equal(existsSync(join(folder, id)), false, 'nothing of it in the folder');
    assert.deepEqual(
      (readdirSync(folder, { recursive: true }) as string[]).filter((e) => e.includes('.tmp-')),
      [],
    );
    assert.deepEqual(
      s3.storedFiles().filter((f) => f.path.includes(id)),
      [],
      'nothing of it at the S3 destination',
    );

    // The next start has nothing to recover: no second backup.create for it.
    await s.startServer();
    const after = auditLog(s.dataDir).filter(
      (e) => e.action === 'backup.create' && e.target?.backupId === id,
    );
    assert.equal(after.length, 1);
  });
});
