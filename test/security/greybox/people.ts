/**
 * People (src/http/routes/people.ts; docs/identity.md): operator admins manage staff and tenant
 * admins, a tenant's admin manages its own tenant's people; changes need a fresh second factor.
 */
import {
  type Caller,
  type Declarations,
  OPERATOR,
  only,
  SESSIONS,
  type TenantObjects,
  token,
} from '../greybox-declare.ts';

/** The person a caller disables and then removes (its own, so the second manager does not find it gone). */
const victim = (victims: TenantObjects['victims'], caller: Caller) =>
  victims[caller] ?? victims['tenant-admin'];
const MANAGERS = only('operator', 'tenant-admin');
const onPerson = (action: string): Pick<Declarations[string], 'own' | 'other'> => ({
  own: (f) => ({ path: `/v1/people/${f.a.member}${action}` }),
  other: (f) => ({ path: `/v1/people/${f.b.member}${action}` }),
});

export const people: Declarations = {
  'POST /v1/people': {
    allow: MANAGERS,
    own: (f) => ({
      path: '/v1/people',
      body: {
        side: 'customer',
        role: 'tenant-admin',
        tenant: f.a.tenant,
        email: `${f.unique()}@alpha.test`,
      },
    }),
  },
  'GET /v1/people': {
    allow: only(OPERATOR, 'tenant-admin', token('people:read')),
    own: () => ({ path: '/v1/people' }),
  },
  'GET /v1/people/:id': {
    allow: only(SESSIONS, token('people:read')),
    own: (f) => ({ path: `/v1/people/${f.a.member}` }),
    other: (f) => ({ path: `/v1/people/${f.b.member}` }),
  },
  'PATCH /v1/people/:id': {
    allow: MANAGERS,
    own: (f) => ({ path: `/v1/people/${f.a.member}`, body: { role: 'tenant-admin' } }),
    other: (f) => ({ path: `/v1/people/${f.b.member}`, body: { role: 'tenant-admin' } }),
  },
  'POST /v1/people/:id/disable': {
    allow: MANAGERS,
    own: (f, ctx) => ({ path: `/v1/people/${victim(f.a.victims, ctx.caller)}/disable` }),
    other: (f, ctx) => ({ path: `/v1/people/${victim(f.b.victims, ctx.caller)}/disable` }),
  },
  'DELETE /v1/people/:id': {
    allow: MANAGERS,
    own: (f, ctx) => ({ path: `/v1/people/${victim(f.a.victims, ctx.caller)}` }),
    other: (f, ctx) => ({ path: `/v1/people/${victim(f.b.victims, ctx.caller)}` }),
  },
  'POST /v1/people/:id/password-reset': { allow: MANAGERS, ...onPerson('/password-reset') },
  'POST /v1/people/:id/unlock': { allow: MANAGERS, ...onPerson('/unlock') },
  'POST /v1/people/:id/factors/reset': { allow: MANAGERS, ...onPerson('/factors/reset') },
};
