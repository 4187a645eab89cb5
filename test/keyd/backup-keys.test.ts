/**
 * keyd's backup key (src/keyd/backup-keys.ts) and its backup-manifest signing key: what backups
 * need from keyd. The real key service on a fresh folder with the dev-file root key; the wire
 * path is covered by the backup round trip against a real `tresor keyd` process (test/backup/).
 */
import assert from 'node:assert/strict';
import { createPublicKey, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import Database from 'better-sqlite3';
import type { BackupDataKey, Caller } from '../../src/keyd/operations.ts';
import { decodeRequest } from '../../src/keyd/protocol.ts';
import { DevFileProvider, initDevFile } from '../../src/keyd/root/dev-file.ts';
import { createKeyService, type KeydService } from '../../src/keyd/service.ts';
import { KEY_STORE_FILE } from '../../src/keyd/store.ts';

const ADMIN: Caller = { id: 'unix:admin', role: 'admin' };
const SERVER: Caller = { id: 'unix:server', role: 'server' };

interface TestKeyd {
  dir: string;
  service: KeydService;
  restart(): Promise<void>;
}

async function startKeyd(t: TestContext): Promise<TestKeyd> {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-keyd-backup-'));
  initDevFile(dir);
  const open = async () => {
    const service = createKeyService({
      dir,
      provider: new DevFileProvider(dir),
      config: { maintenanceIntervalSeconds: 0 },
    });
    await service.call('unseal', { secret: '' }, ADMIN);
    return service;
  };
  const keyd: TestKeyd = {
    dir,
    service: await open(),
    async restart() {
      await keyd.service.close();
      keyd.service = await open();
    },
  };
  t.after(async () => {
    await keyd.service.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return keyd;
}

function unwrap(keyd: TestKeyd, dk: Pick<BackupDataKey, 'backupId' | 'keyId' | 'wrapped'>) {
  return keyd.service.call(
    'unwrapBackupDataKey',
    { backupId: dk.backupId, keyId: dk.keyId, wrapped: dk.wrapped },
    SERVER,
  );
}

function code(c: string) {
  return { name: 'KeydError', code: c };
}

describe('keyd: backup data keys', () => {
  test('generateBackupDataKey returns a fresh 32-byte key wrapped by the backup key; unwrap gives it back after a restart', async (t) => {
    const keyd = await startKeyd(t);
    const first = await keyd.service.call('generateBackupDataKey', { backupId: 'b-1' }, SERVER);
    const second = await keyd.service.call('generateBackupDataKey', { backupId: 'b-2' }, SERVER);
    assert.equal(first.backupId, 'b-1');
    assert.equal(first.key.length, 32);
    assert.match(first.keyId, /^bdk_[0-9a-f]{24}$/);
    assert.notDeepEqual(first.key, second.key, 'a fresh key per backup');
    assert.equal(first.wrapped.includes(first.key), false, 'the wrap does not hold the key');

    await keyd.restart(); // nothing cached: the backup key is stored and unwraps under the root key
    assert.deepEqual((await unwrap(keyd, first)).key, first.key);
    assert.deepEqual((await unwrap(keyd, second)).key, second.key);

    const log = await keyd.service.call('opsLog', { limit: 1000 }, ADMIN);
    const created = log.entries.filter((e) => e.op === 'createBackupKey');
    assert.equal(created.length, 1, 'the backup key is made once, on first use');
    assert.equal(created[0]?.caller, 'system');
    assert.equal(created[0]?.keyId, 'bk.v1');
    const generated = log.entries.filter((e) => e.op === 'generateBackupDataKey');
    assert.deepEqual(
      generated.map((e) => [e.caller, e.keyId, e.outcome]),
      [
        ['unix:server', first.keyId, 'ok'],
        ['unix:server', second.keyId, 'ok'],
      ],
    );
    const text = JSON.stringify(log.entries);
    for (const dk of [first, second]) {
      for (const form of [dk.key.toString('hex'), dk.key.toString('base64')]) {
        assert.equal(text.includes(form), false, 'no key material in the ops log');
      }
    }
  });

  test('the backup key is stored only wrapped: no generated data key and no unwrapped backup key in the store file', async (t) => {
    const keyd = await startKeyd(t);
    const dk = await keyd.service.call('generateBackupDataKey', { backupId: 'b-1' }, SERVER);
    await keyd.service.close();
    const db = new Database(join(keyd.dir, KEY_STORE_FILE), { readonly: true });
    const row = db.prepare('SELECT key_id, root_version, wrapped FROM backup_keys').get() as {
      key_id: string;
      root_version: number;
      wrapped: Buffer;
    };
    db.close();
    assert.equal(row.key_id, 'bk.v1');
    assert.equal(row.root_version, 1);
    assert.ok(row.wrapped.length > 32, 'an envelope, not a bare key');
    const file = readFileSync(join(keyd.dir, KEY_STORE_FILE));
    assert.equal(file.includes(dk.key), false);
  });

  test('a wrapped backup key opens only for its own backup id and key id, and not once tampered with', async (t) => {
    const keyd = await startKeyd(t);
    const dk = await keyd.service.call('generateBackupDataKey', { backupId: 'b-1' }, SERVER);
    const other = await keyd.service.call('generateBackupDataKey', { backupId: 'b-2' }, SERVER);
    const tampered = Buffer.from(dk.wrapped);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
    const cases = [
      { ...dk, backupId: 'b-2' }, // moved to another backup
      { ...dk, keyId: other.keyId }, // under another key id
      { ...dk, wrapped: other.wrapped }, // another backup's wrap
      { ...dk, wrapped: tampered },
      { ...dk, wrapped: Buffer.from('not an envelope') },
    ];
    for (const c of cases) await assert.rejects(unwrap(keyd, c), code('TRESOR_ERR_WRAPPED_KEY_INVALID'));
    assert.deepEqual((await unwrap(keyd, dk)).key, dk.key);
  });

  test("a data backup's key opens only in the keyd that made it: another keyd refuses it", async (t) => {
    const keyd = await startKeyd(t);
    const another = await startKeyd(t);
    const dk = await keyd.service.call('generateBackupDataKey', { backupId: 'b-1' }, SERVER);
    await another.service.call('generateBackupDataKey', { backupId: 'b-0' }, SERVER); // it has a bk.v1 too
    await assert.rejects(unwrap(another, dk), code('TRESOR_ERR_WRAPPED_KEY_INVALID'));
  });

  test('a sealed keyd refuses both operations; after unseal the earlier wrap still opens', async (t) => {
    const keyd = await startKeyd(t);
    const dk = await keyd.service.call('generateBackupDataKey', { backupId: 'b-1' }, SERVER);
    await keyd.service.call('seal', {}, ADMIN);
    await assert.rejects(
      keyd.service.call('generateBackupDataKey', { backupId: 'b-2' }, SERVER),
      code('TRESOR_ERR_KEYD_SEALED'),
    );
    await assert.rejects(unwrap(keyd, dk), code('TRESOR_ERR_KEYD_SEALED'));
    await keyd.service.call('unseal', { secret: '' }, ADMIN);
    assert.deepEqual((await unwrap(keyd, dk)).key, dk.key);
  });

  test('malformed arguments are refused naming the field, by the service and by the wire decoder', async (t) => {
    const keyd = await startKeyd(t);
    const call = (args: unknown) =>
      keyd.service.call('generateBackupDataKey', args as { backupId: string }, SERVER);
    for (const backupId of ['', '../etc', 'a b', 'x'.repeat(65), '-leading-dash']) {
      await assert.rejects(call({ backupId }), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'TRESOR_ERR_REQUEST_INVALID');
        assert.match(e.message, /^backupId: /);
        return true;
      });
    }
    await assert.rejects(call({ backupId: 'b-1', extra: 1 }), code('TRESOR_ERR_REQUEST_INVALID'));
    await assert.rejects(
      keyd.service.call(
        'unwrapBackupDataKey',
        { backupId: 'b-1', keyId: 'bdk_1', wrapped: Buffer.alloc(300) },
        SERVER,
      ),
      /wrapped: must be 1 to 256 bytes/,
    );
    const wire = decodeRequest({ v: 1, id: 1, op: 'unwrapBackupDataKey', args: { backupId: 'b-1' } });
    assert.equal(wire.ok, false);
    const ok = decodeRequest({
      v: 1,
      id: 2,
      op: 'unwrapBackupDataKey',
      args: { backupId: 'b-1', keyId: 'bdk_1', wrapped: { $b64: 'AAAA' } },
    });
    assert.equal(ok.ok, true);
  });

  test('root rotation rewraps the backup key: after the old root version retires, earlier backups still unwrap', async (t) => {
    const keyd = await startKeyd(t);
    const dk = await keyd.service.call('generateBackupDataKey', { backupId: 'b-1' }, SERVER);
    const rotated = await keyd.service.call('rotateRootKey', {}, ADMIN);
    assert.deepEqual(rotated, { version: 2, rewrapped: 1 });
    await keyd.service.call('retireRootKeyVersion', { version: 1 }, ADMIN);
    await keyd.restart();
    assert.deepEqual((await unwrap(keyd, dk)).key, dk.key);
  });
});

describe('keyd: the backup-manifest signing key', () => {
  test('sign with purpose backup-manifest verifies under its own published key, apart from the other purposes', async (t) => {
    const keyd = await startKeyd(t);
    const message = Buffer.from(`tresor-backup-manifest/v1\nb-1\n${'0'.repeat(64)}\n`);
    const { signature, keyName } = await keyd.service.call(
      'sign',
      { purpose: 'backup-manifest', message },
      SERVER,
    );
    assert.equal(keyName, 'tresor-keyd/backup-manifest');
    const info = await keyd.service.call('publicKey', { purpose: 'backup-manifest' }, SERVER);
    assert.equal(info.name, keyName);
    const publicKey = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: info.publicKey.toString('base64url') },
      format: 'jwk',
    });
    assert.equal(verify(null, message, publicKey, signature), true);
    for (const purpose of ['audit-checkpoint', 'deletion-certificate'] as const) {
      const other = await keyd.service.call('publicKey', { purpose }, SERVER);
      assert.notDeepEqual(other.publicKey, info.publicKey, 'one key per purpose');
    }
  });
});
