/** Records and collections (src/http/routes/vault.ts): tenant keys by scope, staff through a live grant. */
import { type Declarations, only } from '../greybox-declare.ts';

const DATA_READ = only('key:admin', 'key:read', 'staff+read', 'staff+rw');
const DATA_WRITE = only('key:admin', 'key:write', 'staff+rw');

export const vault: Declarations = {
  'PUT /v1/collections/:name': {
    allow: only('key:admin'),
    own: () => ({
      path: '/v1/collections/greybox_scratch',
      body: { fields: { note: { type: 'string', classification: 'internal' } } },
    }),
  },
  'GET /v1/collections': { allow: DATA_READ, data: true, own: () => ({ path: '/v1/collections' }) },
  'POST /v1/collections/:name/records': {
    allow: DATA_WRITE,
    data: true,
    own: (f) => ({
      path: `/v1/collections/${f.a.collection}/records`,
      body: { email: `${f.unique()}@example.test` },
    }),
  },
  'GET /v1/collections/:name/records/:id': {
    allow: DATA_READ,
    data: true,
    own: (f) => ({ path: `/v1/collections/${f.a.collection}/records/${f.a.record}` }),
    other: (f) => ({ path: `/v1/collections/${f.b.collection}/records/${f.b.record}` }),
  },
  'PATCH /v1/collections/:name/records/:id': {
    allow: DATA_WRITE,
    data: true,
    // If-Match is required (428 without): a version, so the handler looks the record up (412 if stale).
    own: (f) => ({
      path: `/v1/collections/${f.a.collection}/records/${f.a.record}`,
      body: { visits: 7 },
      headers: { 'if-match': '"1"' },
    }),
    other: (f) => ({
      path: `/v1/collections/${f.b.collection}/records/${f.b.record}`,
      body: { visits: 7 },
      headers: { 'if-match': '"1"' },
    }),
  },
  'DELETE /v1/collections/:name/records/:id': {
    allow: DATA_WRITE,
    data: true,
    own: (f) => ({ path: `/v1/collections/${f.a.collection}/records/${f.ghost.record}` }),
    other: (f) => ({ path: `/v1/collections/${f.b.collection}/records/${f.b.record}` }),
  },
  'GET /v1/collections/:name/records': {
    allow: DATA_READ,
    data: true,
    own: (f) => ({ path: `/v1/collections/${f.a.collection}/records?limit=5` }),
  },
  // The search's values travel in the body (a GET with where[…] is refused: ASVS 14.2.1).
  'POST /v1/collections/:name/records/search': {
    allow: DATA_READ,
    data: true,
    // No other-tenant cell: a collection's name is the tenant's own (B's `people` is, for A's key,
    // A's `people`), so there is no object of B to name; search isolation is proven by
    // test/e2e/vault-http.test.ts (another tenant's records are never found).
    own: (f) => ({
      path: `/v1/collections/${f.a.collection}/records/search`,
      body: { where: { email: 'nobody@example.test' } },
    }),
  },
  'POST /v1/export': { allow: only('key:admin'), own: () => ({ path: '/v1/export', body: {} }) },
};
