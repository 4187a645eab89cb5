/**
 * The one list of the API's domain route modules. The server, scripts/openapi.ts (which writes the
 * committed openapi.json) and the OpenAPI drift test all take their routes from here, so a module
 * added here is served, documented and checked by the route walk alike. The system routes
 * (probes, OpenAPI, reference page) are the server's own and always present (server.ts).
 */
import type { RouteModule } from '../route.ts';
import { type AccessRouteDeps, accessRoutes } from './access.ts';
import { type AlertRouteDeps, alertRoutes } from './alerts.ts';
import { type AuditRouteDeps, auditRoutes } from './audit.ts';
import { type AvailabilityRouteDeps, availabilityRoutes } from './availability.ts';
import { type BackupRouteDeps, backupRoutes } from './backups.ts';
import { type CurrentSessionRouteDeps, currentSessionRoutes } from './current-session.ts';
import { type EnrolmentRouteDeps, enrolmentRoutes } from './enrolment.ts';
import { type FactorRouteDeps, factorRoutes } from './factors.ts';
import { type JobRouteDeps, jobRoutes } from './jobs.ts';
import { type KeyRouteDeps, keyRoutes } from './keys.ts';
import { type LoginRouteDeps, loginRoutes } from './login.ts';
import { type MetricsRouteDeps, metricsRoutes } from './metrics.ts';
import { type OperatorTokenRouteDeps, operatorTokenRoutes } from './operator-tokens.ts';
import { type PeopleRouteDeps, peopleRoutes } from './people.ts';
import { type SessionRouteDeps, sessionRoutes } from './sessions.ts';
import { signinRoutes } from './signin.ts';
import { type TenantRestoreRouteDeps, tenantRestoreRoutes } from './tenant-restores.ts';
import { type TenantRouteDeps, tenantRoutes } from './tenants.ts';
import { type TrustRouteDeps, trustRoutes } from './trust.ts';
import { type VaultRouteDeps, vaultRoutes } from './vault.ts';

/** What the console identity modules need together (the identity services, the step-up clock). */
export type IdentityRouteDeps = LoginRouteDeps &
  CurrentSessionRouteDeps &
  SessionRouteDeps &
  EnrolmentRouteDeps &
  FactorRouteDeps &
  PeopleRouteDeps;

/** What the domain route modules need: one field per module's services. */
export interface DomainRouteDeps {
  vault: VaultRouteDeps;
  tenants: TenantRouteDeps;
  audit: AuditRouteDeps;
  keys: KeyRouteDeps;
  access: AccessRouteDeps;
  identity: IdentityRouteDeps;
  /** The server's background jobs (their status, for operators). */
  jobs: JobRouteDeps;
  /** The server's own probe results as availability (absent in test apps that do not wire it). */
  availability?: AvailabilityRouteDeps;
  /** The live trust page and its signed statement (absent in test apps that do not wire it). */
  trust?: TrustRouteDeps;
  /** Operator admins' scoped machine tokens. */
  operatorTokens: OperatorTokenRouteDeps;
  /** Backups: start, list, verify. */
  backups: BackupRouteDeps;
  /** Restoring one tenant from a backup into the running system. */
  tenantRestores: TenantRestoreRouteDeps;
  /** The Prometheus metrics (GET /metrics). */
  metrics: MetricsRouteDeps;
  /** Alerts: list, read, acknowledge, resolve. */
  alerts: AlertRouteDeps;
}

export function allRouteModules(deps: DomainRouteDeps): RouteModule[] {
  return [
    vaultRoutes(deps.vault),
    tenantRoutes(deps.tenants),
    auditRoutes(deps.audit),
    keyRoutes(deps.keys),
    accessRoutes(deps.access),
    // Console identity, in the order of the OpenAPI document's paths.
    loginRoutes(deps.identity),
    currentSessionRoutes(deps.identity),
    sessionRoutes(deps.identity),
    enrolmentRoutes(deps.identity),
    factorRoutes(deps.identity),
    peopleRoutes(deps.identity),
    operatorTokenRoutes(deps.operatorTokens),
    signinRoutes(),
    jobRoutes(deps.jobs),
    ...(deps.availability ? [availabilityRoutes(deps.availability)] : []),
    ...(deps.trust ? [trustRoutes(deps.trust)] : []),
    backupRoutes(deps.backups),
    tenantRestoreRoutes(deps.tenantRestores),
    metricsRoutes(deps.metrics),
    alertRoutes(deps.alerts),
  ];
}

/**
 * Stand-in dependencies for building the route list without running anything (the OpenAPI
 * document): any property can be read, any call throws. Route modules must only capture their
 * dependencies when built, never call them.
 */
export function specOnlyDependencies<T>(): T {
  const fail = (): never => {
    throw new Error('a route module used a dependency while only its definitions were being read');
  };
  const stub: object = new Proxy(fail, {
    get: (_target, property) => (property === 'then' ? undefined : stub),
    apply: fail,
    construct: fail,
  });
  return stub as T;
}
