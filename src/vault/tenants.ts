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
 *
 * The service is composed here from one file per concept: tenant-options.ts (what it is given),
 * tenant-rows.ts (TenantInfo, input checks, errors), tenant-context.ts (what every step shares:
 * the per-tenant lock, row reads, state moves, audit), tenant-provision.ts (create and activate),
 * tenant-close.ts (start a close), tenant-close-steps.ts (export, key grace and destruction, store
 * wipe, certificate), tenant-close-cancel.ts, tenant-resume.ts (resume and the grace job),
 * tenant-contract-end.ts (autoClose) and tenant-queries.ts (reads and certificates).
 */
import type { AuditContext } from '../audit/event.ts';
import type { IdempotentRequest } from './idempotency.ts';
import { type CloseTenantInput, createTenantClose } from './tenant-close.ts';
import { createTenantCloseCancel, type ReopenedTenant } from './tenant-close-cancel.ts';
import { type CloseOutcome, createTenantCloseSteps } from './tenant-close-steps.ts';
import { createTenantContext } from './tenant-context.ts';
import { type AutoCloseReport, createTenantContractEnd } from './tenant-contract-end.ts';
import type { TenantServiceOptions } from './tenant-options.ts';
import {
  type CreatedTenant,
  type CreateTenantInput,
  createTenantProvisioning,
  type ReplayedTenant,
} from './tenant-provision.ts';
import { createTenantQueries, type StoredDeletionCertificate } from './tenant-queries.ts';
import { type CloseReport, createTenantResume, type ResumeReport } from './tenant-resume.ts';
import type { TenantInfo } from './tenant-rows.ts';
import type { TenantState, VaultControlDB } from './vault-control-schema.ts';

export type { CloseTenantInput } from './tenant-close.ts';
export type { ReopenedTenant } from './tenant-close-cancel.ts';
export type { ClosedTenant, CloseOutcome, ClosingTenant } from './tenant-close-steps.ts';
export { type AutoCloseReport, autoCloseDueAt, CONTRACT_END_ACTOR } from './tenant-contract-end.ts';
export type {
  ExportTarget,
  TenantApiKeys,
  TenantExporter,
  TenantLogger,
  TenantServiceConfig,
  TenantServiceOptions,
  TenantStoreRegistry,
} from './tenant-options.ts';
export type { CreatedTenant, CreateTenantInput } from './tenant-provision.ts';
export type { StoredDeletionCertificate } from './tenant-queries.ts';
export { CLOSE_GRACE_ACTOR, type CloseReport, RESUME_ACTOR, type ResumeReport } from './tenant-resume.ts';
export type { TenantInfo } from './tenant-rows.ts';

export interface TenantService {
  createTenant(input: CreateTenantInput, context: AuditContext): Promise<CreatedTenant>;
  createTenant(
    input: CreateTenantInput,
    context: AuditContext,
    idempotency: IdempotentRequest | undefined,
  ): Promise<CreatedTenant | ReplayedTenant>;
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

export function createTenantService<DB extends VaultControlDB>(
  options: TenantServiceOptions<DB>,
): TenantService {
  const ctx = createTenantContext(options);
  const provisioning = createTenantProvisioning(ctx);
  const steps = createTenantCloseSteps(ctx);
  const { closeTenant } = createTenantClose(ctx, steps);
  const { cancelClose } = createTenantCloseCancel(ctx);
  const { resume, completeCloses } = createTenantResume(ctx, provisioning, steps);
  const { autoClose } = createTenantContractEnd(ctx, closeTenant);
  const queries = createTenantQueries(ctx);

  return {
    createTenant: provisioning.createTenant,
    closeTenant,
    cancelClose,
    resume,
    completeCloses,
    autoClose,
    getTenant: queries.getTenant,
    listTenants: queries.listTenants,
    requireActive: queries.requireActive,
    getDeletionCertificate: queries.getDeletionCertificate,
  };
}
