/**
 * The audit log's identity: its origin, the first line of every checkpoint and the name of the key
 * that signs them. C2SP tlog-checkpoint makes the origin the log's unique identity, and
 * signed-note asks that the key name match it, so it is fixed once per deployment and kept in the
 * control store (`audit_log_identity`, one row):
 *
 *   - a store whose log has checkpoints already (made before this table) keeps the origin of its
 *     latest checkpoint;
 *   - else the configured `audit.origin`, or a generated one (generatedAuditOrigin);
 *   - afterwards a different configured origin refuses to start: changing it would make a new log
 *     under the old one's entries.
 */
import { randomBytes } from 'node:crypto';
import { type Kysely, type Migration, sql } from 'kysely';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import { parseCheckpoint } from './checkpoint.ts';
import type { WithAuditLog } from './log-schema.ts';
import { isValidKeyName, parseNote } from './note.ts';

export interface AuditLogIdentityTable {
  /** Always 1: one identity per store. */
  id: number;
  origin: string;
  fixed_at: string;
}

export interface WithAuditLogIdentity {
  audit_log_identity: AuditLogIdentityTable;
}

export const auditLogIdentityMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`CREATE TABLE audit_log_identity (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      origin TEXT NOT NULL,
      fixed_at TEXT NOT NULL
    )`.execute(db);
  },
};

/** PostgreSQL's audit_log_identity: the same one-row table. */
export const auditLogIdentityPgMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`CREATE TABLE audit_log_identity (
      id integer PRIMARY KEY CHECK (id = 1),
      origin text NOT NULL,
      fixed_at text NOT NULL
    )`.execute(db);
  },
};

/**
 * A fresh origin: `<host>/audit/<8 hex>`, a schema-less URL as tlog-checkpoint recommends, unique
 * by its random part even where every deployment has the same host name.
 */
export function generatedAuditOrigin(host: string | undefined): string {
  const base = host !== undefined && isValidKeyName(host) ? host : 'tresor';
  return `${base}/audit/${randomBytes(4).toString('hex')}`;
}

/**
 * The origin of this store's log without fixing it (a reader beside or without the server, e.g. the
 * access review CLI opening the sealed segments, whose manifests name it): the fixed one, else that
 * of the latest checkpoint (a store from before the table), else null.
 */
export async function readAuditOrigin(
  db: Kysely<WithAuditLog & WithAuditLogIdentity>,
): Promise<string | null> {
  return (await fixedOrigin(db)) ?? (await latestCheckpointOrigin(db));
}

/**
 * The origin of this store's log, fixed now if it was not yet (see the header). Throws
 * TRESOR_ERR_CONFIG_INVALID when `configured` differs from the fixed one.
 */
export async function fixAuditOrigin(
  control: Store<WithAuditLog & WithAuditLogIdentity>,
  options: { configured?: string; generate: () => string; now: () => Date },
): Promise<string> {
  const origin = await control.write(async (trx) => {
    const fixed = await fixedOrigin(trx);
    if (fixed !== null) return fixed;
    const chosen = (await latestCheckpointOrigin(trx)) ?? options.configured ?? options.generate();
    await trx
      .insertInto('audit_log_identity')
      .values({ id: 1, origin: chosen, fixed_at: options.now().toISOString() })
      .execute();
    return chosen;
  });
  if (options.configured !== undefined && options.configured !== origin) {
    throw new TresorError(
      'TRESOR_ERR_CONFIG_INVALID',
      `audit.origin is ${options.configured} but this deployment's audit log is ${origin}: the origin is the log's identity and never changes (remove audit.origin or set it to ${origin})`,
    );
  }
  return origin;
}

async function fixedOrigin(db: Kysely<WithAuditLog & WithAuditLogIdentity>): Promise<string | null> {
  const row = await db
    .selectFrom('audit_log_identity')
    .select('origin')
    .where('id', '=', 1)
    .executeTakeFirst();
  return row?.origin ?? null;
}

async function latestCheckpointOrigin(
  db: Kysely<WithAuditLog & WithAuditLogIdentity>,
): Promise<string | null> {
  const latest = await db
    .selectFrom('audit_checkpoints')
    .select('note')
    .orderBy('size', 'desc')
    .limit(1)
    .executeTakeFirst();
  return latest === undefined ? null : parseCheckpoint(parseNote(latest.note).text).origin;
}
