/**
 * A collection of many records made directly in a tenant's store, for the scale bench
 * (scale-size.ts): what a million POSTs would leave, without the hours they would take over HTTPS.
 * Every row is genuine — its fields sealed by the vault's own sealValues (AES-256-GCM envelopes
 * under the tenant's data key from keyd, AAD bound to tenant, collection, record, field and
 * version 1) and framed by encodeFieldEnvelopes exactly as sealRecord does, its blind-index row
 * computed by computeIndexRows under the collection's pinned key — so reads decrypt them and
 * searches find them as they would records made through the API. What is left out: the records'
 * `record.create` audit events (no entry in the audit log for them) and the per-request checks
 * (validation, idempotency), which have nothing to check on generated data.
 *
 * Record ids are `rec_` and 32 hex digits like newRecordId's, derived from a seed of the run and
 * the record's number (SHA-256), so the bench computes the id of record n instead of holding a
 * million ids; they stay unguessable without the seed.
 */
import { createHash } from 'node:crypto';
import type { Store } from '../src/store/types.ts';
import { computeIndexRows, insertIndexRows } from '../src/vault/blind-index-rows.ts';
import { requireCollection } from '../src/vault/collection-cache.ts';
import { sealValues } from '../src/vault/field-crypto.ts';
import { encodeFieldEnvelopes } from '../src/vault/field-envelopes.ts';
import type { TenantDB } from '../src/vault/tenant-store-schema.ts';
import type { CryptoContext } from '../src/vault/vault-context.ts';

/** Records sealed and inserted per store transaction. */
const BATCH = 1000;
/** Rows per multi-row INSERT (7 parameters each). */
const ROWS_PER_INSERT = 100;

/** The id of record `n` of a fixture made with `seed`. */
export function fixtureRecordId(seed: string, n: number): string {
  return `rec_${createHash('sha256').update(`${seed}\u0000${n}`).digest('hex').slice(0, 32)}`;
}

export interface RecordFixtureOptions {
  ctx: CryptoContext;
  tenant: string;
  collection: string;
  seed: string;
  /** Records [from, to) are made. */
  from: number;
  to: number;
  /** The data of record n (the same values the bench then searches for). */
  data(n: number): Record<string, string>;
  progress?(made: number): void;
}

/** Seals and inserts records [from, to); returns the seconds it took. */
export async function fillRecordFixture(options: RecordFixtureOptions): Promise<number> {
  const { ctx, tenant, seed } = options;
  const started = process.hrtime.bigint();
  const store: Store<TenantDB> = await ctx.stores(tenant);
  const collection = await requireCollection(ctx, store, options.collection, true);
  const retentionDays = collection.schema.retentionDays;
  for (let first = options.from; first < options.to; first += BATCH) {
    const last = Math.min(options.to, first + BATCH);
    const items: { id: string; data: Record<string, string> }[] = [];
    for (let n = first; n < last; n++) items.push({ id: fixtureRecordId(seed, n), data: options.data(n) });
    const toSeal = items.flatMap(({ id, data }) =>
      Object.keys(data).map((field) => ({
        collection: collection.name,
        record: id,
        field,
        version: 1,
        value: data[field] as string,
      })),
    );
    const sealed = await sealValues(ctx, tenant, toSeal);
    let at = 0;
    const now = ctx.clock().getTime();
    const rows = items.map(({ id, data }) => {
      const names = Object.keys(data);
      const fields = encodeFieldEnvelopes(new Map(names.map((name, i) => [name, sealed[at + i] as Buffer])));
      at += names.length;
      return {
        id,
        collection: collection.name,
        version: 1,
        created_at: now,
        updated_at: now,
        expires_at: retentionDays === null ? null : now + retentionDays * 86_400_000,
        fields,
      };
    });
    const index = await computeIndexRows(ctx, tenant, collection, items);
    await store.write(async (trx) => {
      for (let i = 0; i < rows.length; i += ROWS_PER_INSERT) {
        await trx
          .insertInto('records')
          .values(rows.slice(i, i + ROWS_PER_INSERT))
          .execute();
      }
      await insertIndexRows(trx, collection.name, index);
    });
    options.progress?.(last);
  }
  return Number(process.hrtime.bigint() - started) / 1e9;
}
