/**
 * Who is making a request, as the authentication layer proved it. Domains receive a Principal and
 * decide; they never look at headers. No operator principal can read tenant records (DESIGN.md
 * invariant 7): only a tenant's own API keys (and, later, staff with a live grant) reach records.
 */
export type ApiKeyAccess = 'read' | 'write' | 'admin';

export type Principal =
  | {
      kind: 'api-key';
      tenant: string;
      keyId: string;
      /** Collections the key may touch: '*' or a list of names. */
      collections: '*' | readonly string[];
      access: ReadonlySet<ApiKeyAccess>;
    }
  | { kind: 'operator-admin'; id: string; method: 'token' | 'password' }
  | { kind: 'system'; job: string };

export function actorOf(p: Principal): { kind: 'api-key' | 'operator-admin' | 'system'; id: string } {
  switch (p.kind) {
    case 'api-key':
      return { kind: 'api-key', id: p.keyId };
    case 'operator-admin':
      return { kind: 'operator-admin', id: p.id };
    case 'system':
      return { kind: 'system', id: p.job };
  }
}
