/**
 * Work prepared under one schema version commits only under that version. No key is ever used
 * inside a write(): the keyring may itself write (reservations), so all cryptography happens before
 * the transaction opens, and the transaction re-checks that the schema it was done for is still
 * current (else the operation is prepared again).
 */
import type { Transaction } from 'kysely';
import { TresorError } from '../errors.ts';
import { FixedStatement } from '../store/dialect.ts';
import type { Store } from '../store/types.ts';
import type { Collection } from './collection-row.ts';
import type { TenantDB } from './tenant-store-schema.ts';
import type { VaultContext } from './vault-context.ts';

/** A write retried this often because the schema changed under it gives up with 409. */
const MAX_ATTEMPTS = 5;

/** Thrown inside a write when the schema changed since the work was prepared; the caller retries. */
export class StaleSchema extends Error {}

// Precompiled: it runs in every record write (see INSERT_RECORD in src/vault/records.ts).
const SCHEMA_VERSION = new FixedStatement('SELECT schema_version FROM collections WHERE name = ?');

export async function assertSchemaVersion(trx: Transaction<TenantDB>, collection: Collection): Promise<void> {
  const { rows } = await trx.executeQuery<{ schema_version: number }>(
    SCHEMA_VERSION.compile(trx, [collection.name]),
  );
  if (rows[0]?.schema_version !== collection.version) throw new StaleSchema();
}

/** Runs `attempt` again while it reports a stale schema; 409 after MAX_ATTEMPTS. */
export async function retryOnStaleSchema<T>(attempt: (retry: boolean) => Promise<T>): Promise<T> {
  for (let i = 0; i < MAX_ATTEMPTS; i++) {
    try {
      return await attempt(i > 0);
    } catch (err) {
      if (!(err instanceof StaleSchema)) throw err;
    }
  }
  throw new TresorError('TRESOR_ERR_CONFLICT', 'the collection changed during the request; retry');
}

/** Whether the collection's row has another schema version than `collection` (or is gone). */
async function schemaChanged(store: Store<TenantDB>, collection: Collection): Promise<boolean> {
  const row = await store.db
    .selectFrom('collections')
    .select('schema_version')
    .where('name', '=', collection.name)
    .executeTakeFirst();
  return row?.schema_version !== collection.version;
}

/**
 * Checks request input against a schema that may have come from the cache: a refusal under a
 * schema another process has changed since is not given; `stale()` runs instead (prepare again).
 * Costs a query only when the check fails.
 */
export async function checkedUnder<T>(
  ctx: VaultContext,
  store: Store<TenantDB>,
  collection: Collection,
  mayBeCached: boolean,
  check: () => T,
  stale: () => T | Promise<T>,
): Promise<T> {
  try {
    return check();
  } catch (err) {
    if (mayBeCached && ctx.collections && (await schemaChanged(store, collection))) return stale();
    throw err;
  }
}
