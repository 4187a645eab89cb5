/**
 * Staff access grants (src/http/routes/access.ts; docs/access.md): staff ask, the customer's admin
 * (or staff, by policy) approves with a fresh second factor, the requester activates with one.
 */
import { type Declarations, only, SESSIONS, STAFF, token } from '../greybox-declare.ts';

const REQUESTERS = only(STAFF, 'contractor', 'security-officer');
const APPROVERS = only(STAFF, 'security-officer', 'tenant-admin');
const PEOPLE_OR_TOKEN = only(SESSIONS, token('access:read'));
const REVIEWERS = only(
  'security-officer',
  'operator',
  'operator(stale)',
  'tenant-admin',
  token('access:read'),
);
const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
const grantBody = (tenant: string) => ({
  tenant,
  collections: ['customers'],
  access: 'read',
  reason: 'greybox matrix: customer ticket',
  ticket: 'GB-1',
});

export const access: Declarations = {
  'POST /v1/grants': { allow: REQUESTERS, own: (f) => ({ path: '/v1/grants', body: grantBody(f.a.tenant) }) },
  'POST /v1/grants/break-glass': {
    allow: only('security-officer'),
    own: (f) => ({ path: '/v1/grants/break-glass', body: { ...grantBody(f.a.tenant), durationMinutes: 5 } }),
  },
  'GET /v1/grants': { allow: PEOPLE_OR_TOKEN, own: () => ({ path: '/v1/grants' }) },
  'GET /v1/grants/:id': {
    allow: PEOPLE_OR_TOKEN,
    own: (f) => ({ path: `/v1/grants/${f.a.grant}` }),
    other: (f) => ({ path: `/v1/grants/${f.b.grant}` }),
  },
  'POST /v1/grants/:id/approve': {
    allow: APPROVERS.filter((c) => c !== 'operator(stale)'),
    own: (f) => ({ path: `/v1/grants/${f.ghost.grant}/approve` }),
    other: (f) => ({ path: `/v1/grants/${f.b.grant}/approve` }),
  },
  'POST /v1/grants/:id/deny': {
    allow: APPROVERS,
    own: (f) => ({ path: `/v1/grants/${f.ghost.grant}/deny` }),
    other: (f) => ({ path: `/v1/grants/${f.b.grant}/deny` }),
  },
  'POST /v1/grants/:id/activate': {
    allow: REQUESTERS,
    own: (f) => ({ path: `/v1/grants/${f.ghost.grant}/activate` }),
  },
  'POST /v1/grants/:id/revoke': {
    allow: SESSIONS,
    own: (f) => ({ path: `/v1/grants/${f.ghost.grant}/revoke` }),
    other: (f) => ({ path: `/v1/grants/${f.b.grant}/revoke` }),
  },
  'GET /v1/tenants/:id/grant-policy': {
    allow: PEOPLE_OR_TOKEN,
    own: (f) => ({ path: `/v1/tenants/${f.a.tenant}/grant-policy` }),
    other: (f) => ({ path: `/v1/tenants/${f.b.tenant}/grant-policy` }),
  },
  'PUT /v1/tenants/:id/grant-policy': {
    allow: only('operator', 'tenant-admin'),
    // docs/access.md: a tenant admin sets any policy; an operator admin may only set it back to `customer`.
    own: (f, ctx) => ({
      path: `/v1/tenants/${f.a.tenant}/grant-policy`,
      body: { policy: ctx.caller === 'operator' ? 'customer' : 'automatic' },
    }),
    other: (f) => ({ path: `/v1/tenants/${f.b.tenant}/grant-policy`, body: { policy: 'automatic' } }),
  },
  'GET /v1/access/review': {
    allow: REVIEWERS,
    own: () => ({ path: `/v1/access/review?from=${day(-1)}&to=${day(1)}` }),
  },
  'GET /v1/access/unreviewed': { allow: REVIEWERS, own: () => ({ path: '/v1/access/unreviewed' }) },
  'POST /v1/access/reviews': {
    allow: only('security-officer'),
    own: () => ({ path: '/v1/access/reviews', body: { from: day(-1), to: day(0), note: 'greybox review' } }),
  },
};
