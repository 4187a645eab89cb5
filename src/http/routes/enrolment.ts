/**
 * Enrolment with the one-time enrolment token: the password (or an admin password reset's new
 * one), then a second factor — TOTP or a passkey or security key. Completing enrolment returns the
 * recovery codes once.
 *
 * These routes are public (nobody is logged in yet) but still name their audit action: the people
 * service audits them, refusals included.
 */
import Type from 'typebox';
import { defineRoute, type RouteModule } from '../route.ts';
import { type FactorEnrolmentDeps, factorEnrolment } from './factor-enrolment.ts';
import { audited, metaOf, NO_STORE } from './identity-request.ts';
import {
  EnrolmentStep,
  FactorId,
  Label,
  OneTimeToken,
  Password,
  TotpBegin,
  TotpCode,
  WebAuthnOptions,
  WebAuthnResponse,
} from './identity-schemas.ts';

export type EnrolmentRouteDeps = FactorEnrolmentDeps;

export function enrolmentRoutes(deps: EnrolmentRouteDeps): RouteModule {
  const { people } = deps;
  const enrol = factorEnrolment(deps);
  return {
    name: 'enrolment',
    routes: [
      defineRoute({
        method: 'POST',
        url: '/v1/enrolment/password',
        summary:
          'Set the password with an enrolment token (or finish an admin password reset with its token)',
        tags: ['enrolment'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: { action: 'person.password-set' },
        schema: {
          body: Type.Object({ enrolmentToken: OneTimeToken, password: Password }),
          response: { 200: EnrolmentStep },
        },
      }).handle(async (ctx) => {
        const step = await audited(
          ctx,
          people.setPassword(ctx.body.enrolmentToken, ctx.body.password, metaOf(ctx)),
        );
        return { status: 200, headers: NO_STORE, body: step };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/enrolment/totp',
        summary: 'Begin a TOTP enrolment: the secret and otpauth URI, shown once',
        tags: ['enrolment'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: { action: 'factor.totp-begin' },
        schema: {
          body: Type.Object({ enrolmentToken: OneTimeToken, label: Type.Optional(Label) }),
          response: { 200: TotpBegin },
        },
      }).handle(async (ctx) => {
        const begun = await enrol.beginTotp(ctx, { enrolmentToken: ctx.body.enrolmentToken }, ctx.body.label);
        return { status: 200, headers: NO_STORE, body: begun };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/enrolment/totp/confirm',
        summary:
          'Confirm a TOTP enrolment with a current code; completing enrolment returns the recovery codes once',
        tags: ['enrolment'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: { action: 'factor.totp-confirm' },
        schema: {
          body: Type.Object({ enrolmentToken: OneTimeToken, factorId: FactorId, code: TotpCode }),
          response: { 200: EnrolmentStep },
        },
      }).handle(async (ctx) => {
        const { enrolmentToken, factorId, code } = ctx.body;
        const step = await enrol.confirmTotp(ctx, { enrolmentToken }, factorId, code);
        return { status: 200, headers: NO_STORE, body: step };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/enrolment/webauthn/options',
        summary: 'WebAuthn registration options for an enrolling account',
        tags: ['enrolment'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: { action: 'factor.webauthn-options' },
        schema: { body: Type.Object({ enrolmentToken: OneTimeToken }), response: { 200: WebAuthnOptions } },
      }).handle(async (ctx) => {
        const { person, options } = await enrol.registrationOptions({
          enrolmentToken: ctx.body.enrolmentToken,
        });
        await ctx.audit.record({ tenant: person.tenant, target: { personId: person.id } });
        return { status: 200, headers: NO_STORE, body: options };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/enrolment/webauthn',
        summary:
          'Register a passkey or security key for an enrolling account; completing enrolment returns the recovery codes once',
        tags: ['enrolment'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: { action: 'factor.webauthn-register' },
        schema: {
          body: Type.Object({
            enrolmentToken: OneTimeToken,
            response: WebAuthnResponse,
            label: Type.Optional(Label),
          }),
          response: { 200: Type.Object({ ...EnrolmentStep.properties, factorId: Type.String() }) },
        },
      }).handle(async (ctx) => {
        const { enrolmentToken, response, label } = ctx.body;
        const step = await enrol.registerPasskey(ctx, { enrolmentToken }, response, label);
        return { status: 200, headers: NO_STORE, body: step };
      }),
    ],
  };
}
