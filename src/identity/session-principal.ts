/**
 * Who a console request comes from: the session principal that the session service proves and the
 * pipeline, routes and domains read. Its own file, so that what acts (identity-actor.ts) and what
 * proves it (sessions.ts) both name it without importing each other.
 */
import type { SecondFactorKind } from './identity-store-schema.ts';
import type { Role, Side } from './roles.ts';

export type SessionFactor = 'password' | SecondFactorKind;

/** Who a console request comes from, once its session cookie checked out. */
export interface SessionPrincipal {
  kind: 'session';
  sessionId: string;
  personId: string;
  side: Side;
  role: Role;
  tenant: string | null;
  factors: readonly SessionFactor[];
  authenticatedAt: string;
  /** When a second factor was last passed in this session (login or re-authentication). */
  fresh2faAt: string | null;
}
