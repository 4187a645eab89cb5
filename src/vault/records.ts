/**
 * Records: create, read, partial update, delete, list and equality search — every field value
 * encrypted before it reaches the store, every operation audited in the same commit as its change.
 *
 * Encryption. Each field value is its own AES-256-GCM envelope (src/crypto/envelope.ts) with AAD
 * {tenant, collection, record, field, version}, so a ciphertext copied to another field, record,
 * collection or tenant — or an old field value spliced into a newer record — fails authentication
 * (DESIGN.md invariant 3). Every write re-encrypts all the record's fields at the new record version:
 * a record is one consistent version, and the decryption a PATCH needs anyway (to validate required
 * fields and return the whole record) makes that nearly free. One withEncryptionKey call per record
 * write counts all its encryptions (NIST SP 800-38D §8.3, src/vault/data-keys.ts).
 *
 * Storage: one row per record whose `fields` BLOB is a compact map field → envelope (see
 * encodeFieldEnvelopes); why one row and not one per field is in src/vault/tenant-store-schema.ts.
 *
 * Search. Searchable fields also get a blind index row: HMAC-SHA-256 over the value's canonical form
 * under a per-field key derived from the collection's pinned blind-index key. A search computes the
 * MACs of the asked values, lets the store intersect the matching record ids, and decrypts only the
 * page of records that matched — never every record. The decrypted value is compared once more, so
 * a MAC collision cannot return a record that does not match.
 *
 * Audit (invariant 4). A change and its audit event are one store.write(); a read returns data only
 * after its event's write() resolved. Events name fields, never values; a searched value never enters
 * one (only the searched field names do). No key is ever used inside a write(): the keyring may itself
 * write (reservations), so all cryptography happens before the transaction opens, and the transaction
 * re-checks that the schema it was done for is still current (else the operation is retried).
 */
import { CompiledQuery, type Kysely, type Selectable, sql, type Transaction } from 'kysely';
import { type AuditEvent, appendAuditEvent } from '../audit/event.ts';
import {
  auditHmac,
  blindIndex,
  CryptoError,
  constantTimeEqual,
  deriveAuditHmacKey,
  deriveBlindIndexKey,
  openEnvelope,
  pooledRandomBytes,
  readEnvelopeHeader,
  sealEnvelope,
  wipe,
} from '../crypto/index.ts';
import { TresorError } from '../errors.ts';
import { KeydError } from '../keyd/errors.ts';
import type { Store } from '../store/types.ts';
import { CURSOR_SCOPE_FIELD, decodeCursor, encodeCursor } from './cursor.ts';
import type { DataKeyring } from './data-keys.ts';
import {
  applyPatch,
  type CollectionSchema,
  indexForm,
  isValidName,
  type JsonValue,
  parseWhere,
  type RecordData,
  type VaultLimits,
  validateNewRecord,
  type WhereTerm,
} from './schema.ts';
import type { CollectionsTable, TenantDB } from './tenant-store-schema.ts';

/** What every vault operation needs; built once by createVault (src/vault/collections.ts). */
export interface VaultContext {
  stores: (tenant: string) => Promise<Store<TenantDB>>;
  keys: DataKeyring;
  clock: () => Date;
  limits: VaultLimits;
  /** Parsed collection rows of this process (see CollectionCache); absent: every request reads the row. */
  collections?: CollectionCache;
}

/** The caller's part of an audit event: who, when, from where. The vault adds what and on which target. */
export type AuditBase = Pick<AuditEvent, 'at' | 'actor'> &
  Partial<Pick<AuditEvent, 'grant' | 'requestId' | 'sourceAddress' | 'userAgent'>>;

export interface VaultRecord {
  id: string;
  version: number;
  data: RecordData;
}

export interface ListOptions {
  where?: Record<string, string | number | boolean>;
  limit?: number;
  cursor?: string;
}

export interface RecordPage {
  records: VaultRecord[];
  nextCursor: string | null;
}

export interface Collection {
  name: string;
  version: number;
  schema: CollectionSchema;
  blindIndexKeyId: string;
  createdAt: string;
  updatedAt: string;
}

export interface IndexRow {
  record: string;
  field: string;
  mac: Buffer;
}

/** AAD purpose of field envelopes. */
export const FIELD_PURPOSE = 'field';
/** Record ids: 128 random bits, so they can be neither guessed nor enumerated. */
const RECORD_ID = /^rec_[0-9a-f]{32}$/;
/** A write retried this often because the schema changed under it gives up with 409. */
const MAX_ATTEMPTS = 5;
/** Records per key loan when a migration seals or opens many: keeps the event loop responsive. */
export const CRYPTO_CHUNK = 1000;

export function newRecordId(): string {
  return `rec_${pooledRandomBytes(16).toString('hex')}`;
}

export function auditEvent(
  base: AuditBase,
  tenant: string,
  action: string,
  target: NonNullable<AuditEvent['target']>,
  outcome: AuditEvent['outcome'] = 'success',
): AuditEvent {
  // Copy the caller's fields one by one: nothing else the caller's object carries reaches the log.
  const event: AuditEvent = { at: base.at, actor: { ...base.actor }, tenant, action, target, outcome };
  if (base.grant !== undefined) event.grant = { ...base.grant };
  if (base.requestId !== undefined) event.requestId = base.requestId;
  if (base.sourceAddress !== undefined) event.sourceAddress = base.sourceAddress;
  if (base.userAgent !== undefined) event.userAgent = base.userAgent;
  return event;
}

export function notFound(): TresorError {
  // One error whatever the reason (no collection, no record, wrong collection): nothing to probe.
  return new TresorError('TRESOR_ERR_NOT_FOUND', 'no such record or collection');
}

// --- collections as records see them ----------------------------------------------------------

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

/**
 * The parsed collection rows (schema, schema version, blind-index key id) this process has read,
 * per tenant-store handle and collection name, so that a record request does not read and parse
 * the row each time. Keyed by the store handle (a WeakMap): a store closed, destroyed or reopened
 * comes back with a new handle and so with an empty cache. Collections per tenant are bounded
 * (limits.maxCollections), so each store's map is too. An entry is used for at most `ttlMs`.
 *
 * Why a stale entry is safe:
 *  - putCollection in this process drops the entry once its change has committed (or failed), and an
 *    entry read while a change was in progress is not stored, so within one process no request sees
 *    a schema older than the last committed change it could have observed.
 *  - Another process over the same store can change the schema unseen; then, for at most `ttlMs`:
 *    - writes (create, update) cannot commit under the wrong schema: they prepare under the cached
 *      schema and version, and their transaction re-reads schema_version (assertSchemaVersion) and
 *      refuses with StaleSchema; the retry reads the row afresh (`fresh`), which also refreshes this
 *      cache. Input refused under a cached schema is checked against the row's version first
 *      (checkedUnder), so a change made elsewhere does not cause a wrong 422 either.
 *    - reads still decrypt and authenticate every envelope (AAD: tenant, collection, record, field,
 *      record version; the schema version is not part of it), so a stale schema can never make a
 *      wrong, moved or tampered value decrypt, and the values are those stored. A record holding a
 *      field the cached schema lacks makes the read fetch the row afresh (readRecord), so a field
 *      added elsewhere is not left out; a field dropped elsewhere has no envelope left to return.
 *    - a search refused under the cached schema is re-checked the same way; a search on a field
 *      just made unsearchable elsewhere may find nothing (its index rows are gone) instead of
 *      being refused with 400, and a list or search page may leave out a field added elsewhere (its
 *      values are still only ever the stored, authenticated ones), for at most `ttlMs`. The
 *      blind-index key id never changes after the collection is created.
 *    - delete uses only the collection's name.
 */
export interface CollectionCache {
  ttlMs: number;
  byStore: WeakMap<object, StoreCollections>;
}

interface StoreCollections {
  entries: Map<string, { collection: Collection; until: number }>;
  /** Bumped by every forget: a load that started before it does not store its answer. */
  generation: number;
}

export function createCollectionCache(ttlMs: number): CollectionCache | undefined {
  if (!Number.isFinite(ttlMs) || ttlMs < 0) throw new RangeError('collection cache TTL must be >= 0');
  return ttlMs === 0 ? undefined : { ttlMs, byStore: new WeakMap() };
}

function storeCollections(cache: CollectionCache, store: Store<TenantDB>): StoreCollections {
  let mine = cache.byStore.get(store);
  if (!mine) {
    mine = { entries: new Map(), generation: 0 };
    cache.byStore.set(store, mine);
  }
  return mine;
}

/** Drops the cached row of a collection (its schema changed, or a change was attempted). */
export function forgetCollection(ctx: VaultContext, store: Store<TenantDB>, name: string): void {
  if (!ctx.collections) return;
  const mine = storeCollections(ctx.collections, store);
  mine.generation++;
  mine.entries.delete(name);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** The collection, from the cache when allowed and fresh enough; `fresh` always reads the row. */
export async function currentCollection(
  ctx: VaultContext,
  store: Store<TenantDB>,
  name: string,
  fresh = false,
): Promise<Collection | undefined> {
  const cache = ctx.collections;
  if (!cache || !isValidName(name)) return loadCollection(store.db, name);
  const mine = storeCollections(cache, store);
  const now = ctx.clock().getTime();
  if (!fresh) {
    const hit = mine.entries.get(name);
    if (hit && now < hit.until) return hit.collection;
  }
  const seen = mine.generation;
  const collection = await loadCollection(store.db, name);
  if (collection === undefined) {
    mine.entries.delete(name);
    return undefined;
  }
  // Shared by concurrent requests from now on: nothing may change it.
  deepFreeze(collection);
  if (seen === mine.generation) mine.entries.set(name, { collection, until: now + cache.ttlMs });
  return collection;
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
async function checkedUnder<T>(
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

async function requireCollection(
  ctx: VaultContext,
  store: Store<TenantDB>,
  name: string,
  fresh = false,
): Promise<Collection> {
  const collection = await currentCollection(ctx, store, name, fresh);
  if (!collection) throw notFound();
  return collection;
}

/** Thrown inside a write when the schema changed since the work was prepared; the caller retries. */
export class StaleSchema extends Error {}

// Precompiled statements of the hottest paths (record create and read): building and compiling the
// query builder's syntax tree cost more than running the statement.
const SCHEMA_VERSION = 'SELECT schema_version FROM collections WHERE name = ?';
const INSERT_RECORD =
  'INSERT INTO records (id, collection, version, created_at, updated_at, expires_at, fields) VALUES (?, ?, ?, ?, ?, ?, ?)';
const INSERT_INDEX_ROW = 'INSERT INTO blind_index (collection, field, mac, record_id) VALUES (?, ?, ?, ?)';

export async function assertSchemaVersion(trx: Transaction<TenantDB>, collection: Collection): Promise<void> {
  const { rows } = await trx.executeQuery<{ schema_version: number }>(
    CompiledQuery.raw(SCHEMA_VERSION, [collection.name]),
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

// --- the fields BLOB ---------------------------------------------------------------------------

const BLOB_FORMAT = 1;

function malformed(what: string): CryptoError {
  return new CryptoError('TRESOR_ERR_CIPHERTEXT_MALFORMED', `stored record fields are malformed: ${what}`);
}

/**
 * 0x01 ‖ u16 count ‖ count × (u8 name length ‖ name ‖ u32 envelope length ‖ envelope).
 * Binary and length-prefixed: ~7 bytes of framing per field instead of JSON's base64 (+33 %).
 */
export function encodeFieldEnvelopes(envelopes: ReadonlyMap<string, Uint8Array>): Buffer {
  let size = 3;
  for (const [name, env] of envelopes) size += 1 + Buffer.byteLength(name, 'latin1') + 4 + env.length;
  const out = Buffer.alloc(size);
  out[0] = BLOB_FORMAT;
  out.writeUInt16BE(envelopes.size, 1);
  let at = 3;
  for (const [name, env] of envelopes) {
    out[at] = name.length;
    at = out.write(name, at + 1, 'latin1') + at + 1;
    out.writeUInt32BE(env.length, at);
    out.set(env, at + 4);
    at += 4 + env.length;
  }
  return out;
}

export function decodeFieldEnvelopes(blob: Uint8Array): Map<string, Buffer> {
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (buf.length < 3 || buf[0] !== BLOB_FORMAT) throw malformed('unknown format');
  const count = buf.readUInt16BE(1);
  const out = new Map<string, Buffer>();
  let at = 3;
  for (let i = 0; i < count; i++) {
    const nameLength = buf[at];
    if (nameLength === undefined || at + 1 + nameLength + 4 > buf.length) throw malformed('truncated');
    const name = buf.toString('latin1', at + 1, at + 1 + nameLength);
    at += 1 + nameLength;
    const envLength = buf.readUInt32BE(at);
    at += 4;
    if (at + envLength > buf.length) throw malformed('truncated');
    if (!isValidName(name) || out.has(name)) throw malformed('bad field name');
    out.set(name, buf.subarray(at, at + envLength));
    at += envLength;
  }
  if (at !== buf.length) throw malformed('trailing bytes');
  return out;
}

// --- field cryptography ------------------------------------------------------------------------

export interface FieldToSeal {
  collection: string;
  record: string;
  field: string;
  version: number;
  value: JsonValue;
}

/** Seals values, counting every encryption on the tenant's data key; one key loan per chunk. */
export async function sealValues(ctx: VaultContext, tenant: string, items: FieldToSeal[]): Promise<Buffer[]> {
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
  ctx: VaultContext,
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
  ctx: VaultContext,
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

/**
 * Blind-index rows for the searchable fields (or only `only`) of the given records, under the
 * collection's pinned blind-index key. Per-field keys are derived inside the loan and wiped.
 */
export async function computeIndexRows(
  ctx: VaultContext,
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

/**
 * Lends the blind-index key of one field of a collection (HKDF from the collection's blind-index
 * key, src/crypto/blind-index.ts) to `fn`; derived once and then cached by the keyring. The cursor
 * key is the field key of CURSOR_SCOPE_FIELD.
 */
function withFieldKey<T>(
  ctx: VaultContext,
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

export async function insertIndexRows(
  trx: Transaction<TenantDB>,
  collection: string,
  rows: readonly IndexRow[],
): Promise<void> {
  if (rows.length === 1) {
    const [r] = rows as [IndexRow];
    await trx.executeQuery(CompiledQuery.raw(INSERT_INDEX_ROW, [collection, r.field, r.mac, r.record]));
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

/** Audits a failed decryption (a tampered or moved ciphertext is a security event) and rethrows. */
async function auditingDecryptFailure<T>(
  store: Store<TenantDB>,
  event: () => AuditEvent,
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof CryptoError) await store.write((trx) => appendAuditEvent(trx, event()));
    throw err;
  }
}

function checkIfMatch(ifMatch: number | undefined): void {
  if (ifMatch !== undefined && (!Number.isSafeInteger(ifMatch) || ifMatch < 1)) {
    throw new TresorError('TRESOR_ERR_BAD_REQUEST', 'If-Match must be a record version (a positive integer)');
  }
}

function preconditionFailed(current: number): TresorError {
  return new TresorError('TRESOR_ERR_PRECONDITION_FAILED', 'the record has another version', { current });
}

// --- operations --------------------------------------------------------------------------------

export async function createRecord(
  ctx: VaultContext,
  tenant: string,
  collectionName: string,
  input: unknown,
  base: AuditBase,
): Promise<VaultRecord> {
  const store = await ctx.stores(tenant);
  // A retry follows a StaleSchema refusal: it reads the collection afresh, not from the cache.
  return retryOnStaleSchema(async (retry) => {
    const collection = await requireCollection(ctx, store, collectionName, retry);
    const data = await checkedUnder(
      ctx,
      store,
      collection,
      !retry,
      () => validateNewRecord(collection.schema, input, ctx.limits),
      () => {
        throw new StaleSchema();
      },
    );
    const id = newRecordId();
    const now = ctx.clock().getTime();
    const days = collection.schema.retentionDays;
    const fields = await sealRecord(ctx, tenant, collection.name, id, 1, data);
    const index = await computeIndexRows(ctx, tenant, collection, [{ id, data }]);
    await store.write(async (trx) => {
      await assertSchemaVersion(trx, collection);
      await trx.executeQuery(
        CompiledQuery.raw(INSERT_RECORD, [
          id,
          collection.name,
          1,
          now,
          now,
          days === null ? null : now + days * 86_400_000,
          fields,
        ]),
      );
      await insertIndexRows(trx, collection.name, index);
      await appendAuditEvent(
        trx,
        auditEvent(base, tenant, 'record.create', {
          collection: collection.name,
          recordIds: [id],
          fields: Object.keys(data),
        }),
      );
    });
    return { id, version: 1, data };
  });
}

const READ_RECORD = 'SELECT version, fields FROM records WHERE id = ? AND collection = ?';

export async function readRecord(
  ctx: VaultContext,
  tenant: string,
  collectionName: string,
  id: string,
  base: AuditBase,
): Promise<VaultRecord> {
  const store = await ctx.stores(tenant);
  let collection = await requireCollection(ctx, store, collectionName);
  if (!RECORD_ID.test(id)) throw notFound();
  // Precompiled: the query builder's syntax tree and compile were a thirtieth of a read.
  const { rows } = await store.db.executeQuery<{ version: number; fields: Uint8Array }>(
    CompiledQuery.raw(READ_RECORD, [id, collection.name]),
  );
  const row = rows[0];
  if (!row) throw notFound();
  const target = { collection: collection.name, recordIds: [id] };
  const data = await auditingDecryptFailure(
    store,
    () => auditEvent(base, tenant, 'record.read', target, 'failure'),
    async () => {
      const envelopes = decodeFieldEnvelopes(row.fields);
      if (ctx.collections) {
        // A field the (cached) schema does not know: another process added it since; read the row
        // afresh rather than leave the field out.
        for (const field of envelopes.keys()) {
          if (!Object.hasOwn(collection.schema.fields, field)) {
            collection = await requireCollection(ctx, store, collectionName, true);
            break;
          }
        }
      }
      return openRecord(ctx, tenant, collection, id, row.version, envelopes);
    },
  );
  await store.write((trx) =>
    appendAuditEvent(trx, auditEvent(base, tenant, 'record.read', { ...target, fields: Object.keys(data) })),
  );
  return { id, version: row.version, data };
}

export async function updateRecord(
  ctx: VaultContext,
  tenant: string,
  collectionName: string,
  id: string,
  patch: unknown,
  ifMatch: number | undefined,
  base: AuditBase,
): Promise<VaultRecord> {
  if (ifMatch === undefined) {
    throw new TresorError('TRESOR_ERR_PRECONDITION_REQUIRED', 'a partial update needs If-Match: <version>');
  }
  checkIfMatch(ifMatch);
  const store = await ctx.stores(tenant);
  // A retry follows a StaleSchema refusal: it reads the collection afresh, not from the cache.
  return retryOnStaleSchema(async (retry) => {
    const collection = await requireCollection(ctx, store, collectionName, retry);
    if (!RECORD_ID.test(id)) throw notFound();
    const row = await store.db
      .selectFrom('records')
      .select(['version', 'fields'])
      .where('id', '=', id)
      .where('collection', '=', collection.name)
      .executeTakeFirst();
    if (!row) throw notFound();
    if (row.version !== ifMatch) throw preconditionFailed(row.version);
    const target = { collection: collection.name, recordIds: [id] };
    const current = await auditingDecryptFailure(
      store,
      () => auditEvent(base, tenant, 'record.update', target, 'failure'),
      () => openRecord(ctx, tenant, collection, id, row.version, row.fields),
    );
    const { data, changed } = await checkedUnder(
      ctx,
      store,
      collection,
      !retry,
      () => applyPatch(collection.schema, current, patch, ctx.limits),
      () => {
        throw new StaleSchema();
      },
    );
    const version = row.version + 1;
    const fields = await sealRecord(ctx, tenant, collection.name, id, version, data);
    const index = await computeIndexRows(ctx, tenant, collection, [{ id, data }]);
    await store.write(async (trx) => {
      await assertSchemaVersion(trx, collection);
      const updated = await trx
        .updateTable('records')
        .set({ version, updated_at: ctx.clock().getTime(), fields })
        .where('id', '=', id)
        .where('collection', '=', collection.name)
        .where('version', '=', row.version)
        .executeTakeFirst();
      if (updated.numUpdatedRows !== 1n) {
        const now = await trx.selectFrom('records').select('version').where('id', '=', id).executeTakeFirst();
        throw now ? preconditionFailed(now.version) : notFound();
      }
      await trx.deleteFrom('blind_index').where('record_id', '=', id).execute();
      await insertIndexRows(trx, collection.name, index);
      await appendAuditEvent(trx, auditEvent(base, tenant, 'record.update', { ...target, fields: changed }));
    });
    return { id, version, data };
  });
}

export async function deleteRecord(
  ctx: VaultContext,
  tenant: string,
  collectionName: string,
  id: string,
  ifMatch: number | undefined,
  base: AuditBase,
): Promise<void> {
  checkIfMatch(ifMatch);
  const store = await ctx.stores(tenant);
  const collection = await requireCollection(ctx, store, collectionName);
  if (!RECORD_ID.test(id)) throw notFound();
  await store.write(async (trx) => {
    const row = await trx
      .selectFrom('records')
      .select('version')
      .where('id', '=', id)
      .where('collection', '=', collection.name)
      .executeTakeFirst();
    if (!row) throw notFound();
    if (ifMatch !== undefined && row.version !== ifMatch) throw preconditionFailed(row.version);
    await trx.deleteFrom('blind_index').where('record_id', '=', id).execute();
    await trx.deleteFrom('records').where('id', '=', id).execute();
    await appendAuditEvent(
      trx,
      auditEvent(base, tenant, 'record.delete', { collection: collection.name, recordIds: [id] }),
    );
  });
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
 * plan is checked in test/vault/records.test.ts).
 */
export function recordPageQuery(
  db: Kysely<TenantDB>,
  collection: string,
  macs: readonly { field: string; mac: Buffer }[],
  after: number,
  limit: number,
) {
  const searching = macs.length > 0;
  let query = db
    .selectFrom('records')
    .select(['seq', 'id', 'version', 'fields'])
    .where(searching ? sql<string>`+collection` : sql<string>`collection`, '=', collection)
    .where(searching ? sql<number>`+seq` : sql<number>`seq`, '>', after);
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
  base: AuditBase,
): Promise<RecordPage> {
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

  const action = terms.length > 0 ? 'record.search' : 'record.list';
  const searched = terms.map((t) => t.field);
  const searchedValues = await searchedValueHmacs(ctx, tenant, terms);
  const records = await auditingDecryptFailure(
    store,
    () =>
      auditEvent(
        base,
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
  await store.write((trx) =>
    appendAuditEvent(
      trx,
      auditEvent(base, tenant, action, {
        collection: collection.name,
        recordIds: matching.map((r) => r.id),
        fields: searched,
        ...searchedValues,
      }),
    ),
  );
  return { records: matching, nextCursor };
}

/** The decrypted value still equals the searched one (guards against a MAC collision). */
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

function matches(collection: Collection, data: RecordData, term: WhereTerm): boolean {
  const def = collection.schema.fields[term.field];
  const value = data[term.field];
  if (!def || value === undefined || value === null) return false;
  const a = Buffer.from(indexForm(def.type, value).normalize('NFC'));
  const b = Buffer.from(term.form.normalize('NFC'));
  return constantTimeEqual(a, b);
}
