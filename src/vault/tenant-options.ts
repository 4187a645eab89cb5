/**
 * What the tenant service (tenants.ts) is given: the control store, the API key hooks of the
 * identity layer above, the tenant store registry, keyd, the final exporter and the lifecycle's
 * configuration.
 */
import type { Transaction } from 'kysely';
import type { KeyService } from '../keyd/operations.ts';
import type { Store } from '../store/types.ts';
import type { VaultControlDB } from './vault-control-schema.ts';

/** The part of the tenant store registry (src/store/sqlite/tenant-stores.ts) this service uses. */
export interface TenantStoreRegistry {
  /** Makes the tenant's new, empty store (migrated). */
  create(tenant: string): Promise<unknown>;
  /** Opens (and migrates) an existing store. */
  open(tenant: string): Promise<unknown>;
  exists(tenant: string): boolean | Promise<boolean>;
  /** Wipes the store and removes its files. */
  destroy(tenant: string): Promise<unknown>;
}

/** Where a final export is encrypted to: an age recipient, or a passphrase. Never logged or audited. */
export type ExportTarget =
  | { recipient: string; passphrase?: never }
  | { passphrase: string; recipient?: never };

/** Produces the tenant's final export, encrypted to `target`; runs while the key and store exist. */
export type TenantExporter = (tenant: string, target: ExportTarget) => Promise<Uint8Array>;

export interface TenantServiceConfig {
  /** Days after the contract's last day before the tenant is closed automatically. */
  closeGraceDays: number;
  /** How long backups are kept: the deletion certificate's backup horizon. */
  backupRetentionDays: number;
  /**
   * The date (YYYY-MM-DD) by which the last backup taken before `closedAt` has aged out of every
   * backup destination, computed by whoever knows the retention (the server); when absent,
   * closedAt + backupRetentionDays.
   */
  backupsAgedOutBy?: (closedAt: string) => string;
}

/**
 * A tenant's API keys, which the identity layer above keeps (src/identity/api-keys.ts): each runs
 * inside the transaction that changes the tenant's state, so the keys change in the same commit.
 */
export interface TenantApiKeys<DB> {
  /** Issues the first API key (admin, all collections) as the tenant becomes active. */
  issueFirstIn(trx: Transaction<DB>, tenant: string, now: Date): Promise<{ id: string; token: string }>;
  /** Revokes every live key of the tenant as it closes; returns the ids revoked. */
  revokeAllIn(trx: Transaction<DB>, tenant: string, at: string): Promise<string[]>;
}

/** Where failures of the lifecycle's background steps go (a pino logger fits). */
export interface TenantLogger {
  warn(details: object, message: string): void;
}

export interface TenantServiceOptions<DB extends VaultControlDB = VaultControlDB> {
  /** The control store: any store with vault's tables, so that `apiKeys` can share its transactions. */
  control: Store<DB>;
  apiKeys: TenantApiKeys<DB>;
  tenantStores: TenantStoreRegistry;
  keys: KeyService;
  exporter?: TenantExporter;
  clock?: () => Date;
  config: TenantServiceConfig;
  logger?: TenantLogger;
  /**
   * Called once a commit has revoked a tenant's API keys (closing it), so that caches of
   * authenticated keys in this process (ApiKeyService.forgetTenant) drop them at once.
   */
  onApiKeysRevoked?: (tenant: string) => void;
  /**
   * Called once a tenant is closed, so that its data keys cached in this process
   * (DataKeyring.forgetTenant) go with it: a closed tenant's keys must not outlive it in memory
   * (docs/architecture.md, invariant 9).
   */
  forgetKeys?: (tenant: string) => void;
  /**
   * The grace between a close and the destruction of the tenant key, in seconds; default
   * config.closeGraceDays days. Finer than days for tests only.
   */
  keyDestroyGraceSeconds?: number;
}
