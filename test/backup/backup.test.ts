/**
 * Backups end to end with a real keyd process and real SQLite stores: a round trip while writes go
 * on, no plaintext at any destination, every kind of tampering refused, restore only into an empty
 * folder, and keyd sealed mid-backup leaving nothing that looks complete.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { canonicalJson } from '../../src/audit/canonical.ts';
import { verifyCheckpoint } from '../../src/audit/checkpoint.ts';
import { parseVerifierKey } from '../../src/audit/note.ts';
import {
  type BackupResult,
  createBackup,
  createFolderDestination,
  createSqliteSnapshotter,
  type Destination,
  listBackups,
  restoreBackup,
  type StoreSnapshotter,
  verifyBackup,
  verifyBackupInBackground,
} from '../../src/backup/index.ts';
import { type BackupWorld, copyFolder, countRows, filesUnder, keepWriting, startWorld } from './fixture.ts';

const MARKER = `plaintext-marker-${Date.now().toString(36)}-never-at-a-destination`;
const SMALL_CHUNKS = 16 * 1024;

function refused(pattern: RegExp) {
  return (err: Error & { code?: string }) => {
    assert.equal(err.code, 'TRESOR_ERR_BACKUP_INVALID', err.message);
    assert.match(err.message, pattern);
    return true;
  };
}

describe('backup: round trip with a real keyd and stores being written', () => {
  let world: BackupWorld;
  before(async () => {
    world = await startWorld(['acme', 'globex']);
    await world.tenants
      .get('acme')
      ?.write((trx) => trx.insertInto('records').values({ value: MARKER }).execute());
  });
  after(() => world?.close());

  const backup = (
    destinations: Destination[],
    chunkSize = SMALL_CHUNKS,
    snapshotter: StoreSnapshotter = createSqliteSnapshotter({ dataDir: world.dataDir }),
  ) =>
    createBackup({
      keys: world.client,
      snapshotter,
      source: world.source,
      destinations,
      scratchDir: world.folder('scratch'),
      chunkSize,
    });

  test('a backup taken while both stores are written restores, from each destination, to stores that open and hold what was written before it', async () => {
    // The writers run exactly while the snapshot is taken: started before it, stopped after it.
    const sqlite = createSqliteSnapshotter({ dataDir: world.dataDir });
    let rowsBefore = 0;
    let written = 0;
    const snapshotter: StoreSnapshotter = {
      backend: sqlite.backend,
      async snapshot(scratch, tenants) {
        const writers = keepWriting(world, 'globex');
        await writers.started;
        rowsBefore = await countRows(world, 'globex');
        try {
          return await sqlite.snapshot(scratch, tenants);
        } finally {
          written = await writers.stop();
        }
      },
    };
    const folders = [world.folder('dest-a'), world.folder('dest-b')];
    const result = await backup(
      folders.map((root) => createFolderDestination({ root })),
      SMALL_CHUNKS,
      snapshotter,
    );
    assert.ok(written > 0);
    assert.ok(
      (await countRows(world, 'globex')) > rowsBefore,
      'writes were acknowledged while the snapshot ran',
    );
    assert.deepEqual(
      result.destinations.map((d) => d.ok),
      [true, true],
    );
    assert.equal(result.files, 3);
    assert.ok(result.chunks > 1, 'small chunks: the stream spans several');

    for (const root of folders) {
      const destination = createFolderDestination({ root });
      const listed = await listBackups(destination);
      assert.deepEqual(
        listed.map((b) => [b.id, b.complete]),
        [[result.backupId, true]],
      );
      const verified = await verifyBackup({
        destination,
        backupId: result.backupId,
        keys: world.client,
        manifestKey: world.manifestKey,
      });
      assert.equal(verified.chunks, result.chunks);
      const manifest = verified.manifest;
      assert.deepEqual(
        manifest.files.map((f) => [f.name, f.kind, f.tenant]),
        [
          ['control.sqlite', 'control', null],
          ['tenants/acme.sqlite', 'tenant', 'acme'],
          ['tenants/globex.sqlite', 'tenant', 'globex'],
        ],
      );
      assert.ok(
        manifest.files.every((f) => /^\d{4}-/.test(f.schemaVersion)),
        'schema versions recorded',
      );
      assert.deepEqual(
        manifest.tenants.map((t) => t.id),
        ['acme', 'globex'],
      );
      // The audit checkpoint of that moment verifies under keyd's checkpoint key.
      const checkpointKey = await world.client.call('publicKey', { purpose: 'audit-checkpoint' });
      assert.equal(
        verifyCheckpoint(manifest.auditCheckpoint, [parseVerifierKey(checkpointKey.verifierKey)]).checkpoint
          .origin,
        'tresor.test/audit',
      );

      const target = join(world.folder('restore-parent'), 'data');
      const restored = await restoreBackup({
        destination,
        backupId: result.backupId,
        keys: world.client,
        manifestKey: world.manifestKey,
        target,
      });
      assert.equal(restored.target, target);
      for (const file of manifest.files) {
        const db = new Database(join(target, file.name), { readonly: true, fileMustExist: true });
        try {
          assert.equal(db.pragma('integrity_check', { simple: true }), 'ok', file.name);
        } finally {
          db.close();
        }
      }
      const acme = new Database(join(target, 'tenants/acme.sqlite'), { readonly: true });
      const globex = new Database(join(target, 'tenants/globex.sqlite'), { readonly: true });
      try {
        assert.deepEqual(acme.prepare('SELECT value FROM records').pluck().all(), [MARKER]);
        const rows = globex.prepare('SELECT count(*) FROM records').pluck().get() as number;
        assert.ok(
          rows >= rowsBefore,
          `rows acknowledged before the backup are in it (${rows} ≥ ${rowsBefore})`,
        );
      } finally {
        acme.close();
        globex.close();
      }
    }

    // No byte of any destination is plaintext: the marker is in the store, never in the backup.
    const acmeFiles = ['', '-wal'].map((ext) => join(world.dataDir, `tenants/acme.sqlite${ext}`));
    assert.ok(
      acmeFiles.some((path) => existsSync(path) && readFileSync(path).includes(MARKER)),
      'the marker is plaintext in the store',
    );
    for (const root of folders) {
      for (const file of filesUnder(root)) {
        assert.equal(file.bytes.includes(MARKER), false, `${file.path} holds the marker`);
        assert.equal(file.bytes.includes('SQLite format 3'), false, `${file.path} holds a SQLite header`);
      }
    }
  });

  describe('tampering is refused', () => {
    let first: BackupResult;
    let second: BackupResult;
    let source: string;
    let other: string;
    before(async () => {
      source = world.folder('tamper-source');
      other = world.folder('tamper-other');
      first = await backup([createFolderDestination({ root: source })]);
      second = await backup([createFolderDestination({ root: other })]);
      assert.ok(first.chunks >= 3);
    });

    /**
     * Tampers with a copy of the first backup, then checks verify (on the event loop and in the
     * background worker, which reads the folder itself) and restore all refuse it.
     */
    async function expectRefused(tamper: (dir: string) => void, pattern: RegExp) {
      const root = copyFolder(world, source);
      tamper(join(root, first.backupId));
      const destination = createFolderDestination({ root });
      const options = {
        destination,
        backupId: first.backupId,
        keys: world.client,
        manifestKey: world.manifestKey,
      };
      await assert.rejects(verifyBackup(options), refused(pattern));
      await assert.rejects(verifyBackupInBackground(options), refused(pattern));
      const parent = world.folder('restore-parent');
      await assert.rejects(restoreBackup({ ...options, target: join(parent, 'data') }), refused(pattern));
      assert.deepEqual(readdirSync(parent), [], 'nothing restored, no staging folder left');
    }

    const chunk = (i: number) => `chunk-${String(i).padStart(6, '0')}`;

    test('the background verification: the intact backup passes, from a folder and from a destination whose chunks the event loop fetches; a flipped byte is refused by both', async () => {
      const options = { backupId: first.backupId, keys: world.client, manifestKey: world.manifestKey };
      const folder = createFolderDestination({ root: source });
      // Without its folder's place: the worker asks the event loop for each chunk, as for S3.
      const { folder: _place, ...remote } = folder;
      for (const destination of [folder, remote]) {
        const read = await verifyBackupInBackground({ ...options, destination });
        assert.equal(read.chunks, first.chunks);
        assert.equal(read.plaintextBytes, first.plaintextBytes);
      }
      const root = copyFolder(world, source);
      const path = join(root, first.backupId, chunk(2));
      const bytes = readFileSync(path);
      bytes[7] = (bytes[7] ?? 0) ^ 0x01;
      writeFileSync(path, bytes);
      const { folder: _tampered, ...tampered } = createFolderDestination({ root });
      await assert.rejects(
        verifyBackupInBackground({ ...options, destination: tampered }),
        refused(/chunk 2 does not match its digest/),
      );
      const stopping = new AbortController();
      stopping.abort();
      await assert.rejects(
        verifyBackupInBackground({ ...options, destination: folder, signal: stopping.signal }),
        (err: Error & { code?: string }) => err.code === 'TRESOR_ERR_BACKUP_INTERRUPTED',
      );
    });

    test('one flipped byte in a chunk', async () => {
      await expectRefused((dir) => {
        const path = join(dir, chunk(1));
        const bytes = readFileSync(path);
        bytes[100] = (bytes[100] ?? 0) ^ 0x01;
        writeFileSync(path, bytes);
      }, /chunk 1 does not match its digest/);
    });

    test("a chunk swapped with another backup's chunk at the same place", async () => {
      await expectRefused((dir) => {
        writeFileSync(join(dir, chunk(1)), readFileSync(join(other, second.backupId, chunk(1))));
      }, /chunk 1 does not match its digest/);
    });

    test('two chunks swapped with each other', async () => {
      await expectRefused((dir) => {
        const a = readFileSync(join(dir, chunk(0)));
        writeFileSync(join(dir, chunk(0)), readFileSync(join(dir, chunk(1))));
        writeFileSync(join(dir, chunk(1)), a);
      }, /chunk 0 does not match its digest/);
    });

    test('a truncated backup: its last chunk gone', async () => {
      await expectRefused(
        (dir) => {
          rmSync(join(dir, chunk(first.chunks - 1)));
        },
        new RegExp(`chunk ${first.chunks - 1} is missing \\(a truncated backup\\)`),
      );
    });

    test('an extra chunk appended', async () => {
      await expectRefused((dir) => {
        writeFileSync(join(dir, chunk(first.chunks)), readFileSync(join(dir, chunk(0))));
      }, /is not part of the backup/);
    });

    test('a changed manifest field', async () => {
      await expectRefused((dir) => {
        const path = join(dir, 'manifest.json');
        const manifest = JSON.parse(readFileSync(path, 'utf8'));
        manifest.tenants = manifest.tenants.filter((t: { id: string }) => t.id !== 'globex');
        writeFileSync(path, canonicalJson(manifest));
      }, /the manifest is not the one that was signed/);
    });

    test("another backup's manifest and signature copied in", async () => {
      await expectRefused((dir) => {
        for (const name of ['manifest.json', 'manifest.sig']) {
          writeFileSync(join(dir, name), readFileSync(join(other, second.backupId, name)));
        }
      }, /signature does not verify/);
    });

    test('a wrong signature over the right digest', async () => {
      await expectRefused((dir) => {
        const path = join(dir, 'manifest.sig');
        const sig = JSON.parse(readFileSync(path, 'utf8'));
        const bytes = Buffer.from(sig.signature, 'base64');
        bytes[0] = (bytes[0] ?? 0) ^ 0x01;
        sig.signature = bytes.toString('base64');
        writeFileSync(path, canonicalJson(sig));
      }, /signature does not verify/);
    });

    test('a signature by another key name, or none at all', async () => {
      await expectRefused((dir) => {
        const path = join(dir, 'manifest.sig');
        const sig = JSON.parse(readFileSync(path, 'utf8'));
        sig.keyName = 'tresor-keyd/audit-checkpoint';
        writeFileSync(path, canonicalJson(sig));
      }, /signed by "tresor-keyd\/audit-checkpoint"/);
      const root = copyFolder(world, source);
      rmSync(join(root, first.backupId, 'manifest.sig'));
      await assert.rejects(
        verifyBackup({
          destination: createFolderDestination({ root }),
          backupId: first.backupId,
          keys: world.client,
          manifestKey: world.manifestKey,
        }),
        { code: 'TRESOR_ERR_BACKUP_NOT_FOUND', message: /incomplete: it has no manifest.sig/ },
      );
    });

    test('the untouched backup still verifies (the cases above tampered with copies)', async () => {
      const verified = await verifyBackup({
        destination: createFolderDestination({ root: source }),
        backupId: first.backupId,
        keys: world.client,
        manifestKey: world.manifestKey,
      });
      assert.equal(verified.chunks, first.chunks);
    });
  });

  describe('restore refuses a target that is not empty', () => {
    test('a folder with a file in it, or a file, is refused and left as it was; nothing else is left behind', async () => {
      const root = world.folder('dest');
      const result = await backup([createFolderDestination({ root })]);
      const parent = world.folder('restore-parent');
      const target = join(parent, 'data');
      const options = {
        destination: createFolderDestination({ root }),
        backupId: result.backupId,
        keys: world.client,
        manifestKey: world.manifestKey,
      };
      writeFileSync(join(parent, 'data'), 'a file');
      await assert.rejects(restoreBackup({ ...options, target }), {
        code: 'TRESOR_ERR_RESTORE_TARGET_NOT_EMPTY',
      });
      rmSync(target);
      const { mkdirSync } = await import('node:fs');
      mkdirSync(target);
      writeFileSync(join(target, 'control.sqlite'), 'an existing store');
      await assert.rejects(restoreBackup({ ...options, target }), {
        code: 'TRESOR_ERR_RESTORE_TARGET_NOT_EMPTY',
        message: /not an empty folder/,
      });
      assert.deepEqual(readdirSync(parent), ['data']);
      assert.deepEqual(readdirSync(target), ['control.sqlite']);
      assert.equal(readFileSync(join(target, 'control.sqlite'), 'utf8'), 'an existing store');
      // An empty folder is fine.
      rmSync(join(target, 'control.sqlite'));
      await restoreBackup({ ...options, target });
      assert.deepEqual(readdirSync(target).sort(), ['control.sqlite', 'tenants']);
      assert.deepEqual(readdirSync(parent), ['data']);
    });
  });

  describe('a destination that fails', () => {
    test('a destination whose read-back differs is dropped and emptied; the other gets the whole backup', async () => {
      const good = world.folder('good');
      const badRoot = world.folder('bad');
      // Without its folder's place: read back through get(), as a remote destination is.
      const { folder: _place, ...folder } = createFolderDestination({ root: badRoot, name: 'flaky' });
      const flaky: Destination = {
        ...folder,
        name: 'flaky',
        async get(key) {
          const bytes = await folder.get(key);
          if (key.endsWith('chunk-000001')) bytes[0] = (bytes[0] ?? 0) ^ 1;
          return bytes;
        },
      };
      const result = await backup([flaky, createFolderDestination({ root: good })]);
      assert.equal(result.destinations[0]?.ok, false);
      assert.equal(result.destinations[0]?.error?.code, 'TRESOR_ERR_BACKUP_DESTINATION');
      assert.match(result.destinations[0]?.error?.message ?? '', /flaky: .*chunk-000001 read back differs/);
      assert.equal(result.destinations[1]?.ok, true);
      assert.deepEqual(filesUnder(badRoot), []);
      assert.deepEqual(
        (await listBackups(createFolderDestination({ root: good }))).map((b) => b.complete),
        [true],
      );
    });
  });

  describe('a folder destination read back in the sealer worker', () => {
    test('a chunk that differs on disk after it was written drops the folder; the other gets the backup', async () => {
      const good = world.folder('good-2');
      const badRoot = world.folder('bad-2');
      const folder = createFolderDestination({ root: badRoot, name: 'rotting' });
      // Keeps `folder`: the worker reads the file itself, so what is on disk is what it hashes.
      const rotting: Destination = {
        ...folder,
        async put(key, data) {
          await folder.put(key, data);
          if (!key.endsWith('chunk-000001')) return;
          const path = join(badRoot, key);
          const bytes = readFileSync(path);
          bytes[0] = (bytes[0] ?? 0) ^ 1;
          writeFileSync(path, bytes);
        },
      };
      const result = await backup([rotting, createFolderDestination({ root: good })]);
      assert.equal(result.destinations[0]?.ok, false);
      assert.equal(result.destinations[0]?.error?.code, 'TRESOR_ERR_BACKUP_DESTINATION');
      assert.match(result.destinations[0]?.error?.message ?? '', /rotting: .*chunk-000001 read back differs/);
      assert.equal(result.destinations[1]?.ok, true);
      assert.deepEqual(filesUnder(badRoot), []);
      assert.deepEqual(
        (await listBackups(createFolderDestination({ root: good }))).map((b) => b.complete),
        [true],
      );
    });
  });

  describe('keyd sealed during a backup', () => {
    test('the backup fails with TRESOR_ERR_KEYD_SEALED and nothing of it is left at the destination', async () => {
      const root = world.folder('sealed');
      const folder = createFolderDestination({ root });
      let sealed = false;
      const sealing: Destination = {
        ...folder,
        async put(key, data) {
          await folder.put(key, data);
          if (!sealed) {
            sealed = true;
            await world.client.call('seal', {});
          }
        },
      };
      try {
        await assert.rejects(backup([sealing]), { code: 'TRESOR_ERR_KEYD_SEALED' });
        assert.equal(sealed, true, 'keyd was sealed after the first chunk was written');
        assert.deepEqual(await listBackups(folder), []);
        assert.deepEqual(filesUnder(root), []);
      } finally {
        await world.client.call('unseal', { secret: '' });
      }
      // A backup started while keyd is sealed fails before it writes anything.
      await world.client.call('seal', {});
      try {
        await assert.rejects(backup([folder]), { code: 'TRESOR_ERR_KEYD_SEALED' });
        assert.deepEqual(filesUnder(root), []);
      } finally {
        await world.client.call('unseal', { secret: '' });
      }
      assert.equal(existsSync(root), true);
    });
  });
});
