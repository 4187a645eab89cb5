/**
 * Console identity over HTTP: login in two steps, the session cookie, re-authentication, sessions,
 * enrolment, the person's own second factors, and the management of people.
 *
 * The domain (src/identity) decides and audits everything — every success and every refusal is
 * written by the service in the same commit as its change — so each handler is: call the service,
 * mark the request audited, shape the answer. What this module adds is HTTP:
 *
 * - the session cookie `__Host-tresor_session=<token>; Path=/; Secure; HttpOnly; SameSite=Strict`
 *   (sessions.cookieOptions()), set on login and re-authentication and cleared (Max-Age=0) on
 *   logout; the CSRF token goes to the page in the body, once per session;
 * - `Cache-Control: no-store` on every answer that carries a secret shown once (enrolment and reset
 *   tokens, TOTP secrets, recovery codes, the CSRF token);
 * - secrets only ever in request and response bodies: never in a URL, a header we echo, or an error.
 *
 * Login and enrolment routes are public (nobody is logged in yet) but still name their audit
 * action: the services audit them. People management admits operator automation tokens (to make
 * the first accounts) and sessions of people who manage accounts (roles.mayManageAccount), never
 * API keys; a session must have passed a second factor within STEP_UP_MAX_AGE_MS to change an
 * account — checked in `authorize`, since a route has one `secondFactor` setting and operator tokens
 * (which never pass one) must reach these routes too.
 */
import Type, { type TSchema } from 'typebox';
import { TresorError } from '../../errors.ts';
import type { LoginService } from '../../identity/login.ts';
import type { EnrolmentAuth, PeopleService, PersonInfo, SecondFactorProof } from '../../identity/people.ts';
import { canManageStaff, canManageTenantPeople, mayManageAccount } from '../../identity/roles.ts';
import type {
  AuditMeta,
  IdentityActor,
  NewSession,
  SessionInfo,
  SessionService,
} from '../../identity/sessions.ts';
import type { WebAuthnService } from '../../identity/webauthn.ts';
import { secondFactorVerdict } from '../layers/second-factor.ts';
import { defineRoute, type HttpPrincipal, type RouteModule } from '../route.ts';

export interface IdentityRouteDeps {
  sessions: SessionService;
  login: LoginService;
  people: PeopleService;
  webauthn: WebAuthnService;
  /** The clock of the step-up check in authorize (tests pin it). */
  now?: () => Date;
}

// --- schemas -------------------------------------------------------------------------------------

const Side = Type.Union([Type.Literal('operator'), Type.Literal('customer')]);
const Role = Type.Union([
  Type.Literal('operator-admin'),
  Type.Literal('security-officer'),
  Type.Literal('support-agent'),
  Type.Literal('contractor'),
  Type.Literal('tenant-admin'),
  Type.Literal('tenant-member'),
]);
const TenantId = Type.String({ pattern: '^ten_[A-Za-z0-9_-]{1,60}$', maxLength: 64 });
const PersonId = Type.String({ pattern: '^psn_[0-9a-f]{24}$', maxLength: 28 });
const SessionId = Type.String({ pattern: '^ses_[0-9a-f]{24}$', maxLength: 28 });
const FactorId = Type.String({ pattern: '^fac_[0-9a-f]{24}$', maxLength: 28 });
const Email = Type.String({
  pattern: '^\\s*[^\\s@]{1,64}@[^\\s@]{1,255}\\s*$',
  minLength: 3,
  maxLength: 330,
});
const Password = Type.String({ minLength: 1, maxLength: 1024 });
/** Handles, enrolment and reset tokens: 32 random bytes, base64url (sessions.newToken). */
const OneTimeToken = Type.String({ pattern: '^[A-Za-z0-9_-]{43}$', maxLength: 43 });
const TotpCode = Type.String({ pattern: '^[0-9]{6}$', maxLength: 6 });
/** 24 base32 characters, grouped with dashes or spaces as shown (recovery-codes.ts). */
const RecoveryCode = Type.String({ pattern: '^[A-Za-z2-7 -]{24,40}$', maxLength: 40 });
const Label = Type.String({ minLength: 1, maxLength: 100, pattern: '^[^\\u0000-\\u001f\\u007f]+$' });
const B64u = (max: number) => Type.String({ pattern: '^[A-Za-z0-9_-]+$', minLength: 1, maxLength: max });

/** A PublicKeyCredential as the browser's toJSON() gives it (W3C WebAuthn L3 §5.1.8, §5.1.9). */
const WebAuthnResponse = Type.Object({
  id: B64u(1366),
  rawId: B64u(1366),
  type: Type.Literal('public-key'),
  response: Type.Object({
    clientDataJSON: B64u(8192),
    attestationObject: Type.Optional(B64u(65_536)),
    authenticatorData: Type.Optional(B64u(8192)),
    signature: Type.Optional(B64u(2048)),
    userHandle: Type.Optional(B64u(128)),
    publicKey: Type.Optional(B64u(8192)),
    publicKeyAlgorithm: Type.Optional(Type.Integer({ minimum: -65_536, maximum: 65_535 })),
    transports: Type.Optional(Type.Array(Type.String({ maxLength: 32 }), { maxItems: 8 })),
  }),
  authenticatorAttachment: Type.Optional(
    Type.Union([Type.Literal('platform'), Type.Literal('cross-platform')]),
  ),
  clientExtensionResults: Type.Object({}, { additionalProperties: true, maxProperties: 16 }),
});

/** WebAuthn options go to the browser as the library made them (every member kept). */
const WebAuthnOptions = Type.Object(
  { challenge: Type.String(), timeout: Type.Optional(Type.Number()) },
  { additionalProperties: true, description: 'PublicKeyCredential{Creation,Request}OptionsJSON' },
);

const SecondFactor = Type.Union([
  Type.Object({ totp: TotpCode }),
  Type.Object({ recoveryCode: RecoveryCode }),
]);

const SessionView = Type.Object({
  id: Type.String(),
  personId: Type.String(),
  side: Side,
  role: Role,
  tenant: Type.Union([Type.String(), Type.Null()]),
  factors: Type.Array(Type.String()),
  fresh2faAt: Type.Union([Type.String(), Type.Null()]),
  idleExpiresAt: Type.String(),
  absoluteExpiresAt: Type.String(),
});

const NewSessionBody = Type.Object({
  csrfToken: Type.String({ description: 'Send it in X-CSRF-Token on every non-GET request of this session' }),
  session: SessionView,
});

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

const Person = Type.Object({
  id: Type.String(),
  side: Side,
  role: Role,
  tenant: Type.Union([Type.String(), Type.Null()]),
  email: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  enrolledAt: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  disabledAt: Type.Union([Type.String(), Type.Null()]),
  removedAt: Type.Union([Type.String(), Type.Null()]),
});

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

const EnrolmentStep = Type.Object({
  enrolmentComplete: Type.Boolean(),
  recoveryCodes: Type.Optional(
    Type.Array(Type.String(), { description: 'Shown once, when enrolment completes; stored only hashed' }),
  ),
});

const TotpBegin = Type.Object({
  factorId: Type.String(),
  secret: Type.String({ description: 'Base32 TOTP secret (RFC 6238), shown once' }),
  uri: Type.String({ description: 'otpauth:// URI for an authenticator app, shown once' }),
});

const PendingLogin = Type.Object({
  handle: Type.String({ description: 'Identifies this login attempt in the second step; 5 minutes' }),
  expiresAt: Type.String(),
  next: Type.Literal('second-factor'),
  factors: Type.Array(Type.String()),
});

const PersonParams = Type.Object({ id: PersonId });

// --- helpers -------------------------------------------------------------------------------------

const NO_STORE = { 'cache-control': 'no-store' } as const;

function metaOf(ctx: { requestId: string; sourceAddress: string; userAgent: string | undefined }): AuditMeta {
  return {
    requestId: ctx.requestId,
    sourceAddress: ctx.sourceAddress,
    ...(ctx.userAgent !== undefined ? { userAgent: ctx.userAgent } : {}),
  };
}

function proofOf(body: { totp: string } | { recoveryCode: string }): SecondFactorProof {
  return 'totp' in body ? { totp: body.totp } : { recoveryCode: body.recoveryCode };
}

/** Who acts on identity: a console session or an operator token. Other callers never get here. */
function actorOf(principal: HttpPrincipal): IdentityActor {
  if (principal.kind === 'session') return principal;
  if (principal.kind === 'operator-admin') return { kind: 'operator-admin', id: principal.id };
  throw new TresorError('TRESOR_ERR_FORBIDDEN', 'these credentials cannot be used for this operation');
}

function forbidden(): TresorError {
  return new TresorError('TRESOR_ERR_FORBIDDEN', 'these credentials cannot be used for this operation');
}

function notFound(): TresorError {
  return new TresorError('TRESOR_ERR_NOT_FOUND', 'no such person');
}

export function identityRoutes(deps: IdentityRouteDeps): RouteModule {
  const { sessions, login, people, webauthn } = deps;
  const now = deps.now ?? (() => new Date());
  // Read at request time: a route module only captures its dependencies when built.
  const cookieAttributes = () => {
    const c = sessions.cookieOptions();
    return { name: c.name, attributes: `Path=${c.path}; Secure; HttpOnly; SameSite=Strict` };
  };
  /** `Set-Cookie` for a new session (RFC 6265bis §4.1; `__Host-` needs Secure, Path=/, no Domain). */
  const setCookie = (token: string) => {
    const c = cookieAttributes();
    return `${c.name}=${token}; ${c.attributes}`;
  };
  const clearCookie = () => {
    const c = cookieAttributes();
    return `${c.name}=; ${c.attributes}; Max-Age=0`;
  };

  async function sessionAnswer(created: NewSession) {
    const person = await people.get(created.session.personId);
    if (!person) throw new TresorError('TRESOR_ERR_INTERNAL', 'a session without its person');
    return {
      status: 200 as const,
      headers: { ...NO_STORE, 'set-cookie': setCookie(created.token) },
      body: { csrfToken: created.csrfToken, session: sessionView(created.session, person) },
    };
  }

  function sessionView(s: SessionInfo, person: PersonInfo) {
    return {
      id: s.id,
      personId: s.personId,
      side: s.side,
      role: person.role,
      tenant: s.tenant,
      factors: [...s.factors],
      fresh2faAt: s.fresh2faAt,
      idleExpiresAt: s.idleExpiresAt,
      absoluteExpiresAt: s.absoluteExpiresAt,
    };
  }

  /** Operator tokens and sessions of people who manage accounts; never API keys or grants. */
  function accountManager(principal: HttpPrincipal): void {
    if (principal.kind === 'operator-admin') return;
    if (
      principal.kind === 'session' &&
      (canManageStaff(principal.role) || canManageTenantPeople(principal.role))
    ) {
      return;
    }
    throw forbidden();
  }

  /** accountManager, and a session must have passed a second factor recently (step-up). */
  function accountChanger(principal: HttpPrincipal): void {
    accountManager(principal);
    if (principal.kind === 'session' && secondFactorVerdict(principal, now()) !== 'satisfied') {
      throw new TresorError('TRESOR_ERR_SECOND_FACTOR_REQUIRED', 'pass a second factor again, then retry');
    }
  }

  /** Operator tokens and any session (own things; the service checks a target person). */
  function sessionOrOperator(principal: HttpPrincipal): void {
    if (principal.kind !== 'session' && principal.kind !== 'operator-admin') throw forbidden();
  }

  const anySession = () => {};

  const personRoute = <B extends TSchema | undefined>(
    method: 'POST' | 'DELETE' | 'PATCH',
    url: string,
    summary: string,
    action: string,
    body?: B,
  ) => ({
    method,
    url,
    summary,
    tags: ['people'] as const,
    auth: 'any-authenticated' as const,
    secondFactor: false,
    authorize: accountChanger,
    audit: { action },
    ...(body ? { body } : {}),
  });

  return {
    name: 'identity',
    routes: [
      // --- login ---------------------------------------------------------------------------------
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
          body: Type.Object({
            side: Side,
            tenant: Type.Optional(Type.Union([TenantId, Type.Null()])),
            email: Email,
            password: Password,
          }),
          response: { 200: PendingLogin },
        },
      }).handle(async (ctx) => {
        const pending = await login.beginLogin({
          side: ctx.body.side,
          tenant: ctx.body.tenant ?? null,
          email: ctx.body.email,
          password: ctx.body.password,
          address: ctx.sourceAddress,
          requestId: ctx.requestId,
          ...(ctx.userAgent !== undefined ? { userAgent: ctx.userAgent } : {}),
        });
        ctx.audit.recorded = true;
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
      }).handle(async (ctx) => {
        const created = await login.completeLogin(ctx.body.handle, proofOf(ctx.body), metaOf(ctx));
        ctx.audit.recorded = true;
        return sessionAnswer(created);
      }),

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
        const options = await login.webauthnLoginOptions(ctx.body.handle, metaOf(ctx));
        // Issuing a challenge changes nothing an audit reader needs; refusals were audited.
        ctx.audit.recorded = true;
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
      }).handle(async (ctx) => {
        const created = await login.completeWebauthnLogin(ctx.body.handle, ctx.body.response, metaOf(ctx));
        ctx.audit.recorded = true;
        return sessionAnswer(created);
      }),

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
            side: Side,
            tenant: Type.Optional(Type.Union([TenantId, Type.Null()])),
            email: Email,
            recoveryCode: RecoveryCode,
            newPassword: Password,
          }),
          response: { 204: Type.Null() },
        },
      }).handle(async (ctx) => {
        await people.resetPasswordWithRecoveryCode(
          {
            side: ctx.body.side,
            tenant: ctx.body.tenant ?? null,
            email: ctx.body.email,
            recoveryCode: ctx.body.recoveryCode,
            newPassword: ctx.body.newPassword,
          },
          { ...metaOf(ctx), sourceAddress: ctx.sourceAddress },
        );
        ctx.audit.recorded = true;
        return { status: 204 };
      }),

      // --- the session ---------------------------------------------------------------------------
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
        await sessions.endSession(ctx.principal, metaOf(ctx));
        ctx.audit.recorded = true;
        return { status: 204, headers: { 'set-cookie': clearCookie() } };
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
      }).handle(async (ctx) => {
        const created = await login.reauthenticate(ctx.principal, proofOf(ctx.body), metaOf(ctx));
        ctx.audit.recorded = true;
        return sessionAnswer(created);
      }),

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
      }).handle(async (ctx) => {
        const created = await login.reauthenticateWithWebauthn(ctx.principal, ctx.body.response, metaOf(ctx));
        ctx.audit.recorded = true;
        return sessionAnswer(created);
      }),

      // --- sessions ------------------------------------------------------------------------------
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
        await sessions.revoke(actorOf(ctx.principal), ctx.params.id, metaOf(ctx));
        ctx.audit.recorded = true;
        return { status: 204 };
      }),

      defineRoute({
        ...personRoute(
          'POST',
          '/v1/people/:id/sessions/revoke-all',
          'End every session of an account',
          'session.revoke-all',
        ),
        tags: ['people', 'sessions'],
        schema: { params: PersonParams, response: { 200: Type.Object({ revoked: Type.Integer() }) } },
      }).handle(async (ctx) => {
        const revoked = await sessions.revokeAll(actorOf(ctx.principal), ctx.params.id, metaOf(ctx));
        ctx.audit.recorded = true;
        return { status: 200, body: { revoked } };
      }),

      // --- enrolment with the one-time token -----------------------------------------------------
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
        const step = await people.setPassword(ctx.body.enrolmentToken, ctx.body.password, metaOf(ctx));
        ctx.audit.recorded = true;
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
        const begun = await people.beginTotpEnrolment(
          { enrolmentToken: ctx.body.enrolmentToken },
          ctx.body.label !== undefined ? { label: ctx.body.label } : {},
          metaOf(ctx),
        );
        ctx.audit.recorded = true;
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
        const step = await people.confirmTotpEnrolment(
          { enrolmentToken: ctx.body.enrolmentToken },
          ctx.body.factorId,
          ctx.body.code,
          metaOf(ctx),
        );
        ctx.audit.recorded = true;
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
        const auth: EnrolmentAuth = { enrolmentToken: ctx.body.enrolmentToken };
        const options = await registrationOptions(auth);
        await ctx.audit.record({ tenant: options.person.tenant, target: { personId: options.person.id } });
        return { status: 200, headers: NO_STORE, body: options.options };
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
        const step = await registerPasskey(
          { enrolmentToken: ctx.body.enrolmentToken },
          ctx.body.response,
          ctx.body.label,
          metaOf(ctx),
        );
        ctx.audit.recorded = true;
        return { status: 200, headers: NO_STORE, body: step };
      }),

      // --- the caller's own factors (fresh second factor) ----------------------------------------
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
        const begun = await people.beginTotpEnrolment(
          { session: ctx.principal },
          ctx.body.label !== undefined ? { label: ctx.body.label } : {},
          metaOf(ctx),
        );
        ctx.audit.recorded = true;
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
        const step = await people.confirmTotpEnrolment(
          { session: ctx.principal },
          ctx.body.factorId,
          ctx.body.code,
          metaOf(ctx),
        );
        ctx.audit.recorded = true;
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
        const options = await registrationOptions({ session: ctx.principal });
        await ctx.audit.record({ target: { personId: ctx.principal.personId } });
        return { status: 200, headers: NO_STORE, body: options.options };
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
        const step = await registerPasskey(
          { session: ctx.principal },
          ctx.body.response,
          ctx.body.label,
          metaOf(ctx),
        );
        ctx.audit.recorded = true;
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
        const issued = await people.issueRecoveryCodes({ session: ctx.principal }, metaOf(ctx));
        ctx.audit.recorded = true;
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
        await people.revokeFactor(ctx.principal, ctx.params.id, metaOf(ctx));
        ctx.audit.recorded = true;
        return { status: 204 };
      }),

      // --- people --------------------------------------------------------------------------------
      defineRoute({
        ...personRoute(
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
            name: Type.Optional(
              Type.Union([
                Type.String({ minLength: 1, maxLength: 100, pattern: '^[^\\u0000-\\u001f\\u007f]+$' }),
                Type.Null(),
              ]),
            ),
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
        const created = await people.createPerson(
          actorOf(ctx.principal),
          {
            side: ctx.body.side,
            role: ctx.body.role,
            tenant: ctx.body.tenant ?? null,
            email: ctx.body.email,
            name: ctx.body.name ?? null,
          },
          metaOf(ctx),
        );
        ctx.audit.recorded = true;
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
        authorize: accountManager,
        audit: { action: 'person.list' },
        schema: {
          querystring: Type.Object({ tenant: Type.Optional(TenantId) }),
          response: { 200: Type.Object({ people: Type.Array(Person) }) },
        },
      }).handle(async (ctx) => {
        const list = await people.list(
          actorOf(ctx.principal),
          ctx.query.tenant !== undefined ? { tenant: ctx.query.tenant } : {},
          metaOf(ctx),
        );
        ctx.audit.recorded = true;
        return { status: 200, body: { people: list } };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/people/:id',
        summary: 'One account the caller manages (or the caller’s own)',
        tags: ['people'],
        auth: 'any-authenticated',
        secondFactor: false,
        authorize: sessionOrOperator,
        audit: { action: 'person.read' },
        schema: { params: PersonParams, response: { 200: Person } },
      }).handle(async (ctx) => {
        const p = ctx.principal;
        const person = await people.get(ctx.params.id);
        const manager =
          p.kind === 'operator-admin'
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
        ...personRoute(
          'PATCH',
          '/v1/people/:id',
          'Change an account’s role (its sessions end at once)',
          'person.role-change',
        ),
        schema: { params: PersonParams, body: Type.Object({ role: Role }), response: { 200: Person } },
      }).handle(async (ctx) => {
        const person = await people.changeRole(
          actorOf(ctx.principal),
          ctx.params.id,
          ctx.body.role,
          metaOf(ctx),
        );
        ctx.audit.recorded = true;
        return { status: 200, body: person };
      }),

      defineRoute({
        ...personRoute(
          'POST',
          '/v1/people/:id/disable',
          'Disable an account (its sessions end at once)',
          'person.disable',
        ),
        schema: { params: PersonParams, response: { 204: Type.Null() } },
      }).handle(async (ctx) => {
        await people.disable(actorOf(ctx.principal), ctx.params.id, metaOf(ctx));
        ctx.audit.recorded = true;
        return { status: 204 };
      }),

      defineRoute({
        ...personRoute(
          'DELETE',
          '/v1/people/:id',
          'Remove an account (its sessions end at once)',
          'person.remove',
        ),
        schema: { params: PersonParams, response: { 204: Type.Null() } },
      }).handle(async (ctx) => {
        await people.remove(actorOf(ctx.principal), ctx.params.id, metaOf(ctx));
        ctx.audit.recorded = true;
        return { status: 204 };
      }),

      defineRoute({
        ...personRoute(
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
        const reset = await people.resetPassword(actorOf(ctx.principal), ctx.params.id, metaOf(ctx));
        ctx.audit.recorded = true;
        return { status: 200, headers: NO_STORE, body: reset };
      }),

      defineRoute({
        ...personRoute('POST', '/v1/people/:id/unlock', 'Lift a login lockout', 'person.unlock'),
        schema: { params: PersonParams, response: { 204: Type.Null() } },
      }).handle(async (ctx) => {
        await people.unlock(actorOf(ctx.principal), ctx.params.id, metaOf(ctx));
        ctx.audit.recorded = true;
        return { status: 204 };
      }),

      defineRoute({
        ...personRoute(
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
        const reset = await people.resetFactors(actorOf(ctx.principal), ctx.params.id, metaOf(ctx));
        ctx.audit.recorded = true;
        return { status: 200, headers: NO_STORE, body: reset };
      }),
    ],
  };

  /** Registration options for the account an enrolment token or a fresh session stands for. */
  async function registrationOptions(auth: EnrolmentAuth) {
    const person = await people.enrollingPerson(auth);
    // webauthn.ts excludes the person's live credentials itself (no double registration).
    const options = await webauthn.beginRegistration({ id: person.id, email: person.email });
    return { person, options };
  }

  /** Verifies a registration (webauthn.ts), then lists the credential as a factor (people.ts). */
  async function registerPasskey(
    auth: EnrolmentAuth,
    response: unknown,
    label: string | undefined,
    meta: AuditMeta,
  ) {
    const person = await people.enrollingPerson(auth);
    const credential = await webauthn.finishRegistration(person.id, response);
    return people.registerWebauthnFactor(
      auth,
      {
        credentialId: credential.id,
        publicKey: credential.publicKey,
        signCount: credential.counter,
        ...(label !== undefined ? { label } : {}),
      },
      meta,
    );
  }
}
