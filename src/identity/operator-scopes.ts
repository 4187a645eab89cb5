/**
 * The scopes of operator tokens: the one vocabulary the token service, the HTTP routes (each route
 * names the scope that admits a token, src/http/route.ts) and the docs share. A token has exactly
 * one scope, so a leaked token reaches one narrow kind of machine work and nothing else. No scope
 * changes people, closes tenants, changes approval policies or manages tokens: those need a person
 * who passed a second factor moments ago (step-up), never a copyable secret.
 */

export const OPERATOR_SCOPES = [
  /** POST /v1/tenants. */
  'tenants:create',
  /** GET /v1/tenants, /v1/tenants/:id, /v1/tenants/:id/deletion-certificate. */
  'tenants:read',
  /** GET /v1/people, /v1/people/:id. */
  'people:read',
  /** GET /v1/grants, /v1/grants/:id, /v1/access/review, /v1/access/unreviewed, grant policies. */
  'access:read',
  /** GET /v1/audit/entries, stream, checkpoint, proofs. */
  'audit:read',
  /** GET /v1/system/jobs (`tresor status`). */
  'jobs:read',
  /** POST /v1/backups, /v1/backups/:id/verify (`tresor backup now`, `tresor backup verify`). */
  'backups:run',
  /** GET /v1/backups, /v1/backups/:id (`tresor backup list`). */
  'backups:read',
  /** GET /v1/alerts, /v1/alerts/:id (a SIEM or pager reading the alerts; never acknowledging them). */
  'alerts:read',
  /** GET /metrics (Prometheus, docs/monitoring.md). */
  'metrics:read',
] as const;

export type OperatorScope = (typeof OPERATOR_SCOPES)[number];

export function isOperatorScope(value: unknown): value is OperatorScope {
  return typeof value === 'string' && (OPERATOR_SCOPES as readonly string[]).includes(value);
}
