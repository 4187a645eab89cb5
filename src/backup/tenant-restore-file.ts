/**
 * The restored tenant store as a file, before it is swapped in (tenant-restore.ts):
 *
 *   checkRestoredStore  opened as the server opens a tenant store (its migrations run: a schema newer
 *                       than this server knows is refused), SQLite's quick_check, and every wrapped
 *                       data key unwrapped by keyd for the tenant (each key dropped at once): a
 *                       tenant whose key was shredded is refused here, whatever its row says;
 *   carryForward        run while the live store is closed and held (TenantStores.replace): makes
 *                       the restored file continue what the live one did, in one transaction:
 *     - the audit outbox. The sequencer moves a tenant's events into the log by a cursor on the
 *       outbox's `seq` (src/audit/sequencer.ts). The backup's outbox is a prefix of the live one
 *       (append-only, same seqs), so the live events after the backup are copied in under their own
 *       seqs and AUTOINCREMENT's counter is raised to the live one: the outbox after the swap is the
 *       live outbox, whatever the cursor is (events at or below it were sequenced once and are never
 *       read again; those above it, and every new one, get sequenced exactly once). The records go
 *       back to the backup's; the outbox never goes back.
 *     - the data keys (wrapped keys, no data): the live ones are a superset of the backup's (keys are
 *       never deleted), and the live key ring is the one to continue — each key takes its live state
 *       and wrapped form (a tenant-key rotation since the backup rewrapped it; the key is the same),
 *       a key made since the backup comes along, and the active key per purpose is the live one. A
 *       key's encryption count must never go back (AES-GCM random nonces, NIST SP 800-38D §8.3,
 *       src/vault/data-keys.ts), so each keeps the larger of its two reservations. And a request that
 *       encrypted under the live active key just before the swap and writes just after it still
 *       writes a value whose key is in the store.
 *     - the restore's own audit event, appended last: it commits with the file that it describes
 *       (the rename is the commit point).
 */
import { sql } from 'kysely';
import type { AuditEvent } from '../audit/event.ts';
import { KeydError } from '../keyd/errors.ts';
import type { DataKeyPurpose, KeyService } from '../keyd/operations.ts';
import { openSqlite } from '../store/sqlite/open.ts';
import { openSqliteStore } from '../store/sqlite/store.ts';
import { type TenantDB, tenantStoreMigrations } from '../vault/tenant-store-schema.ts';
import { BackupError } from './errors.ts';

export interface RestoredStoreCheck {
  records: number;
  collections: number;
  dataKeys: number;
}

/** Refusals of the restored file name the check; TRESOR_ERR_TENANT_SHREDDED for a destroyed tenant key. */
export async function checkRestoredStore(
  path: string,
  tenant: string,
  keys: KeyService,
): Promise<RestoredStoreCheck> {
  let store: Awaited<ReturnType<typeof openSqliteStore<TenantDB>>>;
  try {
    store = await openSqliteStore<TenantDB>(path, tenantStoreMigrations, { fileMustExist: true });
  } catch (err) {
    throw refused(`its store does not open as a tenant store of this version (${codeOf(err)})`);
  }
  try {
    const { rows } = await sql<Record<string, string>>`PRAGMA quick_check`.execute(store.db);
    const result = rows.map((r) => Object.values(r)[0]).join('; ');
    if (result !== 'ok') throw refused(`its store fails SQLite's quick_check`);
    const dataKeys = await store.db.selectFrom('data_keys').selectAll().execute();
    for (const row of dataKeys) {
      if (row.tenant !== tenant) throw refused('its store holds a data key of another tenant');
      try {
        const { key } = await keys.call('unwrapDataKey', {
          tenant,
          purpose: row.purpose as DataKeyPurpose,
          keyId: row.key_id,
          wrapped: Buffer.from(row.wrapped),
        });
        key.fill(0);
      } catch (err) {
        if (err instanceof KeydError && err.code === 'TRESOR_ERR_TENANT_KEY_DESTROYED')
          throw shredded(tenant);
        if (err instanceof KeydError && err.code === 'TRESOR_ERR_TENANT_KEY_PENDING_DESTROY')
          throw new BackupError(
            'TRESOR_ERR_TENANT_STATE',
            `tenant ${tenant} is closing: its key is pending destruction; cancel the close first`,
          );
        if (
          err instanceof KeydError &&
          (err.code === 'TRESOR_ERR_WRAPPED_KEY_INVALID' ||
            err.code === 'TRESOR_ERR_KEY_VERSION_RETIRED' ||
            err.code === 'TRESOR_ERR_KEY_ID_UNKNOWN' ||
            err.code === 'TRESOR_ERR_TENANT_KEY_UNKNOWN')
        )
          throw refused(`a data key of its store does not unwrap through keyd (${err.code})`);
        throw err; // keyd sealed or unreachable: say so as it is
      }
    }
    const count = async (table: 'records' | 'collections') =>
      Number(
        (
          await store.db
            .selectFrom(table)
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      );
    return {
      records: await count('records'),
      collections: await count('collections'),
      dataKeys: dataKeys.length,
    };
  } finally {
    await store.close();
  }
}

/**
 * Makes the restored file at `scratch` continue the live store at `live` (see the header) and appends
 * `event` to its outbox. Both files must be closed by everyone else (TenantStores.replace's beforeSwap).
 */
export function carryForward(scratch: string, live: string, event: AuditEvent): void {
  const to = openSqlite(scratch, { fileMustExist: true });
  try {
    // The live file attached to the restored one's connection: the rows since the backup are copied
    // in one statement, never held in memory (a busy tenant's outbox can be large).
    to.prepare('ATTACH DATABASE ? AS live').run(live);
    const run = to.transaction(() => {
      const maxSeq = (schema: 'main' | 'live') =>
        (to.prepare(`SELECT max(seq) AS seq FROM ${schema}.audit_events`).get() as { seq: number | null })
          .seq ?? 0;
      const last = maxSeq('main');
      const liveLast = maxSeq('live');
      if (liveLast < last)
        throw refused('its audit outbox is ahead of the live one (not a backup of this store)');
      to.prepare(
        'INSERT INTO main.audit_events (seq, at, tenant, action, event) ' +
          'SELECT seq, at, tenant, action, event FROM live.audit_events WHERE seq > ? ORDER BY seq',
      ).run(last);
      // AUTOINCREMENT never hands out a seq at or below the counter: the next event follows the live ones.
      const counter =
        (
          to.prepare("SELECT seq FROM live.sqlite_sequence WHERE name = 'audit_events'").get() as
            | { seq: number }
            | undefined
        )?.seq ?? 0;
      const next = Math.max(counter, liveLast);
      to.prepare("UPDATE main.sqlite_sequence SET seq = max(seq, ?) WHERE name = 'audit_events'").run(next);
      to.prepare(
        "INSERT INTO main.sqlite_sequence (name, seq) SELECT 'audit_events', ? WHERE NOT EXISTS (SELECT 1 FROM main.sqlite_sequence WHERE name = 'audit_events')",
      ).run(next);
      // The live key ring; demotions before the active key, so the one-active-key index holds throughout.
      const keys = to
        .prepare(
          "SELECT key_id, tenant, purpose, wrapped, state, created_at, reserved FROM live.data_keys ORDER BY state = 'active', created_at",
        )
        .all() as {
        key_id: string;
        tenant: string;
        purpose: string;
        wrapped: Buffer;
        state: string;
        created_at: string;
        reserved: number;
      }[];
      const demote = to.prepare(
        "UPDATE main.data_keys SET state = 'decrypt-only' WHERE tenant = ? AND purpose = ? AND state = 'active' AND key_id <> ?",
      );
      const carry = to.prepare(
        'INSERT INTO main.data_keys (key_id, tenant, purpose, wrapped, state, created_at, reserved) VALUES (?, ?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (key_id) DO UPDATE SET wrapped = excluded.wrapped, state = excluded.state, reserved = max(data_keys.reserved, excluded.reserved)',
      );
      for (const key of keys) {
        if (key.state === 'active') demote.run(key.tenant, key.purpose, key.key_id);
        carry.run(key.key_id, key.tenant, key.purpose, key.wrapped, key.state, key.created_at, key.reserved);
      }
      to.prepare('INSERT INTO main.audit_events (at, tenant, action, event) VALUES (?, ?, ?, ?)').run(
        event.at,
        event.tenant,
        event.action,
        JSON.stringify(event),
      );
    });
    run.immediate();
    to.prepare('DETACH DATABASE live').run();
    to.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    to.close();
  }
}

export function refused(why: string): BackupError {
  return new BackupError('TRESOR_ERR_RESTORE_REFUSED', `restore refused: ${why}`);
}

export function shredded(tenant: string): BackupError {
  return new BackupError(
    'TRESOR_ERR_TENANT_SHREDDED',
    `tenant ${tenant} was closed after the backup was taken: its key is shredded (crypto-shredding), so its data cannot be restored`,
  );
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : err instanceof Error ? err.name : 'error';
}
