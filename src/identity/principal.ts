/**
 * Who is making a request, as the authentication layer proved it. Domains receive a Principal and
 * decide; they never look at headers. No operator principal can read tenant records (docs/architecture.md,
 * invariant 7): only a tenant's own API keys and staff holding a live grant (src/access) reach
 * records — and a staff session reaches them only as the grant, never as itself.
 */
import type { OperatorScope } from './operator-scopes.ts';
import { auditActorKind } from './roles.ts';
import type { SessionPrincipal } from './session-principal.ts';

export type { SessionPrincipal } from './session-principal.ts';

export type ApiKeyAccess = 'read' | 'write' | 'admin';

export type ApiKeyPrincipal = {
  kind: 'api-key';
  tenant: string;
  keyId: string;
  /** Collections the key may touch: '*' or a list of names. */
  collections: '*' | readonly string[];
  access: ReadonlySet<ApiKeyAccess>;
};

/**
 * A staff member acting on one tenant's records through a live access grant: the session that
 * presented it, and what the grant allows (read, or read and write; never admin). The pipeline
 * builds it per request from the grant as it is now, so an expired or revoked grant is refused
 * at the very next request.
 */
export type GrantPrincipal = {
  kind: 'staff-grant';
  tenant: string;
  grantId: string;
  reason: string;
  ticket: string;
  breakGlass: boolean;
  collections: '*' | readonly string[];
  access: ReadonlySet<Exclude<ApiKeyAccess, 'admin'>>;
  session: SessionPrincipal;
};

/**
 * A machine acting with an operator token (operator-tokens.ts): one scope, for the operator-admin
 * person who created it. It reaches only the routes of its scope, never one that needs a second
 * factor; the audit log names the person, with the token id.
 */
export type OperatorTokenPrincipal = {
  kind: 'operator-token';
  tokenId: string;
  personId: string;
  scope: OperatorScope;
};

export type Principal =
  | ApiKeyPrincipal
  | OperatorTokenPrincipal
  | SessionPrincipal
  | GrantPrincipal
  | { kind: 'system'; job: string };

export type ActorKindOf = 'api-key' | 'operator-admin' | 'staff' | 'customer' | 'system';

export function actorOf(p: Principal): {
  kind: ActorKindOf;
  id: string;
  grantId?: string;
  tokenId?: string;
} {
  switch (p.kind) {
    case 'api-key':
      return { kind: 'api-key', id: p.keyId };
    case 'operator-token':
      return { kind: 'operator-admin', id: p.personId, tokenId: p.tokenId };
    case 'session':
      return { kind: auditActorKind(p.role) as ActorKindOf, id: p.personId };
    case 'staff-grant':
      return { kind: 'staff', id: p.session.personId, grantId: p.grantId };
    case 'system':
      return { kind: 'system', id: p.job };
  }
}

/** The tenant a principal acts within, if it is bound to one. */
export function tenantOfPrincipal(p: Principal): string | null {
  switch (p.kind) {
    case 'api-key':
    case 'staff-grant':
      return p.tenant;
    case 'session':
      return p.tenant;
    default:
      return null;
  }
}
