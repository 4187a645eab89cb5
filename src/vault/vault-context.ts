/**
 * What every vault operation needs: the tenant stores, the data keyring, the clock and the limits.
 * Built once by createVault (src/vault/collections.ts).
 */
import type { ReadOutbox } from '../audit/read-outbox.ts';
import type { Store } from '../store/types.ts';
import type { CollectionCache } from './collection-cache.ts';
import type { DataKeyring } from './data-keys.ts';
import type { VaultLimits } from './schema.ts';
import type { TenantDB } from './tenant-store-schema.ts';

export interface VaultContext {
  stores: (tenant: string) => Promise<Store<TenantDB>>;
  keys: DataKeyring;
  /**
   * Where the events of audited reads (and of failures that change nothing) are made durable: the
   * control store's outbox, not the tenant's (src/audit/read-outbox.ts).
   */
  readOutbox: ReadOutbox;
  clock: () => Date;
  limits: VaultLimits;
  /** Parsed collection rows of this process (see CollectionCache); absent: every request reads the row. */
  collections?: CollectionCache;
  /** How long an Idempotency-Key is kept (src/vault/idempotency.ts); default 24 h. */
  idempotencyTtlMs?: number;
  /**
   * A collection change gives the tenant's records an expiry: its retention is due now (called
   * before the change's write and after it; retention-due.ts). Absent: nothing is told.
   */
  retentionDue?: (tenant: string) => Promise<void>;
}

/** What sealing and opening field values need: a vault context that audits nothing (no outbox). */
export type CryptoContext = Omit<VaultContext, 'readOutbox'>;
