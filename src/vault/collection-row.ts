/** A collection as records see it: its stored row, parsed. */
import type { Kysely, Selectable, Transaction } from 'kysely';
import { type CollectionSchema, isValidName } from './schema.ts';
import type { CollectionsTable, TenantDB } from './tenant-store-schema.ts';

export interface Collection {
  name: string;
  version: number;
  schema: CollectionSchema;
  blindIndexKeyId: string;
  createdAt: string;
  updatedAt: string;
}

export function collectionFromRow(row: Selectable<CollectionsTable>): Collection {
  return {
    name: row.name,
    version: row.schema_version,
    schema: JSON.parse(row.schema) as CollectionSchema,
    blindIndexKeyId: row.blind_index_key_id,
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
  };
}

export async function loadCollection(
  db: Kysely<TenantDB> | Transaction<TenantDB>,
  name: string,
): Promise<Collection | undefined> {
  if (!isValidName(name)) return undefined;
  const row = await db.selectFrom('collections').selectAll().where('name', '=', name).executeTakeFirst();
  return row ? collectionFromRow(row) : undefined;
}
