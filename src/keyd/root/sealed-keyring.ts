/**
 * The software root keyring: root key versions kept in one sealed file, encrypted (AES-256-GCM)
 * under a seal key that the provider reconstructs — from the dev key file, an operator passphrase
 * (scrypt), or M-of-N Shamir shares. The provider's public parameters (KDF salt, threshold…) are
 * bound into the AAD, so editing them in the file makes it fail to open rather than open weakly.
 *
 * File: {"format":"tresor-root-keyring-v1","provider":…,"params":{…},"sealed":"<base64 envelope>"}
 * Sealed plaintext: {"versions":[{"version":1,"createdAt":"…","state":"active","key":"<base64>"}]}
 *
 * Key buffers are wiped (src/crypto/index.ts): the seal key and every version are copied into memory
 * of their own and wiped on close and on removal. The plaintext JSON passes through JavaScript strings
 * when the file is opened or rewritten (at unseal and root rotation only); strings cannot be wiped and
 * live until garbage collection — the price of a readable file format.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  type AadContext,
  CryptoError,
  KEY_BYTES,
  openEnvelope,
  readEnvelopeHeader,
  sealEnvelope,
  secretCopy,
  secretFromText,
  wipe,
} from '../../crypto/index.ts';
import { KeydError } from '../errors.ts';
import { writeFileAtomic } from './atomic-file.ts';
import type { RootKeyring, RootKeyVersion, RootProviderKind } from './types.ts';

const FORMAT = 'tresor-root-keyring-v1';
const SEAL_KEY_ID = 'seal';

export type SealParams = Record<string, string | number>;

interface KeyringFile {
  format: string;
  provider: RootProviderKind;
  params: SealParams;
  sealed: string;
}

interface VersionRecord extends RootKeyVersion {
  key: Buffer;
}

export function rootKeyId(version: number): string {
  return `root.v${version}`;
}

function parseRootKeyId(keyId: string): number {
  const m = /^root\.v([1-9][0-9]{0,8})$/.exec(keyId);
  if (!m?.[1]) throw new KeydError('TRESOR_ERR_KEY_ID_UNKNOWN', 'envelope is not wrapped by a root key');
  return Number(m[1]);
}

function sealContext(provider: RootProviderKind, params: SealParams): AadContext {
  const ctx: Record<string, string | number> = { provider };
  for (const [k, v] of Object.entries(params)) ctx[`param.${k}`] = v;
  return ctx;
}

/** Reads the file's public part (provider and parameters) without any secret. */
export function readKeyringFile(path: string): KeyringFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new KeydError('TRESOR_ERR_NOT_INITIALISED', 'no sealed root keyring: run `tresor keyd init`');
    }
    throw new KeydError('TRESOR_ERR_SEAL_CORRUPT', 'sealed root keyring is not valid JSON');
  }
  const f = parsed as Partial<KeyringFile>;
  if (
    f.format !== FORMAT ||
    typeof f.provider !== 'string' ||
    typeof f.sealed !== 'string' ||
    typeof f.params !== 'object' ||
    f.params === null
  ) {
    throw new KeydError('TRESOR_ERR_SEAL_CORRUPT', 'sealed root keyring has an unknown format');
  }
  return f as KeyringFile;
}

export class SealedFileKeyring implements RootKeyring {
  readonly provider: RootProviderKind;
  readonly #path: string;
  readonly #params: SealParams;
  #sealKey: Buffer;
  #versions: VersionRecord[];

  private constructor(
    path: string,
    provider: RootProviderKind,
    params: SealParams,
    sealKey: Buffer,
    versions: VersionRecord[],
  ) {
    this.#path = path;
    this.provider = provider;
    this.#params = params;
    this.#sealKey = secretCopy(sealKey); // the caller wipes its own
    this.#versions = versions;
  }

  /** Creates a new keyring file with root version 1. Refuses to overwrite an existing one. */
  static create(
    path: string,
    provider: RootProviderKind,
    params: SealParams,
    sealKey: Buffer,
  ): SealedFileKeyring {
    const ring = new SealedFileKeyring(path, provider, params, sealKey, [
      { version: 1, createdAt: new Date().toISOString(), state: 'active', key: randomBytes(KEY_BYTES) },
    ]);
    try {
      ring.#persist(true);
    } catch (err) {
      ring.close();
      throw err;
    }
    return ring;
  }

  /** Opens the keyring file; a wrong seal key or an edited file fails with TRESOR_ERR_UNSEAL_FAILED. */
  static open(path: string, sealKey: Buffer): SealedFileKeyring {
    const file = readKeyringFile(path);
    const sealedBytes = Buffer.from(file.sealed, 'base64');
    // Node's base64 decoder is lenient; refuse anything that is not the canonical encoding.
    if (sealedBytes.toString('base64') !== file.sealed) {
      throw new KeydError('TRESOR_ERR_SEAL_CORRUPT', 'sealed root keyring is not canonical base64');
    }
    let plaintext: Buffer;
    try {
      plaintext = openEnvelope(
        sealKey,
        SEAL_KEY_ID,
        sealedBytes,
        'root-keyring',
        sealContext(file.provider, file.params),
      );
    } catch (err) {
      if (err instanceof CryptoError && err.code === 'TRESOR_ERR_DECRYPT_FAILED') {
        throw new KeydError(
          'TRESOR_ERR_UNSEAL_FAILED',
          'the seal secret does not open the root keyring (wrong secret, or the file was altered)',
        );
      }
      throw new KeydError('TRESOR_ERR_SEAL_CORRUPT', 'sealed root keyring is malformed');
    }
    const versions: VersionRecord[] = [];
    try {
      const body = JSON.parse(plaintext.toString('utf8')) as {
        versions: { version: number; createdAt: string; state: RootKeyVersion['state']; key: string }[];
      };
      for (const v of body.versions) versions.push({ ...v, key: secretFromText(v.key, 'base64') });
      if (
        versions.length === 0 ||
        versions.some((v) => v.key.length !== KEY_BYTES) ||
        versions.filter((v) => v.state === 'active').length !== 1
      ) {
        throw new Error('keyring must have exactly one active version, and 32-byte keys');
      }
      return new SealedFileKeyring(path, file.provider, file.params, sealKey, versions);
    } catch {
      for (const v of versions) wipe(v.key);
      throw new KeydError('TRESOR_ERR_SEAL_CORRUPT', 'sealed root keyring content is malformed');
    } finally {
      wipe(plaintext);
    }
  }

  #persist(createOnly = false): void {
    const body = JSON.stringify({
      versions: this.#versions.map((v) => ({
        version: v.version,
        createdAt: v.createdAt,
        state: v.state,
        key: v.key.toString('base64'),
      })),
    });
    const plain = secretFromText(body, 'utf8');
    let sealed: Buffer;
    try {
      sealed = sealEnvelope(
        this.#sealKey,
        SEAL_KEY_ID,
        plain,
        'root-keyring',
        sealContext(this.provider, this.#params),
      );
    } finally {
      wipe(plain);
    }
    const file: KeyringFile = {
      format: FORMAT,
      provider: this.provider,
      params: this.#params,
      sealed: sealed.toString('base64'),
    };
    if (createOnly) {
      try {
        readFileSync(this.#path);
        throw new KeydError('TRESOR_ERR_ALREADY_INITIALISED', 'a sealed root keyring already exists');
      } catch (err) {
        if (err instanceof KeydError) throw err;
      }
    }
    writeFileAtomic(this.#path, `${JSON.stringify(file, null, 2)}\n`);
  }

  #active(): VersionRecord {
    if (this.#versions.length === 0)
      throw new KeydError('TRESOR_ERR_KEYD_SEALED', 'the root keyring is closed');
    const v = this.#versions.find((x) => x.state === 'active');
    if (!v) throw new KeydError('TRESOR_ERR_SEAL_CORRUPT', 'no active root key version');
    return v;
  }

  activeVersion(): number {
    return this.#active().version;
  }

  versions(): RootKeyVersion[] {
    return this.#versions.map(({ version, createdAt, state }) => ({ version, createdAt, state }));
  }

  wrap(plaintext: Uint8Array, purpose: string, context: AadContext): Buffer {
    const v = this.#active();
    return sealEnvelope(v.key, rootKeyId(v.version), plaintext, purpose, context);
  }

  unwrap(envelope: Uint8Array, purpose: string, context: AadContext): Buffer {
    const { keyId } = readEnvelopeHeader(envelope);
    const version = parseRootKeyId(keyId);
    const v = this.#versions.find((x) => x.version === version);
    if (!v)
      throw new KeydError(
        'TRESOR_ERR_KEY_VERSION_RETIRED',
        `root key version ${version} is retired or unknown`,
      );
    return openEnvelope(v.key, keyId, envelope, purpose, context);
  }

  async addVersion(): Promise<number> {
    const next = Math.max(...this.#versions.map((v) => v.version)) + 1;
    const before = this.#versions;
    const key = randomBytes(KEY_BYTES);
    this.#versions = [
      ...before.map((v) => ({ ...v, state: 'decrypt-only' as const })),
      { version: next, createdAt: new Date().toISOString(), state: 'active', key },
    ];
    try {
      this.#persist();
    } catch (err) {
      this.#versions = before;
      wipe(key);
      throw err;
    }
    return next;
  }

  async removeVersion(version: number): Promise<void> {
    const v = this.#versions.find((x) => x.version === version);
    if (!v)
      throw new KeydError('TRESOR_ERR_KEY_VERSION_RETIRED', `root key version ${version} is already retired`);
    if (v.state === 'active') throw new KeydError('TRESOR_ERR_KEY_VERSION_ACTIVE');
    const before = this.#versions;
    this.#versions = before.filter((x) => x !== v);
    try {
      this.#persist();
    } catch (err) {
      this.#versions = before;
      throw err;
    }
    wipe(v.key);
  }

  close(): void {
    for (const v of this.#versions) wipe(v.key);
    wipe(this.#sealKey);
    this.#versions = [];
  }
}
