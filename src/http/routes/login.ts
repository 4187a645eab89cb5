/**
 * Console login in two steps — e-mail and password, then a second factor (TOTP, recovery code or
 * WebAuthn) — and the self-service password reset with a recovery code.
 *
 * These routes are public (nobody is logged in yet) but still name their audit action: the
 * services audit them, refusals included.
 */
import Type, { type Static } from 'typebox';
import type { LoginService } from '../../identity/login.ts';
import type { PeopleService } from '../../identity/people.ts';
import type { SessionService } from '../../identity/sessions.ts';
import { defineRoute, type RouteModule } from '../route.ts';
import { audited, metaOf, NO_STORE, proofOf } from './identity-request.ts';
import {
  Email,
  NewSessionBody,
  OneTimeToken,
  Password,
  RecoveryCode,
  Side,
  TenantId,
  TotpCode,
  WebAuthnOptions,
  WebAuthnResponse,
} from './identity-schemas.ts';
import { newSessionAnswer } from './session-cookie.ts';

export interface LoginRouteDeps {
  sessions: SessionService;
  login: LoginService;
  people: PeopleService;
}

/** The account a person names to sign in: its side, its tenant (customer side) and its e-mail. */
const AccountName = Type.Object({
  side: Side,
  tenant: Type.Optional(Type.Union([TenantId, Type.Null()])),
  email: Email,
});

function accountNamed(body: Static<typeof AccountName>) {
  return { side: body.side, tenant: body.tenant ?? null, email: body.email };
}

const PendingLogin = Type.Object({
  handle: Type.String({ description: 'Identifies this login attempt in the second step; 5 minutes' }),
  expiresAt: Type.String(),
  next: Type.Literal('second-factor'),
  factors: Type.Array(Type.String()),
});

export function loginRoutes(deps: LoginRouteDeps): RouteModule {
  const { login, people } = deps;
  return {
    name: 'login',
    routes: [
      defineRoute({
        method: 'POST',
        url: '/v1/auth/login',
        summary: 'Begin a console login with e-mail and password; the answer is the same for every account',
        description:
          'Always a pending login (no user enumeration): whether the account exists or the password is right shows only as the one 401 of the second step.',
        tags: ['auth'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: { action: 'auth.login' },
        schema: {
          body: Type.Object({ ...AccountName.properties, password: Password }),
          response: { 200: PendingLogin },
        },
      }).handle(async (ctx) => {
        const pending = await audited(
          ctx,
          login.beginLogin({
            ...accountNamed(ctx.body),
            password: ctx.body.password,
            address: ctx.sourceAddress,
            requestId: ctx.requestId,
            ...(ctx.userAgent !== undefined ? { userAgent: ctx.userAgent } : {}),
          }),
        );
        return { status: 200, headers: NO_STORE, body: { ...pending, factors: [...pending.factors] } };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/auth/login/second-factor',
        summary: 'Complete a login with a TOTP code or a recovery code: a new session cookie and CSRF token',
        tags: ['auth'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: { action: 'auth.login' },
        schema: {
          body: Type.Union([
            Type.Object({ handle: OneTimeToken, totp: TotpCode }),
            Type.Object({ handle: OneTimeToken, recoveryCode: RecoveryCode }),
          ]),
          response: { 200: NewSessionBody },
        },
      }).handle(async (ctx) =>
        newSessionAnswer(
          deps,
          await audited(ctx, login.completeLogin(ctx.body.handle, proofOf(ctx.body), metaOf(ctx))),
        ),
      ),

      defineRoute({
        method: 'POST',
        url: '/v1/auth/login/webauthn/options',
        summary:
          'WebAuthn options for a pending login (discoverable credentials; the same for every account)',
        tags: ['auth'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: { action: 'auth.login' },
        schema: { body: Type.Object({ handle: OneTimeToken }), response: { 200: WebAuthnOptions } },
      }).handle(async (ctx) => {
        // Issuing a challenge changes nothing an audit reader needs; refusals were audited.
        const options = await audited(ctx, login.webauthnLoginOptions(ctx.body.handle, metaOf(ctx)));
        return { status: 200, headers: NO_STORE, body: options };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/auth/login/webauthn',
        summary: 'Complete a login with a WebAuthn assertion: a new session cookie and CSRF token',
        tags: ['auth'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: { action: 'auth.login' },
        schema: {
          body: Type.Object({ handle: OneTimeToken, response: WebAuthnResponse }),
          response: { 200: NewSessionBody },
        },
      }).handle(async (ctx) =>
        newSessionAnswer(
          deps,
          await audited(ctx, login.completeWebauthnLogin(ctx.body.handle, ctx.body.response, metaOf(ctx))),
        ),
      ),

      defineRoute({
        method: 'POST',
        url: '/v1/auth/recovery-reset',
        summary: 'Set a new password with a recovery code (lifts a lockout, ends every session)',
        tags: ['auth'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: { action: 'person.password-recover' },
        schema: {
          body: Type.Object({
            ...AccountName.properties,
            recoveryCode: RecoveryCode,
            newPassword: Password,
          }),
          response: { 204: Type.Null() },
        },
      }).handle(async (ctx) => {
        await audited(
          ctx,
          people.resetPasswordWithRecoveryCode(
            {
              ...accountNamed(ctx.body),
              recoveryCode: ctx.body.recoveryCode,
              newPassword: ctx.body.newPassword,
            },
            { ...metaOf(ctx), sourceAddress: ctx.sourceAddress },
          ),
        );
        return { status: 204 };
      }),
    ],
  };
}
