/**
 * The RootKeyring contract (src/keyd/root/types.ts), run against every implementation: the sealed
 * file keyring itself, the dev-file, passphrase and Shamir providers built on it, and the PKCS#11
 * provider on a throwaway SoftHSM2 token. Whatever the provider, envelopes look the same, rotation
 * keeps old envelopes readable, retirement makes them unreadable, and sealing forgets the keys.
 */
import assert from 'node:assert/strict';
import { randomBytes, scrypt } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { combine } from 'shamir-secret-sharing';
import { type AadContext, openEnvelope, readEnvelopeHeader } from '../../../src/crypto/index.ts';
import { DevFileProvider, initDevFile, KEYRING_FILE } from '../../../src/keyd/root/dev-file.ts';
import { initPassphrase, PassphraseProvider } from '../../../src/keyd/root/passphrase.ts';
import { initPkcs11, Pkcs11Provider } from '../../../src/keyd/root/pkcs11.ts';
import { SealedFileKeyring } from '../../../src/keyd/root/sealed-keyring.ts';
import { initShamir, ShamirProvider } from '../../../src/keyd/root/shamir.ts';
import type { RootKeyProvider, RootKeyring } from '../../../src/keyd/root/types.ts';
import { createSoftHsmToken, removeSoftHsmTokens } from '../../helpers/softhsm.ts';

const PASSPHRASE = 'correct horse battery staple';
const TEST_SCRYPT_N = 2 ** 14;
const CONTEXT: AadContext = { tenant: 't_1', keyId: 'tk.abc.v1' };
const PURPOSE = 'tenant-key';

interface Opened {
  keyring: RootKeyring;
  provider?: RootKeyProvider;
  seal(): void;
}

interface Fixture {
  /** A new instance over the same persisted state, unsealed. */
  open(): Promise<Opened>;
  /** Software keyrings: keyd's folder and the seal key, to inspect the file independently. */
  dir?: string;
  sealKey?(): Promise<Buffer>;
  cleanup(): void;
}

interface Subject {
  name: string;
  /** Software keyrings keep a sealed file in keyd's folder; the token keeps its own objects. */
  software: boolean;
  setup(): Promise<Fixture>;
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'tresor-root-'));
}

/** Wraps a provider factory so every instance opened is sealed at cleanup. */
function providerFixture(
  dir: string | undefined,
  make: () => RootKeyProvider,
  unseal: (p: RootKeyProvider) => Promise<unknown>,
  extra: Partial<Fixture> = {},
): Fixture {
  const opened: Opened[] = [];
  return {
    dir,
    async open() {
      const provider = make();
      await unseal(provider);
      const keyring = provider.keyring();
      assert.ok(keyring, 'provider is unsealed');
      const o: Opened = { keyring, provider, seal: () => provider.seal() };
      opened.push(o);
      return o;
    },
    cleanup() {
      for (const o of opened) o.seal();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
    ...extra,
  };
}

const subjects: Subject[] = [
  {
    name: 'SealedFileKeyring',
    software: true,
    async setup() {
      const dir = tempDir();
      const path = join(dir, KEYRING_FILE);
      const sealKey = randomBytes(32);
      SealedFileKeyring.create(path, 'dev-file', { note: 'contract', n: 7 }, sealKey).close();
      const opened: Opened[] = [];
      return {
        dir,
        async open() {
          const keyring = SealedFileKeyring.open(path, sealKey);
          const o: Opened = { keyring, seal: () => keyring.close() };
          opened.push(o);
          return o;
        },
        async sealKey() {
          return Buffer.from(sealKey);
        },
        cleanup() {
          for (const o of opened) o.seal();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'dev-file provider',
    software: true,
    async setup() {
      const dir = tempDir();
      initDevFile(dir);
      return providerFixture(
        dir,
        () => new DevFileProvider(dir),
        (p) => p.unseal(''),
        { sealKey: async () => Buffer.from(readFileSync(join(dir, 'dev-root.key'), 'utf8').trim(), 'hex') },
      );
    },
  },
  {
    name: 'passphrase provider',
    software: true,
    async setup() {
      const dir = tempDir();
      await initPassphrase(dir, PASSPHRASE, { N: TEST_SCRYPT_N });
      return providerFixture(
        dir,
        () => new PassphraseProvider(dir),
        (p) => p.unseal(PASSPHRASE),
        {
          // Derived here with node:crypto directly, not through the provider under test.
          sealKey: () => {
            const { params } = JSON.parse(readFileSync(join(dir, KEYRING_FILE), 'utf8'));
            return new Promise((resolve, reject) =>
              scrypt(
                PASSPHRASE,
                Buffer.from(params.salt, 'base64'),
                32,
                { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r },
                (err, key) => (err ? reject(err) : resolve(key)),
              ),
            );
          },
        },
      );
    },
  },
  {
    name: 'shamir provider',
    software: true,
    async setup() {
      const dir = tempDir();
      const shares = await initShamir(dir, { shares: 5, threshold: 3 });
      return providerFixture(
        dir,
        () => new ShamirProvider(dir),
        async (p) => {
          for (const share of shares.slice(1, 4)) await p.unseal(share);
        },
        {
          sealKey: async () => {
            const parts = shares
              .slice(0, 3)
              .map(
                (s) =>
                  new Uint8Array(
                    Buffer.from(
                      /^tresor-share-v1-[0-9a-f]{16}-(.{44})-[0-9a-f]{8}$/.exec(s)?.[1] ?? '',
                      'base64url',
                    ),
                  ),
              );
            return Buffer.from(await combine(parts));
          },
        },
      );
    },
  },
  {
    name: 'pkcs11 provider (SoftHSM2)',
    software: false,
    async setup() {
      const token = createSoftHsmToken();
      const config = { library: token.library, tokenLabel: token.tokenLabel };
      await initPkcs11({ ...config, pin: token.pin });
      return providerFixture(
        undefined,
        () => new Pkcs11Provider(config),
        (p) => p.unseal(token.pin),
      );
    },
  },
];

after(() => removeSoftHsmTokens());

function hasCode(code: string | readonly string[]) {
  const codes = typeof code === 'string' ? [code] : code;
  return (err: unknown): boolean => {
    assert.ok(err instanceof Error, 'an Error, not a crash');
    assert.ok(
      codes.includes((err as { code?: string }).code ?? ''),
      `expected ${codes.join(' or ')}, got ${(err as { code?: string }).code}: ${err.message}`,
    );
    return true;
  };
}

async function withFixture(subject: Subject, fn: (fx: Fixture) => Promise<void>): Promise<void> {
  const fx = await subject.setup();
  try {
    await fn(fx);
  } finally {
    fx.cleanup();
  }
}

for (const subject of subjects) {
  describe(`${subject.name} keeps the root keyring contract`, () => {
    it('wraps and unwraps a tenant key under root.v1', () =>
      withFixture(subject, async (fx) => {
        const { keyring } = await fx.open();
        const tenantKey = randomBytes(32);
        const envelope = keyring.wrap(tenantKey, PURPOSE, CONTEXT);
        assert.equal(readEnvelopeHeader(envelope).keyId, 'root.v1');
        assert.deepEqual(keyring.unwrap(envelope, PURPOSE, CONTEXT), tenantKey);
        assert.equal(keyring.activeVersion(), 1);
        assert.deepEqual(
          keyring.versions().map(({ version, state }) => ({ version, state })),
          [{ version: 1, state: 'active' }],
        );
      }));

    it("writes the shared envelope layout: 'T' 0x01 len keyId nonce ciphertext tag", () =>
      withFixture(subject, async (fx) => {
        const { keyring } = await fx.open();
        const envelope = keyring.wrap(Buffer.alloc(32, 7), PURPOSE, CONTEXT);
        const keyId = Buffer.from('root.v1', 'ascii');
        assert.deepEqual(
          envelope.subarray(0, 3 + keyId.length),
          Buffer.concat([Buffer.of(0x54, 1, keyId.length), keyId]),
        );
        assert.equal(envelope.length, 3 + keyId.length + 12 + 32 + 16);
      }));

    it('binds envelopes to purpose and context, and refuses tampering', () =>
      withFixture(subject, async (fx) => {
        const { keyring } = await fx.open();
        const envelope = keyring.wrap(randomBytes(32), PURPOSE, CONTEXT);
        assert.throws(
          () => keyring.unwrap(envelope, PURPOSE, { ...CONTEXT, tenant: 't_2' }),
          hasCode('TRESOR_ERR_DECRYPT_FAILED'),
        );
        assert.throws(
          () => keyring.unwrap(envelope, 'other-purpose', CONTEXT),
          hasCode('TRESOR_ERR_DECRYPT_FAILED'),
        );
        for (const at of [12, envelope.length - 20, envelope.length - 1]) {
          const tampered = Buffer.from(envelope);
          tampered[at] = (tampered[at] ?? 0) ^ 0x01;
          assert.throws(
            () => keyring.unwrap(tampered, PURPOSE, CONTEXT),
            hasCode('TRESOR_ERR_DECRYPT_FAILED'),
          );
        }
      }));

    it('keeps old envelopes decrypting after addVersion', () =>
      withFixture(subject, async (fx) => {
        const { keyring } = await fx.open();
        const tenantKey = randomBytes(32);
        const old = keyring.wrap(tenantKey, PURPOSE, CONTEXT);
        assert.equal(await keyring.addVersion(), 2);
        assert.equal(keyring.activeVersion(), 2);
        assert.deepEqual(
          keyring.versions().map(({ version, state }) => ({ version, state })),
          [
            { version: 1, state: 'decrypt-only' },
            { version: 2, state: 'active' },
          ],
        );
        assert.deepEqual(keyring.unwrap(old, PURPOSE, CONTEXT), tenantKey);
        assert.equal(readEnvelopeHeader(keyring.wrap(tenantKey, PURPOSE, CONTEXT)).keyId, 'root.v2');
      }));

    it('refuses to remove the active version', () =>
      withFixture(subject, async (fx) => {
        const { keyring } = await fx.open();
        await assert.rejects(keyring.removeVersion(1), hasCode('TRESOR_ERR_KEY_VERSION_ACTIVE'));
        await keyring.addVersion();
        await assert.rejects(keyring.removeVersion(2), hasCode('TRESOR_ERR_KEY_VERSION_ACTIVE'));
        assert.equal(keyring.activeVersion(), 2);
      }));

    it('makes envelopes of a removed version fail with TRESOR_ERR_KEY_VERSION_RETIRED', () =>
      withFixture(subject, async (fx) => {
        const { keyring } = await fx.open();
        const old = keyring.wrap(randomBytes(32), PURPOSE, CONTEXT);
        await keyring.addVersion();
        await keyring.removeVersion(1);
        assert.throws(() => keyring.unwrap(old, PURPOSE, CONTEXT), hasCode('TRESOR_ERR_KEY_VERSION_RETIRED'));
        await assert.rejects(keyring.removeVersion(1), hasCode('TRESOR_ERR_KEY_VERSION_RETIRED'));
        assert.deepEqual(
          keyring.versions().map((v) => v.version),
          [2],
        );
      }));

    it('reopens after rotation and retirement in a new instance', () =>
      withFixture(subject, async (fx) => {
        const first = await fx.open();
        const k1 = randomBytes(32);
        const k2 = randomBytes(32);
        const e1 = first.keyring.wrap(k1, PURPOSE, CONTEXT);
        await first.keyring.addVersion();
        const e2 = first.keyring.wrap(k2, PURPOSE, CONTEXT);
        await first.keyring.addVersion();
        await first.keyring.removeVersion(1);
        first.seal();

        const second = await fx.open();
        assert.equal(second.keyring.activeVersion(), 3);
        assert.deepEqual(
          second.keyring.versions().map(({ version, state }) => ({ version, state })),
          [
            { version: 2, state: 'decrypt-only' },
            { version: 3, state: 'active' },
          ],
        );
        assert.deepEqual(second.keyring.unwrap(e2, PURPOSE, CONTEXT), k2);
        assert.throws(
          () => second.keyring.unwrap(e1, PURPOSE, CONTEXT),
          hasCode('TRESOR_ERR_KEY_VERSION_RETIRED'),
        );
      }));

    it('forgets the keys when sealed', () =>
      withFixture(subject, async (fx) => {
        const { keyring, provider, seal } = await fx.open();
        const envelope = keyring.wrap(randomBytes(32), PURPOSE, CONTEXT);
        seal();
        if (provider) {
          assert.equal(provider.keyring(), undefined);
          assert.equal(provider.status().sealed, true);
        }
        assert.throws(
          () => keyring.wrap(randomBytes(32), PURPOSE, CONTEXT),
          hasCode(['TRESOR_ERR_KEYD_SEALED', 'TRESOR_ERR_SEAL_CORRUPT']),
        );
        assert.throws(
          () => keyring.unwrap(envelope, PURPOSE, CONTEXT),
          hasCode(['TRESOR_ERR_KEYD_SEALED', 'TRESOR_ERR_KEY_VERSION_RETIRED']),
        );
      }));
  });

  if (!subject.software) continue; // the token's keys are unreadable: pkcs11.test.ts proves it
  describe(`${subject.name} keeps its sealed file safe`, () => {
    it('keeps no root key or seal secret (raw, hex or base64) anywhere in keyd’s folder', async () => {
      const fx = await subject.setup();
      try {
        assert.ok(fx.dir && fx.sealKey);
        const { keyring } = await fx.open();
        await keyring.addVersion(); // two versions on disk
        const dir = fx.dir;
        const file = JSON.parse(readFileSync(join(dir, KEYRING_FILE), 'utf8'));
        const ctx: Record<string, string | number> = { provider: file.provider };
        for (const [k, v] of Object.entries(file.params as Record<string, string | number>))
          ctx[`param.${k}`] = v;
        const sealKey = await fx.sealKey();
        const body = JSON.parse(
          openEnvelope(sealKey, 'seal', Buffer.from(file.sealed, 'base64'), 'root-keyring', ctx).toString(
            'utf8',
          ),
        ) as { versions: { key: string }[] };
        const rootKeys = body.versions.map((v) => Buffer.from(v.key, 'base64'));
        assert.equal(rootKeys.length, 2);
        const secrets = subject.name === 'dev-file provider' ? rootKeys : [...rootKeys, sealKey];
        for (const name of readdirSync(dir)) {
          const bytes = readFileSync(join(dir, name));
          for (const secret of secrets) {
            assert.equal(secret.length, 32);
            for (const needle of [
              secret,
              Buffer.from(secret.toString('hex')),
              Buffer.from(secret.toString('base64')),
              Buffer.from(secret.toString('base64url')),
            ]) {
              assert.equal(bytes.includes(needle), false, `${name} holds a root or seal key`);
            }
          }
        }
      } finally {
        fx.cleanup();
      }
    });

    it('refuses a corrupted keyring file (flipped bytes, truncation) with a keyd error, never a crash', async () => {
      const fx = await subject.setup();
      try {
        assert.ok(fx.dir);
        const path = join(fx.dir, KEYRING_FILE);
        const original = readFileSync(path);
        const file = JSON.parse(original.toString('utf8'));
        const sealed = Buffer.from(file.sealed, 'base64');
        const expectRefused = async (content: Buffer | string) => {
          writeFileSync(path, content);
          await assert.rejects(fx.open(), hasCode(['TRESOR_ERR_SEAL_CORRUPT', 'TRESOR_ERR_UNSEAL_FAILED']));
        };
        // Every byte of the authenticated envelope: header, nonce, ciphertext, tag.
        const step = subject.name.startsWith('passphrase') ? 23 : 1; // scrypt per attempt: sample
        for (let i = 0; i < sealed.length; i += step) {
          const flipped = Buffer.from(sealed);
          flipped[i] = (flipped[i] ?? 0) ^ 0x01;
          await expectRefused(JSON.stringify({ ...file, sealed: flipped.toString('base64') }));
        }
        // Raw bytes of the file: each flip that changes what the file says is refused.
        for (let i = 0; i < original.length; i += step * 7) {
          const raw = Buffer.from(original);
          raw[i] = (raw[i] ?? 0) ^ 0x20;
          writeFileSync(path, raw);
          try {
            await fx.open();
            // Only a flip Node's lenient base64 decoder skips (padding) may leave the file openable.
            const reread = JSON.parse(raw.toString('utf8'));
            assert.deepEqual(
              Buffer.from(reread.sealed, 'base64'),
              sealed,
              `flip at ${i} opened a changed file`,
            );
          } catch (err) {
            // CONFIG_INVALID: the provider name was hit; SHARE_INVALID: the Shamir keyring id was.
            hasCode([
              'TRESOR_ERR_SEAL_CORRUPT',
              'TRESOR_ERR_UNSEAL_FAILED',
              'TRESOR_ERR_CONFIG_INVALID',
              'TRESOR_ERR_SHARE_INVALID',
            ])(err);
          }
        }
        for (const length of [0, 1, Math.floor(original.length / 2), original.length - 4]) {
          await expectRefused(original.subarray(0, length));
        }
        await expectRefused('not json at all');
        await expectRefused(JSON.stringify({ ...file, sealed: sealed.subarray(0, 20).toString('base64') }));
      } finally {
        fx.cleanup();
      }
    });
  });
}
