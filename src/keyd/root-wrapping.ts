/**
 * The keys keyd stores wrapped by the root keyring — tenant key versions, signing seeds and backup
 * key versions — and how
 * each is bound to what it is and where it belongs (AAD purposes, src/crypto/aad.ts).
 */
import { CryptoError, readEnvelopeHeader } from '../crypto/index.ts';
import { KeydError } from './errors.ts';
import type { RootKeyProvider, RootKeyring } from './root/types.ts';

export const TENANT_KEY_AAD = 'tenant-key';
export const SIGNING_KEY_AAD = 'signing';
export const BACKUP_KEY_AAD = 'backup-key';

export function tenantKeyAad(row: { tenant: string; version: number; keyId: string }) {
  return { tenant: row.tenant, version: row.version, keyId: row.keyId };
}

export function signingKeyAad(row: { purpose: string; keyId: string }) {
  return { purpose: row.purpose, keyId: row.keyId };
}

export function backupKeyAad(row: { version: number; keyId: string }) {
  return { version: row.version, keyId: row.keyId };
}

/** The unsealed root keyring; TRESOR_ERR_KEYD_SEALED when the provider is sealed. */
export function unsealedKeyring(provider: RootKeyProvider): RootKeyring {
  const keyring = provider.keyring();
  if (!keyring) throw new KeydError('TRESOR_ERR_KEYD_SEALED');
  return keyring;
}

/** Root keyrings name their versions `root.v<n>` in the envelopes they make (root/types.ts). */
export function rootVersionOf(envelope: Buffer): number {
  const m = /^root\.v([1-9][0-9]*)$/.exec(readEnvelopeHeader(envelope).keyId);
  if (!m?.[1])
    throw new KeydError('TRESOR_ERR_INTERNAL', 'root keyring made an envelope without a root version');
  return Number(m[1]);
}

/** Errors while opening a stored row become STORE_CORRUPT naming the row, never its bytes. */
export function rowError(where: string, err: unknown): unknown {
  if (err instanceof CryptoError) {
    return new KeydError(
      'TRESOR_ERR_STORE_CORRUPT',
      `${where} does not authenticate: it was corrupted or moved from another row`,
    );
  }
  if (
    err instanceof KeydError &&
    (err.code === 'TRESOR_ERR_KEY_VERSION_RETIRED' || err.code === 'TRESOR_ERR_KEY_ID_UNKNOWN')
  ) {
    return new KeydError(
      'TRESOR_ERR_STORE_CORRUPT',
      `${where} is wrapped by a root key version the keyring does not have`,
    );
  }
  return err;
}
