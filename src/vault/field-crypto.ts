/**
 * Field values sealed and opened. Each field value is its own AES-256-GCM envelope
 * (src/crypto/envelope.ts) of its JSON, with AAD {tenant, collection, record, field, version}, so a
 * ciphertext copied to another field, record, collection or tenant — or an old field value spliced
 * into a newer record — fails authentication (docs/architecture.md, invariant 3). Every write re-encrypts all
 * the record's fields at the new record version: a record is one consistent version, and the
 * decryption a PATCH needs anyway (to validate required fields and return the whole record) makes
 * that nearly free. One withEncryptionKey call per record write counts all its encryptions
 * (NIST SP 800-38D §8.3, src/vault/data-keys.ts).
 */
import { CryptoError, openEnvelope, readEnvelopeHeader, sealEnvelope, wipe } from '../crypto/index.ts';
import { KeydError } from '../keyd/errors.ts';
import type { Collection } from './collection-row.ts';
import { decodeFieldEnvelopes, encodeFieldEnvelopes } from './field-envelopes.ts';
import type { JsonValue, RecordData } from './schema.ts';
import type { CryptoContext } from './vault-context.ts';

/** AAD purpose of field envelopes. */
export const FIELD_PURPOSE = 'field';
/** Records per key loan when a migration seals or opens many: keeps the event loop responsive. */
export const CRYPTO_CHUNK = 1000;

export interface FieldToSeal {
  collection: string;
  record: string;
  field: string;
  version: number;
  value: JsonValue;
}

/** Seals values, counting every encryption on the tenant's data key; one key loan per chunk. */
export async function sealValues(
  ctx: CryptoContext,
  tenant: string,
  items: FieldToSeal[],
): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let start = 0; start < items.length; start += CRYPTO_CHUNK) {
    const chunk = items.slice(start, start + CRYPTO_CHUNK);
    const sealed = await ctx.keys.withEncryptionKey(tenant, 'data', chunk.length, (key, keyId) =>
      chunk.map(({ collection, record, field, version, value }) => {
        const plaintext = Buffer.from(JSON.stringify(value), 'utf8');
        try {
          return sealEnvelope(key, keyId, plaintext, FIELD_PURPOSE, {
            tenant,
            collection,
            record,
            field,
            version,
          });
        } finally {
          wipe(plaintext);
        }
      }),
    );
    out.push(...sealed);
  }
  return out;
}

/** Seals a whole record at `version` (one withEncryptionKey call) and returns its fields BLOB. */
export async function sealRecord(
  ctx: CryptoContext,
  tenant: string,
  collection: string,
  record: string,
  version: number,
  data: RecordData,
): Promise<Buffer> {
  const names = Object.keys(data);
  const items = names.map((field) => ({
    collection,
    record,
    field,
    version,
    value: data[field] as JsonValue,
  }));
  const sealed = items.length > 0 ? await sealValues(ctx, tenant, items) : [];
  return encodeFieldEnvelopes(new Map(names.map((n, i) => [n, sealed[i] as Buffer])));
}

/**
 * Opens a record's envelopes (or only the `only` fields), one key loan per data key id. Fields are
 * returned in schema order; a tampered or moved envelope throws TRESOR_ERR_DECRYPT_FAILED.
 */
export async function openRecord(
  ctx: CryptoContext,
  tenant: string,
  collection: Collection,
  record: string,
  version: number,
  fields: Uint8Array | ReadonlyMap<string, Buffer>,
  only?: ReadonlySet<string>,
): Promise<RecordData> {
  const envelopes = fields instanceof Map ? fields : decodeFieldEnvelopes(fields as Uint8Array);
  const byKey = new Map<string, Array<[string, Buffer]>>();
  for (const [field, env] of envelopes) {
    if (!Object.hasOwn(collection.schema.fields, field) || (only && !only.has(field))) continue;
    const { keyId } = readEnvelopeHeader(env);
    const list = byKey.get(keyId) ?? [];
    list.push([field, env]);
    byKey.set(keyId, list);
  }
  const values = new Map<string, JsonValue>();
  for (const [keyId, list] of byKey) {
    await ctx.keys
      .withDecryptionKey(tenant, 'data', keyId, (key) => {
        for (const [field, env] of list) {
          const context = { tenant, collection: collection.name, record, field, version };
          const plaintext = openEnvelope(key, keyId, env, FIELD_PURPOSE, context);
          try {
            values.set(field, JSON.parse(plaintext.toString('utf8')) as JsonValue);
          } finally {
            wipe(plaintext);
          }
        }
      })
      .catch((err: unknown) => {
        // An envelope naming a data key this tenant never had was not written for this tenant (it
        // was moved from another store): a failed decryption (500, audited), not a missing record.
        if (err instanceof KeydError && err.code === 'TRESOR_ERR_KEY_ID_UNKNOWN') {
          throw new CryptoError('TRESOR_ERR_DECRYPT_FAILED', 'a stored envelope names an unknown data key');
        }
        throw err;
      });
  }
  const data: RecordData = {};
  for (const field of Object.keys(collection.schema.fields)) {
    const value = values.get(field);
    if (value !== undefined) data[field] = value;
  }
  return data;
}
