import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { DevFileProvider, devFileInitialised, initDevFile } from '../../../src/keyd/root/dev-file.ts';

function hasCode(code: string) {
  return (err: unknown): boolean => {
    assert.equal((err as { code?: string }).code, code, (err as Error).message);
    return true;
  };
}

describe('dev-file provider', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-dev-'));
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reports an empty folder as not initialised and refuses to unseal it', async () => {
    const provider = new DevFileProvider(dir);
    assert.deepEqual(provider.status(), { provider: 'dev-file', initialised: false, sealed: true });
    await assert.rejects(provider.unseal(''), hasCode('TRESOR_ERR_NOT_INITIALISED'));
  });

  it('unseals without a secret once initialised', async () => {
    initDevFile(dir);
    assert.equal(devFileInitialised(dir), true);
    const provider = new DevFileProvider(dir);
    assert.deepEqual(await provider.unseal(''), { provider: 'dev-file', initialised: true, sealed: false });
    provider.seal();
  });

  it('refuses to initialise twice', () => {
    initDevFile(dir);
    assert.throws(() => initDevFile(dir), hasCode('TRESOR_ERR_ALREADY_INITIALISED'));
  });

  it('refuses a malformed dev key file with TRESOR_ERR_SEAL_CORRUPT', async () => {
    initDevFile(dir);
    writeFileSync(join(dir, 'dev-root.key'), 'not hex\n');
    await assert.rejects(new DevFileProvider(dir).unseal(''), hasCode('TRESOR_ERR_SEAL_CORRUPT'));
  });

  it('refuses a dev key file that does not open the keyring', async () => {
    initDevFile(dir);
    writeFileSync(join(dir, 'dev-root.key'), `${'ab'.repeat(32)}\n`);
    await assert.rejects(new DevFileProvider(dir).unseal(''), hasCode('TRESOR_ERR_UNSEAL_FAILED'));
  });
});
