/**
 * What every step of the tenant lifecycle shares: the service's options made ready (the control
 * store under vault's own table types, the clock, the checked config, the key grace), the
 * per-tenant lock, and the three moves on the control store every step makes: reading a tenant's
 * row, moving its state, auditing.
 */
import type { Transaction } from 'kysely';
import { type AuditContext, appendAuditEvent, auditEventFrom } from '../audit/event.ts';
import { TresorError } from '../errors.ts';
import type { KeyService } from '../keyd/operations.ts';
import type { Store } from '../store/types.ts';
import type {
  TenantApiKeys,
  TenantExporter,
  TenantLogger,
  TenantServiceConfig,
  TenantServiceOptions,
  TenantStoreRegistry,
} from './tenant-options.ts';
import { checkConfig, wrongState } from './tenant-rows.ts';
import type { TenantState, TenantsTable, VaultControlDB } from './vault-control-schema.ts';

/** Runs one tenant's lifecycle steps one at a time in this process. */
class TenantLocks {
  readonly #tails = new Map<string, Promise<unknown>>();

  run<T>(tenant: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(tenant) ?? Promise.resolve();
    const result = previous.then(fn, fn);
    const tail = result.catch(() => undefined);
    this.#tails.set(tenant, tail);
    void tail.then(() => {
      if (this.#tails.get(tenant) === tail) this.#tails.delete(tenant);
    });
    return result;
  }
}

export interface TenantContext {
  control: Store<VaultControlDB>;
  apiKeys: TenantApiKeys<VaultControlDB>;
  tenantStores: TenantStoreRegistry;
  keys: KeyService;
  exporter: TenantExporter | undefined;
  clock: () => Date;
  config: TenantServiceConfig;
  logger: TenantLogger;
  locks: TenantLocks;
  /** The grace between a close and the destruction of the tenant key, in seconds. */
  graceSeconds: number;
  /** The caller's options object itself: the hooks (onApiKeysRevoked, forgetKeys) are read when called. */
  hooks: Pick<TenantServiceOptions, 'onApiKeysRevoked' | 'forgetKeys'>;
  audit(
    trx: Transaction<VaultControlDB>,
    context: AuditContext,
    tenant: string,
    action: string,
    at: string,
    target?: Record<string, unknown>,
  ): Promise<void>;
  /** The tenant's row; TRESOR_ERR_NOT_FOUND if there is none. */
  row(id: string): Promise<TenantsTable>;
  transition(
    trx: Transaction<VaultControlDB>,
    id: string,
    from: TenantState,
    set: Partial<TenantsTable>,
  ): Promise<void>;
}

export function createTenantContext<DB extends VaultControlDB>(
  options: TenantServiceOptions<DB>,
): TenantContext {
  const { tenantStores, keys, exporter } = options;
  // Vault's code names only its own tables; the store and the key hooks share one DB type.
  const control = options.control as unknown as Store<VaultControlDB>;
  const apiKeys = options.apiKeys as unknown as TenantApiKeys<VaultControlDB>;
  const clock = options.clock ?? (() => new Date());
  const config = checkConfig({ ...options.config });
  const logger = options.logger ?? {
    warn: (details: object, message: string) => console.error(message, details),
  };
  const locks = new TenantLocks();
  const graceSeconds = options.keyDestroyGraceSeconds ?? config.closeGraceDays * 86_400;
  if (!Number.isSafeInteger(graceSeconds) || graceSeconds < 0) {
    throw new RangeError('keyDestroyGraceSeconds must be a whole number of seconds, 0 or more');
  }

  async function audit(
    trx: Transaction<VaultControlDB>,
    context: AuditContext,
    tenant: string,
    action: string,
    at: string,
    target?: Record<string, unknown>,
  ): Promise<void> {
    await appendAuditEvent(
      trx,
      auditEventFrom(context, { at, tenant, action, outcome: 'success', ...(target ? { target } : {}) }),
    );
  }

  async function row(id: string): Promise<TenantsTable> {
    const found =
      typeof id === 'string'
        ? await control.db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirst()
        : undefined;
    if (!found) throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no such tenant');
    return found;
  }

  /** Moves the tenant from one state to the next inside `trx`, or fails if someone else moved it. */
  async function transition(
    trx: Transaction<VaultControlDB>,
    id: string,
    from: TenantState,
    set: Partial<TenantsTable>,
  ): Promise<void> {
    const result = await trx
      .updateTable('tenants')
      .set(set)
      .where('id', '=', id)
      .where('state', '=', from)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) {
      const now = await trx.selectFrom('tenants').select('state').where('id', '=', id).executeTakeFirst();
      throw wrongState(now?.state ?? from);
    }
  }

  return {
    control,
    apiKeys,
    tenantStores,
    keys,
    exporter,
    clock,
    config,
    logger,
    locks,
    graceSeconds,
    hooks: options,
    audit,
    row,
    transition,
  };
}
