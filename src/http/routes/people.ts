/**
 * The management of console accounts: create one (its enrolment token shown once), list and read
 * them, change a role, disable, remove, reset a password or the second factors, lift a lockout.
 * Changes need a manager's session with a fresh second factor (identity-callers.accountChangeRoute);
 * reads admit operator tokens of scope people:read. The people service audits them.
 */
import Type from 'typebox';
import { TresorError } from '../../errors.ts';
import type { PeopleService } from '../../identity/people.ts';
import { mayManageAccount } from '../../identity/roles.ts';
import { defineRoute, type RouteModule } from '../route.ts';
import {
  accountChange,
  accountChangeRoute,
  accountManager,
  actorOf,
  sessionOrOperator,
} from './identity-callers.ts';
import { audited, metaOf, NO_STORE } from './identity-request.ts';
import { Email, Person, PersonName, PersonParams, Role, Side, TenantId } from './identity-schemas.ts';

export interface PeopleRouteDeps {
  people: PeopleService;
}

function notFound(): TresorError {
  return new TresorError('TRESOR_ERR_NOT_FOUND', 'no such person');
}

export function peopleRoutes(deps: PeopleRouteDeps): RouteModule {
  const { people } = deps;
  return {
    name: 'people',
    routes: [
      defineRoute({
        ...accountChangeRoute(
          'POST',
          '/v1/people',
          'Create a console account; the enrolment token is shown once',
          'person.create',
        ),
        schema: {
          body: Type.Object({
            side: Side,
            role: Role,
            tenant: Type.Optional(Type.Union([TenantId, Type.Null()])),
            email: Email,
            name: Type.Optional(Type.Union([PersonName, Type.Null()])),
          }),
          response: {
            201: Type.Object({
              person: Person,
              enrolmentToken: Type.String({
                description: 'Shown once; hand it to the person; stored only hashed',
              }),
              enrolmentExpiresAt: Type.String(),
            }),
          },
        },
      }).handle(async (ctx) => {
        const created = await audited(
          ctx,
          people.createPerson(
            actorOf(ctx.principal),
            {
              side: ctx.body.side,
              role: ctx.body.role,
              tenant: ctx.body.tenant ?? null,
              email: ctx.body.email,
              name: ctx.body.name ?? null,
            },
            metaOf(ctx),
          ),
        );
        return {
          status: 201,
          headers: { ...NO_STORE, location: `/v1/people/${created.person.id}` },
          body: created,
        };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/people',
        summary:
          'The accounts the caller manages (operator admin: staff and tenant admins; tenant admin: own tenant)',
        tags: ['people'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'people:read',
        authorize: accountManager,
        audit: { action: 'person.list' },
        schema: {
          querystring: Type.Object({ tenant: Type.Optional(TenantId) }),
          response: { 200: Type.Object({ people: Type.Array(Person) }) },
        },
      }).handle(async (ctx) => {
        const filter = ctx.query.tenant !== undefined ? { tenant: ctx.query.tenant } : {};
        const list = await audited(ctx, people.list(actorOf(ctx.principal), filter, metaOf(ctx)));
        return { status: 200, body: { people: list } };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/people/:id',
        summary: 'One account the caller manages (or the caller’s own)',
        tags: ['people'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'people:read',
        authorize: sessionOrOperator,
        audit: { action: 'person.read' },
        schema: { params: PersonParams, response: { 200: Person } },
      }).handle(async (ctx) => {
        const p = ctx.principal;
        const person = await people.get(ctx.params.id);
        const manager =
          p.kind === 'operator-token'
            ? { role: 'operator-admin' as const, tenant: null }
            : p.kind === 'session'
              ? { role: p.role, tenant: p.tenant }
              : undefined;
        const self = p.kind === 'session' && p.personId === ctx.params.id;
        // Another tenant's account, or one the caller does not manage, is not found (and audited).
        if (!person || person.removedAt !== null || !manager || !(self || mayManageAccount(manager, person)))
          throw notFound();
        await ctx.audit.record({ tenant: person.tenant, target: { personId: person.id } });
        return { status: 200, body: person };
      }),

      defineRoute({
        ...accountChangeRoute(
          'PATCH',
          '/v1/people/:id',
          'Change an account’s role (its sessions end at once)',
          'person.role-change',
        ),
        schema: { params: PersonParams, body: Type.Object({ role: Role }), response: { 200: Person } },
      }).handle(async (ctx) => {
        const [actor, personId, meta] = accountChange(ctx);
        const person = await audited(ctx, people.changeRole(actor, personId, ctx.body.role, meta));
        return { status: 200, body: person };
      }),

      defineRoute({
        ...accountChangeRoute(
          'POST',
          '/v1/people/:id/disable',
          'Disable an account (its sessions end at once)',
          'person.disable',
        ),
        schema: { params: PersonParams, response: { 204: Type.Null() } },
      }).handle(async (ctx) => {
        await audited(ctx, people.disable(...accountChange(ctx)));
        return { status: 204 };
      }),

      defineRoute({
        ...accountChangeRoute(
          'DELETE',
          '/v1/people/:id',
          'Remove an account (its sessions end at once)',
          'person.remove',
        ),
        schema: { params: PersonParams, response: { 204: Type.Null() } },
      }).handle(async (ctx) => {
        await audited(ctx, people.remove(...accountChange(ctx)));
        return { status: 204 };
      }),

      defineRoute({
        ...accountChangeRoute(
          'POST',
          '/v1/people/:id/password-reset',
          'Reset an account’s password: the old one stops working, sessions end; the reset token (for POST /v1/enrolment/password) is shown once',
          'person.password-reset-begin',
        ),
        schema: {
          params: PersonParams,
          response: { 200: Type.Object({ resetToken: Type.String(), expiresAt: Type.String() }) },
        },
      }).handle(async (ctx) => {
        const reset = await audited(ctx, people.resetPassword(...accountChange(ctx)));
        return { status: 200, headers: NO_STORE, body: reset };
      }),

      defineRoute({
        ...accountChangeRoute('POST', '/v1/people/:id/unlock', 'Lift a login lockout', 'person.unlock'),
        schema: { params: PersonParams, response: { 204: Type.Null() } },
      }).handle(async (ctx) => {
        await audited(ctx, people.unlock(...accountChange(ctx)));
        return { status: 204 };
      }),

      defineRoute({
        ...accountChangeRoute(
          'POST',
          '/v1/people/:id/factors/reset',
          'Reset an account’s second factors: all revoked, sessions end, the person re-enrols with the enrolment token shown once',
          'person.factors-reset',
        ),
        schema: {
          params: PersonParams,
          response: {
            200: Type.Object({ enrolmentToken: Type.String(), enrolmentExpiresAt: Type.String() }),
          },
        },
      }).handle(async (ctx) => {
        const reset = await audited(ctx, people.resetFactors(...accountChange(ctx)));
        return { status: 200, headers: NO_STORE, body: reset };
      }),
    ],
  };
}
