/**
 * Root key rotation and retirement. Both hold the root lock exclusively, so no tenant or signing
 * operation reads a row wrapped by a root version being rewrapped or retired.
 */
import { wipe } from '../crypto/index.ts';
import { KeydError } from './errors.ts';
import type { RootLock } from './locks.ts';
import type { OpHandlers } from './op-record.ts';
import type { RootKeyring } from './root/types.ts';
import {
  BACKUP_KEY_AAD,
  backupKeyAad,
  rootVersionOf,
  rowError,
  SIGNING_KEY_AAD,
  signingKeyAad,
  TENANT_KEY_AAD,
  tenantKeyAad,
} from './root-wrapping.ts';
import type { KeyStore, Rewrapped, RootWrappedRow } from './store.ts';

export interface RootRotationDeps {
  store: Pick<KeyStore, 'rewrapRootRows' | 'countRootVersionUse'>;
  rootLock: RootLock;
  keyring: () => RootKeyring;
}

export function rootKeyOperations({
  store,
  rootLock,
  keyring: unsealed,
}: RootRotationDeps): Pick<OpHandlers, 'rotateRootKey' | 'retireRootKeyVersion'> {
  return {
    rotateRootKey: (_args, rec) =>
      rootLock.exclusive(async () => {
        const keyring = unsealed();
        // Step 1 is durable on its own; until step 2 commits, every row still names an old version
        // that the keyring keeps, so a crash in between leaves a working keyd.
        const version = await keyring.addVersion();
        rec.detail = `root v${version} added; rows not rewrapped`;
        const rewrapped = await store.rewrapRootRows(
          version,
          (row) => rewrapRootRow(keyring, row, version),
          (n) => rec.draft('ok', `root v${version}: ${n} keys rewrapped`),
        );
        rec.committed();
        return { version, rewrapped };
      }),

    retireRootKeyVersion: ({ version }, rec) =>
      rootLock.exclusive(async () => {
        const keyring = unsealed();
        if (keyring.activeVersion() === version) throw new KeydError('TRESOR_ERR_KEY_VERSION_ACTIVE');
        if (!keyring.versions().some((v) => v.version === version)) {
          throw new KeydError(
            'TRESOR_ERR_KEY_VERSION_RETIRED',
            `root key version ${version} is retired or unknown`,
          );
        }
        const inUse = await store.countRootVersionUse(version);
        if (inUse > 0) {
          throw new KeydError(
            'TRESOR_ERR_KEY_VERSION_IN_USE',
            `root key version ${version} still wraps ${inUse} keys: rotate the root key first`,
          );
        }
        await keyring.removeVersion(version);
        rec.detail = `root v${version} removed`;
        return { version };
      }),
  };
}

function rewrapRootRow(keyring: RootKeyring, row: RootWrappedRow, version: number): Rewrapped {
  const [aadPurpose, aad, where] =
    row.table === 'tenant_keys'
      ? [TENANT_KEY_AAD, tenantKeyAad(row), `tenant_keys row (tenant ${row.tenant}, version ${row.version})`]
      : row.table === 'signing_keys'
        ? [SIGNING_KEY_AAD, signingKeyAad(row), `signing_keys row (${row.purpose})`]
        : [BACKUP_KEY_AAD, backupKeyAad(row), `backup_keys row (version ${row.version})`];
  let plain: Buffer;
  try {
    plain = keyring.unwrap(row.wrapped, aadPurpose, aad);
  } catch (err) {
    throw rowError(where, err);
  }
  try {
    const wrapped = keyring.wrap(plain, aadPurpose, aad);
    const rootVersion = rootVersionOf(wrapped);
    if (rootVersion !== version) {
      throw new KeydError(
        'TRESOR_ERR_INTERNAL',
        `root keyring wrapped under v${rootVersion}, expected v${version}`,
      );
    }
    return { rootVersion, wrapped };
  } finally {
    wipe(plain);
  }
}
