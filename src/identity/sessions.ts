/**
 * Console sessions: server-side, looked up by a random cookie token on every request.
 *
 * Model (after lucia's session guide, OWASP Session Management Cheat Sheet):
 * - the cookie value is 32 bytes from the CSPRNG (256 bits; OWASP asks ≥ 64 bits of entropy, the
 *   issue ≥ 128), base64url; the store keeps only SHA-256 of it, so a leaked control store yields
 *   no usable cookie. A lookup is by that hash: no secret is ever compared byte by byte;
 * - a NEW token is made at every (re-)authentication and the old session revoked in the same
 *   commit: a token planted before login is never promoted (session fixation impossible);
 * - idle and absolute timeouts per side (staff 15 min / 12 h, customers 30 min / 12 h, NIST SP
 *   800-63B §7.2 and the issue); last-seen is written at most once per `touchIntervalMs`, so the
 *   idle timeout is exact to within that interval and a busy session costs one write a minute;
 * - CSRF: a second random 256-bit token per session, returned with the session and stored hashed;
 *   every state-changing request presents it in a header and it is compared in constant time.
 *   With SameSite=Strict it is defence in depth, as OWASP recommends;
 * - logout and revocation set revoked_at: the same cookie presented again is refused;
 * - the person behind a session is re-read on every lookup: a disabled or removed account, or a
 *   changed role, ends its sessions (people.ts also revokes them at once, in the same commit).
 *
 * Every refusal is the one TRESOR_ERR_UNAUTHENTICATED (or TRESOR_ERR_CSRF) and is audited, with
 * the session id when known — never a token.
 */
import type { Transaction } from 'kysely';
import { appendAuditEvent } from '../audit/event.ts';
import { markAudited } from '../audit/refusal.ts';
import { constantTimeEqual } from '../crypto/index.ts';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import {
  type AuditMeta,
  auditActorOf,
  type IdentityActor,
  identityEvent,
  type ResolvedActor,
  resolveActorIn,
} from './identity-actor.ts';
import type { IdentityDB } from './identity-store-schema.ts';
import { auditActorKind, mayManageAccount, type Side } from './roles.ts';
import type { SessionFactor, SessionPrincipal } from './session-principal.ts';
import { newId, newToken, sha256, TOKEN_BYTES } from './tokens.ts';
import { unauthenticated } from './unauthenticated.ts';

/** `__Host-`: the browser accepts it only with Secure, Path=/ and no Domain (RFC 6265bis §4.1.3.2). */
export const SESSION_COOKIE_NAME = '__Host-tresor_session';
export const SESSION_TOKEN_BYTES = TOKEN_BYTES;
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

export interface SessionTimeouts {
  idleMs: number;
  absoluteMs: number;
}

export interface SessionConfig {
  operator: SessionTimeouts;
  customer: SessionTimeouts;
  /** Write last-seen at most this often. */
  touchIntervalMs: number;
}

export const DEFAULT_SESSION_CONFIG: SessionConfig = {
  operator: { idleMs: 15 * MINUTE, absoluteMs: 12 * HOUR },
  customer: { idleMs: 30 * MINUTE, absoluteMs: 12 * HOUR },
  touchIntervalMs: MINUTE,
};

export interface SessionInfo {
  id: string;
  personId: string;
  side: Side;
  tenant: string | null;
  createdAt: string;
  lastSeenAt: string;
  idleExpiresAt: string;
  absoluteExpiresAt: string;
  revokedAt: string | null;
  factors: SessionFactor[];
  fresh2faAt: string | null;
  address: string | null;
  userAgent: string | null;
}

/** A new session: `token` goes into the cookie and `csrfToken` to the page, once. */
export interface NewSession {
  token: string;
  csrfToken: string;
  session: SessionInfo;
}

export interface CreateSessionInput {
  personId: string;
  side: Side;
  tenant: string | null;
  factors: readonly SessionFactor[];
  fresh2faAt: string | null;
  address?: string | null;
  userAgent?: string | null;
  /** Keep the absolute expiry of the session this one replaces (re-authentication). */
  absoluteExpiresAt?: string;
}

export interface CookieOptions {
  name: string;
  httpOnly: true;
  secure: true;
  sameSite: 'strict';
  path: '/';
}

export interface SessionService {
  readonly config: SessionConfig;
  /** Inside the caller's write (login, re-authentication): a new session with new tokens. */
  createIn(trx: Transaction<IdentityDB>, input: CreateSessionInput): Promise<NewSession>;
  /** The session's principal, or TRESOR_ERR_UNAUTHENTICATED (audited) for any failure. */
  authenticate(token: string, meta?: AuditMeta): Promise<SessionPrincipal>;
  /** Refuses (TRESOR_ERR_CSRF, audited) a state-changing request without this session's CSRF token. */
  verifyCsrf(principal: SessionPrincipal, csrfToken: string | undefined, meta?: AuditMeta): Promise<void>;
  /** Ends the session of this cookie; the cookie is refused from then on. */
  logout(token: string, meta?: AuditMeta): Promise<void>;
  /** Ends the caller's own session (logout from a proved session principal). */
  endSession(principal: SessionPrincipal, meta?: AuditMeta): Promise<void>;
  /** A person's live sessions, for themselves or an admin who manages them. */
  list(actor: IdentityActor, personId: string, meta?: AuditMeta): Promise<SessionInfo[]>;
  revoke(actor: IdentityActor, sessionId: string, meta?: AuditMeta): Promise<void>;
  /** Ends every session of a person; returns how many were live. */
  revokeAll(actor: IdentityActor, personId: string, meta?: AuditMeta): Promise<number>;
  /**
   * Ends every session of the caller's person but the caller's own (after a factor change, or a
   * device lost: ASVS 7.4.3); returns how many were live.
   */
  revokeOthers(principal: SessionPrincipal, meta?: AuditMeta): Promise<number>;
  /** The cookie's attributes (the HTTP layer sets them). */
  cookieOptions(): CookieOptions;
}

/** Revokes every live session of a person inside the caller's transaction; returns their ids. */
export async function revokePersonSessionsIn(
  trx: Transaction<IdentityDB>,
  personId: string,
  at: string,
  reason: string,
): Promise<string[]> {
  const live = await trx
    .selectFrom('sessions')
    .select('id')
    .where('person', '=', personId)
    .where('revoked_at', 'is', null)
    .execute();
  if (live.length > 0) {
    await trx
      .updateTable('sessions')
      .set({ revoked_at: at, revoke_reason: reason })
      .where('person', '=', personId)
      .where('revoked_at', 'is', null)
      .execute();
  }
  return live.map((r) => r.id);
}

function toInfo(row: IdentityDB['sessions']): SessionInfo {
  return {
    id: row.id,
    personId: row.person,
    side: row.side,
    tenant: row.tenant,
    createdAt: row.created_at,
    lastSeenAt: row.last_seen_at,
    idleExpiresAt: row.idle_expires_at,
    absoluteExpiresAt: row.absolute_expires_at,
    revokedAt: row.revoked_at,
    factors: JSON.parse(row.factors) as SessionFactor[],
    fresh2faAt: row.fresh_2fa_at,
    address: row.address,
    userAgent: row.user_agent,
  };
}

function checkConfig(config: SessionConfig): SessionConfig {
  for (const side of ['operator', 'customer'] as const) {
    const t = config[side];
    if (
      !Number.isSafeInteger(t.idleMs) ||
      t.idleMs <= 0 ||
      !Number.isSafeInteger(t.absoluteMs) ||
      t.absoluteMs < t.idleMs
    ) {
      throw new RangeError(`sessions: ${side} timeouts must be positive, absolute ≥ idle`);
    }
  }
  if (!Number.isSafeInteger(config.touchIntervalMs) || config.touchIntervalMs < 0) {
    throw new RangeError('sessions: touchIntervalMs');
  }
  return config;
}

function forbidden(): TresorError {
  return new TresorError('TRESOR_ERR_FORBIDDEN', 'not allowed for this account');
}

export function createSessionService(options: {
  control: Store<IdentityDB>;
  now: () => Date;
  config?: Partial<SessionConfig>;
}): SessionService {
  const { control, now } = options;
  const config = checkConfig({ ...DEFAULT_SESSION_CONFIG, ...options.config });

  async function refuse(
    reason: string,
    sessionId: string | undefined,
    meta: AuditMeta | undefined,
  ): Promise<never> {
    const at = now().toISOString();
    await control.write((trx) =>
      appendAuditEvent(
        trx,
        identityEvent(
          { kind: 'anonymous', id: 'session-cookie' },
          { at, tenant: null, action: 'auth.session', outcome: 'failure' },
          sessionId === undefined ? { reason } : { reason, sessionId },
          meta,
        ),
      ),
    );
    throw unauthenticated();
  }

  /** Whether `actor` may see and end `personId`'s sessions: themselves, or one who manages them. */
  async function mayAccess(
    trx: Transaction<IdentityDB>,
    actor: IdentityActor,
    personId: string,
  ): Promise<{ actor: ResolvedActor; tenant: string | null } | undefined> {
    const resolved = await resolveActorIn(trx, actor);
    const person = await trx
      .selectFrom('people')
      .select(['side', 'role', 'tenant'])
      .where('id', '=', personId)
      .executeTakeFirst();
    if (!resolved || !person) return undefined;
    if (resolved.personId === personId || mayManageAccount(resolved, person)) {
      return { actor: resolved, tenant: person.tenant };
    }
    return undefined;
  }

  async function deny(
    trx: Transaction<IdentityDB>,
    actor: IdentityActor,
    action: string,
    target: Record<string, unknown>,
    meta: AuditMeta | undefined,
  ): Promise<'denied'> {
    await appendAuditEvent(
      trx,
      identityEvent(
        auditActorOf(actor),
        { at: now().toISOString(), tenant: null, action, outcome: 'denied' },
        target,
        meta,
      ),
    );
    return 'denied';
  }

  return {
    config,

    async createIn(trx, input) {
      const at = now();
      const timeouts = config[input.side];
      const token = newToken();
      const csrfToken = newToken();
      const absolute = input.absoluteExpiresAt ?? new Date(at.getTime() + timeouts.absoluteMs).toISOString();
      const idle = new Date(Math.min(at.getTime() + timeouts.idleMs, Date.parse(absolute))).toISOString();
      const row: IdentityDB['sessions'] = {
        id: newId('ses'),
        token_hash: sha256(token),
        person: input.personId,
        side: input.side,
        tenant: input.tenant,
        created_at: at.toISOString(),
        last_seen_at: at.toISOString(),
        idle_expires_at: idle,
        absolute_expires_at: absolute,
        revoked_at: null,
        revoke_reason: null,
        csrf_hash: sha256(csrfToken),
        factors: JSON.stringify(input.factors),
        fresh_2fa_at: input.fresh2faAt,
        address: input.address?.slice(0, 64) ?? null,
        user_agent: input.userAgent?.slice(0, 256) ?? null,
      };
      await trx.insertInto('sessions').values(row).execute();
      return { token, csrfToken, session: toInfo(row) };
    },

    async authenticate(token, meta) {
      if (typeof token !== 'string' || !TOKEN_PATTERN.test(token))
        return refuse('malformed', undefined, meta);
      const row = await control.db
        .selectFrom('sessions')
        .innerJoin('people', 'people.id', 'sessions.person')
        .selectAll('sessions')
        .select(['people.role', 'people.disabled_at', 'people.removed_at'])
        .where('sessions.token_hash', '=', sha256(token))
        .executeTakeFirst();
      if (!row) return refuse('unknown', undefined, meta);
      const at = now();
      const t = at.getTime();
      if (row.revoked_at !== null) return refuse('revoked', row.id, meta);
      if (Date.parse(row.absolute_expires_at) <= t) return refuse('absolute-timeout', row.id, meta);
      if (Date.parse(row.idle_expires_at) <= t) return refuse('idle-timeout', row.id, meta);
      if (row.disabled_at !== null || row.removed_at !== null)
        return refuse('account-inactive', row.id, meta);
      if (t - Date.parse(row.last_seen_at) >= config.touchIntervalMs) {
        const idle = Math.min(t + config[row.side].idleMs, Date.parse(row.absolute_expires_at));
        await control.write((trx) =>
          trx
            .updateTable('sessions')
            .set({ last_seen_at: at.toISOString(), idle_expires_at: new Date(idle).toISOString() })
            .where('id', '=', row.id)
            .where('revoked_at', 'is', null)
            .execute(),
        );
      }
      return {
        kind: 'session',
        sessionId: row.id,
        personId: row.person,
        side: row.side,
        role: row.role,
        tenant: row.tenant,
        factors: JSON.parse(row.factors) as SessionFactor[],
        authenticatedAt: row.created_at,
        fresh2faAt: row.fresh_2fa_at,
      };
    },

    async verifyCsrf(principal, csrfToken, meta) {
      const row = await control.db
        .selectFrom('sessions')
        .select(['csrf_hash', 'revoked_at'])
        .where('id', '=', principal.sessionId)
        .executeTakeFirst();
      const presented = Buffer.from(sha256(typeof csrfToken === 'string' ? csrfToken : ''), 'base64url');
      const stored = Buffer.from(row?.csrf_hash ?? '', 'base64url');
      const ok =
        constantTimeEqual(
          presented,
          stored.length === presented.length ? stored : Buffer.alloc(presented.length),
        ) &&
        row !== undefined &&
        row.revoked_at === null &&
        typeof csrfToken === 'string' &&
        TOKEN_PATTERN.test(csrfToken);
      if (ok) return;
      await control.write((trx) =>
        appendAuditEvent(
          trx,
          identityEvent(
            auditActorOf(principal),
            { at: now().toISOString(), tenant: principal.tenant, action: 'auth.csrf', outcome: 'denied' },
            { sessionId: principal.sessionId, reason: csrfToken === undefined ? 'missing' : 'mismatch' },
            meta,
          ),
        ),
      );
      throw new TresorError('TRESOR_ERR_CSRF', 'missing or invalid CSRF token');
    },

    async logout(token, meta) {
      if (typeof token !== 'string' || !TOKEN_PATTERN.test(token)) return;
      const hash = sha256(token);
      await control.write(async (trx) => {
        const row = await trx
          .selectFrom('sessions')
          .innerJoin('people', 'people.id', 'sessions.person')
          .select(['sessions.id', 'sessions.person', 'sessions.tenant', 'sessions.revoked_at', 'people.role'])
          .where('sessions.token_hash', '=', hash)
          .executeTakeFirst();
        if (!row || row.revoked_at !== null) return;
        const at = now().toISOString();
        const ended = await trx
          .updateTable('sessions')
          .set({ revoked_at: at, revoke_reason: 'logout' })
          .where('id', '=', row.id)
          .where('revoked_at', 'is', null)
          .executeTakeFirst();
        if (ended.numUpdatedRows !== 1n) return; // ended by a racing request first: audited once
        await appendAuditEvent(
          trx,
          identityEvent(
            { kind: auditActorKind(row.role), id: row.person },
            { at, tenant: row.tenant, action: 'auth.logout', outcome: 'success' },
            { sessionId: row.id },
            meta,
          ),
        );
      });
    },

    async endSession(principal, meta) {
      await control.write(async (trx) => {
        const row = await trx
          .selectFrom('sessions')
          .select(['id', 'person', 'tenant', 'revoked_at'])
          .where('id', '=', principal.sessionId)
          .executeTakeFirst();
        if (!row || row.person !== principal.personId || row.revoked_at !== null) return;
        const at = now().toISOString();
        const ended = await trx
          .updateTable('sessions')
          .set({ revoked_at: at, revoke_reason: 'logout' })
          .where('id', '=', row.id)
          .where('revoked_at', 'is', null)
          .executeTakeFirst();
        if (ended.numUpdatedRows !== 1n) return; // ended by a racing request first: audited once
        await appendAuditEvent(
          trx,
          identityEvent(
            auditActorOf(principal),
            { at, tenant: row.tenant, action: 'auth.logout', outcome: 'success' },
            { sessionId: row.id },
            meta,
          ),
        );
      });
    },

    async list(actor, personId, meta) {
      const result = await control.write(async (trx) => {
        const access = await mayAccess(trx, actor, personId);
        if (!access) return deny(trx, actor, 'session.list', { personId }, meta);
        const t = now().toISOString();
        const rows = await trx
          .selectFrom('sessions')
          .selectAll()
          .where('person', '=', personId)
          .where('revoked_at', 'is', null)
          .where('idle_expires_at', '>', t)
          .where('absolute_expires_at', '>', t)
          .orderBy('created_at')
          .execute();
        return rows.map(toInfo);
      });
      if (result === 'denied') throw markAudited(forbidden());
      return result;
    },

    async revoke(actor, sessionId, meta) {
      const result = await control.write(async (trx) => {
        const row = await trx
          .selectFrom('sessions')
          .select(['id', 'person', 'tenant', 'revoked_at'])
          .where('id', '=', sessionId)
          .executeTakeFirst();
        const access = row ? await mayAccess(trx, actor, row.person) : undefined;
        if (!row || !access) return deny(trx, actor, 'session.revoke', { sessionId }, meta);
        if (row.revoked_at !== null) return 'done';
        const at = now().toISOString();
        const reason = access.actor.personId === row.person ? 'revoked-by-user' : 'revoked-by-admin';
        const revoked = await trx
          .updateTable('sessions')
          .set({ revoked_at: at, revoke_reason: reason })
          .where('id', '=', row.id)
          .where('revoked_at', 'is', null)
          .executeTakeFirst();
        if (revoked.numUpdatedRows !== 1n) return 'done'; // revoked by a racing request first
        await appendAuditEvent(
          trx,
          identityEvent(
            access.actor.audit,
            { at, tenant: row.tenant, action: 'session.revoke', outcome: 'success' },
            { sessionId: row.id, personId: row.person },
            meta,
          ),
        );
        return 'done';
      });
      if (result === 'denied') throw markAudited(forbidden());
    },

    async revokeAll(actor, personId, meta) {
      const result = await control.write(async (trx) => {
        const access = await mayAccess(trx, actor, personId);
        if (!access) return deny(trx, actor, 'session.revoke-all', { personId }, meta);
        const at = now().toISOString();
        const reason = access.actor.personId === personId ? 'revoked-by-user' : 'revoked-by-admin';
        const ids = await revokePersonSessionsIn(trx, personId, at, reason);
        await appendAuditEvent(
          trx,
          identityEvent(
            access.actor.audit,
            { at, tenant: access.tenant, action: 'session.revoke-all', outcome: 'success' },
            { personId, sessionIds: ids },
            meta,
          ),
        );
        return ids.length;
      });
      if (result === 'denied') throw markAudited(forbidden());
      return result;
    },

    async revokeOthers(principal, meta) {
      return control.write(async (trx) => {
        const at = now().toISOString();
        const others = await trx
          .selectFrom('sessions')
          .select('id')
          .where('person', '=', principal.personId)
          .where('id', '!=', principal.sessionId)
          .where('revoked_at', 'is', null)
          .execute();
        const ids = others.map((r) => r.id);
        if (ids.length > 0) {
          await trx
            .updateTable('sessions')
            .set({ revoked_at: at, revoke_reason: 'revoked-by-user' })
            .where('id', 'in', ids)
            .where('revoked_at', 'is', null)
            .execute();
        }
        await appendAuditEvent(
          trx,
          identityEvent(
            auditActorOf(principal),
            { at, tenant: principal.tenant, action: 'session.revoke-others', outcome: 'success' },
            { personId: principal.personId, sessionId: principal.sessionId, sessionIds: ids },
            meta,
          ),
        );
        return ids.length;
      });
    },

    cookieOptions() {
      return { name: SESSION_COOKIE_NAME, httpOnly: true, secure: true, sameSite: 'strict', path: '/' };
    },
  };
}
