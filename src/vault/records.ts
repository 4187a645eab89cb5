/**
 * Records: create, read, partial update and delete — every field value encrypted before it reaches
 * the store (src/vault/field-crypto.ts), every operation audited in the same commit as its change.
 * Listing and equality search are in src/vault/record-search.ts.
 *
 * Audit (invariant 4). A change and its audit event are one store.write(); a read returns data only
 * after its event is durable in the control store's outbox (ctx.readOutbox: one group commit for the
 * reads of every tenant, src/audit/read-outbox.ts). Events name fields, never values. No key is ever
 * used inside a write(): the keyring may itself write (reservations), so all cryptography happens before the
 * transaction opens, and the transaction re-checks that the schema it was done for is still current
 * (else the operation is retried).
 */

import { appendAuditEvent } from '../audit/event.ts';
import { pooledRandomBytes } from '../crypto/index.ts';
import { TresorError } from '../errors.ts';
import { FixedStatement } from '../store/dialect.ts';
import { computeIndexRows, insertIndexRows } from './blind-index-rows.ts';
import { requireCollection } from './collection-cache.ts';
import { openRecord, sealRecord } from './field-crypto.ts';
import { decodeFieldEnvelopes } from './field-envelopes.ts';
import {
  abandonIdempotent,
  beginIdempotent,
  completeIdempotentIn,
  DEFAULT_IDEMPOTENCY_TTL_MS,
  type IdempotentRequest,
} from './idempotency.ts';
import { checkIfMatch, notFound, preconditionFailed } from './record-errors.ts';
import { applyPatch, type RecordData, validateNewRecord } from './schema.ts';
import { assertSchemaVersion, checkedUnder, retryOnStaleSchema, StaleSchema } from './stale-schema.ts';
import { type AuditOrigin, auditEvent, auditingDecryptFailure, VaultAction } from './vault-audit.ts';
import type { VaultContext } from './vault-context.ts';

export interface VaultRecord {
  id: string;
  version: number;
  data: RecordData;
}

/** A created record; `replayed` when an Idempotency-Key retry returned the first create's answer. */
export interface CreatedRecord extends VaultRecord {
  replayed?: true;
}

/** Record ids: 128 random bits, so they can be neither guessed nor enumerated. */
export const RECORD_ID = /^rec_[0-9a-f]{32}$/;
/** 'rec_' and 32 hex digits. */
export const RECORD_ID_LENGTH = 36;

export function newRecordId(): string {
  return `rec_${pooledRandomBytes(16).toString('hex')}`;
}

// Precompiled statements of the hottest paths (record create and read): building and compiling the
// query builder's syntax tree cost more than running the statement.
const INSERT_RECORD = new FixedStatement(
  'INSERT INTO records (id, collection, version, created_at, updated_at, expires_at, fields) VALUES (?, ?, ?, ?, ?, ?, ?)',
);

/**
 * Creates a record. With an idempotency key (src/vault/idempotency.ts), a retry of the same request
 * returns the first create's id and version (and its own body as data: the request hash proves it is
 * the first body) and creates nothing; the key is marked done in the create's own transaction.
 */
export async function createRecord(
  ctx: VaultContext,
  tenant: string,
  collectionName: string,
  input: unknown,
  origin: AuditOrigin,
  idempotency?: IdempotentRequest,
): Promise<CreatedRecord> {
  if (!idempotency) return createRecordOnce(ctx, tenant, collectionName, input, origin);
  const store = await ctx.stores(tenant);
  const start = await beginIdempotent(store, idempotency, {
    now: ctx.clock().getTime(),
    ttlMs: ctx.idempotencyTtlMs ?? DEFAULT_IDEMPOTENCY_TTL_MS,
  });
  if (start.kind === 'replay') {
    const first = start.response as { id: string; version: number };
    return { id: first.id, version: first.version, data: input as RecordData, replayed: true };
  }
  try {
    return await createRecordOnce(ctx, tenant, collectionName, input, origin, idempotency);
  } catch (error) {
    await abandonIdempotent(store, idempotency).catch(() => undefined);
    throw error;
  }
}

async function createRecordOnce(
  ctx: VaultContext,
  tenant: string,
  collectionName: string,
  input: unknown,
  origin: AuditOrigin,
  idempotency?: IdempotentRequest,
): Promise<VaultRecord> {
  // The time of the operation's audit events: when the vault began it.
  const at = ctx.clock().toISOString();
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
        INSERT_RECORD.compile(trx, [
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
        auditEvent(origin, at, tenant, VaultAction.recordCreate, {
          collection: collection.name,
          recordIds: [id],
          fields: Object.keys(data),
        }),
      );
      if (idempotency) await completeIdempotentIn(trx, idempotency, 201, { id, version: 1 });
    });
    return { id, version: 1, data };
  });
}

const READ_RECORD = new FixedStatement('SELECT version, fields FROM records WHERE id = ? AND collection = ?');

export async function readRecord(
  ctx: VaultContext,
  tenant: string,
  collectionName: string,
  id: string,
  origin: AuditOrigin,
): Promise<VaultRecord> {
  // The time of the operation's audit events: when the vault began it.
  const at = ctx.clock().toISOString();
  const store = await ctx.stores(tenant);
  let collection = await requireCollection(ctx, store, collectionName);
  if (!RECORD_ID.test(id)) throw notFound();
  // Precompiled: the query builder's syntax tree and compile were a thirtieth of a read.
  const { rows } = await store.db.executeQuery<{ version: number; fields: Uint8Array }>(
    READ_RECORD.compile(store.db, [id, collection.name]),
  );
  const row = rows[0];
  if (!row) throw notFound();
  const target = { collection: collection.name, recordIds: [id] };
  const data = await auditingDecryptFailure(
    ctx.readOutbox,
    () => auditEvent(origin, at, tenant, VaultAction.recordRead, target, 'failure'),
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
  await ctx.readOutbox.record(
    auditEvent(origin, at, tenant, VaultAction.recordRead, { ...target, fields: Object.keys(data) }),
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
  origin: AuditOrigin,
): Promise<VaultRecord> {
  // The time of the operation's audit events: when the vault began it.
  const at = ctx.clock().toISOString();
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
      ctx.readOutbox,
      () => auditEvent(origin, at, tenant, VaultAction.recordUpdate, target, 'failure'),
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
      await appendAuditEvent(
        trx,
        auditEvent(origin, at, tenant, VaultAction.recordUpdate, { ...target, fields: changed }),
      );
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
  origin: AuditOrigin,
): Promise<void> {
  // The time of the operation's audit events: when the vault began it.
  const at = ctx.clock().toISOString();
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
      auditEvent(origin, at, tenant, VaultAction.recordDelete, {
        collection: collection.name,
        recordIds: [id],
      }),
    );
  });
}
