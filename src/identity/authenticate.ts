/**
 * Bearer authentication for the request pipeline: one function from the token text to a Principal.
 * The token's prefix says what it is — `tresor_op_…` a scoped operator token, `tresor_ak_…` a
 * tenant API key — and anything else fails the same way as a wrong secret, with the same
 * TRESOR_ERR_UNAUTHENTICATED and comparable work, so a caller learns nothing from a refusal.
 */

import type { Store } from '../store/types.ts';
import {
  type ApiKeyService,
  bearerSecretMatches,
  createApiKeyService,
  parseBearerToken,
  type WarningLogger,
} from './api-keys.ts';
import type { IdentityDB } from './identity-store-schema.ts';
import { createOperatorTokenAuthenticator, type OperatorTokenAuthenticator } from './operator-token-auth.ts';
import type { Principal } from './principal.ts';
import { unauthenticated } from './unauthenticated.ts';

export interface Authenticator {
  (bearerToken: string): Promise<Principal>;
  /** Waits for pending last-use writes (tests, shutdown). */
  flush(): Promise<void>;
}

export interface AuthenticatorOptions {
  control: Store<IdentityDB>;
  clock?: () => Date;
  logger?: WarningLogger;
  lastUseIntervalMs?: number;
  /** Services to use instead of building them over `control` (e.g. shared with the routes). */
  apiKeys?: ApiKeyService;
  operatorTokens?: OperatorTokenAuthenticator;
}

export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const shared = {
    control: options.control,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.lastUseIntervalMs !== undefined ? { lastUseIntervalMs: options.lastUseIntervalMs } : {}),
  };
  const apiKeys = options.apiKeys ?? createApiKeyService(shared);
  const operatorTokens = options.operatorTokens ?? createOperatorTokenAuthenticator(shared);

  const authenticate = async (bearerToken: string): Promise<Principal> => {
    const parsed = typeof bearerToken === 'string' ? parseBearerToken(bearerToken) : undefined;
    if (parsed?.kind === 'op') return operatorTokens.authenticate(bearerToken);
    if (parsed?.kind === 'ak') return apiKeys.authenticate(bearerToken);
    // Not a token of ours: hash and compare against the dummy like any unknown id, then refuse.
    bearerSecretMatches('ak', 'ak_', '', undefined);
    throw unauthenticated();
  };
  return Object.assign(authenticate, {
    flush: async () => {
      await Promise.all([apiKeys.flush(), operatorTokens.flush()]);
    },
  });
}
