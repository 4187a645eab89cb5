/**
 * Operator admins: the people and scripts that run a Tresor installation — create and close
 * tenants, manage staff — and never read a tenant's records (docs/architecture.md, invariant 7: their
 * principal, `operator-admin`, is not one any record route accepts).
 *
 * Two credentials:
 * - a password, for the console login (a second factor comes on top there). Passwords are low-
 *   entropy, so they are hashed with argon2id at OWASP's recommended minimum (m = 19 MiB, t = 2,
 *   p = 1; OWASP Password Storage Cheat Sheet, RFC 9106 §4), each with its own random salt;
 * - automation tokens `tresor_op_<24 hex>_<secret>`, the same 256-bit bearer secrets as API keys
 *   (see api-keys.ts for why a fast hash suffices for those).
 *
 * The first start creates a bootstrap admin with a random password and a token and returns them
 * ONCE, for the caller to write to dev-credentials.json (0600); they are stored only as hashes.
 * Every failure is the same TRESOR_ERR_UNAUTHENTICATED; an unknown e-mail is verified against a
 * dummy argon2id hash, so it takes as long as a wrong password.
 */
import { randomBytes } from 'node:crypto';
import { type Algorithm, hash as argon2Hash, verify as argon2Verify } from '@node-rs/argon2';
import type { Transaction } from 'kysely';
import { type AuditContext, appendAuditEvent, auditEventFrom } from '../audit/event.ts';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import {
  bearerSecretMatches,
  checkFutureTime,
  createLastUseRecorder,
  DEFAULT_LAST_USE_INTERVAL_MS,
  newBearerSecret,
  parseBearerToken,
  type WarningLogger,
} from './api-keys.ts';
import type { IdentityDB } from './identity-store-schema.ts';
import type { Principal } from './principal.ts';
import { unauthenticated } from './unauthenticated.ts';

/** OWASP Password Storage Cheat Sheet: argon2id, m=19456 KiB, t=2, p=1. */
export const ARGON2ID_OPTIONS = {
  algorithm: 2 as Algorithm, // Argon2id (a const enum, not importable under isolatedModules)
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
  outputLen: 32,
} as const;

/** 18 random bytes → 24 base64url characters (144 bits). */
const BOOTSTRAP_PASSWORD_BYTES = 18;
const MAX_PASSWORD_CHARS = 1024;
const EMAIL_PATTERN = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

export type OperatorPrincipal = Extract<Principal, { kind: 'operator-admin' }>;

export interface BootstrapAdmin {
  id: string;
  email: string;
  /** Shown once: write it to dev-credentials.json and forget it. */
  password: string;
  /** Shown once: an operator automation token (Bearer). */
  token: string;
}

export interface OperatorService {
  /** Creates the first operator (with a password and a token) if there is none; otherwise undefined. */
  ensureBootstrapAdmin(input: { email: string }): Promise<BootstrapAdmin | undefined>;
  verifyOperatorPassword(email: string, password: string): Promise<OperatorPrincipal>;
  authenticateOperatorToken(token: string): Promise<OperatorPrincipal>;
  /** A new automation token for an operator (audited); the token is in the result only. */
  issueOperatorToken(
    operator: string,
    input: { expiresAt?: string | null },
    context: AuditContext,
  ): Promise<{ id: string; token: string; expiresAt: string | null }>;
  revokeOperatorToken(tokenId: string, context: AuditContext): Promise<void>;
  /** Waits for pending last-use writes. */
  flush(): Promise<void>;
}

export interface OperatorServiceOptions {
  control: Store<IdentityDB>;
  clock?: () => Date;
  logger?: WarningLogger;
  lastUseIntervalMs?: number;
}

export function normaliseEmail(email: string): string {
  const e = typeof email === 'string' ? email.trim().toLowerCase() : '';
  if (!EMAIL_PATTERN.test(e)) {
    throw new TresorError('TRESOR_ERR_VALIDATION', 'email: not an e-mail address', { field: 'email' });
  }
  return e;
}

export function hashOperatorPassword(password: string): Promise<string> {
  return argon2Hash(password, ARGON2ID_OPTIONS);
}

async function insertToken(
  trx: Transaction<IdentityDB>,
  operator: string,
  expiresAt: string | null,
  now: string,
): Promise<{ id: string; token: string }> {
  const secret = newBearerSecret('op');
  await trx
    .insertInto('operator_tokens')
    .values({
      id: secret.id,
      operator,
      secret_hash: secret.hash,
      created_at: now,
      expires_at: expiresAt,
      revoked_at: null,
      last_used_at: null,
    })
    .execute();
  return { id: secret.id, token: secret.token };
}

export function createOperatorService(options: OperatorServiceOptions): OperatorService {
  const { control } = options;
  const clock = options.clock ?? (() => new Date());
  let dummyHash: Promise<string> | undefined;
  const dummy = () => {
    dummyHash ??= hashOperatorPassword(randomBytes(BOOTSTRAP_PASSWORD_BYTES).toString('base64url'));
    return dummyHash;
  };
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
    async ensureBootstrapAdmin({ email }) {
      const normalised = normaliseEmail(email);
      const any = await control.db.selectFrom('operators').select('id').limit(1).executeTakeFirst();
      if (any) return undefined;
      const password = randomBytes(BOOTSTRAP_PASSWORD_BYTES).toString('base64url');
      const passwordHash = await hashOperatorPassword(password);
      const now = clock().toISOString();
      const id = `opr_${randomBytes(12).toString('hex')}`;
      return control.write(async (trx) => {
        // Checked again inside the transaction: two starting nodes make one admin.
        const raced = await trx.selectFrom('operators').select('id').limit(1).executeTakeFirst();
        if (raced) return undefined;
        await trx
          .insertInto('operators')
          .values({ id, email: normalised, password_hash: passwordHash, created_at: now, disabled_at: null })
          .execute();
        const token = await insertToken(trx, id, null, now);
        await appendAuditEvent(
          trx,
          auditEventFrom(
            { actor: { kind: 'system', id: 'bootstrap' } },
            {
              at: now,
              tenant: null,
              action: 'operator.create',
              target: { operatorId: id, operatorTokenId: token.id, bootstrap: true },
              outcome: 'success',
            },
          ),
        );
        return { id, email: normalised, password, token: token.token };
      });
    },

    async verifyOperatorPassword(email, password) {
      let normalised: string | undefined;
      try {
        normalised = normaliseEmail(email);
      } catch {
        normalised = undefined;
      }
      const row =
        normalised === undefined
          ? undefined
          : await control.db
              .selectFrom('operators')
              .select(['id', 'password_hash', 'disabled_at'])
              .where('email', '=', normalised)
              .executeTakeFirst();
      // NFKC as passwords.ts hashes them (SP 800-63B: normalise Unicode before hashing and verifying).
      const presented =
        typeof password === 'string' && password.length <= MAX_PASSWORD_CHARS
          ? password.normalize('NFKC')
          : '';
      let ok = false;
      try {
        ok = await argon2Verify(row?.password_hash ?? (await dummy()), presented);
      } catch {
        ok = false;
      }
      if (!ok || row === undefined || row.disabled_at !== null || presented === '') throw unauthenticated();
      return { kind: 'operator-admin', id: row.id, method: 'password' };
    },

    async authenticateOperatorToken(token) {
      const parsed = parseBearerToken(token);
      const id = parsed?.kind === 'op' ? parsed.id : undefined;
      const row =
        id === undefined
          ? undefined
          : await control.db
              .selectFrom('operator_tokens')
              .innerJoin('operators', 'operators.id', 'operator_tokens.operator')
              .select([
                'operator_tokens.id',
                'operator_tokens.operator',
                'operator_tokens.secret_hash',
                'operator_tokens.expires_at',
                'operator_tokens.revoked_at',
                'operators.disabled_at',
              ])
              .where('operator_tokens.id', '=', id)
              .executeTakeFirst();
      const matches = bearerSecretMatches('op', id ?? 'op_', parsed?.secret ?? '', row?.secret_hash);
      const now = clock();
      if (
        !matches ||
        row === undefined ||
        row.revoked_at !== null ||
        row.disabled_at !== null ||
        (row.expires_at !== null && Date.parse(row.expires_at) <= now.getTime())
      ) {
        throw unauthenticated();
      }
      lastUse.touch(row.id);
      return { kind: 'operator-admin', id: row.operator, method: 'token' };
    },

    async issueOperatorToken(operator, input, context) {
      const now = clock();
      const expiresAt =
        input.expiresAt === undefined || input.expiresAt === null
          ? null
          : checkFutureTime('expiresAt', input.expiresAt, now);
      return control.write(async (trx) => {
        const row = await trx
          .selectFrom('operators')
          .select(['id', 'disabled_at'])
          .where('id', '=', operator)
          .executeTakeFirst();
        if (!row || row.disabled_at !== null)
          throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no such operator');
        const token = await insertToken(trx, operator, expiresAt, now.toISOString());
        await appendAuditEvent(
          trx,
          auditEventFrom(context, {
            at: now.toISOString(),
            tenant: null,
            action: 'operator-token.issue',
            target: { operatorId: operator, operatorTokenId: token.id },
            outcome: 'success',
          }),
        );
        return { id: token.id, token: token.token, expiresAt };
      });
    },

    async revokeOperatorToken(tokenId, context) {
      const now = clock().toISOString();
      await control.write(async (trx) => {
        const row = await trx
          .selectFrom('operator_tokens')
          .select(['id', 'operator', 'revoked_at'])
          .where('id', '=', tokenId)
          .executeTakeFirst();
        if (!row) throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no such operator token');
        if (row.revoked_at !== null) return;
        await trx.updateTable('operator_tokens').set({ revoked_at: now }).where('id', '=', tokenId).execute();
        await appendAuditEvent(
          trx,
          auditEventFrom(context, {
            at: now,
            tenant: null,
            action: 'operator-token.revoke',
            target: { operatorId: row.operator, operatorTokenId: tokenId },
            outcome: 'success',
          }),
        );
      });
    },

    flush: () => lastUse.flush(),
  };
}
