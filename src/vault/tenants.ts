/**
 * Tenants: one per customer contract, each with its own data store and its own tenant key in keyd.
 * Operator admins create and close them here; nothing here reads a tenant's records.
 *
 *   provisioning ──▶ active ──▶ closing ──▶ closed
 *
 * Provisioning: row 'provisioning' (audited) → tenant key in keyd → the tenant's store → first API
 * key (admin, all collections) and 'active' in ONE commit (audited).
 * Closing: 'closing' and every API key revoked, this process's cached keys forgotten (audited) →
 * optional final export (before anything is destroyed) → keyd schedules the tenant key's
 * destruction after the grace period (audited) … grace … keyd destroys the key (crypto-shredding;
 * keyd's maintenance or the server's grace job, whichever comes first) → the store is wiped and
 * removed → keyd signs the deletion certificate → certificate stored and 'closed' in one commit.
 * During the grace the tenant serves nothing (invariant 9 holds: no key of it is cached here and
 * keyd refuses to unwrap for it); only the key survives in keyd, so that an operator admin can
 * cancel the close (audited): the key is restored, the tenant is 'active' again with a new first
 * API key (the old ones stay revoked). The certificate is issued once, when the key is destroyed,
 * so it states the destruction as it happened (docs/keyd.md).
 *
 * Each step is durable before the next starts and each is idempotent (a tenant key that already
 * exists or is already destroyed, a store already made or already gone, counts as done), so a
 * failure anywhere leaves the tenant 'provisioning' or 'closing' — never half a tenant — and
 * resume() (at server start) rolls it forward to fully active or fully closed. A tenant that is
 * not 'active' serves nothing: its API keys are refused (api-keys.ts checks the state) and
 * requireActive() answers TRESOR_ERR_TENANT_STATE (409).
 *
 * Two choices the issue leaves open:
 * - A close that asked for a final export is not finished by resume() while the export can still
 *   be made (tenant key not yet destroyed): destroying data its owner asked to take away first
 *   would be the worse failure. It stays 'closing' (nothing served, nothing lost) until an operator
 *   retries closeTenant, with the export or explicitly without it.
 * - Tenant names are unique among tenants not closed, so retrying a create that failed half-way
 *   (e.g. keyd unavailable → 503; the caller never learnt the id) resumes that tenant and returns
 *   its first API key, instead of making a twin. A tenant resume() rolls forward gets a first key
 *   too, but nobody sees its token: the operator issues a new key for it.
 */
import { randomBytes } from 'node:crypto';
import type { Transaction } from 'kysely';
import { type AuditContext, appendAuditEvent, auditEventFrom } from '../audit/event.ts';
import { TresorError } from '../errors.ts';
import type { KeyService } from '../keyd/operations.ts';
import type { Store } from '../store/types.ts';
import {
  backupsAgedOutBy,
  DELETION_CERTIFICATE_TYPE,
  type DeletionCertificate,
  parseDeletionCertificate,
  type SignedDeletionCertificate,
  signDeletionCertificate,
} from './deletion-certificate.ts';
import type { TenantState, TenantsTable, VaultControlDB } from './vault-control-schema.ts';

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
}

export interface TenantInfo {
  id: string;
  name: string;
  state: TenantState;
  contractStart: string;
  contractEnd: string | null;
  createdAt: string;
  updatedAt: string;
  closedAt: string | null;
  closeReason: string | null;
}

export interface CreateTenantInput {
  name: string;
  /** YYYY-MM-DD; default today (UTC). */
  contractStart?: string;
  /** YYYY-MM-DD, the contract's last day; absent: open-ended. */
  contractEnd?: string | null;
}

export interface CreatedTenant {
  id: string;
  name: string;
  state: 'active';
  contractStart: string;
  contractEnd: string | null;
  /** The first API key (admin, all collections): shown here once, stored only as a hash. */
  apiKey: string;
  apiKeyId: string;
}

export interface CloseTenantInput {
  reason: string;
  export?: ExportTarget;
}

/** A close that finished: the key is destroyed and the certificate issued. */
export interface ClosedTenant extends SignedDeletionCertificate {
  state: 'closed';
  export?: Uint8Array;
}

/** A close in its grace period: the key survives in keyd until `keyDestroyAfter`, the tenant serves nothing. */
export interface ClosingTenant {
  state: 'closing';
  tenant: string;
  /** When keyd destroys the tenant key (ISO 8601); until then an operator admin may cancel. */
  keyDestroyAfter: string;
  export?: Uint8Array;
}

export type CloseOutcome = ClosedTenant | ClosingTenant;

/** A cancelled close: the tenant is active again, with a new first API key shown here once. */
export interface ReopenedTenant {
  tenant: TenantInfo;
  apiKey: string;
  apiKeyId: string;
}

export interface StoredDeletionCertificate extends SignedDeletionCertificate {
  createdAt: string;
}

export interface ResumeReport extends CloseReport {
  /** Provisioning tenants made active. */
  activated: string[];
}

/** What a pass over the closing tenants did. */
export interface CloseReport {
  /** Closing tenants made closed (their key's grace had ended). */
  closed: string[];
  /** Closing tenants whose key waits in keyd for its grace to end. */
  inGrace: string[];
  /** Closing tenants left for an operator: a requested final export was never handed over. */
  awaitingExport: string[];
  failed: { tenant: string; code: string }[];
}

export interface AutoCloseReport {
  closed: string[];
  failed: { tenant: string; code: string }[];
}

export interface TenantService {
  createTenant(input: CreateTenantInput, context: AuditContext): Promise<CreatedTenant>;
  /** Starts the close; it finishes at once only when the grace period is zero. */
  closeTenant(id: string, input: CloseTenantInput, context: AuditContext): Promise<CloseOutcome>;
  /** Cancels a close while the tenant key is pending destruction (operator admins only, audited). */
  cancelClose(id: string, context: AuditContext): Promise<ReopenedTenant>;
  /** Finishes every tenant left 'provisioning' or 'closing' (call at server start). */
  resume(): Promise<ResumeReport>;
  /** The grace job: finishes the closes whose key grace has ended, schedules interrupted ones. */
  completeCloses(): Promise<CloseReport>;
  /** Closes active tenants whose contract ended more than closeGraceDays before `now`. */
  autoClose(now?: Date): Promise<AutoCloseReport>;
  getTenant(id: string): Promise<TenantInfo>;
  listTenants(filter?: { state?: TenantState }): Promise<TenantInfo[]>;
  /** The tenant if it is active; else TRESOR_ERR_TENANT_STATE (409) or TRESOR_ERR_NOT_FOUND. */
  requireActive(id: string): Promise<TenantInfo>;
  getDeletionCertificate(id: string): Promise<StoredDeletionCertificate>;
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

const DAY_MS = 86_400_000;
const MAX_NAME_CHARS = 200;
const MAX_REASON_CHARS = 500;
const MAX_EXPORT_TARGET_CHARS = 1024;
const DATE_PATTERN = /^(\d{4})-(\d{2})-(\d{2})$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

export const RESUME_ACTOR = { kind: 'system', id: 'resume' } as const;
export const CONTRACT_END_ACTOR = { kind: 'system', id: 'contract-end' } as const;
export const CLOSE_GRACE_ACTOR = { kind: 'system', id: 'close-grace' } as const;

function invalid(field: string, message: string): TresorError {
  return new TresorError('TRESOR_ERR_VALIDATION', `${field}: ${message}`, { field });
}

function checkText(field: string, value: unknown, max: number): string {
  if (typeof value !== 'string') throw invalid(field, 'must be a string');
  const text = value.trim();
  if (text.length === 0 || text.length > max || CONTROL_CHARS.test(text)) {
    throw invalid(field, `1-${max} printable characters`);
  }
  return text;
}

function checkDate(field: string, value: unknown): string {
  const m = typeof value === 'string' ? DATE_PATTERN.exec(value) : null;
  if (!m) throw invalid(field, 'a date YYYY-MM-DD');
  const d = new Date(`${value}T00:00:00Z`);
  if (Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== value)
    throw invalid(field, 'not a real date');
  return value as string;
}

function checkExportTarget(value: unknown): ExportTarget | undefined {
  if (value === undefined) return undefined;
  const v = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const fine = (x: unknown) => typeof x === 'string' && x.length > 0 && x.length <= MAX_EXPORT_TARGET_CHARS;
  if (fine(v.recipient) && v.passphrase === undefined) return { recipient: v.recipient as string };
  if (fine(v.passphrase) && v.recipient === undefined) return { passphrase: v.passphrase as string };
  throw invalid('export', 'either a recipient or a passphrase');
}

function checkConfig(config: TenantServiceConfig): TenantServiceConfig {
  for (const [name, v] of Object.entries(config)) {
    if (!Number.isSafeInteger(v) || v < 0 || v > 36_500) {
      throw new RangeError(`tenant config ${name} must be a whole number of days from 0 to 36500`);
    }
  }
  return config;
}

function toInfo(row: TenantsTable): TenantInfo {
  return {
    id: row.id,
    name: row.name,
    state: row.state,
    contractStart: row.contract_start,
    contractEnd: row.contract_end,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    closedAt: row.closed_at,
    closeReason: row.close_reason,
  };
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'TRESOR_ERR_INTERNAL';
}

function wrongState(state: TenantState): TresorError {
  return new TresorError('TRESOR_ERR_TENANT_STATE', `tenant is ${state}`, { state });
}

/** When a contract's automatic close is due: the end of its last day (UTC) plus the grace days. */
export function autoCloseDueAt(contractEnd: string, closeGraceDays: number): Date {
  return new Date(Date.parse(`${contractEnd}T00:00:00Z`) + (1 + closeGraceDays) * DAY_MS);
}

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

export function createTenantService<DB extends VaultControlDB>(
  options: TenantServiceOptions<DB>,
): TenantService {
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

  // --- provisioning steps --------------------------------------------------------------------------

  async function ensureTenantKey(id: string): Promise<void> {
    try {
      await keys.call('createTenantKey', { tenant: id });
    } catch (error) {
      // Made by an earlier attempt whose answer was lost: tenant ids are random, so it is ours.
      if (errorCode(error) !== 'TRESOR_ERR_TENANT_KEY_EXISTS') throw error;
    }
  }

  async function ensureTenantStore(id: string): Promise<void> {
    if (await tenantStores.exists(id)) await tenantStores.open(id);
    else await tenantStores.create(id);
  }

  async function provision(id: string, context: AuditContext): Promise<{ apiKey: string; apiKeyId: string }> {
    const current = await row(id);
    if (current.state !== 'provisioning') throw wrongState(current.state);
    await ensureTenantKey(id);
    await ensureTenantStore(id);
    const now = clock();
    const at = now.toISOString();
    return control.write(async (trx) => {
      await transition(trx, id, 'provisioning', { state: 'active', updated_at: at });
      const key = await apiKeys.issueFirstIn(trx, id, now);
      await audit(trx, context, id, 'tenant.activate', at, { apiKeyId: key.id });
      return { apiKey: key.token, apiKeyId: key.id };
    });
  }

  // --- closing steps -------------------------------------------------------------------------------

  async function destroyTenantKey(id: string): Promise<{ keyIdsDestroyed: string[]; destroyedAt: string }> {
    try {
      const result = await keys.call('destroyTenantKey', { tenant: id, mode: 'now' });
      return {
        keyIdsDestroyed: result.keyIdsDestroyed,
        destroyedAt: result.destroyedAt ?? clock().toISOString(),
      };
    } catch (error) {
      // Destroyed by an earlier attempt whose answer was lost: keyd still knows which ids and when.
      if (errorCode(error) !== 'TRESOR_ERR_TENANT_KEY_DESTROYED') throw error;
      const status = await keys.call('tenantKeyStatus', { tenant: id });
      if (status.state !== 'destroyed' || status.destroyedAt === null) throw error;
      return { keyIdsDestroyed: status.versions.map((v) => v.keyId), destroyedAt: status.destroyedAt };
    }
  }

  /**
   * Asks keyd to destroy the tenant key after the grace (once: a key already scheduled or destroyed
   * counts as done) and answers keyd's schedule.
   */
  async function scheduleKeyDestruction(
    id: string,
  ): Promise<{ state: 'pending-destroy' | 'destroyed'; destroyAfter: string | null; scheduledNow: boolean }> {
    try {
      const r = await keys.call('destroyTenantKey', { tenant: id, mode: 'schedule', graceSeconds });
      return { state: r.state, destroyAfter: r.destroyAfter, scheduledNow: true };
    } catch (error) {
      const code = errorCode(error);
      if (code !== 'TRESOR_ERR_TENANT_KEY_PENDING_DESTROY' && code !== 'TRESOR_ERR_TENANT_KEY_DESTROYED')
        throw error;
      const status = await keys.call('tenantKeyStatus', { tenant: id });
      if (status.state === 'active') throw error;
      return { state: status.state, destroyAfter: status.destroyAfter, scheduledNow: false };
    }
  }

  function gone(): TresorError {
    return new TresorError(
      'TRESOR_ERR_GONE',
      'the tenant key is destroyed: a final export is no longer possible',
    );
  }

  async function finishClose(
    id: string,
    context: AuditContext,
    exportTarget: ExportTarget | undefined,
  ): Promise<CloseOutcome> {
    let current = await row(id);
    if (current.state !== 'closing') throw wrongState(current.state);

    let exported: Uint8Array | undefined;
    if (exportTarget !== undefined && exporter !== undefined) {
      // Once keyd holds the key for destruction it unwraps nothing: the export had its chance.
      if ((await keys.call('tenantKeyStatus', { tenant: id })).state !== 'active') throw gone();
      exported = await exporter(id, exportTarget);
      const at = clock().toISOString();
      await control.write((trx) =>
        audit(trx, context, id, 'tenant.export', at, {
          final: true,
          encryptedTo: 'recipient' in exportTarget ? 'recipient' : 'passphrase',
          bytes: exported?.length ?? 0,
        }),
      );
    }

    if (current.keys_destroyed_at === null) {
      const scheduled = await scheduleKeyDestruction(id);
      if (scheduled.scheduledNow || current.close_export_pending === 1) {
        const at = clock().toISOString();
        await control.write(async (trx) => {
          // The export is handed over or was given up: nothing awaits it once the key is scheduled.
          await trx
            .updateTable('tenants')
            .set({ close_export_pending: 0, updated_at: at })
            .where('id', '=', id)
            .execute();
          if (scheduled.scheduledNow) {
            await audit(trx, context, id, 'tenant.key.destroy-scheduled', at, {
              destroyAfter: scheduled.destroyAfter,
              graceSeconds,
            });
          }
        });
      }
      const due =
        scheduled.state === 'destroyed' ||
        scheduled.destroyAfter === null ||
        Date.parse(scheduled.destroyAfter) <= clock().getTime();
      if (!due) {
        return {
          state: 'closing',
          tenant: id,
          keyDestroyAfter: scheduled.destroyAfter as string,
          ...(exported === undefined ? {} : { export: exported }),
        };
      }
      const destroyed = await destroyTenantKey(id);
      const at = clock().toISOString();
      const set = {
        keys_destroyed_at: destroyed.destroyedAt,
        key_ids_destroyed: JSON.stringify(destroyed.keyIdsDestroyed),
        updated_at: at,
      };
      await control.write(async (trx) => {
        await trx.updateTable('tenants').set(set).where('id', '=', id).execute();
        await audit(trx, context, id, 'tenant.key.destroy', at, {
          keyIdsDestroyed: destroyed.keyIdsDestroyed,
        });
      });
      current = { ...current, ...set };
    }

    if (current.store_destroyed_at === null) {
      if (await tenantStores.exists(id)) await tenantStores.destroy(id);
      const at = clock().toISOString();
      await control.write(async (trx) => {
        await trx
          .updateTable('tenants')
          .set({ store_destroyed_at: at, updated_at: at })
          .where('id', '=', id)
          .execute();
        await audit(trx, context, id, 'tenant.store.destroy', at);
      });
      current = { ...current, store_destroyed_at: at };
    }

    const closedAt = clock().toISOString();
    const certificate: DeletionCertificate = {
      type: DELETION_CERTIFICATE_TYPE,
      tenant: id,
      tenantName: current.name,
      keyIdsDestroyed: JSON.parse(current.key_ids_destroyed ?? '[]') as string[],
      keydDestroyedAt: current.keys_destroyed_at as string,
      closedAt,
      backupsAgedOutBy: backupsAgedOutBy(closedAt, config.backupRetentionDays),
      reason: current.close_reason ?? 'unspecified',
    };
    const signed = await signDeletionCertificate(keys, certificate);
    await control.write(async (trx) => {
      await transition(trx, id, 'closing', {
        state: 'closed',
        closed_at: closedAt,
        updated_at: closedAt,
        close_export_pending: 0,
      });
      await apiKeys.revokeAllIn(trx, id, closedAt);
      await trx
        .insertInto('deletion_certificates')
        .values({
          tenant: id,
          body: signed.body,
          signature: signed.signature,
          key_name: signed.keyName,
          created_at: closedAt,
        })
        .execute();
      await audit(trx, context, id, 'tenant.closed', closedAt, {
        keyIdsDestroyed: certificate.keyIdsDestroyed,
        backupsAgedOutBy: certificate.backupsAgedOutBy,
      });
    });
    options.onApiKeysRevoked?.(id);
    const closed: ClosedTenant = { state: 'closed', ...signed };
    return exported === undefined ? closed : { ...closed, export: exported };
  }

  /**
   * Forgets the tenant's keys once it is closing or closed, whether or not a later step failed:
   * also after a final export, which unwrapped its data keys once more.
   */
  async function forgetKeysIfClosing(id: string): Promise<void> {
    if (options.forgetKeys === undefined) return;
    const state = (await row(id).catch(() => undefined))?.state;
    if (state === 'closing' || state === 'closed') options.forgetKeys(id);
  }

  async function closeTenant(
    id: string,
    input: CloseTenantInput,
    context: AuditContext,
  ): Promise<CloseOutcome> {
    try {
      return await closeTenantNow(id, input, context);
    } finally {
      await forgetKeysIfClosing(id);
    }
  }

  async function closeTenantNow(
    id: string,
    input: CloseTenantInput,
    context: AuditContext,
  ): Promise<CloseOutcome> {
    const reason = checkText('reason', input?.reason, MAX_REASON_CHARS);
    const exportTarget = checkExportTarget(input?.export);
    if (exportTarget !== undefined && exporter === undefined) {
      throw new TresorError('TRESOR_ERR_BAD_REQUEST', 'this server cannot make a final export');
    }
    return locks.run(id, async () => {
      const current = await row(id);
      const at = clock().toISOString();
      const exportKind =
        exportTarget === undefined ? 'none' : 'recipient' in exportTarget ? 'recipient' : 'passphrase';
      if (current.state === 'active') {
        await control.write(async (trx) => {
          await transition(trx, id, 'active', {
            state: 'closing',
            close_reason: reason,
            close_export_pending: exportTarget === undefined ? 0 : 1,
            updated_at: at,
          });
          const revoked = await apiKeys.revokeAllIn(trx, id, at);
          await audit(trx, context, id, 'tenant.close', at, {
            reason,
            finalExport: exportKind,
            apiKeysRevoked: revoked,
          });
        });
        options.onApiKeysRevoked?.(id);
        options.forgetKeys?.(id);
      } else if (current.state === 'closing') {
        // A retry: the operator says again whether a final export is wanted (the first reason stands).
        // Refused before anything is written: a refused retry must not leave an export awaited.
        if (exportTarget !== undefined && current.keys_destroyed_at !== null) throw gone();
        if (
          exportTarget !== undefined &&
          (await keys.call('tenantKeyStatus', { tenant: id })).state !== 'active'
        ) {
          throw gone();
        }
        await control.write(async (trx) => {
          await trx
            .updateTable('tenants')
            .set({ close_export_pending: exportTarget === undefined ? 0 : 1, updated_at: at })
            .where('id', '=', id)
            .where('state', '=', 'closing')
            .execute();
          await audit(trx, context, id, 'tenant.close', at, { retry: true, finalExport: exportKind });
        });
      } else {
        throw wrongState(current.state);
      }
      return finishClose(id, context, exportTarget);
    });
  }

  /** Rolls every tenant in `states` forward as far as it may go now. */
  async function passOver(
    states: TenantState[],
    actor: AuditContext['actor'],
    report: CloseReport & { activated?: string[] },
  ): Promise<void> {
    const pending = await control.db
      .selectFrom('tenants')
      .select(['id', 'state'])
      .where('state', 'in', states)
      .orderBy('created_at')
      .execute();
    for (const { id } of pending) {
      try {
        await locks.run(id, async () => {
          const current = await row(id);
          if (current.state === 'provisioning') {
            await provision(id, { actor });
            report.activated?.push(id);
          } else if (current.state === 'closing') {
            options.forgetKeys?.(id);
            if (current.close_export_pending === 1 && current.keys_destroyed_at === null) {
              report.awaitingExport.push(id);
              return;
            }
            const outcome = await finishClose(id, { actor }, undefined);
            (outcome.state === 'closed' ? report.closed : report.inGrace).push(id);
          }
        });
      } catch (error) {
        report.failed.push({ tenant: id, code: errorCode(error) });
        logger.warn({ tenant: id, code: errorCode(error) }, 'could not resume tenant lifecycle');
      }
    }
  }

  async function cancelClose(id: string, context: AuditContext): Promise<ReopenedTenant> {
    return locks.run(id, async () => {
      const current = await row(id);
      if (current.state !== 'closing') throw wrongState(current.state);
      if (current.keys_destroyed_at !== null) {
        throw new TresorError(
          'TRESOR_ERR_GONE',
          'the tenant key is destroyed: the close cannot be cancelled',
        );
      }
      const status = await keys.call('tenantKeyStatus', { tenant: id });
      if (status.state !== 'pending-destroy') {
        throw new TresorError(
          'TRESOR_ERR_TENANT_STATE',
          `the close can be cancelled only while the tenant key is pending destruction; it is ${status.state}`,
          { state: current.state },
        );
      }
      // keyd first: were the tenant active while its key is still pending, every request would fail.
      await keys.call('cancelTenantKeyDestroy', { tenant: id });
      const now = clock();
      const at = now.toISOString();
      const key = await control.write(async (trx) => {
        await transition(trx, id, 'closing', {
          state: 'active',
          close_reason: null,
          close_export_pending: 0,
          updated_at: at,
        });
        const issued = await apiKeys.issueFirstIn(trx, id, now);
        await audit(trx, context, id, 'tenant.close.cancel', at, {
          keyDestroyAfter: status.destroyAfter,
          apiKeyId: issued.id,
        });
        return issued;
      });
      return { tenant: toInfo(await row(id)), apiKey: key.token, apiKeyId: key.id };
    });
  }

  return {
    async createTenant(input, context) {
      const name = checkText('name', input?.name, MAX_NAME_CHARS);
      const now = clock();
      const contractStart =
        input.contractStart === undefined
          ? now.toISOString().slice(0, 10)
          : checkDate('contractStart', input.contractStart);
      const contractEnd =
        input.contractEnd === undefined || input.contractEnd === null
          ? null
          : checkDate('contractEnd', input.contractEnd);
      if (contractEnd !== null && contractEnd < contractStart) {
        throw invalid('contractEnd', 'must not be before contractStart');
      }
      const at = now.toISOString();
      const id = await control
        .write(async (trx) => {
          const twin = await trx
            .selectFrom('tenants')
            .selectAll()
            .where('name', '=', name)
            .where('state', '<>', 'closed')
            .executeTakeFirst();
          if (twin) {
            const sameContract =
              (input.contractStart === undefined || twin.contract_start === contractStart) &&
              twin.contract_end === contractEnd;
            if (twin.state === 'provisioning' && sameContract) return twin.id;
            throw new TresorError('TRESOR_ERR_CONFLICT', 'a tenant with this name exists', { field: 'name' });
          }
          const newId = `ten_${randomBytes(12).toString('hex')}`;
          await trx
            .insertInto('tenants')
            .values({
              id: newId,
              name,
              state: 'provisioning',
              contract_start: contractStart,
              contract_end: contractEnd,
              created_at: at,
              updated_at: at,
              closed_at: null,
              close_reason: null,
              close_export_pending: 0,
              keys_destroyed_at: null,
              key_ids_destroyed: null,
              store_destroyed_at: null,
            })
            .execute();
          await audit(trx, context, newId, 'tenant.create', at, { name, contractStart, contractEnd });
          return newId;
        })
        .catch((error: unknown) => {
          // Two creates with one name at once: the unique index lets one through.
          if (/UNIQUE/i.test(String((error as Error)?.message))) {
            throw new TresorError('TRESOR_ERR_CONFLICT', 'a tenant with this name exists', { field: 'name' });
          }
          throw error;
        });
      const { apiKey, apiKeyId } = await locks.run(id, () => provision(id, context));
      const created = await row(id);
      return {
        id,
        name: created.name,
        state: 'active',
        contractStart: created.contract_start,
        contractEnd: created.contract_end,
        apiKey,
        apiKeyId,
      };
    },

    closeTenant,

    cancelClose,

    async resume() {
      const report: ResumeReport = { activated: [], closed: [], inGrace: [], awaitingExport: [], failed: [] };
      await passOver(['provisioning', 'closing'], RESUME_ACTOR, report);
      return report;
    },

    async completeCloses() {
      const report: CloseReport = { closed: [], inGrace: [], awaitingExport: [], failed: [] };
      await passOver(['closing'], CLOSE_GRACE_ACTOR, report);
      return report;
    },

    async autoClose(now = clock()) {
      const report: AutoCloseReport = { closed: [], failed: [] };
      const candidates = await control.db
        .selectFrom('tenants')
        .select(['id', 'contract_end'])
        .where('state', '=', 'active')
        .where('contract_end', 'is not', null)
        .orderBy('contract_end')
        .execute();
      for (const { id, contract_end } of candidates) {
        if (contract_end === null || autoCloseDueAt(contract_end, config.closeGraceDays) > now) continue;
        try {
          await closeTenant(id, { reason: 'contract-end' }, { actor: CONTRACT_END_ACTOR });
          report.closed.push(id);
        } catch (error) {
          report.failed.push({ tenant: id, code: errorCode(error) });
          logger.warn({ tenant: id, code: errorCode(error) }, 'could not close tenant at contract end');
        }
      }
      return report;
    },

    async getTenant(id) {
      return toInfo(await row(id));
    },

    async listTenants(filter = {}) {
      let query = control.db.selectFrom('tenants').selectAll().orderBy('created_at').orderBy('id');
      if (filter.state !== undefined) query = query.where('state', '=', filter.state);
      return (await query.execute()).map(toInfo);
    },

    async requireActive(id) {
      const current = await row(id);
      if (current.state !== 'active') throw wrongState(current.state);
      return toInfo(current);
    },

    async getDeletionCertificate(id) {
      const stored =
        typeof id === 'string'
          ? await control.db
              .selectFrom('deletion_certificates')
              .selectAll()
              .where('tenant', '=', id)
              .executeTakeFirst()
          : undefined;
      const certificate = stored ? parseDeletionCertificate(stored.body) : undefined;
      if (!stored || !certificate)
        throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no deletion certificate for this tenant');
      return {
        certificate,
        body: stored.body,
        signature: stored.signature,
        keyName: stored.key_name,
        createdAt: stored.created_at,
      };
    },
  };
}
