/**
 * keyd's own backups (src/keyd/backup/): the real key service on real folders with the passphrase
 * root key, backed up to two folder destinations and restored offline into an empty folder. The
 * process, its CLI and its schedule are covered in test/e2e/keyd-backups.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { restoreKeydBackup } from '../../src/keyd/backup/index.ts';
import type { Caller } from '../../src/keyd/operations.ts';
import { initPassphrase, PassphraseProvider } from '../../src/keyd/root/passphrase.ts';
import { createKeyService, type KeydService } from '../../src/keyd/service.ts';
import { configuredDestinations } from '../../src/objects/configured-destinations.ts';
import { createFolderDestination } from '../../src/objects/folder-destination.ts';

const ADMIN: Caller = { id: 'unix:admin', role: 'admin' };
const SERVER: Caller = { id: 'unix:server', role: 'server' };
const PASSPHRASE = 'correct horse battery staple';
const N = 2 ** 14;

interface Setup {
  root: string;
  dir: string;
  service: KeydService;
  folders: string[];
}

async function setup(t: TestContext, retention = { keepAllDays: 1, keepDailyDays: 7 }, clock?: () => Date) {
  const root = mkdtempSync(join(tmpdir(), 'tresor-keyd-bk-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, 'keyd');
  mkdirSync(dir, { mode: 0o700 });
  await initPassphrase(dir, PASSPHRASE, { N });
  const folders = [join(root, 'dest-a'), join(root, 'dest-b')];
  const service = createKeyService({
    dir,
    provider: new PassphraseProvider(dir),
    config: { maintenanceIntervalSeconds: 0 },
    ...(clock ? { clock } : {}),
    backup: {
      destinations: configuredDestinations(
        folders.map((path, i) => ({ name: `d${i}`, kind: 'folder' as const, path, retention })),
      ),
      intervalMinutes: 0,
      chunkSize: 16 * 1024, // several chunks for a small store
    },
  });
  t.after(() => service.close());
  await service.call('unseal', { secret: PASSPHRASE }, ADMIN);
  return { root, dir, service, folders } satisfies Setup;
}

function secrets(...values: string[]) {
  const queue = [...values];
  return async () => queue.shift();
}

describe("keyd's own backups", () => {
  test('a backup restores into an empty folder, and the restored keyd unwraps a tenant key it had', async (t) => {
    const s = await setup(t);
    await s.service.call('createTenantKey', { tenant: 't1' }, SERVER);
    const dk = await s.service.call('generateDataKey', { tenant: 't1', purpose: 'data' }, SERVER);
    const taken = await s.service.call('backupKeyd', {}, ADMIN);
    assert.deepEqual(
      taken.destinations.map((d) => d.ok),
      [true, true],
    );
    const listed = await s.service.call('listKeydBackups', {}, ADMIN);
    assert.deepEqual(
      listed.destinations.map((d) => d.backups.map((b) => [b.id, b.complete])),
      [[[taken.backupId, true]], [[taken.backupId, true]]],
    );
    const objects = readdirSync(join(s.folders[0] as string, taken.backupId)).sort();
    assert.ok(objects.includes('root-keyring.sealed') && objects.includes('manifest.json'));
    assert.ok(objects.filter((o) => o.startsWith('store-')).length > 1, 'several chunks');

    const target = join(s.root, 'restored');
    const restored = await restoreKeydBackup({
      destination: createFolderDestination({ root: s.folders[1] as string, name: 'b' }),
      target,
      nextSecret: secrets(PASSPHRASE),
    });
    assert.equal(restored.backupId, taken.backupId);
    assert.ok(restored.opsLogEntries > 0);

    const again = createKeyService({
      dir: target,
      provider: new PassphraseProvider(target),
      config: { maintenanceIntervalSeconds: 0 },
    });
    t.after(() => again.close());
    await again.call('unseal', { secret: PASSPHRASE }, ADMIN);
    const { key } = await again.call(
      'unwrapDataKey',
      { tenant: 't1', purpose: 'data', keyId: dk.keyId, wrapped: dk.wrapped },
      SERVER,
    );
    assert.ok(key.equals(dk.key));
    assert.equal((await again.verifyOpsLog()).ok, true);
  });

  test('a restore needs the root key: a wrong passphrase restores nothing', async (t) => {
    const s = await setup(t);
    await s.service.call('backupKeyd', {}, ADMIN);
    const target = join(s.root, 'restored');
    await assert.rejects(
      restoreKeydBackup({
        destination: createFolderDestination({ root: s.folders[0] as string, name: 'a' }),
        target,
        nextSecret: secrets('not the passphrase at all'),
      }),
      { code: 'TRESOR_ERR_UNSEAL_FAILED' },
    );
    assert.deepEqual(
      readdirSync(s.root).filter((n) => n.includes('restored')),
      [],
    );
  });

  test('a tampered chunk, keyring or manifest is refused and leaves nothing behind', async (t) => {
    const s = await setup(t);
    const { backupId } = await s.service.call('backupKeyd', {}, ADMIN);
    const folder = join(s.folders[0] as string, backupId);
    const destination = createFolderDestination({ root: s.folders[0] as string, name: 'a' });
    const restoreInto = (name: string) =>
      restoreKeydBackup({ destination, target: join(s.root, name), nextSecret: secrets(PASSPHRASE) });
    const flip = (object: string) => {
      const bytes = readFileSync(join(folder, object));
      const original = Buffer.from(bytes);
      bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] as number) ^ 1;
      writeFileSync(join(folder, object), bytes);
      return () => writeFileSync(join(folder, object), original);
    };
    for (const object of ['store-000001', 'root-keyring.sealed', 'manifest.json']) {
      const undo = flip(object);
      await assert.rejects(restoreInto(`r-${object}`), { code: 'TRESOR_ERR_BACKUP_INVALID' }, object);
      undo();
    }
    // A signature by another key is refused too, and a pinned key that is not the signer's.
    await assert.rejects(
      restoreKeydBackup({
        destination,
        target: join(s.root, 'r-pinned'),
        nextSecret: secrets(PASSPHRASE),
        verifierKey: Buffer.alloc(32, 7),
      }),
      { code: 'TRESOR_ERR_BACKUP_INVALID' },
    );
    assert.deepEqual(
      readdirSync(s.root).filter((n) => n.startsWith('r-') || n.startsWith('.r-')),
      [],
    );
    // Untampered, it restores.
    await restoreInto('r-fine');
  });

  test('a non-empty target is refused before anything is read', async (t) => {
    const s = await setup(t);
    await s.service.call('backupKeyd', {}, ADMIN);
    const target = join(s.root, 'busy');
    mkdirSync(target);
    writeFileSync(join(target, 'keep-me'), 'x');
    await assert.rejects(
      restoreKeydBackup({
        destination: createFolderDestination({ root: s.folders[0] as string, name: 'a' }),
        target,
        nextSecret: secrets(PASSPHRASE),
      }),
      { code: 'TRESOR_ERR_RESTORE_TARGET_NOT_EMPTY' },
    );
    assert.deepEqual(readdirSync(target), ['keep-me']);
  });

  test('retention deletes aged-out backups after a backup, each deletion in the ops log', async (t) => {
    let now = Date.parse('2026-03-01T06:00:00Z');
    const s = await setup(t, { keepAllDays: 0, keepDailyDays: 0 }, () => new Date(now));
    const first = await s.service.call('backupKeyd', {}, ADMIN);
    now += 60_000;
    const second = await s.service.call('backupKeyd', {}, ADMIN);
    for (const folder of s.folders) {
      assert.deepEqual(readdirSync(folder), [second.backupId], 'the newest is always kept');
    }
    const { entries } = await s.service.call('opsLog', { limit: 1000 }, ADMIN);
    const deletions = entries.filter((e) => e.op === 'deleteKeydBackup');
    assert.equal(deletions.length, 2);
    for (const e of deletions) {
      assert.equal(e.caller, 'system');
      assert.equal(e.outcome, 'ok');
      assert.match(e.detail ?? '', new RegExp(`backup ${first.backupId} at d[01]: aged out`));
    }
    assert.ok(entries.some((e) => e.op === 'backupKeyd' && e.outcome === 'ok'));
  });

  test("the horizon is keyd's retention plus one interval, and null without a schedule", async (t) => {
    const s = await setup(t);
    assert.deepEqual(await s.service.call('keydBackupHorizon', {}, SERVER), { agedOutBy: null });
    const root = mkdtempSync(join(tmpdir(), 'tresor-keyd-bk-'));
    t.after(() => rmSync(root, { recursive: true, force: true }));
    await initPassphrase(root, PASSPHRASE, { N });
    const scheduled = createKeyService({
      dir: root,
      provider: new PassphraseProvider(root),
      config: { maintenanceIntervalSeconds: 0 },
      backup: {
        destinations: configuredDestinations([
          {
            name: 'a',
            kind: 'folder',
            path: join(root, 'a'),
            retention: { keepAllDays: 1, keepDailyDays: 7 },
          },
          {
            name: 'b',
            kind: 'folder',
            path: join(root, 'b'),
            retention: { keepAllDays: 3, keepDailyDays: 2 },
          },
        ]),
        intervalMinutes: 360,
      },
    });
    t.after(() => scheduled.close());
    await scheduled.call('unseal', { secret: PASSPHRASE }, ADMIN);
    const { agedOutBy } = await scheduled.call('keydBackupHorizon', { at: '2026-03-01T18:00:00Z' }, SERVER);
    // a: max(+1 d, day start + 7 d) = 03-08T00:00; b: max(+3 d, +2 d from day start) = 03-04T18:00.
    // The latest, 03-08, plus one interval of 6 h.
    assert.equal(agedOutBy, '2026-03-08T06:00:00.000Z');
    await assert.rejects(scheduled.call('keydBackupHorizon', { at: 'yesterday' }, SERVER), {
      code: 'TRESOR_ERR_REQUEST_INVALID',
    });
  });

  test('a destination that fails is dropped and emptied; the other holds the whole backup', async (t) => {
    const s = await setup(t);
    writeFileSync(s.folders[0] as string, 'a file where the folder should be');
    const taken = await s.service.call('backupKeyd', {}, ADMIN);
    assert.deepEqual(
      taken.destinations.map((d) => [d.destination, d.ok]),
      [
        ['d0', false],
        ['d1', true],
      ],
    );
    assert.match(taken.destinations[0]?.error ?? '', /^TRESOR_ERR_BACKUP_DESTINATION$/);
    await restoreKeydBackup({
      destination: createFolderDestination({ root: s.folders[1] as string, name: 'b' }),
      target: join(s.root, 'restored'),
      nextSecret: secrets(PASSPHRASE),
    });
  });

  test('without destinations a backup is refused as a config problem; a copy left by a crash is removed at start', async (t) => {
    const root = mkdtempSync(join(tmpdir(), 'tresor-keyd-bk-'));
    t.after(() => rmSync(root, { recursive: true, force: true }));
    await initPassphrase(root, PASSPHRASE, { N });
    const leftover = join(root, '.keyd-backup-20260301T060000Z-0a1b2c3d.sqlite');
    writeFileSync(leftover, 'a copy a crashed backup left');
    const service = createKeyService({
      dir: root,
      provider: new PassphraseProvider(root),
      config: { maintenanceIntervalSeconds: 0 },
    });
    t.after(() => service.close());
    assert.equal(readdirSync(root).includes('.keyd-backup-20260301T060000Z-0a1b2c3d.sqlite'), false);
    await service.call('unseal', { secret: PASSPHRASE }, ADMIN);
    await assert.rejects(service.call('backupKeyd', {}, ADMIN), { code: 'TRESOR_ERR_CONFIG_INVALID' });
  });

  test('backup and listing need the admin role', async (t) => {
    const s = await setup(t);
    await assert.rejects(s.service.call('backupKeyd', {}, SERVER), { code: 'TRESOR_ERR_FORBIDDEN' });
    await assert.rejects(s.service.call('listKeydBackups', {}, SERVER), { code: 'TRESOR_ERR_FORBIDDEN' });
  });
});
