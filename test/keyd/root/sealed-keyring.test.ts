import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { readKeyringFile, SealedFileKeyring } from '../../../src/keyd/root/sealed-keyring.ts';

function hasCode(code: string) {
  return (err: unknown): boolean => {
    assert.equal((err as { code?: string }).code, code, (err as Error).message);
    return true;
  };
}

describe('SealedFileKeyring', () => {
  let dir: string;
  let path: string;
  let sealKey: Buffer;
  const params = { kdf: 'test', salt: 'c2FsdA==', cost: 16 };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-sealed-'));
    path = join(dir, 'root-keyring.sealed');
    sealKey = randomBytes(32);
    SealedFileKeyring.create(path, 'passphrase', params, sealKey).close();
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps its public parameters readable without any secret', () => {
    const file = readKeyringFile(path);
    assert.equal(file.format, 'tresor-root-keyring-v1');
    assert.equal(file.provider, 'passphrase');
    assert.deepEqual(file.params, params);
  });

  it('writes the keyring file readable by its owner only (0600)', () => {
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  it('refuses to overwrite an existing keyring', () => {
    const before = readFileSync(path);
    assert.throws(
      () => SealedFileKeyring.create(path, 'passphrase', params, randomBytes(32)),
      hasCode('TRESOR_ERR_ALREADY_INITIALISED'),
    );
    assert.deepEqual(readFileSync(path), before);
  });

  it('refuses a wrong seal key with TRESOR_ERR_UNSEAL_FAILED', () => {
    assert.throws(() => SealedFileKeyring.open(path, randomBytes(32)), hasCode('TRESOR_ERR_UNSEAL_FAILED'));
  });

  it('reports a missing file as TRESOR_ERR_NOT_INITIALISED', () => {
    assert.throws(
      () => SealedFileKeyring.open(join(dir, 'absent'), sealKey),
      hasCode('TRESOR_ERR_NOT_INITIALISED'),
    );
  });

  it('binds the parameters into the AAD: an edited, added or removed parameter fails to open', () => {
    const original = JSON.parse(readFileSync(path, 'utf8'));
    const variants = [
      { ...original, params: { ...params, cost: 15 } },
      { ...original, params: { ...params, salt: 'b3RoZXI=' } },
      { ...original, params: { ...params, extra: 1 } },
      { ...original, params: { kdf: 'test', salt: 'c2FsdA==' } },
      { ...original, provider: 'shamir' },
    ];
    for (const variant of variants) {
      writeFileSync(path, JSON.stringify(variant));
      assert.throws(() => SealedFileKeyring.open(path, sealKey), hasCode('TRESOR_ERR_UNSEAL_FAILED'));
    }
    writeFileSync(path, JSON.stringify(original));
    SealedFileKeyring.open(path, sealKey).close();
  });

  it('refuses a file of another format with TRESOR_ERR_SEAL_CORRUPT', () => {
    const original = JSON.parse(readFileSync(path, 'utf8'));
    for (const variant of [
      { ...original, format: 'other' },
      { ...original, sealed: 42 },
      { ...original, params: null },
      [],
    ]) {
      writeFileSync(path, JSON.stringify(variant));
      assert.throws(() => SealedFileKeyring.open(path, sealKey), hasCode('TRESOR_ERR_SEAL_CORRUPT'));
    }
  });

  it('persists rotation durably: a reopened keyring sees the new active version', async () => {
    const ring = SealedFileKeyring.open(path, sealKey);
    await ring.addVersion();
    ring.close();
    const reopened = SealedFileKeyring.open(path, sealKey);
    assert.equal(reopened.activeVersion(), 2);
    reopened.close();
  });
});
