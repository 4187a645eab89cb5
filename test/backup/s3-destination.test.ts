/**
 * The S3 destination against a real S3-compatible server on loopback (s3rver, test/backup/s3-server.ts
 * says what it checks and what not), with a real keyd and real SQLite stores: a backup to a folder
 * and to S3 at once verifies and restores from S3, no plaintext reaches the bucket, a tampered object
 * is refused, a server gone mid-backup is reported while the folder keeps the backup, wrong
 * credentials are refused in words that name no secret, and listing follows pagination.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import {
  createBackup,
  createFolderDestination,
  createS3Destination,
  createSqliteSnapshotter,
  type Destination,
  listBackups,
  restoreBackup,
  verifyBackup,
} from '../../src/backup/index.ts';
import { type BackupWorld, startWorld } from './fixture.ts';
import { type LocalS3, S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startLocalS3 } from './s3-server.ts';

const MARKER = `s3-plaintext-marker-${Date.now().toString(36)}-never-in-a-bucket`;
const SMALL_CHUNKS = 16 * 1024;

function s3Destination(s3: LocalS3, overrides: { accessKeyId?: string; prefix?: string } = {}): Destination {
  return createS3Destination({
    name: `s3:${s3.bucket}`,
    endpoint: s3.endpoint,
    region: 'us-east-1',
    bucket: s3.bucket,
    prefix: overrides.prefix ?? 'tresor/prod',
    forcePathStyle: true,
    accessKeyId: overrides.accessKeyId ?? S3RVER_ACCESS_KEY_ID,
    secretAccessKey: S3RVER_SECRET_ACCESS_KEY,
  });
}

describe('backup: the S3 destination against a real S3-compatible server', () => {
  let world: BackupWorld;
  let s3: LocalS3;
  before(async () => {
    world = await startWorld(['acme', 'globex']);
    await world.tenants
      .get('acme')
      ?.write((trx) => trx.insertInto('records').values({ value: MARKER }).execute());
    s3 = await startLocalS3();
  });
  after(async () => {
    await s3?.remove();
    await world?.close();
  });

  const backup = (destinations: Destination[]) =>
    createBackup({
      keys: world.client,
      snapshotter: createSqliteSnapshotter({ dataDir: world.dataDir }),
      source: world.source,
      destinations,
      scratchDir: world.folder('scratch'),
      chunkSize: SMALL_CHUNKS,
    });
  const readArgs = (destination: Destination, backupId: string) => ({
    destination,
    backupId,
    keys: world.client,
    manifestKey: world.manifestKey,
  });

  test('a backup to a folder and to S3 is complete at both, verifies from S3 and restores from it to stores holding what was written', async () => {
    const folder = createFolderDestination({ root: world.folder('dest') });
    const bucket = s3Destination(s3);
    const result = await backup([folder, bucket]);
    assert.deepEqual(
      result.destinations.map((d) => [d.destination, d.ok]),
      [
        [folder.name, true],
        [bucket.name, true],
      ],
    );
    assert.ok(result.chunks > 1, 'small chunks: several objects');
    assert.deepEqual(
      (await listBackups(bucket)).map((b) => [b.id, b.complete]),
      [[result.backupId, true]],
    );
    // The objects are under the prefix, named as at a folder.
    const keys = await bucket.list(`${result.backupId}/`);
    assert.deepEqual(keys, await folder.list(`${result.backupId}/`));
    assert.ok(keys.includes(`${result.backupId}/manifest.json`));

    const verified = await verifyBackup(readArgs(bucket, result.backupId));
    assert.equal(verified.chunks, result.chunks);
    assert.equal(verified.destination, bucket.name);

    const target = join(world.folder('restore'), 'data');
    await restoreBackup({ ...readArgs(bucket, result.backupId), target });
    assert.deepEqual(readdirSync(join(target, 'tenants')).sort(), ['acme.sqlite', 'globex.sqlite']);
    const db = new Database(join(target, 'tenants', 'acme.sqlite'), { readonly: true });
    try {
      const row = db.prepare('SELECT value FROM records WHERE value = ?').get(MARKER);
      assert.deepEqual(row, { value: MARKER }, 'the restored store holds the record written before');
    } finally {
      db.close();
    }
  });

  test('no byte the server stored holds the plaintext marker (raw, or as UTF-16 or hex)', async () => {
    const stored = s3.storedFiles();
    assert.ok(stored.length > 3, 'the server holds the objects');
    const needles = [
      Buffer.from(MARKER, 'utf8'),
      Buffer.from(MARKER, 'utf16le'),
      Buffer.from(Buffer.from(MARKER).toString('hex')),
    ];
    for (const { path, bytes } of stored) {
      for (const needle of needles) assert.equal(bytes.indexOf(needle), -1, `marker found in ${path}`);
    }
  });

  test('an object altered in the bucket is refused at verification and restore leaves nothing', async () => {
    const bucket = s3Destination(s3, { prefix: 'tamper/' });
    const result = await backup([bucket]);
    const name = `${result.backupId}/chunk-000001`;
    const chunk = await bucket.get(name);
    chunk[chunk.length - 20] = (chunk[chunk.length - 20] ?? 0) ^ 0x01;
    await bucket.put(name, chunk); // one with write access to the bucket
    await assert.rejects(
      verifyBackup(readArgs(bucket, result.backupId)),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'TRESOR_ERR_BACKUP_INVALID');
        assert.match(err.message, /chunk 1 does not match its digest/);
        return true;
      },
    );
    const parent = world.folder('restore-tampered');
    await assert.rejects(
      restoreBackup({ ...readArgs(bucket, result.backupId), target: join(parent, 'data') }),
      { code: 'TRESOR_ERR_BACKUP_INVALID' },
    );
    assert.deepEqual(readdirSync(parent), [], 'no restored or half-restored folder');
  });

  test('wrong credentials are refused clearly, and no error names the secret', async () => {
    const wrong = s3Destination(s3, { accessKeyId: 'AKIAWRONGKEYID0000000' });
    await assert.rejects(
      wrong.put('20260301T060000Z-0badc0de/probe', Buffer.from('x')),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'TRESOR_ERR_BACKUP_DESTINATION');
        assert.match(err.message, /credentials or permissions refused: InvalidAccessKeyId, HTTP 403/);
        assert.ok(!err.message.includes(S3RVER_SECRET_ACCESS_KEY), 'the secret is not in the message');
        return true;
      },
    );
    await assert.rejects(backup([wrong]), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'TRESOR_ERR_BACKUP_FAILED');
      assert.match(err.message, /no destination took it .*InvalidAccessKeyId/);
      return true;
    });
  });

  test('a missing object is TRESOR_ERR_BACKUP_NOT_FOUND; deleting one is not an error', async () => {
    const bucket = s3Destination(s3);
    await assert.rejects(bucket.get('20260301T060000Z-0badc0de/manifest.json'), {
      code: 'TRESOR_ERR_BACKUP_NOT_FOUND',
    });
    await bucket.delete('20260301T060000Z-0badc0de/manifest.json');
  });

  test('list() pages past 1,000 objects', async () => {
    const bucket = s3Destination(s3, { prefix: 'many' });
    const id = '20260301T060000Z-0a0b0c0d';
    const names = Array.from({ length: 1005 }, (_, i) => `${id}/obj-${String(i).padStart(4, '0')}`);
    for (let i = 0; i < names.length; i += 50) {
      await Promise.all(names.slice(i, i + 50).map((n) => bucket.put(n, Buffer.from(n))));
    }
    assert.deepEqual(await bucket.list(`${id}/`), names);
  });

  test('the server stopped mid-backup: S3 is reported unreachable, the folder destination holds the whole backup', async () => {
    const own = await startLocalS3();
    try {
      const real = s3Destination(own);
      let puts = 0;
      // The real S3 destination; the server is stopped just before its third object is written.
      const dying: Destination = {
        name: real.name,
        async put(key, data) {
          puts += 1;
          if (puts === 3) await own.stop();
          return real.put(key, data);
        },
        get: (key) => real.get(key),
        list: (prefix) => real.list(prefix),
        delete: (key) => real.delete(key),
      };
      const folder = createFolderDestination({ root: world.folder('dest-survivor') });
      const result = await backup([folder, dying]);
      const [kept, gone] = result.destinations;
      assert.deepEqual(kept, { destination: folder.name, ok: true });
      assert.equal(gone?.ok, false);
      assert.equal(gone?.error?.code, 'TRESOR_ERR_BACKUP_DESTINATION');
      assert.match(
        gone?.error?.message ?? '',
        /^s3:tresor-backups: writing \S+ failed \(server unreachable: ECONNREFUSED\)$/,
      );
      assert.ok(puts >= 3);
      const verified = await verifyBackup(readArgs(folder, result.backupId));
      assert.equal(verified.chunks, result.chunks);
    } finally {
      await own.remove();
    }
  });
});
