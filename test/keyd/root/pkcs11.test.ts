/**
 * The PKCS#11 provider on throwaway SoftHSM2 tokens. What the token says about its key objects is
 * read through a separate raw pkcs11js session (test/helpers/softhsm.ts), not through the provider.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import { readEnvelopeHeader } from '../../../src/crypto/index.ts';
import { initPkcs11, Pkcs11Provider } from '../../../src/keyd/root/pkcs11.ts';
import { SealedFileKeyring } from '../../../src/keyd/root/sealed-keyring.ts';
import {
  createSoftHsmToken,
  findSecretKeys,
  removeSoftHsmTokens,
  type SoftHsmToken,
  withTokenSession,
} from '../../helpers/softhsm.ts';

function hasCode(code: string, message?: RegExp) {
  return (err: unknown): boolean => {
    assert.equal((err as { code?: string }).code, code, (err as Error).message);
    if (message) assert.match((err as Error).message, message);
    return true;
  };
}

function configOf(token: SoftHsmToken) {
  return { library: token.library, tokenLabel: token.tokenLabel };
}

async function initialisedToken(): Promise<SoftHsmToken> {
  const token = createSoftHsmToken();
  await initPkcs11({ ...configOf(token), pin: token.pin });
  return token;
}

const CONTEXT = { tenant: 't_1' };

describe('pkcs11 provider', () => {
  const providers: Pkcs11Provider[] = [];
  function provider(config: ConstructorParameters<typeof Pkcs11Provider>[0]): Pkcs11Provider {
    const p = new Pkcs11Provider(config);
    providers.push(p);
    return p;
  }

  afterEach(() => {
    for (const p of providers.splice(0)) p.seal();
  });
  after(() => removeSoftHsmTokens());

  it('unseals by logging in with the PIN', async () => {
    const token = await initialisedToken();
    const p = provider(configOf(token));
    assert.deepEqual(p.status(), { provider: 'pkcs11', initialised: true, sealed: true });
    assert.deepEqual(await p.unseal(token.pin), { provider: 'pkcs11', initialised: true, sealed: false });
    assert.equal(p.keyring()?.provider, 'pkcs11');
  });

  it('refuses a wrong PIN with TRESOR_ERR_UNSEAL_FAILED, without echoing it, and stays sealed', async () => {
    const token = await initialisedToken();
    const p = provider(configOf(token));
    await assert.rejects(p.unseal('00000000'), (err: unknown) => {
      hasCode('TRESOR_ERR_UNSEAL_FAILED', /PIN is wrong/)(err);
      assert.equal((err as Error).message.includes('00000000'), false);
      return true;
    });
    assert.equal(p.status().sealed, true);
    assert.equal(p.keyring(), undefined);
    await p.unseal(token.pin); // the failed attempt left nothing logged in or open
    assert.equal(p.status().sealed, false);
  });

  it('unseals with the configured PIN when none is typed', async () => {
    const token = await initialisedToken();
    const p = provider({ ...configOf(token), pin: token.pin });
    await p.unseal('');
    assert.equal(p.status().sealed, false);
  });

  it('refuses to unseal without any PIN', async () => {
    const token = await initialisedToken();
    await assert.rejects(
      provider(configOf(token)).unseal(''),
      hasCode('TRESOR_ERR_UNSEAL_FAILED', /PIN is needed/),
    );
  });

  it('refuses a second login to the same token from this process instead of skipping the PIN check', async () => {
    const token = await initialisedToken();
    await provider(configOf(token)).unseal(token.pin);
    await assert.rejects(
      provider(configOf(token)).unseal('wrong-pin'),
      hasCode('TRESOR_ERR_UNSEAL_FAILED', /already logged in/),
    );
  });

  it('reaches a token by slot id as well as by label', async () => {
    const token = await initialisedToken();
    const slot = await withTokenSession(token, ({ lib, session }) => {
      const handle = lib.C_GetSessionInfo(session).slotID;
      return Number(handle.length === 8 ? handle.readBigUInt64LE() : handle.readUInt32LE());
    });
    const p = provider({ library: token.library, slot });
    await p.unseal(token.pin);
    assert.equal(p.keyring()?.activeVersion(), 1);
  });

  it('refuses a config that names no token, both ways, or an unknown one', async () => {
    assert.throws(() => new Pkcs11Provider({}), hasCode('TRESOR_ERR_CONFIG_INVALID'));
    assert.throws(
      () => new Pkcs11Provider({ tokenLabel: 'a', slot: 1 }),
      hasCode('TRESOR_ERR_CONFIG_INVALID'),
    );
    const token = createSoftHsmToken();
    await assert.rejects(
      provider({ library: token.library, tokenLabel: 'no-such-token' }).unseal(token.pin),
      hasCode('TRESOR_ERR_CONFIG_INVALID', /no PKCS#11 token/),
    );
  });

  it('refuses a module that cannot be loaded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tresor-p11-'));
    try {
      await assert.rejects(
        provider({ library: join(dir, 'missing.so'), tokenLabel: 'x' }).unseal('1234'),
        hasCode('TRESOR_ERR_CONFIG_INVALID', /cannot load/),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a token without Tresor root keys as not initialised', async () => {
    const token = createSoftHsmToken();
    const p = provider(configOf(token));
    await assert.rejects(p.unseal(token.pin), hasCode('TRESOR_ERR_NOT_INITIALISED'));
    assert.deepEqual(p.status(), { provider: 'pkcs11', initialised: false, sealed: true });
  });

  it('refuses to initialise a token twice', async () => {
    const token = await initialisedToken();
    await assert.rejects(
      initPkcs11({ ...configOf(token), pin: token.pin }),
      hasCode('TRESOR_ERR_ALREADY_INITIALISED'),
    );
  });

  it('refuses to initialise with a wrong PIN', async () => {
    const token = createSoftHsmToken();
    await assert.rejects(
      initPkcs11({ ...configOf(token), pin: '00000000' }),
      hasCode('TRESOR_ERR_UNSEAL_FAILED'),
    );
  });

  it('generates root keys inside the token: sensitive, never extractable, CKA_VALUE unreadable', async () => {
    const token = await initialisedToken();
    await withTokenSession(token, ({ ck, lib, session }) => {
      const handles = findSecretKeys({ ck, lib, session }, 'tresor-root-v1');
      assert.equal(handles.length, 1);
      const key = handles[0] as Buffer;
      const attrs = lib.C_GetAttributeValue(session, key, [
        { type: ck.CKA_EXTRACTABLE },
        { type: ck.CKA_SENSITIVE },
        { type: ck.CKA_NEVER_EXTRACTABLE },
        { type: ck.CKA_ALWAYS_SENSITIVE },
        { type: ck.CKA_LOCAL },
        { type: ck.CKA_TOKEN },
        { type: ck.CKA_WRAP },
      ]);
      assert.deepEqual(
        attrs.map((a) => a.value[0]),
        [0, 1, 1, 1, 1, 1, 0],
        'EXTRACTABLE=false SENSITIVE NEVER_EXTRACTABLE ALWAYS_SENSITIVE LOCAL TOKEN WRAP=false',
      );
      assert.throws(
        () => lib.C_GetAttributeValue(session, key, [{ type: ck.CKA_VALUE }]),
        (err: unknown) => (err as Error).message === 'CKR_ATTRIBUTE_SENSITIVE',
      );
    });
  });

  it('refuses to export a root key wrapped under another key', async () => {
    const token = await initialisedToken();
    await withTokenSession(token, ({ ck, lib, session }) => {
      const rootKey = findSecretKeys({ ck, lib, session }, 'tresor-root-v1')[0] as Buffer;
      const wrappingKey = lib.C_GenerateKey(session, { mechanism: ck.CKM_AES_KEY_GEN }, [
        { type: ck.CKA_CLASS, value: ck.CKO_SECRET_KEY },
        { type: ck.CKA_KEY_TYPE, value: ck.CKK_AES },
        { type: ck.CKA_VALUE_LEN, value: 32 },
        { type: ck.CKA_TOKEN, value: false },
        { type: ck.CKA_WRAP, value: true },
      ]);
      assert.throws(
        () =>
          lib.C_WrapKey(session, { mechanism: ck.CKM_AES_KEY_WRAP }, wrappingKey, rootKey, Buffer.alloc(64)),
        (err: unknown) => (err as Error).message === 'CKR_KEY_UNEXTRACTABLE',
      );
    });
  });

  it('labels versions tresor-root-v<n> and destroys the key object on removeVersion', async () => {
    const token = await initialisedToken();
    const p = provider(configOf(token));
    await p.unseal(token.pin);
    const keyring = p.keyring();
    assert.ok(keyring);
    await keyring.addVersion();
    await keyring.addVersion();
    await keyring.removeVersion(2);
    p.seal();
    await withTokenSession(token, (s) => {
      assert.equal(findSecretKeys(s, 'tresor-root-v1').length, 1);
      assert.equal(findSecretKeys(s, 'tresor-root-v2').length, 0);
      assert.equal(findSecretKeys(s, 'tresor-root-v3').length, 1);
    });
  });

  it('has no half-done rotation: a key generated before a crash is simply the new active version', async () => {
    const token = await initialisedToken();
    const first = provider(configOf(token));
    await first.unseal(token.pin);
    const envelope = first.keyring()?.wrap(Buffer.alloc(32, 9), 'tenant-key', CONTEXT);
    assert.ok(envelope);
    first.seal();
    // What addVersion's single C_GenerateKey leaves behind, even if keyd dies right after it.
    await withTokenSession(token, ({ ck, lib, session }) => {
      lib.C_GenerateKey(session, { mechanism: ck.CKM_AES_KEY_GEN }, [
        { type: ck.CKA_CLASS, value: ck.CKO_SECRET_KEY },
        { type: ck.CKA_KEY_TYPE, value: ck.CKK_AES },
        { type: ck.CKA_VALUE_LEN, value: 32 },
        { type: ck.CKA_TOKEN, value: true },
        { type: ck.CKA_PRIVATE, value: true },
        { type: ck.CKA_SENSITIVE, value: true },
        { type: ck.CKA_EXTRACTABLE, value: false },
        { type: ck.CKA_ENCRYPT, value: true },
        { type: ck.CKA_DECRYPT, value: true },
        { type: ck.CKA_LABEL, value: 'tresor-root-v2' },
        { type: ck.CKA_ID, value: Buffer.from(`root.v2@${new Date().toISOString()}`) },
      ]);
    });
    const second = provider(configOf(token));
    await second.unseal(token.pin);
    const keyring = second.keyring();
    assert.ok(keyring);
    assert.equal(keyring.activeVersion(), 2);
    assert.deepEqual(keyring.unwrap(envelope, 'tenant-key', CONTEXT), Buffer.alloc(32, 9));
  });

  it('refuses a key planted under a root label that was not generated inside the token', async () => {
    const token = await initialisedToken();
    await withTokenSession(token, ({ ck, lib, session }) => {
      lib.C_CreateObject(session, [
        { type: ck.CKA_CLASS, value: ck.CKO_SECRET_KEY },
        { type: ck.CKA_KEY_TYPE, value: ck.CKK_AES },
        { type: ck.CKA_VALUE, value: Buffer.alloc(32, 0x41) }, // a key the attacker knows
        { type: ck.CKA_TOKEN, value: true },
        { type: ck.CKA_PRIVATE, value: true },
        { type: ck.CKA_SENSITIVE, value: true },
        { type: ck.CKA_EXTRACTABLE, value: false },
        { type: ck.CKA_ENCRYPT, value: true },
        { type: ck.CKA_DECRYPT, value: true },
        { type: ck.CKA_LABEL, value: 'tresor-root-v9' },
        { type: ck.CKA_ID, value: Buffer.from(`root.v9@${new Date().toISOString()}`) },
      ]);
    });
    const p = provider(configOf(token));
    await assert.rejects(
      p.unseal(token.pin),
      hasCode('TRESOR_ERR_SEAL_CORRUPT', /not .*generated inside the token/),
    );
    assert.equal(p.status().sealed, true);
  });

  it('writes envelopes the software keyring’s format reader accepts, byte-for-byte the same layout', async () => {
    const token = await initialisedToken();
    const p = provider(configOf(token));
    await p.unseal(token.pin);
    const dir = mkdtempSync(join(tmpdir(), 'tresor-p11-'));
    try {
      const software = SealedFileKeyring.create(join(dir, 'k'), 'dev-file', {}, randomBytes(32));
      const plaintext = randomBytes(32);
      const fromToken = p.keyring()?.wrap(plaintext, 'tenant-key', CONTEXT);
      const fromSoftware = software.wrap(plaintext, 'tenant-key', CONTEXT);
      software.close();
      assert.ok(fromToken);
      assert.deepEqual(readEnvelopeHeader(fromToken), readEnvelopeHeader(fromSoftware));
      assert.equal(fromToken.length, fromSoftware.length);
      assert.deepEqual(fromToken.subarray(0, 10), fromSoftware.subarray(0, 10));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to wrap nothing', async () => {
    const token = await initialisedToken();
    const p = provider(configOf(token));
    await p.unseal(token.pin);
    assert.throws(
      () => p.keyring()?.wrap(Buffer.alloc(0), 'tenant-key', CONTEXT),
      hasCode('TRESOR_ERR_REQUEST_INVALID'),
    );
    assert.equal(
      p
        .keyring()
        ?.unwrap(
          p.keyring()?.wrap(Buffer.of(1), 'tenant-key', CONTEXT) ?? Buffer.alloc(0),
          'tenant-key',
          CONTEXT,
        )?.[0],
      1,
    );
  });
});
