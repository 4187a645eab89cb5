/**
 * Idempotency keys for creates (records in a tenant store, tenants in the control store): a client
 * that lost the answer to a create retries it with the same `Idempotency-Key` and gets the first
 * answer back, and nothing is created twice.
 *
 * A key is scoped to its caller (`scope`: tenant and API key, or operator) and kept `ttl` (24 h by
 * default), with a SHA-256 of the request (method, path, body) and, once done, the answer. Its life:
 * 1. `beginIdempotent` (its own small write): inserts the key as pending with a lease, or finds it.
 *    Found done with the same request → replay; another request → TRESOR_ERR_IDEMPOTENCY_KEY_REUSED
 *    (422); pending and leased → TRESOR_ERR_IDEMPOTENCY_IN_PROGRESS (409); pending whose lease ran
 *    out (its node died) → taken over by a conditional update on the lease it read.
 * 2. `completeIdempotentIn`, inside the create's own transaction: marks the key done with the answer,
 *    only if it is still pending with this request (the row count decides; otherwise the create
 *    rolls back). So a create and its key commit together or not at all: a crash cannot leave one
 *    without the other.
 * 3. `abandonIdempotent` after a failed create: removes the pending key, so a retry runs afresh.
 * Every step is one insert or a conditional update/delete (plain Kysely), correct on both backends
 * when several nodes race. Expired keys are pruned on begin.
 *
 * Answers never hold a customer value: a record create stores its id and version only (the data of
 * a replayed answer is the retry's own body, which the request hash proves equal to the first).
 */
import { createHash } from 'node:crypto';
import type { Kysely, Migration, Transaction } from 'kysely';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';

/** How long a key is kept after its first use, unless configured otherwise. */
export const DEFAULT_IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;
/** How long a pending key is held for its first request before another may take it over. */
export const IDEMPOTENCY_LEASE_MS = 60 * 1000;
/** 1–255 visible ASCII characters (the header's value as a client chooses it). */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

export interface IdempotencyKeysTable {
  scope: string;
  key: string;
  request_hash: string;
  state: string;
  /** ms since the epoch: until then a pending key belongs to its first request. */
  leased_until: number;
  expires_at: number;
  status: number | null;
  response: string | null;
  created_at: string;
}

export interface WithIdempotencyKeys {
  idempotency_keys: IdempotencyKeysTable;
}

export const idempotencyKeysMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('idempotency_keys')
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('key', 'text', (c) => c.notNull())
      .addColumn('request_hash', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('leased_until', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addColumn('status', 'integer')
      .addColumn('response', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('idempotency_keys_pk', ['scope', 'key'])
      .execute();
    await db.schema
      .createIndex('idempotency_keys_by_expiry')
      .on('idempotency_keys')
      .column('expires_at')
      .execute();
  },
};

/** One use of a key: who, which key, which request. */
export interface IdempotentRequest {
  scope: string;
  key: string;
  requestHash: string;
}

export type IdempotentStart = { kind: 'run' } | { kind: 'replay'; status: number; response: unknown };

/** SHA-256 of the request's method, path and body (JSON as received, re-serialised). */
export function idempotencyRequestHash(method: string, path: string, body: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify([method.toUpperCase(), path, body ?? null]))
    .digest('hex');
}

type KeysDB = WithIdempotencyKeys;

export async function beginIdempotent<DB extends KeysDB>(
  store: Store<DB>,
  request: IdempotentRequest,
  options: { now: number; ttlMs: number },
): Promise<IdempotentStart> {
  const control = store as unknown as Store<KeysDB>;
  const { now, ttlMs } = options;
  return control.write(async (trx) => {
    await trx.deleteFrom('idempotency_keys').where('expires_at', '<=', now).execute();
    const inserted = await trx
      .insertInto('idempotency_keys')
      .values({
        scope: request.scope,
        key: request.key,
        request_hash: request.requestHash,
        state: 'pending',
        leased_until: now + IDEMPOTENCY_LEASE_MS,
        expires_at: now + ttlMs,
        status: null,
        response: null,
        created_at: new Date(now).toISOString(),
      })
      .onConflict((oc) => oc.doNothing())
      .executeTakeFirst();
    if ((inserted.numInsertedOrUpdatedRows ?? 0n) === 1n) return { kind: 'run' };
    const row = await trx
      .selectFrom('idempotency_keys')
      .selectAll()
      .where('scope', '=', request.scope)
      .where('key', '=', request.key)
      .executeTakeFirst();
    // Gone between the insert and the read (completed and expired, or abandoned): treat as racing.
    if (!row) throw inProgress();
    if (row.request_hash !== request.requestHash) throw reused();
    if (row.state === 'done' && row.status !== null && row.response !== null) {
      return { kind: 'replay', status: row.status, response: JSON.parse(row.response) as unknown };
    }
    if (Number(row.leased_until) > now) throw inProgress();
    // The first request's node stopped without finishing: take the key over, once.
    const taken = await trx
      .updateTable('idempotency_keys')
      .set({ leased_until: now + IDEMPOTENCY_LEASE_MS })
      .where('scope', '=', request.scope)
      .where('key', '=', request.key)
      .where('state', '=', 'pending')
      .where('leased_until', '=', row.leased_until)
      .executeTakeFirst();
    if (taken.numUpdatedRows !== 1n) throw inProgress();
    return { kind: 'run' };
  });
}

/** Inside the create's transaction: the key is done, with this answer (no customer value in it). */
export async function completeIdempotentIn<DB extends KeysDB>(
  trx: Transaction<DB>,
  request: IdempotentRequest,
  status: number,
  response: unknown,
): Promise<void> {
  const done = await (trx as unknown as Transaction<KeysDB>)
    .updateTable('idempotency_keys')
    .set({ state: 'done', status, response: JSON.stringify(response) })
    .where('scope', '=', request.scope)
    .where('key', '=', request.key)
    .where('request_hash', '=', request.requestHash)
    .where('state', '=', 'pending')
    .executeTakeFirst();
  // Taken over by another node after our lease ran out: the create must not commit twice.
  if (done.numUpdatedRows !== 1n) throw inProgress();
}

/** After a failed create: frees the key for a retry (only while still pending). */
export async function abandonIdempotent<DB extends KeysDB>(
  store: Store<DB>,
  request: IdempotentRequest,
): Promise<void> {
  const control = store as unknown as Store<KeysDB>;
  await control.write((trx) =>
    trx
      .deleteFrom('idempotency_keys')
      .where('scope', '=', request.scope)
      .where('key', '=', request.key)
      .where('request_hash', '=', request.requestHash)
      .where('state', '=', 'pending')
      .execute(),
  );
}

function inProgress(): TresorError {
  return new TresorError(
    'TRESOR_ERR_IDEMPOTENCY_IN_PROGRESS',
    'a request with this Idempotency-Key is still being processed; retry later',
  );
}

function reused(): TresorError {
  return new TresorError(
    'TRESOR_ERR_IDEMPOTENCY_KEY_REUSED',
    'this Idempotency-Key was used for a different request',
  );
}
