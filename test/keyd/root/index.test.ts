import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import {
  createRootKeyProvider,
  DevFileProvider,
  initRootKeyProvider,
  PassphraseProvider,
  Pkcs11Provider,
  type RootKeyProvider,
  type RootProviderConfig,
  ShamirProvider,
} from '../../../src/keyd/root/index.ts';
import { createSoftHsmToken, removeSoftHsmTokens } from '../../helpers/softhsm.ts';

function hasCode(code: string) {
  return (err: unknown): boolean => {
    assert.equal((err as { code?: string }).code, code, (err as Error).message);
    return true;
  };
}

describe('root key provider factory', () => {
  let dir: string;
  const opened: RootKeyProvider[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-factory-'));
  });

  afterEach(() => {
    for (const p of opened.splice(0)) p.seal();
    rmSync(dir, { recursive: true, force: true });
  });

  after(() => removeSoftHsmTokens());

  async function roundTrip(config: RootProviderConfig, secrets: string[]): Promise<void> {
    const provider = createRootKeyProvider(config);
    opened.push(provider);
    assert.equal(provider.kind, config.kind);
    for (const secret of secrets) await provider.unseal(secret);
    const keyring = provider.keyring();
    assert.ok(keyring, `${config.kind} unsealed`);
    const envelope = keyring.wrap(Buffer.alloc(32, 3), 'tenant-key', { tenant: 't' });
    assert.deepEqual(keyring.unwrap(envelope, 'tenant-key', { tenant: 't' }), Buffer.alloc(32, 3));
  }

  it('creates the provider class for each kind', () => {
    assert.ok(createRootKeyProvider({ kind: 'dev-file', dir }) instanceof DevFileProvider);
    assert.ok(createRootKeyProvider({ kind: 'passphrase', dir }) instanceof PassphraseProvider);
    assert.ok(createRootKeyProvider({ kind: 'shamir', dir }) instanceof ShamirProvider);
    assert.ok(
      createRootKeyProvider({ kind: 'pkcs11', library: '/x.so', tokenLabel: 'tresor' }) instanceof
        Pkcs11Provider,
    );
  });

  it('refuses an unknown kind or a missing folder', () => {
    assert.throws(
      () => createRootKeyProvider({ kind: 'vault', dir } as unknown as RootProviderConfig),
      hasCode('TRESOR_ERR_CONFIG_INVALID'),
    );
    assert.throws(
      () => createRootKeyProvider({ kind: 'passphrase', dir: '' }),
      hasCode('TRESOR_ERR_CONFIG_INVALID'),
    );
  });

  it('initialises and unseals a dev-file keyring', async () => {
    assert.deepEqual(await initRootKeyProvider({ kind: 'dev-file', dir }), { kind: 'dev-file' });
    await roundTrip({ kind: 'dev-file', dir }, ['']);
  });

  it('initialises and unseals a passphrase keyring', async () => {
    const passphrase = 'a long enough passphrase';
    await initRootKeyProvider({ kind: 'passphrase', dir }, { passphrase, scryptN: 2 ** 14 });
    await roundTrip({ kind: 'passphrase', dir }, [passphrase]);
  });

  it('initialises a shamir keyring, returns its shares once, and unseals with the threshold', async () => {
    const result = await initRootKeyProvider({ kind: 'shamir', dir }, { shares: 3, threshold: 2 });
    assert.equal(result.shares?.length, 3);
    await roundTrip({ kind: 'shamir', dir }, result.shares?.slice(1) ?? []);
  });

  it('initialises and unseals a pkcs11 token', async () => {
    const token = createSoftHsmToken();
    const config: RootProviderConfig = {
      kind: 'pkcs11',
      library: token.library,
      tokenLabel: token.tokenLabel,
    };
    await initRootKeyProvider(config, { pin: token.pin });
    await roundTrip(config, [token.pin]);
  });

  it('refuses init without the secret each provider needs', async () => {
    await assert.rejects(
      initRootKeyProvider({ kind: 'passphrase', dir }),
      hasCode('TRESOR_ERR_CONFIG_INVALID'),
    );
    await assert.rejects(
      initRootKeyProvider({ kind: 'shamir', dir }, { shares: 3 }),
      hasCode('TRESOR_ERR_CONFIG_INVALID'),
    );
    await assert.rejects(
      initRootKeyProvider({ kind: 'pkcs11', library: '/x.so', tokenLabel: 't' }),
      hasCode('TRESOR_ERR_CONFIG_INVALID'),
    );
  });
});
