import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { initDevFile, KEYRING_FILE } from '../../../src/keyd/root/dev-file.ts';
import { initPassphrase, PassphraseProvider } from '../../../src/keyd/root/passphrase.ts';

const PASSPHRASE = 'correct horse battery staple';
const N = 2 ** 14; // test cost; production default is 2^17

function hasCode(code: string, message?: RegExp) {
  return (err: unknown): boolean => {
    assert.equal((err as { code?: string }).code, code, (err as Error).message);
    if (message) assert.match((err as Error).message, message);
    return true;
  };
}

describe('passphrase provider', () => {
  let dir: string;
  let provider: PassphraseProvider | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-pass-'));
  });

  afterEach(() => {
    provider?.seal();
    provider = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  function editParams(edit: (params: Record<string, unknown>) => void): void {
    const path = join(dir, KEYRING_FILE);
    const file = JSON.parse(readFileSync(path, 'utf8'));
    edit(file.params);
    writeFileSync(path, JSON.stringify(file));
  }

  it('derives the seal key with scrypt N=2^17, r=8, p=1 and a 32-byte salt by default', async () => {
    await initPassphrase(dir, PASSPHRASE);
    const { params } = JSON.parse(readFileSync(join(dir, KEYRING_FILE), 'utf8'));
    assert.equal(params.kdf, 'scrypt');
    assert.equal(params.N, 2 ** 17);
    assert.equal(params.r, 8);
    assert.equal(params.p, 1);
    assert.equal(Buffer.from(params.salt, 'base64').length, 32);
    provider = new PassphraseProvider(dir);
    assert.equal((await provider.unseal(PASSPHRASE)).sealed, false);
  });

  it('uses a fresh salt for every keyring', async () => {
    const other = mkdtempSync(join(tmpdir(), 'tresor-pass-'));
    try {
      await initPassphrase(dir, PASSPHRASE, { N });
      await initPassphrase(other, PASSPHRASE, { N });
      const salt = (d: string) => JSON.parse(readFileSync(join(d, KEYRING_FILE), 'utf8')).params.salt;
      assert.notEqual(salt(dir), salt(other));
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('refuses a passphrase shorter than 12 characters and writes nothing', async () => {
    await assert.rejects(
      initPassphrase(dir, 'eleven-char', { N }),
      hasCode('TRESOR_ERR_CONFIG_INVALID', /at least 12/),
    );
    assert.equal(existsSync(join(dir, KEYRING_FILE)), false);
  });

  it('counts characters, not bytes, towards the minimum length', async () => {
    await assert.rejects(initPassphrase(dir, 'ключ-ключ-к', { N }), hasCode('TRESOR_ERR_CONFIG_INVALID'));
    await initPassphrase(dir, 'ключ-ключ-кл', { N });
  });

  it('refuses a scrypt cost below 2^14 or not a power of two', async () => {
    for (const cost of [2 ** 13, 3 * 2 ** 14, 0, 2 ** 21]) {
      await assert.rejects(
        initPassphrase(dir, PASSPHRASE, { N: cost }),
        hasCode('TRESOR_ERR_CONFIG_INVALID'),
      );
    }
    assert.equal(existsSync(join(dir, KEYRING_FILE)), false);
  });

  it('refuses to initialise twice', async () => {
    await initPassphrase(dir, PASSPHRASE, { N });
    await assert.rejects(initPassphrase(dir, PASSPHRASE, { N }), hasCode('TRESOR_ERR_ALREADY_INITIALISED'));
  });

  it('unseals with the right passphrase', async () => {
    await initPassphrase(dir, PASSPHRASE, { N });
    provider = new PassphraseProvider(dir);
    assert.deepEqual(provider.status(), { provider: 'passphrase', initialised: true, sealed: true });
    assert.deepEqual(await provider.unseal(PASSPHRASE), {
      provider: 'passphrase',
      initialised: true,
      sealed: false,
    });
    assert.ok(provider.keyring());
  });

  it('refuses a wrong passphrase with TRESOR_ERR_UNSEAL_FAILED, without echoing it, and stays sealed', async () => {
    await initPassphrase(dir, PASSPHRASE, { N });
    provider = new PassphraseProvider(dir);
    const wrong = 'correct horse battery stapler';
    await assert.rejects(provider.unseal(wrong), (err: unknown) => {
      hasCode('TRESOR_ERR_UNSEAL_FAILED', /passphrase is wrong/)(err);
      assert.equal((err as Error).message.includes(wrong), false);
      return true;
    });
    assert.equal(provider.status().sealed, true);
    assert.equal(provider.keyring(), undefined);
  });

  it('normalises the passphrase (NFKC): composed and decomposed forms unseal alike', async () => {
    const composed = 'Grüße aus Köln, Tresor'.normalize('NFC');
    await initPassphrase(dir, composed, { N });
    provider = new PassphraseProvider(dir);
    await provider.unseal(composed.normalize('NFD'));
    assert.equal(provider.status().sealed, false);
  });

  it('fails to open when the salt, N, r or p in the file is edited', async () => {
    await initPassphrase(dir, PASSPHRASE, { N });
    const original = readFileSync(join(dir, KEYRING_FILE));
    const edits: ((p: Record<string, unknown>) => void)[] = [
      (p) => {
        p.salt = Buffer.alloc(32, 1).toString('base64');
      },
      (p) => {
        p.N = 2 ** 15;
      },
      (p) => {
        p.r = 9;
      },
      (p) => {
        p.p = 2;
      },
    ];
    for (const edit of edits) {
      writeFileSync(join(dir, KEYRING_FILE), original);
      editParams(edit);
      await assert.rejects(
        new PassphraseProvider(dir).unseal(PASSPHRASE),
        hasCode('TRESOR_ERR_UNSEAL_FAILED'),
      );
    }
  });

  it('refuses out-of-bounds parameters before deriving anything', async () => {
    await initPassphrase(dir, PASSPHRASE, { N });
    const original = readFileSync(join(dir, KEYRING_FILE));
    const edits: ((p: Record<string, unknown>) => void)[] = [
      (p) => {
        p.N = 2 ** 30; // 1 TiB of scrypt memory
      },
      (p) => {
        p.N = 2 ** 10;
      },
      (p) => {
        p.salt = Buffer.alloc(8).toString('base64');
      },
      (p) => {
        p.kdf = 'pbkdf2';
      },
      (p) => {
        delete p.salt;
      },
    ];
    for (const edit of edits) {
      writeFileSync(join(dir, KEYRING_FILE), original);
      editParams(edit);
      await assert.rejects(
        new PassphraseProvider(dir).unseal(PASSPHRASE),
        hasCode('TRESOR_ERR_SEAL_CORRUPT'),
      );
    }
  });

  it('reports an empty folder as not initialised', async () => {
    provider = new PassphraseProvider(dir);
    assert.equal(provider.status().initialised, false);
    await assert.rejects(provider.unseal(PASSPHRASE), hasCode('TRESOR_ERR_NOT_INITIALISED'));
  });

  it('refuses a keyring sealed by another provider', async () => {
    initDevFile(dir);
    await assert.rejects(
      new PassphraseProvider(dir).unseal(PASSPHRASE),
      hasCode('TRESOR_ERR_CONFIG_INVALID'),
    );
  });

  it('keeps one keyring when two unseals race', async () => {
    await initPassphrase(dir, PASSPHRASE, { N });
    provider = new PassphraseProvider(dir);
    await Promise.all([provider.unseal(PASSPHRASE), provider.unseal(PASSPHRASE)]);
    const keyring = provider.keyring();
    assert.ok(keyring);
    assert.deepEqual(
      keyring.unwrap(keyring.wrap(Buffer.alloc(32, 1), 'p', {}), 'p', {}),
      Buffer.alloc(32, 1),
    );
  });
});
