/**
 * Proves an operator token (operator-tokens.ts) into its principal: the token's id, scope and owner.
 * A token is refused — with the one TRESOR_ERR_UNAUTHENTICATED of every authentication, after the
 * same lookup and hash work — when it is unknown, its secret is wrong, it has expired or been
 * revoked (rotation revokes the old one), or its owner is no longer an active operator admin
 * (disabled, removed, or given another role): a token never outlives its owner's standing.
 * Checked at every request, no cache, so a revocation or a disabled owner stops it at once.
 * Last use is recorded as for API keys (createLastUseRecorder: at most once a minute per token).
 */
import type { Store } from '../store/types.ts';
import {
  bearerSecretMatches,
  createLastUseRecorder,
  DEFAULT_LAST_USE_INTERVAL_MS,
  parseBearerToken,
  type WarningLogger,
} from './api-keys.ts';
import type { IdentityDB } from './identity-store-schema.ts';
import type { OperatorTokenPrincipal } from './principal.ts';
import { unauthenticated } from './unauthenticated.ts';

export interface OperatorTokenAuthenticator {
  authenticate(token: string): Promise<OperatorTokenPrincipal>;
  /** Waits for pending last-use writes. */
  flush(): Promise<void>;
}

export interface OperatorTokenAuthOptions {
  control: Store<IdentityDB>;
  clock?: () => Date;
  logger?: WarningLogger;
  lastUseIntervalMs?: number;
}

export function createOperatorTokenAuthenticator(
  options: OperatorTokenAuthOptions,
): OperatorTokenAuthenticator {
  const { control } = options;
  const clock = options.clock ?? (() => new Date());
  const lastUse = createLastUseRecorder({
    write: (id, at) =>
      control.write((trx) =>
        trx
          .updateTable('operator_tokens')
          .set({ last_used_at: at })
          .where('id', '=', id)
          .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', at)]))
          .execute(),
      ),
    intervalMs: options.lastUseIntervalMs ?? DEFAULT_LAST_USE_INTERVAL_MS,
    clock,
    logger: options.logger ?? { warn: (details, message) => console.error(message, details) },
    what: 'an operator token',
  });

  return {
    async authenticate(token) {
      const parsed = parseBearerToken(token);
      const id = parsed?.kind === 'op' ? parsed.id : undefined;
      const row =
        id === undefined
          ? undefined
          : await control.db
              .selectFrom('operator_tokens')
              .innerJoin('people', 'people.id', 'operator_tokens.owner')
              .select([
                'operator_tokens.id',
                'operator_tokens.owner',
                'operator_tokens.scope',
                'operator_tokens.secret_hash',
                'operator_tokens.expires_at',
                'operator_tokens.revoked_at',
                'people.role',
                'people.disabled_at',
                'people.removed_at',
              ])
              .where('operator_tokens.id', '=', id)
              .executeTakeFirst();
      const matches = bearerSecretMatches('op', id ?? 'op_', parsed?.secret ?? '', row?.secret_hash);
      if (
        !matches ||
        row === undefined ||
        row.revoked_at !== null ||
        !(Date.parse(row.expires_at) > clock().getTime()) ||
        row.role !== 'operator-admin' ||
        row.disabled_at !== null ||
        row.removed_at !== null
      ) {
        throw unauthenticated();
      }
      lastUse.touch(row.id);
      return { kind: 'operator-token', tokenId: row.id, personId: row.owner, scope: row.scope };
    },
    flush: () => lastUse.flush(),
  };
}
