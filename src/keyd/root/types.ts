/**
 * Root-key providers. The root key is the top of the hierarchy and never leaves keyd:
 *
 *   seal secret (dev key file | passphrase → scrypt | M-of-N Shamir shares)  or  PKCS#11 token
 *     └─ root keyring: root key versions (sealed file, or non-extractable keys in the HSM)
 *          └─ tenant keys (keyd store, wrapped by a root version)
 *               └─ data keys (beside the data, wrapped by a tenant key) → field values
 *
 * While sealed, keyd holds no root key and answers only status and unseal.
 */
import type { AadContext } from '../../crypto/index.ts';

export type RootProviderKind = 'dev-file' | 'passphrase' | 'shamir' | 'pkcs11';

export interface RootKeyVersion {
  version: number;
  createdAt: string; // ISO 8601
  /** active: wraps new keys; decrypt-only: unwraps until retired. */
  state: 'active' | 'decrypt-only';
}

/** The unsealed root keyring. Envelopes it makes carry key id `root.v<version>`. */
export interface RootKeyring {
  readonly provider: RootProviderKind;
  activeVersion(): number;
  versions(): RootKeyVersion[];
  /** Seals `plaintext` under the active root version, bound to `purpose` and `context`. */
  wrap(plaintext: Uint8Array, purpose: string, context: AadContext): Buffer;
  /** Opens an envelope made by wrap(); fails on a retired version or any tampering. */
  unwrap(envelope: Uint8Array, purpose: string, context: AadContext): Buffer;
  /** Rotation step 1: a new active version; the previous one becomes decrypt-only. Durable on return. */
  addVersion(): Promise<number>;
  /** Retirement: forget a decrypt-only version for good. Refuses the active version. Durable on return. */
  removeVersion(version: number): Promise<void>;
  /** Wipes in-memory key material (or logs out of the token). */
  close(): void;
}

export interface SealStatus {
  provider: RootProviderKind;
  initialised: boolean;
  sealed: boolean;
  /** Shamir only: shares accepted so far and the threshold. */
  progress?: { submitted: number; threshold: number };
}

/**
 * A provider opens the root keyring. `unseal` takes one secret at a time: the passphrase, one
 * Shamir share, or the token PIN; the dev key file needs none (`unseal('')`).
 * Errors are KeydError with codes TRESOR_ERR_UNSEAL_FAILED (wrong passphrase/PIN, shares that do not
 * reconstruct the key), TRESOR_ERR_SHARE_INVALID (malformed or duplicate share),
 * TRESOR_ERR_NOT_INITIALISED, TRESOR_ERR_SEAL_CORRUPT (sealed file unreadable or tampered).
 */
export interface RootKeyProvider {
  readonly kind: RootProviderKind;
  status(): SealStatus;
  unseal(secret: string): Promise<SealStatus>;
  /** The keyring once unsealed, else undefined. */
  keyring(): RootKeyring | undefined;
  /** Forgets the keyring and any partial shares (wipes memory). */
  seal(): void;
}
