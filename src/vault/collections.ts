/**
 * Collections and their schema changes — and createVault, the one entry point that composes
 * collections, records, retention and export over a tenant's store and the data keyring.
 *
 * A schema change never orphans data silently (the rule). On an existing collection:
 *   - adding an optional field, changing a classification, turning search off: allowed;
 *   - adding a required field, or making a field required, while records lack it: refused
 *     (TRESOR_ERR_SCHEMA_CHANGE_REFUSED) unless the field declares a `default`, which is then
 *     encrypted into every record lacking it, in the same transaction (no record version change:
 *     the default is sealed at the record's current version like its other fields). A new optional
 *     field with a default is filled in the same way;
 *   - removing a field that holds data: refused unless the declaration says `drop: [field]`; then its
 *     envelopes and index rows are deleted in the same transaction, and the audit event says so.
 *     Dropping a field that is already gone is a no-op, so a PUT stays idempotent;
 *   - changing a field's type: refused while any record holds the field;
 *   - making a field searchable: the index is BUILT, in the service — each record's field decrypted
 *     once, its MAC written — in the same transaction as the schema change, so a search never
 *     silently misses older records. We build rather than refuse because refusing would force
 *     customers to copy every record to a new collection, which decrypts everything anyway.
 *   - changing retentionDays: every record's expiry is recomputed from its creation time (policy
 *     applies to existing data too; a shorter period lets the next retention run delete more).
 * Each applied change increments the collection's schema version; a repeated identical PUT does not.
 *
 * Cryptography happens before the write transaction (the keyring may write to the store itself);
 * the transaction then checks that neither the schema nor any record changed since the records
 * were read, and otherwise the whole change is prepared again (409 after a few attempts).
 * Very large collections are migrated in one transaction with their rows in memory: a change
 * needing that is rare and administrative; batching it is left for later.
 */
import { type Kysely, sql } from 'kysely';
import { appendAuditEvent } from '../audit/event.ts';
import type { ReadOutbox } from '../audit/read-outbox.ts';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import { computeIndexRows, type IndexRow, insertIndexRows } from './blind-index-rows.ts';
import { createCollectionCache, forgetCollection } from './collection-cache.ts';
import { type Collection, collectionFromRow, loadCollection } from './collection-row.ts';
import type { DataKeyring } from './data-keys.ts';
import { type ExportOptions, exportTenant } from './export.ts';
import { type FieldToSeal, openRecord, sealValues } from './field-crypto.ts';
import { decodeFieldEnvelopes, encodeFieldEnvelopes } from './field-envelopes.ts';
import type { IdempotentRequest } from './idempotency.ts';
import { type ListOptions, listRecords, type RecordPage } from './record-search.ts';
import {
  type CreatedRecord,
  createRecord,
  deleteRecord,
  readRecord,
  updateRecord,
  type VaultRecord,
} from './records.ts';
import { nextRetentionDue, runRetention } from './retention.ts';
import {
  type CollectionSchema,
  checkCollectionName,
  DEFAULT_LIMITS,
  type FieldSchema,
  isValidName,
  type JsonValue,
  parseDeclaration,
  type RecordData,
  sameSchema,
  type VaultLimits,
} from './schema.ts';
import { assertSchemaVersion, retryOnStaleSchema, StaleSchema } from './stale-schema.ts';
import type { TenantDB } from './tenant-store-schema.ts';
import { type AuditOrigin, auditEvent, VaultAction } from './vault-audit.ts';
import type { VaultContext } from './vault-context.ts';

export interface CollectionInfo {
  name: string;
  version: number;
  createdAt: string;
  updatedAt: string;
  schema: CollectionSchema;
}

export interface PutCollectionResult {
  name: string;
  version: number;
  created: boolean;
  schema: CollectionSchema;
}

type SchemaProblem = 'has-data' | 'type-change' | 'required-without-default';

function refused(problems: Array<{ field: string; problem: SchemaProblem }>): TresorError {
  return new TresorError(
    'TRESOR_ERR_SCHEMA_CHANGE_REFUSED',
    `schema change would orphan or invalidate data in: ${problems.map((p) => p.field).join(', ')}`,
    { fields: [...new Set(problems.map((p) => p.field))], problems },
  );
}

function info(c: Collection): CollectionInfo {
  return {
    name: c.name,
    version: c.version,
    createdAt: c.createdAt,
    updatedAt: c.updatedAt,
    schema: c.schema,
  };
}

interface SnapshotRow {
  id: string;
  version: number;
  envelopes: Map<string, Buffer>;
}

/** What an accepted change does to existing records, prepared before the transaction. */
interface Migration {
  /** Records whose fields BLOB changes (drops, filled defaults), with their expected version. */
  blobs: Array<{ id: string; version: number; fields: Buffer }>;
  /** Fields whose index rows are deleted (search turned off, dropped, type changed). */
  unindexed: string[];
  /** New index rows (fields made searchable). */
  index: IndexRow[];
  defaulted: string[];
  indexed: string[];
}

async function createCollection(
  ctx: VaultContext,
  store: Store<TenantDB>,
  tenant: string,
  name: string,
  schema: CollectionSchema,
  origin: AuditOrigin,
  at: string,
): Promise<PutCollectionResult> {
  const checkCount = async (db: Kysely<TenantDB>) => {
    const count = await db
      .selectFrom('collections')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    if (Number(count.n) >= ctx.limits.maxCollections) {
      throw new TresorError('TRESOR_ERR_VALIDATION', 'the tenant has reached its number of collections', {
        limit: ctx.limits.maxCollections,
      });
    }
  };
  await checkCount(store.db);
  // Pin the tenant's blind-index key for this collection now: search needs it to stay stable.
  const blindIndexKeyId = await ctx.keys.withEncryptionKey(tenant, 'blind-index', 1, (_key, keyId) => keyId);
  const now = ctx.clock().getTime();
  const expires = schema.retentionDays !== null;
  if (expires) await ctx.retentionDue?.(tenant);
  await store.write(async (trx) => {
    const exists = await trx
      .selectFrom('collections')
      .select('name')
      .where('name', '=', name)
      .executeTakeFirst();
    if (exists) throw new StaleSchema(); // created concurrently: prepare again as a change
    await checkCount(trx);
    await trx
      .insertInto('collections')
      .values({
        name,
        schema_version: 1,
        schema: JSON.stringify(schema),
        blind_index_key_id: blindIndexKeyId,
        retention_days: schema.retentionDays,
        created_at: now,
        updated_at: now,
      })
      .execute();
    await appendAuditEvent(
      trx,
      auditEvent(origin, at, tenant, VaultAction.collectionPut, {
        collection: name,
        fields: Object.keys(schema.fields),
        schemaVersion: 1,
        created: true,
      }),
    );
  });
  if (expires) await ctx.retentionDue?.(tenant);
  return { name, version: 1, created: true, schema };
}

/** Whether the change needs to look at the records (anything beyond metadata). */
function touchesRecords(old: CollectionSchema, next: CollectionSchema): boolean {
  for (const [name, before] of Object.entries(old.fields)) {
    const after = next.fields[name];
    if (!after || after.type !== before.type) return true;
    if (after.required && !before.required) return true;
    if (after.searchable && !before.searchable) return true;
  }
  // A new field matters to existing records only if it must be there or has a value to fill in.
  return Object.entries(next.fields).some(
    ([n, def]) => !Object.hasOwn(old.fields, n) && (def.required || def.default !== undefined),
  );
}

async function readSnapshot(store: Store<TenantDB>, collection: string): Promise<SnapshotRow[]> {
  const rows = await store.db
    .selectFrom('records')
    .select(['id', 'version', 'fields'])
    .where('collection', '=', collection)
    .orderBy('seq')
    .execute();
  return rows.map((r) => ({ id: r.id, version: r.version, envelopes: decodeFieldEnvelopes(r.fields) }));
}

async function planMigration(
  ctx: VaultContext,
  tenant: string,
  existing: Collection,
  next: Collection,
  drop: readonly string[],
  rows: SnapshotRow[],
): Promise<Migration> {
  const oldFields = existing.schema.fields;
  const newFields = next.schema.fields;
  const holds = (field: string) => rows.some((r) => r.envelopes.has(field));
  const problems: Array<{ field: string; problem: SchemaProblem }> = [];

  const removed = Object.keys(oldFields).filter((n) => !Object.hasOwn(newFields, n));
  const dropped = removed.filter((n) => drop.includes(n));
  for (const n of removed)
    if (!drop.includes(n) && holds(n)) problems.push({ field: n, problem: 'has-data' });

  const fill: Array<[string, FieldSchema]> = [];
  const indexed: string[] = [];
  const unindexed = new Set<string>(removed.filter((n) => oldFields[n]?.searchable));
  for (const [name, def] of Object.entries(newFields)) {
    const before: FieldSchema | undefined = oldFields[name];
    if (before && before.type !== def.type) {
      if (holds(name)) problems.push({ field: name, problem: 'type-change' });
      if (before.searchable) unindexed.add(name);
    }
    const lacking = rows.some((r) => !r.envelopes.has(name));
    if ((!before || (def.required && !before.required)) && lacking) {
      if (def.default !== undefined) fill.push([name, def]);
      else if (def.required) problems.push({ field: name, problem: 'required-without-default' });
    }
    if (before?.searchable && !def.searchable) unindexed.add(name);
    if (def.searchable && (!before?.searchable || before.type !== def.type)) indexed.push(name);
  }
  if (problems.length > 0) throw refused(problems);

  // Defaults are sealed at each record's current version, like the record's other fields.
  const toSeal: FieldToSeal[] = [];
  for (const row of rows) {
    for (const [field, def] of fill) {
      if (row.envelopes.has(field)) continue;
      toSeal.push({
        collection: next.name,
        record: row.id,
        field,
        version: row.version,
        value: def.default as JsonValue,
      });
    }
  }
  const sealed = await sealValues(ctx, tenant, toSeal);
  const filled = new Map<string, Map<string, Buffer>>();
  toSeal.forEach((item, i) => {
    const m = filled.get(item.record) ?? new Map<string, Buffer>();
    m.set(item.field, sealed[i] as Buffer);
    filled.set(item.record, m);
  });

  const blobs: Migration['blobs'] = [];
  for (const row of rows) {
    const adds = filled.get(row.id);
    const drops = dropped.filter((n) => row.envelopes.has(n));
    if (!adds && drops.length === 0) continue;
    const envelopes = new Map(row.envelopes);
    for (const n of drops) envelopes.delete(n);
    for (const [n, env] of adds ?? []) envelopes.set(n, env);
    blobs.push({ id: row.id, version: row.version, fields: encodeFieldEnvelopes(envelopes) });
  }

  // Build the index of newly searchable fields: each record's field decrypted once, here.
  let index: IndexRow[] = [];
  if (indexed.length > 0) {
    const only = new Set(indexed);
    const items: Array<{ id: string; data: RecordData }> = [];
    for (const row of rows) {
      const data = await openRecord(ctx, tenant, next, row.id, row.version, row.envelopes, only);
      for (const [field, def] of fill) {
        if (only.has(field) && !row.envelopes.has(field)) data[field] = def.default as JsonValue;
      }
      items.push({ id: row.id, data });
    }
    index = await computeIndexRows(ctx, tenant, next, items, only);
  }
  return { blobs, unindexed: [...unindexed], index, defaulted: fill.map(([n]) => n), indexed };
}

async function changeCollection(
  ctx: VaultContext,
  store: Store<TenantDB>,
  tenant: string,
  existing: Collection,
  schema: CollectionSchema,
  drop: string[],
  origin: AuditOrigin,
  at: string,
): Promise<PutCollectionResult> {
  const dropNow = drop.filter((n) => Object.hasOwn(existing.schema.fields, n));
  if (sameSchema(existing.schema, schema)) {
    await store.write(async (trx) => {
      await assertSchemaVersion(trx, existing);
      await appendAuditEvent(
        trx,
        auditEvent(origin, at, tenant, VaultAction.collectionPut, {
          collection: existing.name,
          fields: Object.keys(schema.fields),
          schemaVersion: existing.version,
          changed: false,
        }),
      );
    });
    return { name: existing.name, version: existing.version, created: false, schema };
  }
  const next: Collection = { ...existing, schema, version: existing.version + 1 };
  const rows = touchesRecords(existing.schema, schema) ? await readSnapshot(store, existing.name) : undefined;
  const plan: Migration = rows
    ? await planMigration(ctx, tenant, existing, next, dropNow, rows)
    : { blobs: [], unindexed: planUnindexed(existing.schema, schema), index: [], defaulted: [], indexed: [] };
  const now = ctx.clock().getTime();
  const retentionChanged = existing.schema.retentionDays !== schema.retentionDays;
  const newExpiry = retentionChanged && schema.retentionDays !== null;
  if (newExpiry) await ctx.retentionDue?.(tenant);

  await store.write(async (trx) => {
    await assertSchemaVersion(trx, existing);
    if (rows) {
      // The records must be exactly those the plan was made from.
      const current = await trx
        .selectFrom('records')
        .select(['id', 'version'])
        .where('collection', '=', existing.name)
        .execute();
      const expected = new Map(rows.map((r) => [r.id, r.version]));
      if (current.length !== expected.size || current.some((r) => expected.get(r.id) !== r.version)) {
        throw new StaleSchema();
      }
    }
    await trx
      .updateTable('collections')
      .set({
        schema_version: next.version,
        schema: JSON.stringify(schema),
        retention_days: schema.retentionDays,
        updated_at: now,
      })
      .where('name', '=', existing.name)
      .execute();
    for (const b of plan.blobs) {
      await trx
        .updateTable('records')
        .set({ fields: b.fields })
        .where('id', '=', b.id)
        .where('version', '=', b.version)
        .execute();
    }
    if (plan.unindexed.length > 0) {
      await trx
        .deleteFrom('blind_index')
        .where('collection', '=', existing.name)
        .where('field', 'in', plan.unindexed)
        .execute();
    }
    await insertIndexRows(trx, existing.name, plan.index);
    if (retentionChanged) {
      const days = schema.retentionDays;
      await trx
        .updateTable('records')
        .set({ expires_at: days === null ? null : sql<number>`created_at + ${days * 86_400_000}` })
        .where('collection', '=', existing.name)
        .execute();
    }
    const target: Record<string, unknown> = {
      collection: existing.name,
      fields: Object.keys(schema.fields),
      schemaVersion: next.version,
      changed: true,
    };
    if (dropNow.length > 0) target.dropped = dropNow;
    if (plan.defaulted.length > 0) target.defaulted = plan.defaulted;
    if (plan.indexed.length > 0) target.indexed = plan.indexed;
    if (retentionChanged) target.retentionDays = schema.retentionDays;
    await appendAuditEvent(trx, auditEvent(origin, at, tenant, VaultAction.collectionPut, target));
  });
  if (newExpiry) await ctx.retentionDue?.(tenant);
  return { name: existing.name, version: next.version, created: false, schema };
}

/** Index rows to delete when the change needs no record data: search turned off. */
function planUnindexed(old: CollectionSchema, next: CollectionSchema): string[] {
  return Object.entries(old.fields)
    .filter(([n, def]) => def.searchable && !next.fields[n]?.searchable)
    .map(([n]) => n);
}

export async function putCollection(
  ctx: VaultContext,
  tenant: string,
  name: string,
  decl: unknown,
  origin: AuditOrigin,
): Promise<PutCollectionResult> {
  // The time of the operation's audit events: when the vault began it.
  const at = ctx.clock().toISOString();
  checkCollectionName(name);
  const { schema, drop } = parseDeclaration(decl, ctx.limits);
  const store = await ctx.stores(tenant);
  try {
    // Always the row itself, never the record path's cache: a change is planned from the truth.
    return await retryOnStaleSchema(async () => {
      const existing = await loadCollection(store.db, name);
      return existing
        ? changeCollection(ctx, store, tenant, existing, schema, drop, origin, at)
        : createCollection(ctx, store, tenant, name, schema, origin, at);
    });
  } finally {
    // Committed or not, this process's record requests read the row again from now on.
    forgetCollection(ctx, store, name);
  }
}

export async function getCollection(
  ctx: VaultContext,
  tenant: string,
  name: string,
): Promise<CollectionInfo> {
  const store = await ctx.stores(tenant);
  const collection = isValidName(name) ? await loadCollection(store.db, name) : undefined;
  if (!collection) throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no such collection');
  return info(collection);
}

export async function listCollections(ctx: VaultContext, tenant: string): Promise<CollectionInfo[]> {
  const store = await ctx.stores(tenant);
  const rows = await store.db.selectFrom('collections').selectAll().orderBy('name').execute();
  return rows.map((row) => info(collectionFromRow(row)));
}

// --- the vault ---------------------------------------------------------------------------------

export const DEFAULT_COLLECTION_CACHE_MS = 5_000;

export interface Vault {
  putCollection(
    tenant: string,
    name: string,
    decl: unknown,
    origin: AuditOrigin,
  ): Promise<PutCollectionResult>;
  getCollection(tenant: string, name: string): Promise<CollectionInfo>;
  listCollections(tenant: string): Promise<CollectionInfo[]>;
  createRecord(
    tenant: string,
    collection: string,
    data: unknown,
    origin: AuditOrigin,
    idempotency?: IdempotentRequest,
  ): Promise<CreatedRecord>;
  readRecord(tenant: string, collection: string, id: string, origin: AuditOrigin): Promise<VaultRecord>;
  updateRecord(
    tenant: string,
    collection: string,
    id: string,
    patch: unknown,
    ifMatch: number | undefined,
    origin: AuditOrigin,
  ): Promise<VaultRecord>;
  deleteRecord(
    tenant: string,
    collection: string,
    id: string,
    ifMatch: number | undefined,
    origin: AuditOrigin,
  ): Promise<void>;
  listRecords(
    tenant: string,
    collection: string,
    options: ListOptions,
    origin: AuditOrigin,
  ): Promise<RecordPage>;
  exportTenant(tenant: string, options: ExportOptions, origin: AuditOrigin): Promise<Uint8Array>;
  runRetention(tenant: string): Promise<{ deleted: number }>;
  /** When the tenant's retention must run next, after a run started at `runStart` (retention-due.ts). */
  nextRetentionDue(tenant: string, runStart: number): Promise<number | null>;
}

export function createVault(deps: {
  stores: (tenant: string) => Promise<Store<TenantDB>>;
  keys: DataKeyring;
  /** Where reads' audit events are made durable: the control store's outbox (src/audit/read-outbox.ts). */
  readOutbox: ReadOutbox;
  clock?: () => Date;
  limits?: Partial<VaultLimits>;
  /**
   * How long a record request may use a collection row this process read before (default 5 000 ms;
   * 0: read it every time). Changes made through this vault are seen at once; see CollectionCache.
   */
  collectionCacheMs?: number;
  /** How long an Idempotency-Key is kept (default 24 h). */
  idempotencyTtlMs?: number;
  /** Told when a collection change gives records an expiry (retention-due.ts). */
  retentionDue?: (tenant: string) => Promise<void>;
}): Vault {
  const collections = createCollectionCache(deps.collectionCacheMs ?? DEFAULT_COLLECTION_CACHE_MS);
  const ctx: VaultContext = {
    stores: deps.stores,
    keys: deps.keys,
    readOutbox: deps.readOutbox,
    clock: deps.clock ?? (() => new Date()),
    limits: { ...DEFAULT_LIMITS, ...deps.limits },
    ...(collections ? { collections } : {}),
    ...(deps.idempotencyTtlMs !== undefined ? { idempotencyTtlMs: deps.idempotencyTtlMs } : {}),
    ...(deps.retentionDue ? { retentionDue: deps.retentionDue } : {}),
  };
  return {
    putCollection: (tenant, name, decl, origin) => putCollection(ctx, tenant, name, decl, origin),
    getCollection: (tenant, name) => getCollection(ctx, tenant, name),
    listCollections: (tenant) => listCollections(ctx, tenant),
    createRecord: (tenant, collection, data, origin, idempotency) =>
      createRecord(ctx, tenant, collection, data, origin, idempotency),
    readRecord: (tenant, collection, id, origin) => readRecord(ctx, tenant, collection, id, origin),
    updateRecord: (tenant, collection, id, patch, ifMatch, origin) =>
      updateRecord(ctx, tenant, collection, id, patch, ifMatch, origin),
    deleteRecord: (tenant, collection, id, ifMatch, origin) =>
      deleteRecord(ctx, tenant, collection, id, ifMatch, origin),
    listRecords: (tenant, collection, options, origin) =>
      listRecords(ctx, tenant, collection, options, origin),
    exportTenant: (tenant, options, origin) => exportTenant(ctx, tenant, options, origin),
    runRetention: (tenant) => runRetention(ctx, tenant),
    nextRetentionDue: (tenant, runStart) => nextRetentionDue(ctx, tenant, runStart),
  };
}
