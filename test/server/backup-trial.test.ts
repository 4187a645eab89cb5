/**
 * The deep trial restore on a real stack's backup: restore into scratch, the audit log against the
 * manifest's checkpoint, every store opened and migrated, sample records decrypted through keyd,
 * the scratch folder gone afterwards; and a backup whose restored log does not match its signed
 * checkpoint reported as failed at the audit check.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseCheckpoint } from '../../src/audit/checkpoint.ts';
import { parseNote } from '../../src/audit/note.ts';
import { createFolderDestination, createS3Destination, type Destination } from '../../src/backup/index.ts';
import { runBackupTrial } from '../../src/server/backup-trial.ts';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startLocalS3 } from '../backup/s3-server.ts';
import { forgeKeydCheckpoint } from '../helpers/keyd-checkpoints.ts';
import {
  backupStack,
  MARKER,
  newestCheckpoint,
  type StackWithRecords,
  stackBackupSource,
  stackWithRecords,
} from './backup-trial-fixture.ts';

describe('the deep trial restore after a backup', () => {
  let world: StackWithRecords;
  let destination: Destination;
  let scratchDir: string;
  before(async () => {
    world = await stackWithRecords(4);
    destination = createFolderDestination({ root: join(world.stack.root, 'backups') });
    scratchDir = join(world.stack.root, 'trial-scratch');
    mkdirSync(scratchDir, { mode: 0o700 });
  });
  after(() => world?.stack.stop());

  test('a good backup passes every check: restored, audit log against its checkpoint, stores opened, records decrypted; scratch removed', async () => {
    const backup = await backupStack(world.stack, [destination]);
    const result = await runBackupTrial({
      destination,
      backupId: backup.backupId,
      keys: world.stack.keydClient(),
      scratchDir,
    });
    assert.equal(result.ok, true, JSON.stringify(result.checks));
    assert.deepEqual(
      result.checks.map((c) => [c.name, c.status]),
      [
        ['restore', 'passed'],
        ['audit', 'passed'],
        ['stores', 'passed'],
        ['decrypt', 'passed'],
      ],
    );
    assert.ok(result.checks.every((c) => c.durationMs >= 0));
    assert.match(result.checks[2]?.detail ?? '', /control store and 1 tenant stores/);
    assert.deepEqual(result.samples, [{ tenant: world.tenant, decrypted: 3 }]);
    assert.equal(result.backupId, backup.backupId);
    assert.deepEqual(readdirSync(scratchDir), [], 'the scratch folder is removed');
    assert.ok(!JSON.stringify(result).includes(MARKER), 'no customer value in the result');
  });

  test('a backup whose restored log does not match its signed checkpoint fails the audit check (and the checks after it are not run)', async () => {
    // A checkpoint validly signed by keyd's audit key for the log's origin and size, with another root.
    const keyd = world.stack.keydClient();
    const real = parseCheckpoint(parseNote(await newestCheckpoint(world.stack.dataDir)).text);
    const key = await keyd.call('publicKey', { purpose: 'audit-checkpoint' });
    // keyd signs no fork: the forgery is what a stolen key (or a keyd reset) could sign.
    const forged = await forgeKeydCheckpoint(keyd, key, { ...real, rootHash: Buffer.alloc(32, 7) });
    const live = stackBackupSource(world.stack.dataDir);
    const backup = await backupStack(world.stack, [destination], {
      tenants: () => live.tenants(),
      auditCheckpoint: async () => forged,
    });
    const result = await runBackupTrial({ destination, backupId: backup.backupId, keys: keyd, scratchDir });
    assert.equal(result.ok, false);
    assert.deepEqual(
      result.checks.map((c) => [c.name, c.status]),
      [
        ['restore', 'passed'],
        ['audit', 'failed'],
        ['stores', 'skipped'],
        ['decrypt', 'skipped'],
      ],
    );
    assert.match(
      result.checks[1]?.detail ?? '',
      /^TRESOR_ERR_BACKUP_INVALID: the restored log \(\d+ entries\) does not hold against the backup's checkpoint of size \d+/,
    );
    assert.deepEqual(readdirSync(scratchDir), [], 'the scratch folder is removed after a failure too');
  });

  test('a folder destination’s chunks are read by the worker, not by the event loop (only the manifest and its signature are)', async () => {
    const backup = await backupStack(world.stack, [destination]);
    const readHere: string[] = [];
    const counting: Destination = {
      ...destination,
      async get(key) {
        readHere.push(key.split('/').pop() ?? key);
        return destination.get(key);
      },
    };
    const result = await runBackupTrial({
      destination: counting,
      backupId: backup.backupId,
      keys: world.stack.keydClient(),
      scratchDir,
    });
    assert.equal(result.ok, true, JSON.stringify(result.checks));
    assert.deepEqual(readHere, ['manifest.json', 'manifest.sig']);
  });

  test('a backup at an S3-compatible server (s3rver on loopback) passes the same checks', async () => {
    const s3 = await startLocalS3();
    try {
      const bucket = createS3Destination({
        name: 's3',
        endpoint: s3.endpoint,
        region: 'us-east-1',
        bucket: s3.bucket,
        prefix: 'trial/',
        forcePathStyle: true,
        accessKeyId: S3RVER_ACCESS_KEY_ID,
        secretAccessKey: S3RVER_SECRET_ACCESS_KEY,
      });
      const backup = await backupStack(world.stack, [bucket]);
      const result = await runBackupTrial({
        destination: bucket,
        backupId: backup.backupId,
        keys: world.stack.keydClient(),
        scratchDir,
        samplesPerTenant: 10,
      });
      assert.equal(result.ok, true, JSON.stringify(result.checks));
      assert.deepEqual(result.samples, [{ tenant: world.tenant, decrypted: 4 }]);
      assert.deepEqual(readdirSync(scratchDir), []);
    } finally {
      await s3.remove();
    }
  });

  test('a backup with an altered chunk fails the restore check', async () => {
    const backup = await backupStack(world.stack, [destination]);
    const name = `${backup.backupId}/chunk-000000`;
    const chunk = await destination.get(name);
    chunk[40] = (chunk[40] ?? 0) ^ 0xff;
    await destination.put(name, chunk);
    const result = await runBackupTrial({
      destination,
      backupId: backup.backupId,
      keys: world.stack.keydClient(),
      scratchDir,
    });
    assert.equal(result.ok, false);
    assert.equal(result.checks[0]?.status, 'failed');
    assert.match(
      result.checks[0]?.detail ?? '',
      /^TRESOR_ERR_BACKUP_INVALID: .*chunk 0 does not match its digest/,
    );
    assert.deepEqual(readdirSync(scratchDir), []);
  });
});
