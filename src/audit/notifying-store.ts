/**
 * Stores as the domains write through them: each successful write tells the audit sequencer that
 * the store's outbox may hold new events, so they reach the log without waiting for a poll. The
 * sequencer itself writes the log through the raw control store.
 *
 * The audit log is built after the stores (it lists the tenants through them), so the sequencer is
 * looked up at each call; before it exists a write notifies nobody and the sequencer's start-up
 * pass reads the outboxes anyway.
 */
import type { Store } from '../store/types.ts';
import type { PendingSources } from './pending-sources.ts';
import { type AuditSequencer, CONTROL_SOURCE } from './sequencer.ts';

/** The audit sequencer once it exists. */
export type CurrentSequencer = () => Pick<AuditSequencer, 'notify' | 'drain'> | undefined;

/**
 * A store whose successful writes tell the audit sequencer that `source`'s outbox may hold new
 * events. The sequencer reads the outbox from its own cursor, so a notification for a write that
 * carried no event costs one empty query.
 */
export function notifyingStore<DB>(
  store: Store<DB>,
  source: string,
  sequencer: CurrentSequencer,
  pending?: Pick<PendingSources, 'write'>,
): Store<DB> {
  return {
    location: store.location,
    db: store.db,
    async write(work) {
      const result = await (pending ? pending.write(source, store, work) : store.write(work));
      sequencer()?.notify(source);
      return result;
    },
    healthy: () => store.healthy(),
    close: () => store.close(),
  };
}

/** The part of the tenant store registry (src/store/sqlite/tenant-stores.ts) that is wrapped. */
export interface TenantStoreFiles<DB> {
  create(tenant: string): Promise<Store<DB>>;
  open(tenant: string): Promise<Store<DB>>;
  exists(tenant: string): Promise<boolean>;
  destroy(tenant: string): Promise<void>;
}

/**
 * The tenant stores as the domains use them: notifying, drained into the log before a wipe, and —
 * with `pending` — each write marking the tenant's outbox as pending before it commits
 * (pending-sources.ts), so a sequencer start after a crash knows to look at it.
 */
export function auditedTenantStores<DB>(
  stores: TenantStoreFiles<DB>,
  sequencer: CurrentSequencer,
  pending?: Pick<PendingSources, 'write'>,
): TenantStoreFiles<DB> {
  // One wrapper per open store, not per call: the vault caches collection rows per store object, and
  // a new wrapper on every request made every record request read its collection row again.
  const wrappers = new WeakMap<Store<DB>, Store<DB>>();
  return {
    create: async (tenant) => notifyingStore(await stores.create(tenant), tenant, sequencer, pending),
    async open(tenant) {
      const store = await stores.open(tenant);
      let wrapped = wrappers.get(store);
      if (wrapped === undefined) {
        wrapped = notifyingStore(store, tenant, sequencer, pending);
        wrappers.set(store, wrapped);
      }
      return wrapped;
    },
    exists: (tenant) => stores.exists(tenant),
    // A tenant's outbox is moved into the log before its store is wiped (nothing of it is lost), and
    // so is the control outbox, which holds the tenant's reads (read-outbox.ts): every event of the
    // tenant is in the log before its store goes and its deletion certificate is issued.
    async destroy(tenant) {
      if (await stores.exists(tenant)) await sequencer()?.drain(tenant);
      await sequencer()?.drain(CONTROL_SOURCE);
      await stores.destroy(tenant);
    },
  };
}
