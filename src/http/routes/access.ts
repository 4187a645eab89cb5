/**
 * Staff access to customer data over HTTP (src/access): grants asked for a task, approved by the
 * tenant's policy, activated with a fresh second factor, revoked or expired; break-glass; the
 * tenants' approval policies; access reviews and their attestations.
 *
 * A grant is then used on the record routes (auth 'tenant-data') by naming it in `Tresor-Grant`:
 * the pipeline's authorization layer turns the staff session into the grant as it stands at that
 * request (layers/authorization.ts), so its end is felt at the very next request.
 *
 * The grant service writes its own audit events — every change and every refusal — in the same
 * transaction as the change; the handlers then mark the request audited, and a refusal reaches the
 * error handler marked as audited already, so the pipeline does not record it again. Reads (get,
 * list) and the review report are recorded here or by the review service.
 */
import Type, { type TLiteral, type TUnion } from 'typebox';
import { MAX_NOTE_CHARS } from '../../access/attestation.ts';
import {
  APPROVAL_POLICIES,
  DEFAULT_GRANT_DURATION_MS,
  GRANT_ACCESSES,
  GRANT_ID_PATTERN,
  GRANT_MINUTES_CEILING,
  GRANT_STATES,
  MAX_GRANT_COLLECTIONS,
  MAX_GRANT_DURATION_MS,
  MINUTE,
  REASON_MAX_CHARS,
  REASON_MIN_CHARS,
  TICKET_MAX_CHARS,
  TICKET_PATTERN,
} from '../../access/grant-vocabulary.ts';
import type { GrantService } from '../../access/grants.ts';
import type { AccessReviewService } from '../../access/review.ts';
import { TresorError } from '../../errors.ts';
import type { IdentityActor } from '../../identity/identity-actor.ts';
import { canApproveGrants, canBreakGlass, canRequestGrants, type Role } from '../../identity/roles.ts';
import {
  defineRoute,
  type HttpPrincipal,
  type RequestContext,
  type RouteModule,
  type SessionPrincipal,
} from '../route.ts';
import { PersonId, TenantId } from './identity-schemas.ts';

export interface AccessRouteDeps {
  grants: GrantService;
  reviews: AccessReviewService;
}

const GrantId = Type.String({ pattern: GRANT_ID_PATTERN.source, maxLength: 28 });
const CollectionName = Type.String({ pattern: '^[a-z][a-z0-9_]{0,62}$', maxLength: 63 });
const Collections = Type.Union([
  Type.Literal('*'),
  Type.Array(CollectionName, { minItems: 1, maxItems: MAX_GRANT_COLLECTIONS, uniqueItems: true }),
]);
/**
 * One of the domain's words, as a union of literals. TypeBox infers a union's type from a tuple
 * only, so the type is stated; the schema is the union itself.
 */
const oneOf = <T extends string>(words: readonly T[]) =>
  Type.Union(words.map((w) => Type.Literal(w))) as unknown as TUnion<[TLiteral<T>]>;
const Access = oneOf(GRANT_ACCESSES);
const State = oneOf(GRANT_STATES);
const Policy = oneOf(APPROVAL_POLICIES);
const Instant = Type.String({
  pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,3})?)?Z)?$',
  maxLength: 24,
});
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

/**
 * The bounds the grant service enforces (grant-vocabulary.ts). The reason is trimmed before it is
 * counted, so the service may still refuse one the schema lets through. A duration is bounded by
 * the longest any configuration allows (access.maxGrantMinutes at its highest, 7 days); the
 * server's configured maximum, 480 minutes by default, is enforced by the service.
 */
const GrantRequest = Type.Object({
  tenant: TenantId,
  collections: Collections,
  access: Access,
  reason: Type.String({ minLength: REASON_MIN_CHARS, maxLength: REASON_MAX_CHARS }),
  ticket: Type.String({ pattern: TICKET_PATTERN.source, minLength: 1, maxLength: TICKET_MAX_CHARS }),
  durationMinutes: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: GRANT_MINUTES_CEILING,
      description: `Minutes. When absent, the server's default (${DEFAULT_GRANT_DURATION_MS / MINUTE} unless configured otherwise); at most the server's configured maximum (${MAX_GRANT_DURATION_MS / MINUTE} unless configured otherwise, never above ${GRANT_MINUTES_CEILING}).`,
    }),
  ),
});

const Grant = Type.Object({
  id: Type.String(),
  tenant: Type.String(),
  requester: Type.String(),
  requesterRole: Type.String(),
  collections: Type.Union([Type.Literal('*'), Type.Array(Type.String())]),
  access: Type.String(),
  reason: Type.String(),
  ticket: Type.String(),
  durationMs: Type.Integer(),
  state: Type.String(),
  breakGlass: Type.Boolean(),
  requestedAt: Type.String(),
  decidedAt: Nullable(Type.String()),
  decidedBy: Nullable(Type.String()),
  activatedAt: Nullable(Type.String()),
  expiresAt: Nullable(Type.String()),
  endedAt: Nullable(Type.String()),
  endReason: Nullable(Type.String()),
  policy: Type.String(),
  approvals: Type.Array(Type.Object({ as: Type.String(), by: Type.String(), at: Type.String() })),
  awaiting: Type.Array(Type.String()),
});

const Attestation = Type.Object({
  id: Type.String(),
  from: Type.String(),
  to: Type.String(),
  tenant: Nullable(Type.String()),
  note: Type.String(),
  attestedBy: Type.String(),
  recordedBy: Type.String(),
  attestedAt: Type.String(),
});

const Count = Type.Object({ grants: Type.Integer(), accesses: Type.Integer() });

const Report = Type.Object({
  from: Type.String(),
  to: Type.String(),
  grants: Type.Array(Grant),
  accesses: Type.Array(
    Type.Object({
      index: Type.Integer(),
      at: Type.String(),
      tenant: Type.String(),
      person: Type.String(),
      grantId: Type.String(),
      action: Type.String(),
      outcome: Type.String(),
    }),
  ),
  byTenant: Type.Record(Type.String(), Count),
  byPerson: Type.Record(Type.String(), Count),
  attestations: Type.Array(Attestation),
  unreviewed: Type.Boolean(),
});

const Unreviewed = Type.Object({
  periods: Type.Array(
    Type.Object({
      from: Type.String(),
      to: Type.String(),
      tenant: Nullable(Type.String()),
      grants: Type.Integer(),
      accesses: Type.Integer(),
    }),
  ),
});

/**
 * People act on grants, and operator tokens of scope access:read read them (the layer admits a
 * token only on the routes of its scope); API keys and grants themselves never do.
 */
function peopleOrOperator(principal: HttpPrincipal): void {
  if (principal.kind === 'api-key' || principal.kind === 'staff-grant') {
    throw new TresorError('TRESOR_ERR_FORBIDDEN', 'access grants are handled by people, not keys');
  }
}

/**
 * The role checks of each route, before anything is read (defence in depth: the grant service
 * checks them again, with the person as the store knows them now).
 */
function sessionWith(allowed: (role: Role) => boolean, what: string) {
  return (principal: SessionPrincipal): void => {
    if (!allowed(principal.role))
      throw new TresorError('TRESOR_ERR_FORBIDDEN', `${what} is not for this role`);
  };
}
const requester = sessionWith(canRequestGrants, 'asking for access');
const approver = sessionWith(canApproveGrants, 'approving access');
const breakGlasser = sessionWith(canBreakGlass, 'break-glass access');
const attester = sessionWith((role) => role === 'security-officer', 'attesting a review');

/** Reviews: security officers, operator admins and tenant admins (own tenant), and access:read tokens. */
function reviewer(principal: HttpPrincipal): void {
  peopleOrOperator(principal);
  if (
    principal.kind === 'session' &&
    !['security-officer', 'operator-admin', 'tenant-admin'].includes(principal.role)
  ) {
    throw new TresorError('TRESOR_ERR_FORBIDDEN', 'access reviews are not for this role');
  }
}

/** A tenant's grant policy is set by its admins, or tightened by an operator admin. */
function policySetter(principal: HttpPrincipal): void {
  peopleOrOperator(principal);
  if (
    principal.kind === 'session' &&
    principal.role !== 'tenant-admin' &&
    principal.role !== 'operator-admin'
  ) {
    throw new TresorError('TRESOR_ERR_FORBIDDEN', 'grant policies are not for this role');
  }
}

function actorOf(principal: HttpPrincipal): IdentityActor {
  if (principal.kind === 'session') return principal;
  if (principal.kind === 'operator-token')
    return { kind: 'operator-admin', id: principal.personId, tokenId: principal.tokenId };
  throw new TresorError('TRESOR_ERR_FORBIDDEN', 'access grants are handled by people, not keys');
}

function metaOf(ctx: RequestContext) {
  return {
    requestId: ctx.requestId,
    sourceAddress: ctx.sourceAddress,
    ...(ctx.userAgent !== undefined ? { userAgent: ctx.userAgent } : {}),
  };
}

/** The grant service audited the change (or its refusal) itself, in its own transaction. */
async function audited<T>(ctx: RequestContext, work: Promise<T>): Promise<T> {
  const result = await work;
  ctx.audit.recorded = true;
  return result;
}

const grantParams = Type.Object({ id: GrantId });

export function accessRoutes(deps: AccessRouteDeps): RouteModule {
  const { grants, reviews } = deps;
  const change = (
    url: string,
    summary: string,
    action: string,
    secondFactor: boolean,
    authorize: (principal: SessionPrincipal) => void,
    run: (
      principal: RequestContext<'session'>['principal'],
      id: string,
      meta: ReturnType<typeof metaOf>,
    ) => Promise<unknown>,
  ) =>
    defineRoute({
      method: 'POST',
      url,
      summary,
      tags: ['access'],
      auth: 'session',
      secondFactor,
      authorize,
      audit: { action },
      schema: { params: grantParams, response: { 200: Grant } },
    }).handle(async (ctx) => ({
      status: 200,
      body: (await audited(ctx, run(ctx.principal, ctx.params.id, metaOf(ctx)))) as never,
    }));

  return {
    name: 'access',
    routes: [
      defineRoute({
        method: 'POST',
        url: '/v1/grants',
        summary: 'Ask for a time-boxed grant to one tenant’s records (reason and ticket required)',
        tags: ['access'],
        auth: 'session',
        secondFactor: false,
        authorize: requester,
        audit: { action: 'grant.request' },
        schema: { body: GrantRequest, response: { 201: Grant } },
      }).handle(async (ctx) => ({
        status: 201,
        body: (await audited(ctx, grants.request(ctx.principal, ctx.body, metaOf(ctx)))) as never,
      })),
      defineRoute({
        method: 'POST',
        url: '/v1/grants/break-glass',
        summary:
          'Open an emergency grant without approval (security officer; high-severity event, customer notified)',
        tags: ['access'],
        auth: 'session',
        secondFactor: true,
        authorize: breakGlasser,
        audit: { action: 'grant.break-glass' },
        schema: { body: GrantRequest, response: { 201: Grant } },
      }).handle(async (ctx) => ({
        status: 201,
        body: (await audited(ctx, grants.breakGlass(ctx.principal, ctx.body, metaOf(ctx)))) as never,
      })),
      defineRoute({
        method: 'GET',
        url: '/v1/grants',
        summary: 'List the grants the caller may see',
        tags: ['access'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'access:read',
        authorize: peopleOrOperator,
        audit: { action: 'grant.list' },
        schema: {
          querystring: Type.Object({
            tenant: Type.Optional(TenantId),
            person: Type.Optional(PersonId),
            state: Type.Optional(State),
          }),
          response: { 200: Type.Object({ grants: Type.Array(Grant) }) },
        },
      }).handle(async (ctx) => {
        const list = await grants.list(actorOf(ctx.principal), ctx.query as never);
        await ctx.audit.record({ target: { ...ctx.query, count: list.length } });
        return { status: 200, body: { grants: list as never } };
      }),
      defineRoute({
        method: 'GET',
        url: '/v1/grants/:id',
        summary: 'One grant',
        tags: ['access'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'access:read',
        authorize: peopleOrOperator,
        audit: { action: 'grant.read' },
        schema: { params: grantParams, response: { 200: Grant } },
      }).handle(async (ctx) => {
        const grant = await grants.get(actorOf(ctx.principal), ctx.params.id);
        await ctx.audit.record({ tenant: grant.tenant, target: { grantId: grant.id } });
        return { status: 200, body: grant as never };
      }),
      change(
        '/v1/grants/:id/approve',
        'Approve another person’s grant request',
        'grant.approve',
        true,
        approver,
        (p, id, m) => grants.approve(p, id, m),
      ),
      change('/v1/grants/:id/deny', 'Deny a grant request', 'grant.deny', false, approver, (p, id, m) =>
        grants.deny(p, id, m),
      ),
      change(
        '/v1/grants/:id/activate',
        'Start an approved grant (needs a second factor passed after the request)',
        'grant.activate',
        true,
        requester,
        (p, id, m) => grants.activate(p, id, m),
      ),
      defineRoute({
        method: 'POST',
        url: '/v1/grants/:id/revoke',
        summary: 'End a grant now (requester, security, operator admin, or the tenant’s admin)',
        tags: ['access'],
        auth: 'any-authenticated',
        secondFactor: false,
        authorize: peopleOrOperator,
        audit: { action: 'grant.revoke' },
        schema: { params: grantParams, response: { 200: Grant } },
      }).handle(async (ctx) => ({
        status: 200,
        body: (await audited(
          ctx,
          grants.revoke(actorOf(ctx.principal), ctx.params.id, metaOf(ctx)),
        )) as never,
      })),
      defineRoute({
        method: 'GET',
        url: '/v1/tenants/:id/grant-policy',
        summary: 'How staff grants to this tenant are approved',
        tags: ['access'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'access:read',
        authorize: peopleOrOperator,
        audit: { action: 'grant-policy.read' },
        schema: { params: Type.Object({ id: TenantId }), response: { 200: Type.Object({ policy: Policy }) } },
      }).handle(async (ctx) => {
        const p = ctx.principal;
        if (p.kind === 'session' && p.side === 'customer' && p.tenant !== ctx.params.id) {
          throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no such tenant');
        }
        const policy = await grants.getPolicy(ctx.params.id);
        await ctx.audit.record({ tenant: ctx.params.id, target: { tenant: ctx.params.id } });
        return { status: 200, body: { policy } };
      }),
      defineRoute({
        method: 'PUT',
        url: '/v1/tenants/:id/grant-policy',
        summary:
          'Set how staff grants to this tenant are approved (tenant admin; operators may only tighten)',
        tags: ['access'],
        auth: 'any-authenticated',
        secondFactor: true,
        authorize: policySetter,
        audit: { action: 'grant-policy.set' },
        schema: {
          params: Type.Object({ id: TenantId }),
          body: Type.Object({ policy: Policy }),
          response: { 200: Type.Object({ policy: Policy }) },
        },
      }).handle(async (ctx) => {
        await audited(
          ctx,
          grants.setPolicy(actorOf(ctx.principal), ctx.params.id, ctx.body.policy, metaOf(ctx)),
        );
        return { status: 200, body: { policy: ctx.body.policy } };
      }),
      defineRoute({
        method: 'GET',
        url: '/v1/access/review',
        summary: 'Every grant and every staff access in a period, per tenant and per person',
        tags: ['access'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'access:read',
        authorize: reviewer,
        audit: { action: 'access-review.report' },
        schema: {
          querystring: Type.Object({
            from: Instant,
            to: Instant,
            tenant: Type.Optional(TenantId),
            person: Type.Optional(PersonId),
          }),
          response: { 200: Report },
        },
      }).handle(async (ctx) => ({
        status: 200,
        body: (await audited(ctx, reviews.report(actorOf(ctx.principal), ctx.query, metaOf(ctx)))) as never,
      })),
      defineRoute({
        method: 'GET',
        url: '/v1/access/unreviewed',
        summary: 'Periods with grants or staff accesses that no attestation covers',
        tags: ['access'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'access:read',
        authorize: reviewer,
        audit: { action: 'access-review.unreviewed' },
        schema: {
          querystring: Type.Object({ until: Type.Optional(Instant) }),
          response: { 200: Unreviewed },
        },
      }).handle(async (ctx) => {
        const periods = await reviews.unreviewed(
          actorOf(ctx.principal),
          ctx.query.until !== undefined ? { until: ctx.query.until } : {},
        );
        await ctx.audit.record({ target: { periods: periods.length } });
        return { status: 200, body: { periods } };
      }),
      defineRoute({
        method: 'POST',
        url: '/v1/access/reviews',
        summary: 'Attest that a period’s grants and staff accesses were reviewed (security officer)',
        tags: ['access'],
        auth: 'session',
        secondFactor: true,
        authorize: attester,
        audit: { action: 'access-review.attest' },
        schema: {
          body: Type.Object({
            from: Instant,
            to: Instant,
            tenant: Type.Optional(Nullable(TenantId)),
            note: Type.String({ minLength: 1, maxLength: MAX_NOTE_CHARS }),
          }),
          response: { 201: Attestation },
        },
      }).handle(async (ctx) => ({
        status: 201,
        body: (await audited(ctx, reviews.attest(ctx.principal, ctx.body, metaOf(ctx)))) as never,
      })),
    ],
  };
}
