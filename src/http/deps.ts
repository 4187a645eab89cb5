/**
 * What the HTTP layer needs from the rest of Tresor, as narrow interfaces so tests pass fakes and
 * the domains stay unaware of HTTP (dependencies point http → domains, never back).
 */
import type { AuditEvent } from '../audit/event.ts';
import type { Principal, SessionPrincipal } from '../identity/principal.ts';

/**
 * Proves who holds a bearer token. Resolves to the Principal, or rejects with TresorError
 * TRESOR_ERR_UNAUTHENTICATED — one error for unknown, wrong, expired and revoked tokens, after the
 * same work for each (see src/identity/api-keys.ts). Any other rejection is an outage (5xx).
 */
export type Authenticator = (token: string) => Promise<Principal>;

/** What the request says about itself, for the audit events of a refused session or CSRF token. */
export interface RequestMeta {
  requestId: string;
  sourceAddress: string;
  userAgent?: string;
}

/**
 * Console sessions (src/identity/sessions.ts). Both reject with a 4xx TresorError, after auditing
 * the refusal themselves: TRESOR_ERR_UNAUTHENTICATED for any bad cookie, TRESOR_ERR_CSRF.
 */
export interface SessionAuthenticator {
  authenticate(token: string, meta: RequestMeta): Promise<SessionPrincipal>;
  verifyCsrf(principal: SessionPrincipal, csrfToken: string | undefined, meta: RequestMeta): Promise<void>;
}

/** A live access grant as src/access hands it to the pipeline; undefined when not live. */
export interface LiveGrantView {
  id: string;
  tenant: string;
  personId: string;
  collections: '*' | readonly string[];
  access: 'read' | 'read-write';
  reason: string;
  ticket: string;
  expiresAt: string;
  breakGlass: boolean;
}

export type GrantResolver = (personId: string, grantId: string) => Promise<LiveGrantView | undefined>;

/**
 * A grant a staff request named that is not live, and why (src/access `refusedGrant`): the refused
 * attempt is recorded with the tenant it aimed at. `reason` and `ticket` only for the bearer's own.
 */
export interface RefusedGrantView {
  tenant: string;
  grant: { id: string; reason?: string; ticket?: string; breakGlass?: boolean };
  why: string;
}

export type RefusedGrantResolver = (
  personId: string,
  grantId: string,
) => Promise<RefusedGrantView | undefined>;

/**
 * Appends an audit event. Resolves only once the event is durable (Invariant 4): a request whose
 * event cannot be recorded is answered 503 and serves nothing.
 */
export interface AuditRecorder {
  record(event: AuditEvent, tenant: string | null): Promise<void>;
  /**
   * Whether the audit log can be trusted to record now (sequencer moving, checkpoints signed, disk
   * space left). When false, every audited route answers 503 before its handler runs (fail closed).
   */
  available?(): boolean;
}

/** One dependency `/readyz` checks: the store, keyd, the audit log being writable. */
export interface ReadinessCheck {
  name: string;
  check(): Promise<boolean>;
}

/**
 * Counts each answered request for the metrics (monitor/request-metrics.ts): the route template,
 * never the URL; undefined when no route matched.
 */
export interface RequestObserver {
  observe(request: { method: string; route: string | undefined; status: number; seconds: number }): void;
}
