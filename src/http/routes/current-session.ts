/**
 * The caller's own console session: read it, end it (logout), and re-authenticate — pass a second
 * factor again for a new session cookie and CSRF token with the second factor fresh.
 */
import Type from 'typebox';
import { TresorError } from '../../errors.ts';
import type { LoginService } from '../../identity/login.ts';
import type { PeopleService } from '../../identity/people.ts';
import type { SessionService } from '../../identity/sessions.ts';
import { defineRoute, type RouteModule } from '../route.ts';
import { anySession } from './identity-callers.ts';
import { audited, metaOf, NO_STORE, proofOf } from './identity-request.ts';
import {
  NewSessionBody,
  Person,
  SecondFactor,
  SessionView,
  WebAuthnOptions,
  WebAuthnResponse,
} from './identity-schemas.ts';
import { clearCookie, newSessionAnswer, sessionView } from './session-cookie.ts';

export interface CurrentSessionRouteDeps {
  sessions: SessionService;
  login: LoginService;
  people: PeopleService;
}

export function currentSessionRoutes(deps: CurrentSessionRouteDeps): RouteModule {
  const { sessions, login, people } = deps;
  return {
    name: 'current-session',
    routes: [
      defineRoute({
        method: 'GET',
        url: '/v1/auth/session',
        summary: 'The caller’s session and account (the CSRF token is not sent again)',
        tags: ['auth'],
        auth: 'session',
        secondFactor: false,
        authorize: anySession,
        audit: { action: 'auth.session-read' },
        schema: {
          response: {
            200: Type.Object({
              session: Type.Object({
                ...SessionView.properties,
                authenticatedAt: Type.String(),
              }),
              person: Person,
            }),
          },
        },
      }).handle(async (ctx) => {
        const p = ctx.principal;
        const person = await people.get(p.personId);
        if (!person) throw new TresorError('TRESOR_ERR_UNAUTHENTICATED', 'a valid session is required');
        const live = (await sessions.list(p, p.personId, metaOf(ctx))).find((s) => s.id === p.sessionId);
        if (!live) throw new TresorError('TRESOR_ERR_UNAUTHENTICATED', 'a valid session is required');
        await ctx.audit.record({ target: { sessionId: p.sessionId } });
        return {
          status: 200,
          body: {
            session: { ...sessionView(live, person), authenticatedAt: p.authenticatedAt },
            person,
          },
        };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/auth/logout',
        summary: 'End the caller’s session; the cookie is cleared and refused from now on',
        tags: ['auth'],
        auth: 'session',
        secondFactor: false,
        authorize: anySession,
        audit: { action: 'auth.logout' },
        schema: { response: { 204: Type.Null() } },
      }).handle(async (ctx) => {
        await audited(ctx, sessions.endSession(ctx.principal, metaOf(ctx)));
        return { status: 204, headers: { 'set-cookie': clearCookie(sessions) } };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/auth/reauthenticate',
        summary: 'Pass a second factor again: a new session cookie and CSRF token, the second factor fresh',
        description:
          'The old cookie is refused from now on. Routes marked secondFactor need this within 5 minutes.',
        tags: ['auth'],
        auth: 'session',
        secondFactor: false,
        authorize: anySession,
        audit: { action: 'auth.reauthenticate' },
        schema: { body: SecondFactor, response: { 200: NewSessionBody } },
      }).handle(async (ctx) =>
        newSessionAnswer(
          deps,
          await audited(ctx, login.reauthenticate(ctx.principal, proofOf(ctx.body), metaOf(ctx))),
        ),
      ),

      defineRoute({
        method: 'POST',
        url: '/v1/auth/password',
        summary:
          'Change the caller’s own password: the current one and a new one; a new session cookie and CSRF token',
        description:
          'Needs a fresh second factor. A wrong current password is 403 TRESOR_ERR_PASSWORD_INCORRECT and counts as a failed login (delays, lockout); a new password the policy refuses is 422. On success every session of the person ends, the caller’s included: the answer carries the caller’s new session.',
        tags: ['auth'],
        auth: 'session',
        secondFactor: true,
        authorize: anySession,
        audit: { action: 'person.password-change' },
        schema: {
          body: Type.Object({
            currentPassword: Type.String({ minLength: 1, maxLength: 1024 }),
            newPassword: Type.String({ minLength: 1, maxLength: 1024 }),
          }),
          response: { 200: NewSessionBody },
        },
      }).handle(async (ctx) =>
        newSessionAnswer(
          deps,
          await audited(ctx, login.changePassword(ctx.principal, ctx.body, metaOf(ctx))),
        ),
      ),

      defineRoute({
        method: 'POST',
        url: '/v1/auth/reauthenticate/webauthn/options',
        summary: 'WebAuthn options to re-authenticate the caller’s session',
        tags: ['auth'],
        auth: 'session',
        secondFactor: false,
        authorize: anySession,
        audit: { action: 'auth.reauthenticate-options' },
        schema: { response: { 200: WebAuthnOptions } },
      }).handle(async (ctx) => {
        const options = await login.webauthnReauthenticationOptions(ctx.principal);
        await ctx.audit.record();
        return { status: 200, headers: NO_STORE, body: options };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/auth/reauthenticate/webauthn',
        summary: 'Re-authenticate with a WebAuthn assertion: a new session cookie and CSRF token',
        tags: ['auth'],
        auth: 'session',
        secondFactor: false,
        authorize: anySession,
        audit: { action: 'auth.reauthenticate' },
        schema: { body: Type.Object({ response: WebAuthnResponse }), response: { 200: NewSessionBody } },
      }).handle(async (ctx) =>
        newSessionAnswer(
          deps,
          await audited(ctx, login.reauthenticateWithWebauthn(ctx.principal, ctx.body.response, metaOf(ctx))),
        ),
      ),
    ],
  };
}
