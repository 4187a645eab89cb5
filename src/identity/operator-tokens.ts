/**
 * Operator tokens: the machine credential of an installation's operators — a provisioning script
 * creating tenants, a SIEM reading the audit log, `tresor status` reading the jobs. There is no
 * all-powerful token: each has exactly ONE scope (operator-scopes.ts), a name, an owner (the
 * operator-admin person who created it, who answers for it), and a mandatory expiry (default 30
 * days, at most 90). A token stops working when it expires, is revoked, or its owner is disabled,
 * removed or no longer an operator admin (operator-token-auth.ts checks each at every request).
 *
 * Only an operator admin's console session makes, lists, rotates and revokes them (the HTTP routes
 * add a fresh second factor for create and rotate); a token can never manage tokens. The text
 * `tresor_op_<24 hex>_<secret>` is returned once, at create or rotate, and stored only as the
 * SHA-256 of api-keys.ts's bearer secrets (256 random bits: a fast hash suffices, see there).
 * Every action is audited in the commit of its change with the token id; never the secret.
 */
import type { Transaction } from 'kysely';
import { type AuditEvent, appendAuditEvent } from '../audit/event.ts';
import { markAudited } from '../audit/refusal.ts';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import { hasControlCharacter } from '../text.ts';
import { DENIED, denyIn, forbidden } from './account-access.ts';
import { invalid } from './account-input.ts';
import { newBearerSecret } from './api-keys.ts';
import { type AuditMeta, type IdentityActor, identityEvent, resolveActorIn } from './identity-actor.ts';
import type { IdentityDB } from './identity-store-schema.ts';
import { isOperatorScope, OPERATOR_SCOPES, type OperatorScope } from './operator-scopes.ts';

const DAY_MS = 86_400_000;
export const DEFAULT_TOKEN_DAYS = 30;
export const MAX_TOKEN_DAYS = 90;
export const MAX_TOKEN_NAME_CHARS = 64;

export interface OperatorTokenInfo {
  id: string;
  scope: OperatorScope;
  name: string;
  /** The operator-admin person who created (or last rotated) it. */
  owner: string;
  createdAt: string;
  expiresAt: string;
  revokedAt: string | null;
  lastUsedAt: string | null;
}

/** A new token: its text appears here once and is stored nowhere. */
export interface IssuedOperatorToken {
  id: string;
  token: string;
  scope: OperatorScope;
  name: string;
  owner: string;
  createdAt: string;
  expiresAt: string;
}

export interface CreateOperatorTokenInput {
  scope: string;
  name: string;
  /** Whole days, 1–90; default 30. */
  expiresInDays?: number;
}

export interface OperatorTokenService {
  /** A token owned by the acting operator admin (a console session). Audited `operator-token.create`. */
  create(by: IdentityActor, input: CreateOperatorTokenInput, meta?: AuditMeta): Promise<IssuedOperatorToken>;
  /**
   * A token for `owner` (an operator-admin person) made by a system job, e.g. `tresor dev`'s
   * short-lived token for the README. `lifetimeMs` at most 90 days.
   */
  issue(
    job: string,
    input: { owner: string; scope: OperatorScope; name: string; lifetimeMs: number },
  ): Promise<IssuedOperatorToken>;
  /** Every token of the installation, without secrets or hashes. Audited `operator-token.list`. */
  list(by: IdentityActor, meta?: AuditMeta): Promise<OperatorTokenInfo[]>;
  /**
   * A new token with the old one's scope and name and a fresh expiry of its original length, owned
   * by the rotating admin; the old one is revoked in the same commit. Audited `operator-token.rotate`.
   */
  rotate(by: IdentityActor, tokenId: string, meta?: AuditMeta): Promise<IssuedOperatorToken>;
  /** Revokes a token (idempotent); NOT_FOUND for an unknown id. Audited `operator-token.revoke`. */
  revoke(by: IdentityActor, tokenId: string, meta?: AuditMeta): Promise<void>;
}

export interface OperatorTokenServiceOptions {
  control: Store<IdentityDB>;
  now: () => Date;
}

function checkName(name: unknown): string {
  if (
    typeof name !== 'string' ||
    name.trim() === '' ||
    name.length > MAX_TOKEN_NAME_CHARS ||
    hasControlCharacter(name)
  ) {
    throw invalid('name', `1-${MAX_TOKEN_NAME_CHARS} printable characters`);
  }
  return name;
}

function checkScope(scope: unknown): OperatorScope {
  if (!isOperatorScope(scope)) throw invalid('scope', `one of ${OPERATOR_SCOPES.join(', ')}`);
  return scope;
}

function checkDays(days: unknown): number {
  if (days === undefined) return DEFAULT_TOKEN_DAYS;
  if (typeof days !== 'number' || !Number.isInteger(days) || days < 1 || days > MAX_TOKEN_DAYS)
    throw invalid('expiresInDays', `a whole number of days, 1-${MAX_TOKEN_DAYS}`);
  return days;
}

function infoOf(row: IdentityDB['operator_tokens']): OperatorTokenInfo {
  return {
    id: row.id,
    scope: row.scope,
    name: row.name,
    owner: row.owner,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    lastUsedAt: row.last_used_at,
  };
}

export function createOperatorTokenService(options: OperatorTokenServiceOptions): OperatorTokenService {
  const { control, now } = options;

  /** Inserts a token and its audit event; the caller has checked who may. */
  async function insertIn(
    trx: Transaction<IdentityDB>,
    input: { owner: string; scope: OperatorScope; name: string; lifetimeMs: number },
    audit: { actor: AuditEvent['actor']; action: string; target?: Record<string, unknown> },
    meta: AuditMeta | undefined,
  ): Promise<IssuedOperatorToken> {
    const at = now();
    const secret = newBearerSecret('op');
    const row: IdentityDB['operator_tokens'] = {
      id: secret.id,
      owner: input.owner,
      scope: input.scope,
      name: input.name,
      secret_hash: secret.hash,
      created_at: at.toISOString(),
      expires_at: new Date(at.getTime() + input.lifetimeMs).toISOString(),
      revoked_at: null,
      last_used_at: null,
    };
    await trx.insertInto('operator_tokens').values(row).execute();
    await appendAuditEvent(
      trx,
      identityEvent(
        audit.actor,
        { at: row.created_at, tenant: null, action: audit.action, outcome: 'success' },
        {
          ...audit.target,
          operatorTokenId: row.id,
          scope: row.scope,
          name: row.name,
          owner: row.owner,
          expiresAt: row.expires_at,
        },
        meta,
      ),
    );
    return {
      id: row.id,
      token: secret.token,
      scope: row.scope,
      name: row.name,
      owner: row.owner,
      createdAt: row.created_at,
      expiresAt: row.expires_at,
    };
  }

  /** The acting operator admin as the store knows them now, or the refusal audited. */
  async function operatorAdminIn(
    trx: Transaction<IdentityDB>,
    by: IdentityActor,
    action: string,
    target: Record<string, unknown>,
    meta: AuditMeta | undefined,
  ) {
    const resolved = await resolveActorIn(trx, by);
    if (resolved?.role === 'operator-admin' && resolved.personId !== null && by.kind === 'session')
      return { personId: resolved.personId, audit: resolved.audit };
    return denyIn(trx, now, by, action, target, meta);
  }

  /** Runs a write that may refuse; a refusal is thrown after its audit event committed. */
  async function guarded<T>(work: (trx: Transaction<IdentityDB>) => Promise<T | typeof DENIED>): Promise<T> {
    const result = await control.write(work);
    if (result === DENIED) throw markAudited(forbidden());
    return result;
  }

  return {
    async create(by, input, meta) {
      const scope = checkScope(input.scope);
      const name = checkName(input.name);
      const days = checkDays(input.expiresInDays);
      return guarded(async (trx) => {
        const admin = await operatorAdminIn(trx, by, 'operator-token.create', { scope }, meta);
        if (admin === DENIED) return DENIED;
        return insertIn(
          trx,
          { owner: admin.personId, scope, name, lifetimeMs: days * DAY_MS },
          { actor: admin.audit, action: 'operator-token.create' },
          meta,
        );
      });
    },

    async issue(job, input) {
      const scope = checkScope(input.scope);
      const name = checkName(input.name);
      if (
        !Number.isInteger(input.lifetimeMs) ||
        input.lifetimeMs <= 0 ||
        input.lifetimeMs > MAX_TOKEN_DAYS * DAY_MS
      )
        throw invalid('lifetimeMs', `at most ${MAX_TOKEN_DAYS} days`);
      return control.write(async (trx) => {
        const owner = await trx
          .selectFrom('people')
          .select(['role', 'disabled_at', 'removed_at'])
          .where('id', '=', input.owner)
          .executeTakeFirst();
        if (owner?.role !== 'operator-admin' || owner.disabled_at !== null || owner.removed_at !== null)
          throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no such operator admin');
        return insertIn(
          trx,
          { owner: input.owner, scope, name, lifetimeMs: input.lifetimeMs },
          { actor: { kind: 'system', id: job }, action: 'operator-token.create' },
          undefined,
        );
      });
    },

    async list(by, meta) {
      return guarded(async (trx) => {
        const admin = await operatorAdminIn(trx, by, 'operator-token.list', {}, meta);
        if (admin === DENIED) return DENIED;
        const rows = await trx
          .selectFrom('operator_tokens')
          .selectAll()
          .orderBy('created_at')
          .orderBy('id')
          .execute();
        await appendAuditEvent(
          trx,
          identityEvent(
            admin.audit,
            { at: now().toISOString(), tenant: null, action: 'operator-token.list', outcome: 'success' },
            { count: rows.length },
            meta,
          ),
        );
        return rows.map(infoOf);
      });
    },

    async rotate(by, tokenId, meta) {
      return guarded(async (trx) => {
        const admin = await operatorAdminIn(
          trx,
          by,
          'operator-token.rotate',
          { operatorTokenId: tokenId },
          meta,
        );
        if (admin === DENIED) return DENIED;
        const old = await trx
          .selectFrom('operator_tokens')
          .selectAll()
          .where('id', '=', tokenId)
          .executeTakeFirst();
        if (!old) throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no such operator token');
        if (old.revoked_at !== null) throw new TresorError('TRESOR_ERR_CONFLICT', 'the token is revoked');
        const lifetimeMs = Math.min(
          Math.max(Date.parse(old.expires_at) - Date.parse(old.created_at), 1),
          MAX_TOKEN_DAYS * DAY_MS,
        );
        await trx
          .updateTable('operator_tokens')
          .set({ revoked_at: now().toISOString() })
          .where('id', '=', tokenId)
          .execute();
        return insertIn(
          trx,
          { owner: admin.personId, scope: old.scope, name: old.name, lifetimeMs },
          { actor: admin.audit, action: 'operator-token.rotate', target: { rotatedFrom: tokenId } },
          meta,
        );
      });
    },

    async revoke(by, tokenId, meta) {
      await guarded(async (trx) => {
        const admin = await operatorAdminIn(
          trx,
          by,
          'operator-token.revoke',
          { operatorTokenId: tokenId },
          meta,
        );
        if (admin === DENIED) return DENIED;
        const row = await trx
          .selectFrom('operator_tokens')
          .select(['id', 'owner', 'revoked_at'])
          .where('id', '=', tokenId)
          .executeTakeFirst();
        if (!row) throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no such operator token');
        const at = now().toISOString();
        if (row.revoked_at === null)
          await trx
            .updateTable('operator_tokens')
            .set({ revoked_at: at })
            .where('id', '=', tokenId)
            .execute();
        await appendAuditEvent(
          trx,
          identityEvent(
            admin.audit,
            { at, tenant: null, action: 'operator-token.revoke', outcome: 'success' },
            {
              operatorTokenId: tokenId,
              owner: row.owner,
              ...(row.revoked_at !== null ? { alreadyRevoked: true } : {}),
            },
            meta,
          ),
        );
        return undefined;
      });
    },
  };
}
