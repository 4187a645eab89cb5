/**
 * Blind-index rows: searchable fields get, per record, HMAC-SHA-256 over the value's canonical form
 * under a per-field key derived from the collection's pinned blind-index key. A search computes the
 * MACs of the asked values and lets the store intersect the matching record ids (src/vault/record-search.ts).
 */
import type { Transaction } from 'kysely';
import { blindIndex, deriveBlindIndexKey } from '../crypto/index.ts';
import { FixedStatement } from '../store/dialect.ts';
import type { Collection } from './collection-row.ts';
import { indexForm, type RecordData } from './schema.ts';
import type { TenantDB } from './tenant-store-schema.ts';
import type { CryptoContext } from './vault-context.ts';

export interface IndexRow {
  record: string;
  field: string;
  mac: Buffer;
}

// Precompiled: a record create's single index row is on the hottest write path.
const INSERT_INDEX_ROW = new FixedStatement(
  'INSERT INTO blind_index (collection, field, mac, record_id) VALUES (?, ?, ?, ?)',
);

/**
 * Lends the blind-index key of one field of a collection (HKDF from the collection's blind-index
 * key, src/crypto/blind-index.ts) to `fn`; derived once and then cached by the keyring. The cursor
 * key is the field key of CURSOR_SCOPE_FIELD.
 */
export function withFieldKey<T>(
  ctx: CryptoContext,
  tenant: string,
  collection: Collection,
  field: string,
  fn: (fieldKey: Buffer) => T,
): Promise<T> {
  return ctx.keys.withDerivedKey(
    tenant,
    'blind-index',
    collection.blindIndexKeyId,
    `blind-index-field\u0000${collection.name}\u0000${field}`,
    (indexKey) => deriveBlindIndexKey(indexKey, { tenant, collection: collection.name, field }),
    fn,
  );
}

/**
 * Blind-index rows for the searchable fields (or only `only`) of the given records, under the
 * collection's pinned blind-index key. Per-field keys are derived inside the loan and wiped.
 */
export async function computeIndexRows(
  ctx: CryptoContext,
  tenant: string,
  collection: Collection,
  items: ReadonlyArray<{ id: string; data: RecordData }>,
  only?: ReadonlySet<string>,
): Promise<IndexRow[]> {
  const fields = Object.entries(collection.schema.fields).filter(
    ([name, def]) => def.searchable && (!only || only.has(name)),
  );
  if (fields.length === 0 || items.length === 0) return [];
  const rows: IndexRow[] = [];
  for (const [field, def] of fields) {
    await withFieldKey(ctx, tenant, collection, field, (fieldKey) => {
      for (const { id, data } of items) {
        const value = data[field];
        if (value === undefined || value === null) continue;
        rows.push({ record: id, field, mac: blindIndex(fieldKey, indexForm(def.type, value)) });
      }
    });
  }
  return rows;
}

export async function insertIndexRows(
  trx: Transaction<TenantDB>,
  collection: string,
  rows: readonly IndexRow[],
): Promise<void> {
  if (rows.length === 1) {
    const [r] = rows as [IndexRow];
    await trx.executeQuery(INSERT_INDEX_ROW.compile(trx, [collection, r.field, r.mac, r.record]));
    return;
  }
  // 4 parameters a row: 200 rows stay far below SQLite's bound-parameter limit.
  for (let start = 0; start < rows.length; start += 200) {
    await trx
      .insertInto('blind_index')
      .values(
        rows
          .slice(start, start + 200)
          .map((r) => ({ collection, field: r.field, mac: r.mac, record_id: r.record })),
      )
      .execute();
  }
}
