/**
 * The caller's own second factors, with a fresh second factor: list them, add a TOTP factor or a
 * passkey or security key, issue new recovery codes, revoke one. Admins reset another person's
 * factors through /v1/people.
 */
import Type from 'typebox';
import { TresorError } from '../../errors.ts';
import { defineRoute, type RouteModule } from '../route.ts';
import { type FactorEnrolmentDeps, factorEnrolment } from './factor-enrolment.ts';
import { anySession } from './identity-callers.ts';
import { audited, metaOf, NO_STORE } from './identity-request.ts';
import {
  EnrolmentStep,
  FactorId,
  Label,
  TotpBegin,
  TotpCode,
  WebAuthnOptions,
  WebAuthnResponse,
} from './identity-schemas.ts';

export type FactorRouteDeps = FactorEnrolmentDeps;

const Factor = Type.Object({
  id: Type.String(),
  kind: Type.Union([Type.Literal('totp'), Type.Literal('webauthn'), Type.Literal('recovery')]),
  label: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  confirmedAt: Type.Union([Type.String(), Type.Null()]),
  lastUsedAt: Type.Union([Type.String(), Type.Null()]),
  revokedAt: Type.Union([Type.String(), Type.Null()]),
  remaining: Type.Optional(Type.Integer()),
});

export function factorRoutes(deps: FactorRouteDeps): RouteModule {
  const { people } = deps;
  const enrol = factorEnrolment(deps);
  return {
    name: 'factors',
    routes: [
      defineRoute({
        method: 'GET',
        url: '/v1/factors',
        summary: 'The caller’s second factors (never a secret)',
        tags: ['factors'],
        auth: 'session',
        secondFactor: true,
        authorize: anySession,
        audit: { action: 'factor.list' },
        schema: { response: { 200: Type.Object({ factors: Type.Array(Factor) }) } },
      }).handle(async (ctx) => {
        const factors = await people.listFactors(ctx.principal.personId);
        await ctx.audit.record({ target: { personId: ctx.principal.personId } });
        return { status: 200, body: { factors } };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/factors/totp',
        summary: 'Begin adding a TOTP factor: the secret and otpauth URI, shown once',
        tags: ['factors'],
        auth: 'session',
        secondFactor: true,
        authorize: anySession,
        audit: { action: 'factor.totp-begin' },
        schema: { body: Type.Object({ label: Type.Optional(Label) }), response: { 200: TotpBegin } },
      }).handle(async (ctx) => {
        const begun = await enrol.beginTotp(ctx, { session: ctx.principal }, ctx.body.label);
        return { status: 200, headers: NO_STORE, body: begun };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/factors/totp/confirm',
        summary: 'Confirm a new TOTP factor with a current code',
        tags: ['factors'],
        auth: 'session',
        secondFactor: true,
        authorize: anySession,
        audit: { action: 'factor.totp-confirm' },
        schema: {
          body: Type.Object({ factorId: FactorId, code: TotpCode }),
          response: { 200: EnrolmentStep },
        },
      }).handle(async (ctx) => {
        const step = await enrol.confirmTotp(
          ctx,
          { session: ctx.principal },
          ctx.body.factorId,
          ctx.body.code,
        );
        return { status: 200, headers: NO_STORE, body: step };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/factors/webauthn/options',
        summary: 'WebAuthn registration options for a new passkey or security key',
        tags: ['factors'],
        auth: 'session',
        secondFactor: true,
        authorize: anySession,
        audit: { action: 'factor.webauthn-options' },
        schema: { response: { 200: WebAuthnOptions } },
      }).handle(async (ctx) => {
        const { options } = await enrol.registrationOptions({ session: ctx.principal });
        await ctx.audit.record({ target: { personId: ctx.principal.personId } });
        return { status: 200, headers: NO_STORE, body: options };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/factors/webauthn',
        summary: 'Register a new passkey or security key',
        tags: ['factors'],
        auth: 'session',
        secondFactor: true,
        authorize: anySession,
        audit: { action: 'factor.webauthn-register' },
        schema: {
          body: Type.Object({ response: WebAuthnResponse, label: Type.Optional(Label) }),
          response: { 200: Type.Object({ ...EnrolmentStep.properties, factorId: Type.String() }) },
        },
      }).handle(async (ctx) => {
        const step = await enrol.registerPasskey(
          ctx,
          { session: ctx.principal },
          ctx.body.response,
          ctx.body.label,
        );
        return { status: 200, body: step };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/factors/recovery-codes',
        summary: 'A new set of recovery codes, shown once; the previous set stops working',
        tags: ['factors'],
        auth: 'session',
        secondFactor: true,
        authorize: anySession,
        audit: { action: 'factor.recovery-issue' },
        schema: { response: { 200: Type.Object({ codes: Type.Array(Type.String()) }) } },
      }).handle(async (ctx) => {
        const issued = await audited(ctx, people.issueRecoveryCodes({ session: ctx.principal }, metaOf(ctx)));
        return { status: 200, headers: NO_STORE, body: issued };
      }),

      defineRoute({
        method: 'DELETE',
        url: '/v1/factors/:id',
        summary: 'Revoke one of the caller’s factors (never the last TOTP or passkey)',
        tags: ['factors'],
        auth: 'session',
        secondFactor: true,
        authorize: anySession,
        audit: { action: 'factor.revoke' },
        schema: { params: Type.Object({ id: FactorId }), response: { 204: Type.Null() } },
      }).handle(async (ctx) => {
        const own = (await people.listFactors(ctx.principal.personId)).some((f) => f.id === ctx.params.id);
        // Another person's factor is "not found" here; admins reset factors through /v1/people.
        if (!own) throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no such factor');
        await audited(ctx, people.revokeFactor(ctx.principal, ctx.params.id, metaOf(ctx)));
        return { status: 204 };
      }),
    ],
  };
}
