/** Tenants (operators) and a tenant's API keys (its admin keys) — src/http/routes/tenants.ts. */
import { type Declarations, OPERATOR, only, token } from '../greybox-declare.ts';

const READ = only(OPERATOR, token('tenants:read'));

export const tenants: Declarations = {
  'POST /v1/tenants': {
    allow: only(OPERATOR, token('tenants:create')),
    own: (f) => ({ path: '/v1/tenants', body: { name: `Greybox ${f.unique()}` } }),
  },
  'GET /v1/tenants': { allow: READ, own: () => ({ path: '/v1/tenants' }) },
  'GET /v1/tenants/:id': { allow: READ, own: (f) => ({ path: `/v1/tenants/${f.a.tenant}` }) },
  'POST /v1/tenants/:id/close': {
    allow: only('operator'),
    own: (f) => ({ path: `/v1/tenants/${f.closable}/close`, body: { reason: 'greybox matrix' } }),
  },
  'POST /v1/tenants/:id/close/cancel': {
    allow: only('operator'),
    own: (f) => ({ path: `/v1/tenants/${f.closable}/close/cancel` }),
  },
  'GET /v1/tenants/:id/deletion-certificate': {
    allow: READ,
    own: (f) => ({ path: `/v1/tenants/${f.closable}/deletion-certificate` }),
  },
  'POST /v1/api-keys': {
    allow: only('key:admin'),
    own: () => ({ path: '/v1/api-keys', body: { collections: '*', access: ['read'], label: 'greybox' } }),
  },
  'GET /v1/api-keys': { allow: only('key:admin'), own: () => ({ path: '/v1/api-keys' }) },
  'DELETE /v1/api-keys/:id': {
    allow: only('key:admin'),
    own: (f) => ({ path: `/v1/api-keys/${f.ghost.apiKey}` }),
    other: (f) => ({ path: `/v1/api-keys/${f.b.apiKeyId}` }),
  },
};
