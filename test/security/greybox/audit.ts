/** The audit log (src/http/routes/audit.ts): entries for the tenant's admin key, its admin, the security role. */
import { type Declarations, KEYS, only, SESSIONS, token } from '../greybox-declare.ts';

const READERS = only('key:admin', 'tenant-admin', 'security-officer', token('audit:read'));
/** The log's checkpoints and proofs: anyone authenticated (a verifier needs no role). */
/** Entry bundles hold every tenant's entries: whole-log readers only. */
const ALL_READERS = only('security-officer', token('audit:read'));
const AUTHENTICATED = only(KEYS, SESSIONS, token('audit:read'));

export const audit: Declarations = {
  'GET /v1/audit/entries': { allow: READERS, own: () => ({ path: '/v1/audit/entries?limit=5' }) },
  'GET /v1/audit/stream': { allow: READERS, own: () => ({ path: '/v1/audit/stream' }) },
  'GET /v1/audit/checkpoint': { allow: AUTHENTICATED, own: () => ({ path: '/v1/audit/checkpoint' }) },
  'GET /v1/audit/proofs/inclusion': {
    allow: AUTHENTICATED,
    own: () => ({ path: '/v1/audit/proofs/inclusion?index=0&treeSize=1' }),
  },
  'GET /v1/audit/proofs/consistency': {
    allow: AUTHENTICATED,
    own: () => ({ path: '/v1/audit/proofs/consistency?from=1&to=1' }),
  },
  'GET /v1/audit/tile/:level/*': { allow: AUTHENTICATED, own: () => ({ path: '/v1/audit/tile/0/000.p/1' }) },
  'GET /v1/audit/tile/entries/*': {
    allow: ALL_READERS,
    own: () => ({ path: '/v1/audit/tile/entries/000.p/1' }),
  },
  'GET /v1/audit/public-key': { allow: 'everyone', own: () => ({ path: '/v1/audit/public-key' }) },
};
