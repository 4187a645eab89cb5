// backends: sqlite (segments live on destinations, and the world's stores are SQLite files)
/**
 * A backup's audit segments (src/backup/audit-segments.ts), with a real keyd process and real folder
 * destinations: an audit log of 3,000 entries archived into two sealed segments on two destinations;
 * a backup then names them in its signed manifest; retention never deletes them; a copy of the backup
 * to an empty destination brings them along, byte for byte; a restore checks each one, and a
 * missing, edited or tampered segment refuses it naming the segment, changing nothing. (A whole
 * restore that succeeds and carries the segments to a third destination: e2e/audit-segments-restore.)
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createAuditArchiver } from '../../src/audit/archiver.ts';
import { createAuditLogReader } from '../../src/audit/log.ts';
import type { WithAuditLog } from '../../src/audit/log-schema.ts';
import {
  listSegments,
  openSegment,
  segmentManifestKey,
  segmentObjectKey,
  segmentSignatureKey,
} from '../../src/audit/segment.ts';
import { createAuditTileReader } from '../../src/audit/tile-reader.ts';
import { copyBackup } from '../../src/backup/copy-backup.ts';
import {
  applyRetention,
  type BackupManifest,
  checkSegments,
  createBackup,
  createBackupRecords,
  createSqliteSnapshotter,
  type Destination,
  readManifest,
} from '../../src/backup/index.ts';
import { parseManifest } from '../../src/backup/manifest.ts';
import { newBackupId } from '../../src/objects/backup-id.ts';
import { sha256Hex } from '../../src/objects/destination.ts';
import { createFolderDestination } from '../../src/objects/folder-destination.ts';
import { controlStoreMigrations } from '../../src/server/control-store.ts';
import { restoreDeployment } from '../../src/server/restore-deployment.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import { buildAuditLogFixture, FIXTURE_ORIGIN, removeAuditLogFixtures } from '../audit/log-fixture.ts';
import { type BackupWorld, startWorld } from './fixture.ts';

const SIZE = 3_000;
const FIRST = 'audit.0000000000000000-0000000000001024';
const SECOND = 'audit.0000000000001024-0000000000002048';

describe("a backup's audit segments", () => {
  let world: BackupWorld;
  let store: Store<WithAuditLog>;
  let folders: string[];
  let destinations: Destination[];
  let manifest: BackupManifest;
  let backupId: string;

  const refusedNaming = (id: string, why: RegExp) => (err: unknown) => {
    const e = err as { code?: string; message?: string };
    assert.equal(e.code, 'TRESOR_ERR_BACKUP_INVALID', String(err));
    assert.ok(e.message?.includes(`audit segment ${id}`), e.message);
    assert.match(e.message ?? '', why);
    return true;
  };

  before(async () => {
    world = await startWorld(['t1']);
    const fixture = await buildAuditLogFixture({ entries: SIZE, checkpointEvery: 1000, witness: false });
    store = (await openSqliteStore(fixture.dbPath, controlStoreMigrations)) as unknown as Store<WithAuditLog>;
    folders = [world.folder('dest-a'), world.folder('dest-b')];
    destinations = folders.map((root) => createFolderDestination({ root }));
    const reader = createAuditLogReader(store.db, () => SIZE);
    const pass = await createAuditArchiver({
      reader,
      tiles: createAuditTileReader(reader),
      treeSize: () => SIZE,
      origin: FIXTURE_ORIGIN,
      keys: world.client,
      destinations: () => destinations,
      keepRecentEntries: 500,
      segmentTiles: 4,
    }).run();
    assert.deepEqual(pass.sealed, [FIRST, SECOND]);
  });
  after(async () => {
    await store?.close();
    await world?.close();
    removeAuditLogFixtures();
  });

  test('a backup names the segments every destination holds, with their manifest digests, under its signature', async () => {
    const result = await createBackup({
      keys: world.client,
      snapshotter: createSqliteSnapshotter({ dataDir: world.dataDir }),
      source: world.source,
      destinations,
      scratchDir: world.folder('scratch'),
    });
    backupId = result.backupId;
    assert.ok(result.destinations.every((d) => d.ok));
    for (const destination of destinations) {
      manifest = await readManifest({
        destination,
        backupId,
        keys: world.client,
        manifestKey: world.manifestKey,
      });
      assert.deepEqual(
        manifest.auditSegments,
        [FIRST, SECOND].map((id) => ({
          id,
          manifestSha256: sha256Hex(readFileSync(join(folders[0] as string, segmentManifestKey(id)))),
        })),
      );
    }
  });

  test('a manifest without segments still reads (none named); a list with a gap or a bad digest does not', () => {
    const { auditSegments: _, ...older } = manifest;
    assert.deepEqual(parseManifest(Buffer.from(JSON.stringify(older))), older);
    const withGap = { ...manifest, auditSegments: manifest.auditSegments?.slice(1) };
    assert.equal(parseManifest(Buffer.from(JSON.stringify(withGap))), undefined);
    const badDigest = {
      ...manifest,
      auditSegments: [{ id: FIRST, manifestSha256: 'not-a-digest' }],
    };
    assert.equal(parseManifest(Buffer.from(JSON.stringify(badDigest))), undefined);
  });

  test('a segment on only one destination is not named', async () => {
    const lone = world.folder('dest-lone');
    const result = await createBackup({
      keys: world.client,
      snapshotter: createSqliteSnapshotter({ dataDir: world.dataDir }),
      source: world.source,
      destinations: [destinations[0] as Destination, createFolderDestination({ root: lone })],
      scratchDir: world.folder('scratch'),
    });
    const named = await readManifest({
      destination: destinations[0] as Destination,
      backupId: result.backupId,
      keys: world.client,
      manifestKey: world.manifestKey,
    });
    assert.equal(named.auditSegments, undefined, 'the empty destination holds none: none is named');
  });

  test('retention deletes old backups, never the audit-log/ objects', async () => {
    const folder = world.folder('dest-retention');
    const destination = createFolderDestination({ root: folder });
    await copyBackup(destinations[0] as Destination, destination, backupId);
    // An old backup of its own there too: retention has something to delete.
    const old = newBackupId(new Date(Date.now() - 40 * 86_400_000));
    await createBackup({
      keys: world.client,
      snapshotter: createSqliteSnapshotter({ dataDir: world.dataDir }),
      source: world.source,
      destinations: [destination],
      scratchDir: world.folder('scratch'),
      backupId: old,
    });
    const before = await destination.list('audit-log/');
    assert.ok(before.length > 0);
    const report = await applyRetention({
      records: createBackupRecords(world.control),
      destinations: [{ name: 'r', destination, retention: { keepAllDays: 7, dailyDays: 7 } }],
      clock: () => new Date(),
    });
    assert.deepEqual(report.deleted, [{ destination: 'r', backupId: old }]);
    assert.deepEqual(await destination.list('audit-log/'), before, 'every segment object is still there');
  });

  test('copying the backup to an empty destination copies the segments it names, byte for byte', async () => {
    const folder = world.folder('dest-c');
    const destination = createFolderDestination({ root: folder });
    await copyBackup(destinations[1] as Destination, destination, backupId);
    assert.deepEqual(await listSegments(destination), [FIRST, SECOND]);
    // (A folder destination's list() shows its subfolders too: only the files are compared.)
    const files = (await (destinations[1] as Destination).list('audit-log/')).filter((key) =>
      statSync(join(folders[1] as string, key)).isFile(),
    );
    assert.ok(files.length > 0);
    for (const key of files) {
      assert.ok(readFileSync(join(folder, key)).equals(readFileSync(join(folders[1] as string, key))), key);
    }
    for (const id of [FIRST, SECOND]) {
      const opened = await openSegment({
        destination,
        id,
        key: world.manifestKey,
        keys: world.client,
        origin: FIXTURE_ORIGIN,
      });
      assert.equal(opened.leaves.length, 1024);
    }
    assert.equal(
      await checkSegments({
        destination,
        manifest,
        keys: world.client,
        manifestKey: world.manifestKey,
        depth: 'open',
      }),
      2,
    );
  });

  test('a copy to a destination holding another version of a named segment leaves it alone', async () => {
    const folder = world.folder('dest-other');
    const destination = createFolderDestination({ root: folder });
    await copyBackup(destinations[0] as Destination, destination, backupId);
    const path = join(folder, segmentManifestKey(FIRST));
    writeFileSync(path, Buffer.concat([readFileSync(path), Buffer.from(' ')]));
    const changed = readFileSync(path);
    rmSync(join(folder, backupId), { recursive: true });
    await assert.rejects(
      copyBackup(destinations[0] as Destination, destination, backupId),
      (err: unknown) => {
        const e = err as { code?: string; message?: string };
        assert.equal(e.code, 'TRESOR_ERR_BACKUP_DESTINATION');
        assert.match(
          e.message ?? '',
          new RegExp(`audit segment ${FIRST.replaceAll('.', '\\.')} is there in another version`),
        );
        return true;
      },
    );
    assert.ok(readFileSync(path).equals(changed), 'left as it was');
    assert.ok(!existsSync(join(folder, backupId, 'manifest.json')), 'the backup did not appear');
  });

  test('a missing, edited or tampered segment refuses the restore, naming it, and changes nothing', async () => {
    const check = (destination: Destination, depth: 'open' | 'signature' = 'open') =>
      checkSegments({ destination, manifest, keys: world.client, manifestKey: world.manifestKey, depth });
    const folder = world.folder('dest-tampered');
    const destination = createFolderDestination({ root: folder });
    await copyBackup(destinations[0] as Destination, destination, backupId);

    // A tile flipped: the full check finds it, the trial's signature check by design does not.
    const tile = join(folder, segmentObjectKey('tile/0/005'));
    const original = readFileSync(tile);
    const flipped = Buffer.from(original);
    flipped[40] = (flipped[40] as number) ^ 1;
    writeFileSync(tile, flipped);
    await assert.rejects(check(destination), refusedNaming(SECOND, /tile\/0\/005 is not the object written/));
    assert.equal(await check(destination, 'signature'), 2);
    const third = world.folder('dest-untouched');
    const target = join(world.folder('refused'), 'data');
    await assert.rejects(
      restoreDeployment({
        destination,
        backupId,
        keys: world.client,
        target,
        segmentDestinations: [createFolderDestination({ root: third })],
      }),
      refusedNaming(SECOND, /tile\/0\/005/),
    );
    assert.ok(!existsSync(target), 'no data folder');
    assert.deepEqual(readdirSync(third), [], 'nothing copied');
    assert.deepEqual(
      readdirSync(join(target, '..')).filter((n) => n.startsWith('.')),
      [],
      'no hidden folder left',
    );
    writeFileSync(tile, original);

    // The signature object gone: the segment is not whole, so it is missing.
    const sig = join(folder, segmentSignatureKey(FIRST));
    const signature = readFileSync(sig);
    rmSync(sig);
    await assert.rejects(check(destination), refusedNaming(FIRST, /is missing at/));
    await assert.rejects(check(destination, 'signature'), refusedNaming(FIRST, /is missing at/));
    writeFileSync(sig, signature);

    // The manifest edited: not the one the backup names (and no longer the one keyd signed).
    const json = join(folder, segmentManifestKey(FIRST));
    const bytes = readFileSync(json);
    writeFileSync(json, Buffer.from(bytes.toString('utf8').replace('"first":0', '"first":256')));
    await assert.rejects(
      check(destination, 'signature'),
      refusedNaming(FIRST, /not the one the backup names/),
    );
    writeFileSync(json, bytes);

    assert.equal(await check(destination), 2, 'put back, it holds again');
  });
});
