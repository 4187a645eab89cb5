/**
 * A tenant's row as callers see it (TenantInfo), the checks of the service's inputs, and the
 * errors the lifecycle answers with.
 */
import { TresorError } from '../errors.ts';
import { hasControlCharacter } from '../text.ts';
import type { ExportTarget, TenantServiceConfig } from './tenant-options.ts';
import type { TenantState, TenantsTable } from './vault-control-schema.ts';

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

const MAX_EXPORT_TARGET_CHARS = 1024;
const DATE_PATTERN = /^(\d{4})-(\d{2})-(\d{2})$/;

export function invalid(field: string, message: string): TresorError {
  return new TresorError('TRESOR_ERR_VALIDATION', `${field}: ${message}`, { field });
}

export function checkText(field: string, value: unknown, max: number): string {
  if (typeof value !== 'string') throw invalid(field, 'must be a string');
  const text = value.trim();
  if (text.length === 0 || text.length > max || hasControlCharacter(text)) {
    throw invalid(field, `1-${max} printable characters`);
  }
  return text;
}

export function checkDate(field: string, value: unknown): string {
  const m = typeof value === 'string' ? DATE_PATTERN.exec(value) : null;
  if (!m) throw invalid(field, 'a date YYYY-MM-DD');
  const d = new Date(`${value}T00:00:00Z`);
  if (Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== value)
    throw invalid(field, 'not a real date');
  return value as string;
}

export function checkExportTarget(value: unknown): ExportTarget | undefined {
  if (value === undefined) return undefined;
  const v = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const fine = (x: unknown) => typeof x === 'string' && x.length > 0 && x.length <= MAX_EXPORT_TARGET_CHARS;
  if (fine(v.recipient) && v.passphrase === undefined) return { recipient: v.recipient as string };
  if (fine(v.passphrase) && v.recipient === undefined) return { passphrase: v.passphrase as string };
  throw invalid('export', 'either a recipient or a passphrase');
}

export function checkConfig(config: TenantServiceConfig): TenantServiceConfig {
  for (const [name, v] of Object.entries(config)) {
    if (name === 'backupsAgedOutBy') continue; // a function: the horizon computed by the server
    if (!Number.isSafeInteger(v) || v < 0 || v > 36_500) {
      throw new RangeError(`tenant config ${name} must be a whole number of days from 0 to 36500`);
    }
  }
  return config;
}

export function toInfo(row: TenantsTable): TenantInfo {
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

export function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'TRESOR_ERR_INTERNAL';
}

export function wrongState(state: TenantState): TresorError {
  return new TresorError('TRESOR_ERR_TENANT_STATE', `tenant is ${state}`, { state });
}

/** A final export asked for when the tenant key is destroyed or held by keyd for destruction. */
export function gone(): TresorError {
  return new TresorError(
    'TRESOR_ERR_GONE',
    'the tenant key is destroyed: a final export is no longer possible',
  );
}
