/**
 * Data keys: generated here, returned in plaintext and wrapped by the tenant key's active version.
 * keyd keeps no data key; the caller stores the wrapped form, bound to tenant, key id and purpose.
 */
import { randomBytes } from 'node:crypto';
import { CryptoError, KEY_BYTES, newKeyId, openEnvelope, sealEnvelope, wipe } from '../crypto/index.ts';
import type { EncryptionBudget } from './encryption-budget.ts';
import { KeydError } from './errors.ts';
import type { OpHandlers } from './op-record.ts';
import type { DataKeyPurpose } from './operations.ts';
import type { KeyStore } from './store.ts';
import type { TenantKeys } from './tenant-keys.ts';

// AAD purpose (src/crypto/aad.ts): a wrapped data key is bound to what it is and where it belongs.
const DATA_KEY_AAD = 'data-key';

export interface DataKeyDeps {
  store: Pick<KeyStore, 'appendOps'>;
  tenantKeys: TenantKeys;
  budget: EncryptionBudget;
}

export function dataKeyOperations({
  store,
  tenantKeys,
  budget,
}: DataKeyDeps): Pick<OpHandlers, 'generateDataKey' | 'unwrapDataKey' | 'rewrapDataKey'> {
  return {
    generateDataKey: ({ tenant, purpose }, rec) =>
      tenantKeys.locked(tenant, async () => {
        const row = await budget.reserve(tenant, rec);
        const keyId = newKeyId('dk');
        const key = randomBytes(KEY_BYTES);
        rec.secrets.push(key);
        const wrapped = tenantKeys.withKey(row, (tk) =>
          sealEnvelope(tk, row.keyId, key, DATA_KEY_AAD, { tenant, keyId, purpose }),
        );
        rec.keyId = keyId;
        rec.detail = `${purpose} under ${row.keyId}`;
        rec.durable = store.appendOps(rec.draft('ok'), rec.encryptions);
        return { keyId, purpose, tenant, key, wrapped };
      }),

    unwrapDataKey: ({ tenant, purpose, keyId, wrapped }, rec) =>
      tenantKeys.locked(tenant, async () => {
        rec.keyId = keyId;
        const row = await tenantKeys.wrappingVersion(tenant, wrapped);
        const key = tenantKeys.withKey(row, (tk) =>
          openDataKey(tk, row.keyId, wrapped, tenant, keyId, purpose),
        );
        rec.secrets.push(key);
        rec.detail = `${purpose} under ${row.keyId}`;
        rec.durable = store.appendOps(rec.draft('ok'));
        return { key };
      }),

    rewrapDataKey: ({ tenant, purpose, keyId, wrapped }, rec) =>
      tenantKeys.locked(tenant, async () => {
        rec.keyId = keyId;
        const source = await tenantKeys.wrappingVersion(tenant, wrapped);
        if (source.state === 'active') {
          // Already under the active version: prove it opens, spend no encryption on it.
          wipe(
            tenantKeys.withKey(source, (tk) =>
              openDataKey(tk, source.keyId, wrapped, tenant, keyId, purpose),
            ),
          );
          rec.detail = `${purpose} already under ${source.keyId}`;
          rec.durable = store.appendOps(rec.draft('ok'));
          return { wrapped: Buffer.from(wrapped) };
        }
        const target = await budget.reserve(tenant, rec);
        const key = tenantKeys.withKey(source, (tk) =>
          openDataKey(tk, source.keyId, wrapped, tenant, keyId, purpose),
        );
        try {
          const rewrapped = tenantKeys.withKey(target, (tk) =>
            sealEnvelope(tk, target.keyId, key, DATA_KEY_AAD, { tenant, keyId, purpose }),
          );
          rec.detail = `${purpose} from ${source.keyId} to ${target.keyId}`;
          rec.durable = store.appendOps(rec.draft('ok'), rec.encryptions);
          return { wrapped: rewrapped };
        } finally {
          wipe(key);
        }
      }),
  };
}

/** Opens a data key wrapped by a tenant key; any mismatch of tenant, key id or purpose fails. */
function openDataKey(
  tenantKey: Buffer,
  tenantKeyId: string,
  wrapped: Buffer,
  tenant: string,
  keyId: string,
  purpose: DataKeyPurpose,
): Buffer {
  let key: Buffer;
  try {
    key = openEnvelope(tenantKey, tenantKeyId, wrapped, DATA_KEY_AAD, { tenant, keyId, purpose });
  } catch (err) {
    if (err instanceof CryptoError) {
      throw new KeydError(
        'TRESOR_ERR_WRAPPED_KEY_INVALID',
        'wrapped key does not authenticate for this tenant, key id and purpose (or was tampered with)',
      );
    }
    throw err;
  }
  if (key.length !== KEY_BYTES) {
    wipe(key);
    throw new KeydError('TRESOR_ERR_WRAPPED_KEY_INVALID', 'wrapped key does not hold a 32-byte key');
  }
  return key;
}
