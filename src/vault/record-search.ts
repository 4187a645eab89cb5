/**
 * Listing and equality search. Searchable fields have blind-index rows (src/vault/blind-index-rows.ts);
 * a search computes the MACs of the asked values, lets the store intersect the matching record ids,
 * and decrypts only the page of records that matched — never every record. The decrypted value is
 * compared once more, so a MAC collision cannot return a record that does not match. A searched
 * value never enters an audit event (only the searched field names and an HMAC of the value do).
 */
import { type Kysely, sql } from 'kysely';
import { auditHmac, blindIndex, constantTimeEqual, deriveAuditHmacKey, wipe } from '../crypto/index.ts';
import { TresorError } from '../errors.ts';
import { dialectOf } from '../store/dialect.ts';
import { withFieldKey } from './blind-index-rows.ts';
import { requireCollection } from './collection-cache.ts';
import type { Collection } from './collection-row.ts';
import { CURSOR_SCOPE_FIELD, decodeCursor, encodeCursor } from './cursor.ts';
import { openRecord } from './field-crypto.ts';
import type { VaultRecord } from './records.ts';
import { indexForm, parseWhere, type RecordData, type VaultLimits, type WhereTerm } from './schema.ts';
import { checkedUnder } from './stale-schema.ts';
import type { TenantDB } from './tenant-store-schema.ts';
import { type AuditOrigin, auditEvent, auditingDecryptFailure, VaultAction } from './vault-audit.ts';
import type { VaultContext } from './vault-context.ts';

export interface ListOptions {
  where?: Record<string, string | number | boolean>;
  limit?: number;
  cursor?: string;
}

export interface RecordPage {
  records: VaultRecord[];
  nextCursor: string | null;
}

function pageLimit(limit: unknown, limits: VaultLimits): number {
  if (limit === undefined) return limits.defaultListLimit;
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) {
    throw new TresorError(
      'TRESOR_ERR_BAD_REQUEST',
      `limit must be an integer from 1 to ${limits.maxListLimit}`,
      {
        limit: limits.maxListLimit,
      },
    );
  }
  return Math.min(limit, limits.maxListLimit);
}

/**
 * One page of a collection in creation order, optionally filtered by blind-index MACs. A search
 * must start from the blind index, not walk the collection: with `+collection` and `+seq` SQLite
 * cannot use records_by_collection and looks records up by id from the index matches (the query
 * plan is checked in test/vault/records.test.ts). PostgreSQL has no unary + on text, and its
 * planner weighs the index matches by their statistics: there the plain columns are used.
 */
export function recordPageQuery(
  db: Kysely<TenantDB>,
  collection: string,
  macs: readonly { field: string; mac: Buffer }[],
  after: number,
  limit: number,
) {
  const hideScanIndex = macs.length > 0 && dialectOf(db) === 'sqlite';
  let query = db
    .selectFrom('records')
    .select(['seq', 'id', 'version', 'fields'])
    .where(hideScanIndex ? sql<string>`+collection` : sql<string>`collection`, '=', collection)
    .where(hideScanIndex ? sql<number>`+seq` : sql<number>`seq`, '>', after);
  for (const { field, mac } of macs) {
    query = query.where('id', 'in', (eb) =>
      eb
        .selectFrom('blind_index')
        .select('record_id')
        .where('collection', '=', collection)
        .where('field', '=', field)
        .where('mac', '=', mac),
    );
  }
  return query.orderBy('seq').limit(limit + 1);
}

export async function listRecords(
  ctx: VaultContext,
  tenant: string,
  collectionName: string,
  options: ListOptions,
  origin: AuditOrigin,
): Promise<RecordPage> {
  // The time of the operation's audit events: when the vault began it.
  const at = ctx.clock().toISOString();
  const store = await ctx.stores(tenant);
  let collection = await requireCollection(ctx, store, collectionName);
  const terms: WhereTerm[] = await checkedUnder(
    ctx,
    store,
    collection,
    true,
    () => parseWhere(collection.schema, options.where, ctx.limits),
    async () => {
      collection = await requireCollection(ctx, store, collectionName, true);
      return parseWhere(collection.schema, options.where, ctx.limits);
    },
  );
  const limit = pageLimit(options.limit, ctx.limits);

  // MACs of the searched values, and the cursor check, under the fields' cached keys.
  const macs: { field: string; mac: Buffer }[] = [];
  for (const { field, form } of terms) {
    macs.push({
      field,
      mac: await withFieldKey(ctx, tenant, collection, field, (key) => blindIndex(key, form)),
    });
  }
  const after =
    options.cursor === undefined
      ? 0
      : await withFieldKey(ctx, tenant, collection, CURSOR_SCOPE_FIELD, (cursorKey) =>
          decodeCursor(cursorKey, macs, options.cursor),
        );

  const query = recordPageQuery(store.db, collection.name, macs, after, limit);
  const rows = await query.execute();
  const page = rows.slice(0, limit);

  const action = terms.length > 0 ? VaultAction.recordSearch : VaultAction.recordList;
  const searched = terms.map((t) => t.field);
  const searchedValues = await searchedValueHmacs(ctx, tenant, terms);
  const records = await auditingDecryptFailure(
    ctx.readOutbox,
    () =>
      auditEvent(
        origin,
        at,
        tenant,
        action,
        {
          collection: collection.name,
          recordIds: page.map((r) => r.id),
          fields: searched,
          ...searchedValues,
        },
        'failure',
      ),
    () =>
      Promise.all(
        page.map(async (row) => ({
          id: row.id,
          version: row.version,
          data: await openRecord(ctx, tenant, collection, row.id, row.version, row.fields),
        })),
      ),
  );
  const matching = records.filter((r) => terms.every((t) => matches(collection, r.data, t)));

  const last = page[page.length - 1];
  let nextCursor: string | null = null;
  if (rows.length > limit && last) {
    nextCursor = await withFieldKey(ctx, tenant, collection, CURSOR_SCOPE_FIELD, (cursorKey) =>
      encodeCursor(cursorKey, macs, last.seq),
    );
  }
  await ctx.readOutbox.record(
    auditEvent(origin, at, tenant, action, {
      collection: collection.name,
      recordIds: matching.map((r) => r.id),
      fields: searched,
      ...searchedValues,
    }),
  );
  return { records: matching, nextCursor };
}

/**
 * What a search's audit entry says about the searched values: for each term its field and the
 * HMAC of the value under the tenant's audit-hmac key (src/crypto/audit-hmac.ts), never the value.
 */
async function searchedValueHmacs(
  ctx: VaultContext,
  tenant: string,
  terms: readonly WhereTerm[],
): Promise<{ searchedValues?: { field: string; hmac: string; keyId: string }[] }> {
  if (terms.length === 0) return {};
  const searchedValues = await ctx.keys.withEncryptionKey(tenant, 'audit-hmac', 1, (auditKey, keyId) => {
    const key = deriveAuditHmacKey(auditKey, tenant);
    try {
      return terms.map(({ field, form }) => ({ field, hmac: auditHmac(key, form), keyId }));
    } finally {
      wipe(key);
    }
  });
  return { searchedValues };
}

/** The decrypted value still equals the searched one (guards against a MAC collision). */
function matches(collection: Collection, data: RecordData, term: WhereTerm): boolean {
  const def = collection.schema.fields[term.field];
  const value = data[term.field];
  if (!def || value === undefined || value === null) return false;
  const a = Buffer.from(indexForm(def.type, value).normalize('NFC'));
  const b = Buffer.from(term.form.normalize('NFC'));
  return constantTimeEqual(a, b);
}
