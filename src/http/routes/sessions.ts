/**
 * Live console sessions: list them and end them — one's own, or those of an account the caller
 * manages (the session service checks the target person).
 */
import Type from 'typebox';
import { TresorError } from '../../errors.ts';
import type { SessionService } from '../../identity/sessions.ts';
import { defineRoute, type RouteModule } from '../route.ts';
import {
  accountChange,
  accountChangeRoute,
  actorOf,
  anySession,
  sessionOrOperator,
} from './identity-callers.ts';
import { audited, metaOf } from './identity-request.ts';
import { PersonId, PersonParams, SessionId, Side } from './identity-schemas.ts';

export interface SessionRouteDeps {
  sessions: SessionService;
}

const SessionListItem = Type.Object({
  id: Type.String(),
  personId: Type.String(),
  side: Side,
  tenant: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  lastSeenAt: Type.String(),
  idleExpiresAt: Type.String(),
  absoluteExpiresAt: Type.String(),
  factors: Type.Array(Type.String()),
  fresh2faAt: Type.Union([Type.String(), Type.Null()]),
  address: Type.Union([Type.String(), Type.Null()]),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  current: Type.Boolean(),
});

export function sessionRoutes(deps: SessionRouteDeps): RouteModule {
  const { sessions } = deps;
  return {
    name: 'sessions',
    routes: [
      defineRoute({
        method: 'GET',
        url: '/v1/sessions',
        summary: 'Live sessions: the caller’s own, or (`person`) of an account the caller manages',
        tags: ['sessions'],
        auth: 'any-authenticated',
        secondFactor: false,
        authorize: sessionOrOperator,
        audit: { action: 'session.list' },
        schema: {
          querystring: Type.Object({ person: Type.Optional(PersonId) }),
          response: { 200: Type.Object({ sessions: Type.Array(SessionListItem) }) },
        },
      }).handle(async (ctx) => {
        const p = ctx.principal;
        const personId = ctx.query.person ?? (p.kind === 'session' ? p.personId : undefined);
        if (personId === undefined) {
          throw new TresorError('TRESOR_ERR_VALIDATION', 'person: required with an operator token', {
            field: 'person',
          });
        }
        const list = await sessions.list(actorOf(p), personId, metaOf(ctx));
        await ctx.audit.record({ target: { personId, count: list.length } });
        const current = p.kind === 'session' ? p.sessionId : undefined;
        return {
          status: 200,
          body: {
            sessions: list.map((s) => ({
              id: s.id,
              personId: s.personId,
              side: s.side,
              tenant: s.tenant,
              createdAt: s.createdAt,
              lastSeenAt: s.lastSeenAt,
              idleExpiresAt: s.idleExpiresAt,
              absoluteExpiresAt: s.absoluteExpiresAt,
              factors: [...s.factors],
              fresh2faAt: s.fresh2faAt,
              address: s.address,
              userAgent: s.userAgent,
              current: s.id === current,
            })),
          },
        };
      }),

      defineRoute({
        method: 'DELETE',
        url: '/v1/sessions/:id',
        summary: 'End a session: one of the caller’s own, or of an account the caller manages',
        tags: ['sessions'],
        auth: 'any-authenticated',
        secondFactor: false,
        authorize: sessionOrOperator,
        audit: { action: 'session.revoke' },
        schema: { params: Type.Object({ id: SessionId }), response: { 204: Type.Null() } },
      }).handle(async (ctx) => {
        await audited(ctx, sessions.revoke(actorOf(ctx.principal), ctx.params.id, metaOf(ctx)));
        return { status: 204 };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/sessions/revoke-others',
        summary:
          'End every session of the caller’s account but this one (after a factor change, a lost device)',
        tags: ['sessions'],
        auth: 'session',
        secondFactor: false,
        authorize: anySession,
        audit: { action: 'session.revoke-others' },
        schema: { response: { 200: Type.Object({ revoked: Type.Integer() }) } },
      }).handle(async (ctx) => {
        const revoked = await audited(ctx, sessions.revokeOthers(ctx.principal, metaOf(ctx)));
        return { status: 200, body: { revoked } };
      }),

      defineRoute({
        ...accountChangeRoute(
          'POST',
          '/v1/people/:id/sessions/revoke-all',
          'End every session of an account',
          'session.revoke-all',
        ),
        tags: ['people', 'sessions'],
        schema: { params: PersonParams, response: { 200: Type.Object({ revoked: Type.Integer() }) } },
      }).handle(async (ctx) => {
        const revoked = await audited(ctx, sessions.revokeAll(...accountChange(ctx)));
        return { status: 200, body: { revoked } };
      }),
    ],
  };
}
