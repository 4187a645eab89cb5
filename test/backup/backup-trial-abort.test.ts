/**
 * Stopping the server stops a running trial restore (its worker thread) instead of waiting for it:
 * runBackupTrial with an aborted signal throws TRESOR_ERR_BACKUP_INTERRUPTED, with no result about
 * the backup, and removes its scratch folder. Told by events, not time: the trial's first chunk
 * read is held at the destination (a real folder destination behind a gate), the signal is aborted
 * while it is held, and the trial ends before the gate ever opens.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createFolderDestination, type Destination } from '../../src/backup/index.ts';
import { runBackupTrial } from '../../src/server/backup-trial.ts';
import { backupStack, type StackWithRecords, stackWithRecords } from '../server/backup-trial-fixture.ts';

describe('a trial restore when the server stops', () => {
  let world: StackWithRecords;
  let folder: Destination;
  let scratchDir: string;
  before(async () => {
    world = await stackWithRecords(3);
    folder = createFolderDestination({ root: join(world.stack.root, 'backups') });
    scratchDir = join(world.stack.root, 'trial-scratch');
    mkdirSync(scratchDir, { mode: 0o700 });
  });
  after(() => world?.stack.stop());

  test('aborted while it reads the chunks: stopped at once, TRESOR_ERR_BACKUP_INTERRUPTED, scratch removed', async () => {
    const backup = await backupStack(world.stack, [folder]);
    let open = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    let reached = () => {};
    const chunkRead = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const gated: Destination = {
      name: folder.name,
      put: (key, data) => folder.put(key, data),
      list: (prefix) => folder.list(prefix),
      delete: (key) => folder.delete(key),
      async get(key) {
        if (key.includes('/chunk-')) {
          reached();
          await gate;
        }
        return folder.get(key);
      },
    };
    const controller = new AbortController();
    const trial = runBackupTrial({
      destination: gated,
      backupId: backup.backupId,
      keys: world.stack.keydClient(),
      scratchDir,
      signal: controller.signal,
    });
    try {
      await chunkRead; // the worker runs and has asked for the first chunk
      controller.abort();
      await assert.rejects(trial, (err: { code?: string; message?: string }) => {
        assert.equal(err.code, 'TRESOR_ERR_BACKUP_INTERRUPTED');
        assert.match(err.message ?? '', /the server is stopping/);
        return true;
      });
      assert.deepEqual(readdirSync(scratchDir), [], 'the scratch folder is removed');
    } finally {
      open();
    }
  });

  test('aborted before it starts: nothing is read or written', async () => {
    const backup = await backupStack(world.stack, [folder]);
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(
      runBackupTrial({
        destination: folder,
        backupId: backup.backupId,
        keys: world.stack.keydClient(),
        scratchDir,
        signal: controller.signal,
      }),
      { code: 'TRESOR_ERR_BACKUP_INTERRUPTED' },
    );
    assert.deepEqual(readdirSync(scratchDir), []);
  });
});
