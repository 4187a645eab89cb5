/** A migrated control store in a temp folder, and the tenant rows identity tests stand on. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import type { TenantState } from '../../src/vault/vault-control-schema.ts';

export interface TestControlStore {
  dir: string;
  control: Store<ControlDB>;
  /** Closes the store and removes its folder. */
  close(): Promise<void>;
}

/** A control store with every migration applied, in a new folder named after `prefix`. */
export async function openTestControlStore(prefix: string): Promise<TestControlStore> {
  const dir = mkdtempSync(join(tmpdir(), `tresor-${prefix}-`));
  const control = await openSqliteStore<ControlDB>(join(dir, 'control.sqlite'), controlStoreMigrations);
  return {
    dir,
    control,
    async close() {
      await control.close();
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
