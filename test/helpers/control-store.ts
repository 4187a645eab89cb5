/**
 * A migrated control store in a temp folder (or, on the PostgreSQL pass, in a fresh database:
 * test/helpers/backend.ts), and the tenant and people rows identity tests stand on.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DatabaseConfig } from '../../src/config/server-config.ts';
import { createAccountService } from '../../src/identity/accounts.ts';
import type { Role } from '../../src/identity/roles.ts';
import type { SessionPrincipal } from '../../src/identity/session-principal.ts';
import { openControlOf } from '../../src/server/backend.ts';
import type { ControlDB } from '../../src/server/control-store.ts';
import type { Store } from '../../src/store/types.ts';
import type { TenantState } from '../../src/vault/vault-control-schema.ts';
import { testDatabase } from './backend.ts';

export interface TestControlStore {
  dir: string;
  /** Where the store is (SQLite in `dir`, or the test's PostgreSQL database): for a second handle. */
  database: DatabaseConfig;
  control: Store<ControlDB>;
  /** Closes the store and removes its folder. */
  close(): Promise<void>;
}

/** A control store with every migration applied, in a new folder named after `prefix`. */
export async function openTestControlStore(prefix: string): Promise<TestControlStore> {
  const dir = mkdtempSync(join(tmpdir(), `tresor-${prefix}-`));
  const data = await testDatabase();
  const control = await openControlOf({ dataDir: dir, database: data.database }).catch(async (error) => {
    await data.drop();
    throw error;
  });
  return {
    dir,
    database: data.database,
    control,
    async close() {
      await control.close();
      await data.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A tenant row as the tenant service writes it (no tenant store, no keys). */
export async function insertTenant(
  control: Store<ControlDB>,
  id: string,
  options: { at: string; state?: TenantState; name?: string },
): Promise<void> {
  const { at, state = 'active', name = id } = options;
  await control.write((trx) =>
    trx
      .insertInto('tenants')
      .values({
        id,
        name,
        state,
        contract_start: '2030-01-01',
        contract_end: null,
        created_at: at,
        updated_at: at,
        closed_at: null,
        close_reason: null,
        close_export_pending: 0,
        keys_destroyed_at: null,
        key_ids_destroyed: null,
        store_destroyed_at: null,
      })
      .execute(),
  );
}

/**
 * A console account made as a system job (as `tresor dev` makes its operator admin): not enrolled,
 * so it cannot log in, but it can own operator tokens and act in service tests. Returns its id.
 */
export async function insertPerson(
  control: Store<ControlDB>,
  options: { role?: Role; email?: string; now?: () => Date } = {},
): Promise<string> {
  const { role = 'operator-admin', email = `${role}-${randomUUID()}@example.test` } = options;
  const accounts = createAccountService({ control, now: options.now ?? (() => new Date()) });
  const created = await accounts.createPerson(
    { kind: 'system', job: 'test' },
    { side: 'operator', role, email },
  );
  return created.person.id;
}

/** A console session of `personId` as the session service proves it (no session row: tests of services). */
export function sessionOfPerson(personId: string, at: Date, role: Role = 'operator-admin'): SessionPrincipal {
  return {
    kind: 'session',
    sessionId: `ses_${personId.slice(4)}`,
    personId,
    side: 'operator',
    role,
    tenant: null,
    factors: ['password', 'totp'],
    authenticatedAt: at.toISOString(),
    fresh2faAt: at.toISOString(),
  };
}
