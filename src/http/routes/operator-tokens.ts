/**
 * Operator tokens over HTTP (src/identity/operator-tokens.ts): an operator admin's console session
 * creates, lists, rotates and revokes them. Creating and rotating hand out a new secret, so they
 * need a fresh second factor (step-up); revoking only lowers power and needs none. No operator
 * token reaches these routes — none names a token scope — so a token can never make or renew
 * tokens. The token text is in the 201 answer of create and rotate only (`Cache-Control:
 * no-store`); lists and audit entries carry ids, never secrets or hashes.
 */
import Type from 'typebox';
import { OPERATOR_SCOPES } from '../../identity/operator-scopes.ts';
import type { OperatorTokenService } from '../../identity/operator-tokens.ts';
import { MAX_TOKEN_DAYS, MAX_TOKEN_NAME_CHARS } from '../../identity/operator-tokens.ts';
import { defineRoute, type RouteModule } from '../route.ts';
import { actorOf } from './identity-callers.ts';
import { audited, metaOf, NO_STORE } from './identity-request.ts';
import { NO_CONTROL_CHARACTERS } from './identity-schemas.ts';

export interface OperatorTokenRouteDeps {
  operatorTokens: OperatorTokenService;
}

const Scope = Type.Enum([...OPERATOR_SCOPES], { description: 'The one scope the token grants' });
const TokenId = Type.String({ pattern: '^op_[0-9a-f]{24}$', maxLength: 27 });
const TokenParams = Type.Object({ id: TokenId });

const OperatorToken = Type.Object({
  id: Type.String(),
  scope: Scope,
  name: Type.String(),
  owner: Type.String({ description: 'The operator-admin person who created (or last rotated) it' }),
  createdAt: Type.String(),
  expiresAt: Type.String(),
  revokedAt: Type.Union([Type.String(), Type.Null()]),
  lastUsedAt: Type.Union([Type.String(), Type.Null()]),
});

const IssuedToken = Type.Object({
  id: Type.String(),
  token: Type.String({ description: 'Shown once; stored only as a hash' }),
  scope: Scope,
  name: Type.String(),
  owner: Type.String(),
  createdAt: Type.String(),
  expiresAt: Type.String(),
});

/** The route's `auth: 'operator'` admitted only an operator admin's session (no scope: no token). */
const operatorAdminSession = () => {};

export function operatorTokenRoutes(deps: OperatorTokenRouteDeps): RouteModule {
  const { operatorTokens } = deps;
  return {
    name: 'operator-tokens',
    routes: [
      defineRoute({
        method: 'POST',
        url: '/v1/operator-tokens',
        summary: 'Create an operator token of one scope; the token is shown once (step-up)',
        tags: ['operator-tokens'],
        auth: 'operator',
        secondFactor: true,
        authorize: operatorAdminSession,
        audit: { action: 'operator-token.create' },
        schema: {
          body: Type.Object({
            scope: Scope,
            name: Type.String({
              minLength: 1,
              maxLength: MAX_TOKEN_NAME_CHARS,
              pattern: NO_CONTROL_CHARACTERS,
            }),
            expiresInDays: Type.Optional(
              Type.Integer({ minimum: 1, maximum: MAX_TOKEN_DAYS, description: 'Default 30' }),
            ),
          }),
          response: { 201: IssuedToken },
        },
      }).handle(async (ctx) => {
        const issued = await audited(
          ctx,
          operatorTokens.create(actorOf(ctx.principal), ctx.body, metaOf(ctx)),
        );
        return { status: 201, headers: NO_STORE, body: issued };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/operator-tokens',
        summary: 'Every operator token, without secrets',
        tags: ['operator-tokens'],
        auth: 'operator',
        secondFactor: false,
        authorize: operatorAdminSession,
        audit: { action: 'operator-token.list' },
        schema: { response: { 200: Type.Object({ tokens: Type.Array(OperatorToken) }) } },
      }).handle(async (ctx) => {
        const tokens = await audited(ctx, operatorTokens.list(actorOf(ctx.principal), metaOf(ctx)));
        return { status: 200, body: { tokens } };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/operator-tokens/:id/rotate',
        summary:
          'Replace a token: a new one with the same scope, name and lifetime, shown once; the old one is revoked at once (step-up)',
        tags: ['operator-tokens'],
        auth: 'operator',
        secondFactor: true,
        authorize: operatorAdminSession,
        audit: { action: 'operator-token.rotate' },
        schema: { params: TokenParams, response: { 201: IssuedToken } },
      }).handle(async (ctx) => {
        const issued = await audited(
          ctx,
          operatorTokens.rotate(actorOf(ctx.principal), ctx.params.id, metaOf(ctx)),
        );
        return { status: 201, headers: NO_STORE, body: issued };
      }),

      defineRoute({
        method: 'DELETE',
        url: '/v1/operator-tokens/:id',
        summary: 'Revoke a token (idempotent)',
        tags: ['operator-tokens'],
        auth: 'operator',
        secondFactor: false,
        authorize: operatorAdminSession,
        audit: { action: 'operator-token.revoke' },
        schema: { params: TokenParams, response: { 204: Type.Null() } },
      }).handle(async (ctx) => {
        await audited(ctx, operatorTokens.revoke(actorOf(ctx.principal), ctx.params.id, metaOf(ctx)));
        return { status: 204 };
      }),
    ],
  };
}
