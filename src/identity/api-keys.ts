/**
 * Tenant API keys: the application's credential for one tenant's records.
 *
 * Model. A key is `tresor_<keyId>_<secret>`: keyId (`ak_<24 hex>`) is public and finds the row;
 * secret is 32 random bytes, base64url (256 bits, well above the 128 the issue asks). The token is
 * returned once, at issue; the control store keeps only SHA-256("tresor-api-key/v1" ‖ 0 ‖ keyId ‖
 * 0 ‖ secret). A fast hash is enough here, unlike for passwords: a slow hash (argon2) exists to make
 * guessing low-entropy secrets expensive, and nobody can enumerate 2^256 secrets at any speed, so
 * a leaked hash gives nothing; slowness would only cost every request. Binding keyId into the hash
 * means a row's hash cannot be moved to another key id.
 *
 * Authentication fails with ONE error (TRESOR_ERR_UNAUTHENTICATED, one message) whatever went
 * wrong — unknown id, wrong secret, revoked, expired, tenant not active — and an unknown id is
 * compared against a dummy hash, so neither the answer nor the work done tells which.
 * Hashes are compared in constant time.
 *
 * Last use is recorded at most once per key per interval (default one minute), fire-and-forget,
 * so authentication does not cost a durable write per request; a failed update is logged, never
 * fails the request (it is bookkeeping, not audit — the request's own audit entry is that).
 *
 * Principal cache. A successful authentication is remembered for a short time (default 5 s,
 * `principalCacheMs`, 0 turns it off) so a busy key does not cost a control-store query per request.
 * Entries are keyed by SHA-256 of the whole token — the token itself is never kept — and hold only
 * what the principal needs plus the key's expiresAt, which is checked against the clock on every
 * hit, so an expiring key is refused at exactly the same instant as without the cache. At most
 * 10,000 entries (least recently used dropped first). Failed authentications are never cached:
 * every refusal does the same lookup and hash work. revoke() and forgetTenant() (called when a
 * tenant is closed) drop the affected entries in this process at once, and an authentication that
 * was already in flight when they ran does not put its (possibly outdated) answer into the cache.
 * Another server process over the same control store keeps its own cache: revoke() calls
 * `onRevoked` once its change committed, and the server tells the other processes (PostgreSQL:
 * NOTIFY, src/server/backend.ts), which call forgetKey() / forgetTenant(); should that notice be
 * lost, the process still accepts a revoked key, or a key of a tenant just closed, for at most the
 * TTL after the revocation commits.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Transaction } from 'kysely';
import { type AuditContext, appendAuditEvent, auditEventFrom } from '../audit/event.ts';
import { constantTimeEqual } from '../crypto/index.ts';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import { hasControlCharacter } from '../text.ts';
import type { TenantApiKeys } from '../vault/tenants.ts';
import type { IdentityDB } from './identity-store-schema.ts';
import type { ApiKeyAccess, Principal } from './principal.ts';
import { unauthenticated } from './unauthenticated.ts';

export const API_KEY_ACCESS: readonly ApiKeyAccess[] = ['read', 'write', 'admin'];

/** 32 bytes = 256 bits of secret per token. */
export const BEARER_SECRET_BYTES = 32;
const BEARER_SECRET_CHARS = 43; // base64url of 32 bytes, unpadded
const ID_HEX_CHARS = 24; // 96 random bits: ids need only be unique, the secret carries the security
const MAX_TOKEN_CHARS = 200;
const TOKEN_PATTERN = /^tresor_(ak|op)_([0-9a-f]{24})_([A-Za-z0-9_-]{43})$/;
const COLLECTION_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_COLLECTIONS = 100;
const MAX_LABEL_CHARS = 100;
export const DEFAULT_LAST_USE_INTERVAL_MS = 60_000;

/** Where failures of background bookkeeping go (a pino logger fits). */
export interface WarningLogger {
  warn(details: object, message: string): void;
}

const consoleLogger: WarningLogger = {
  warn: (details, message) => console.error(message, details),
};

// --- bearer secrets (shared with operator tokens) ---------------------------------------------------

export type BearerKind = 'ak' | 'op';

export interface BearerSecret {
  kind: BearerKind;
  /** The row id, `<kind>_<24 hex>`. */
  id: string;
  /** The text handed out once: `tresor_<id>_<secret>`. */
  token: string;
  /** The stored form. */
  hash: string;
}

/** A fresh id, secret, token and hash. The secret exists only inside `token`. */
export function newBearerSecret(kind: BearerKind): BearerSecret {
  const id = `${kind}_${randomBytes(ID_HEX_CHARS / 2).toString('hex')}`;
  const secret = randomBytes(BEARER_SECRET_BYTES).toString('base64url');
  return { kind, id, token: `tresor_${id}_${secret}`, hash: hashBearerSecret(kind, id, secret) };
}

/** Splits a token into kind, id and secret; undefined when it is not one of ours. */
export function parseBearerToken(
  token: string,
): { kind: BearerKind; id: string; secret: string } | undefined {
  if (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS) return undefined;
  const m = TOKEN_PATTERN.exec(token);
  if (!m?.[1] || !m[2] || !m[3] || m[3].length !== BEARER_SECRET_CHARS) return undefined;
  const kind = m[1] as BearerKind;
  return { kind, id: `${kind}_${m[2]}`, secret: m[3] };
}

const HASH_LABEL: Record<BearerKind, string> = { ak: 'tresor-api-key/v1', op: 'tresor-operator-token/v1' };

export function hashBearerSecret(kind: BearerKind, id: string, secret: string): string {
  return createHash('sha256')
    .update(HASH_LABEL[kind], 'utf8')
    .update(Buffer.of(0))
    .update(id, 'utf8')
    .update(Buffer.of(0))
    .update(secret, 'utf8')
    .digest('base64url');
}

/** Stands in for the stored hash of an unknown id, so an unknown id costs the same hash and compare. */
const DUMMY_HASH = Buffer.from(
  hashBearerSecret('ak', 'ak_000000000000000000000000', randomBytes(32).toString('base64url')),
  'base64url',
);

/** Hashes the presented secret and compares it in constant time with the stored hash (or a dummy). */
export function bearerSecretMatches(
  kind: BearerKind,
  id: string,
  secret: string,
  storedHash: string | undefined,
): boolean {
  const presented = Buffer.from(hashBearerSecret(kind, id, secret), 'base64url');
  const stored = storedHash === undefined ? DUMMY_HASH : Buffer.from(storedHash, 'base64url');
  const equal = constantTimeEqual(presented, stored.length === presented.length ? stored : DUMMY_HASH);
  return equal && storedHash !== undefined;
}

export interface LastUseRecorder {
  /** Notes a use now; writes it only if the last write for this id is older than the interval. */
  touch(id: string): void;
  /** Resolves once every write started so far has settled. */
  flush(): Promise<void>;
}

export function createLastUseRecorder(options: {
  write: (id: string, at: string) => Promise<unknown>;
  intervalMs: number;
  clock: () => Date;
  logger: WarningLogger;
  what: string;
}): LastUseRecorder {
  const lastWritten = new Map<string, number>();
  const pending = new Set<Promise<unknown>>();
  return {
    touch(id) {
      const now = options.clock();
      const last = lastWritten.get(id);
      if (last !== undefined && now.getTime() - last < options.intervalMs) return;
      if (lastWritten.size >= 10_000) {
        for (const [k, t] of lastWritten) if (now.getTime() - t >= options.intervalMs) lastWritten.delete(k);
      }
      lastWritten.set(id, now.getTime());
      const write = options.write(id, now.toISOString()).catch((error: unknown) => {
        lastWritten.delete(id);
        options.logger.warn(
          { id, code: (error as { code?: unknown })?.code },
          `could not record last use of ${options.what}`,
        );
      });
      pending.add(write);
      void write.finally(() => pending.delete(write));
    },
    async flush() {
      await Promise.allSettled([...pending]);
    },
  };
}

// --- API keys ---------------------------------------------------------------------------------------

export type ApiKeyPrincipal = Extract<Principal, { kind: 'api-key' }>;

export interface ApiKeyInfo {
  id: string;
  tenant: string;
  collections: '*' | string[];
  access: ApiKeyAccess[];
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
  label: string | null;
}

export interface IssueApiKeyInput {
  tenant: string;
  collections: '*' | readonly string[];
  access: readonly ApiKeyAccess[];
  /** ISO 8601 time after which the key is refused; null or absent: no expiry. */
  expiresAt?: string | null;
  label?: string | null;
}

/** The issued key: its token appears here once and is stored nowhere. */
export interface IssuedApiKey extends ApiKeyInfo {
  token: string;
}

function invalid(field: string, message: string): TresorError {
  return new TresorError('TRESOR_ERR_VALIDATION', `${field}: ${message}`, { field });
}

function checkIssueInput(input: IssueApiKeyInput, now: Date) {
  let collections: '*' | string[];
  if (input.collections === '*') collections = '*';
  else if (
    Array.isArray(input.collections) &&
    input.collections.length > 0 &&
    input.collections.length <= MAX_COLLECTIONS &&
    input.collections.every((c) => typeof c === 'string' && COLLECTION_PATTERN.test(c))
  ) {
    collections = [...new Set(input.collections)].sort();
  } else {
    throw invalid('collections', `'*' or 1-${MAX_COLLECTIONS} collection names`);
  }
  if (
    !Array.isArray(input.access) ||
    input.access.length === 0 ||
    !input.access.every((a) => API_KEY_ACCESS.includes(a))
  ) {
    throw invalid('access', 'a non-empty subset of read, write, admin');
  }
  const access = API_KEY_ACCESS.filter((a) => input.access.includes(a));
  let expiresAt: string | null = null;
  if (input.expiresAt !== undefined && input.expiresAt !== null) {
    expiresAt = checkFutureTime('expiresAt', input.expiresAt, now);
  }
  let label: string | null = null;
  if (input.label !== undefined && input.label !== null) {
    if (
      typeof input.label !== 'string' ||
      input.label.length > MAX_LABEL_CHARS ||
      hasControlCharacter(input.label)
    ) {
      throw invalid('label', `at most ${MAX_LABEL_CHARS} printable characters`);
    }
    label = input.label;
  }
  return { collections, access, expiresAt, label };
}

/** An RFC 3339 timestamp after `now`, normalised to UTC ISO form. */
export function checkFutureTime(field: string, value: unknown, now: Date): string {
  const ms = typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(value) ? Date.parse(value) : Number.NaN;
  if (!Number.isFinite(ms)) throw invalid(field, 'an RFC 3339 date-time');
  if (ms <= now.getTime()) throw invalid(field, 'must be in the future');
  return new Date(ms).toISOString();
}

function toInfo(row: IdentityDB['api_keys']): ApiKeyInfo {
  return {
    id: row.id,
    tenant: row.tenant,
    collections: JSON.parse(row.collections) as '*' | string[],
    access: JSON.parse(row.access) as ApiKeyAccess[],
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    lastUsedAt: row.last_used_at,
    label: row.label,
  };
}

/**
 * Inserts a new key inside the caller's transaction (the caller checks the tenant and audits):
 * tenant provisioning issues the first key in the same commit that makes the tenant active.
 */
export async function insertApiKey(
  trx: Transaction<IdentityDB>,
  input: IssueApiKeyInput,
  now: Date,
): Promise<IssuedApiKey> {
  const checked = checkIssueInput(input, now);
  const secret = newBearerSecret('ak');
  const row: IdentityDB['api_keys'] = {
    id: secret.id,
    tenant: input.tenant,
    secret_hash: secret.hash,
    collections: JSON.stringify(checked.collections),
    access: JSON.stringify(checked.access),
    created_at: now.toISOString(),
    expires_at: checked.expiresAt,
    revoked_at: null,
    last_used_at: null,
    label: checked.label,
  };
  await trx.insertInto('api_keys').values(row).execute();
  return { ...toInfo(row), token: secret.token };
}

/** Revokes every live key of a tenant inside the caller's transaction; returns the ids revoked. */
export async function revokeTenantApiKeys(
  trx: Transaction<IdentityDB>,
  tenant: string,
  at: string,
): Promise<string[]> {
  const live = await trx
    .selectFrom('api_keys')
    .select('id')
    .where('tenant', '=', tenant)
    .where('revoked_at', 'is', null)
    .execute();
  if (live.length > 0) {
    await trx
      .updateTable('api_keys')
      .set({ revoked_at: at })
      .where('tenant', '=', tenant)
      .where('revoked_at', 'is', null)
      .execute();
  }
  return live.map((r) => r.id);
}

/** The tenant service's keys (src/vault/tenants.ts): the first one at activation, all revoked at close. */
export const tenantApiKeys: TenantApiKeys<IdentityDB> = {
  issueFirstIn: (trx, tenant, now) =>
    insertApiKey(
      trx,
      { tenant, collections: '*', access: ['read', 'write', 'admin'], label: 'first key' },
      now,
    ),
  revokeAllIn: revokeTenantApiKeys,
};

async function requireActiveTenant(trx: Transaction<IdentityDB>, tenant: string): Promise<void> {
  const row = await trx.selectFrom('tenants').select('state').where('id', '=', tenant).executeTakeFirst();
  if (!row) throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no such tenant');
  if (row.state !== 'active') {
    throw new TresorError('TRESOR_ERR_TENANT_STATE', `tenant is ${row.state}`, { state: row.state });
  }
}

export interface ApiKeyService {
  /** Issues a key for an active tenant (audited: `api-key.issue`); the token is in the result only. */
  issue(input: IssueApiKeyInput, context: AuditContext): Promise<IssuedApiKey>;
  /** The tenant's keys, revoked and expired ones included; never a secret or a hash. */
  list(tenant: string): Promise<ApiKeyInfo[]>;
  /** Revokes one key (audited: `api-key.revoke`); revoking a revoked key changes nothing. */
  revoke(tenant: string, keyId: string, context: AuditContext): Promise<ApiKeyInfo>;
  /** The key's principal, or TRESOR_ERR_UNAUTHENTICATED for any failure. */
  authenticate(token: string): Promise<ApiKeyPrincipal>;
  /** Drops the cached principals of a tenant's keys (the tenant was closed or is closing). */
  forgetTenant(tenant: string): void;
  /** Drops the cached principal of one key (another process revoked it). */
  forgetKey(keyId: string): void;
  /** Waits for pending last-use writes (tests, shutdown). */
  flush(): Promise<void>;
}

export const DEFAULT_PRINCIPAL_CACHE_MS = 5_000;
export const PRINCIPAL_CACHE_MAX_ENTRIES = 10_000;

interface CachedPrincipal {
  tenant: string;
  keyId: string;
  collections: '*' | readonly string[];
  access: readonly ApiKeyAccess[];
  /** expiresAt of the key in ms, or Infinity. */
  keyExpiresAt: number;
  /** When this entry stops being used (clock ms). */
  cachedUntil: number;
}

export interface ApiKeyServiceOptions {
  control: Store<IdentityDB>;
  clock?: () => Date;
  logger?: WarningLogger;
  /** Record a key's last use at most this often (default 60 000 ms). */
  lastUseIntervalMs?: number;
  /** Remember a successful authentication this long (default 5 000 ms; 0: no cache). */
  principalCacheMs?: number;
  /** Most cached principals (default 10 000). */
  principalCacheMaxEntries?: number;
  /** A key's revocation committed (to tell the other server processes; never fails the revoke). */
  onRevoked?: (tenant: string, keyId: string) => void;
}

export function createApiKeyService(options: ApiKeyServiceOptions): ApiKeyService {
  const { control } = options;
  const clock = options.clock ?? (() => new Date());
  const lastUse = createLastUseRecorder({
    write: (id, at) =>
      control.write((trx) =>
        trx
          .updateTable('api_keys')
          .set({ last_used_at: at })
          .where('id', '=', id)
          .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', at)]))
          .execute(),
      ),
    intervalMs: options.lastUseIntervalMs ?? DEFAULT_LAST_USE_INTERVAL_MS,
    clock,
    logger: options.logger ?? consoleLogger,
    what: 'an API key',
  });

  const cacheMs = options.principalCacheMs ?? DEFAULT_PRINCIPAL_CACHE_MS;
  if (!Number.isFinite(cacheMs) || cacheMs < 0) throw new RangeError('principalCacheMs must be >= 0');
  const cacheMax = options.principalCacheMaxEntries ?? PRINCIPAL_CACHE_MAX_ENTRIES;
  if (!Number.isSafeInteger(cacheMax) || cacheMax < 1) {
    throw new RangeError('principalCacheMaxEntries must be a positive integer');
  }
  /** SHA-256(token) → principal; Map order is least recently used first. */
  const cache = new Map<string, CachedPrincipal>();
  /** Bumped by every invalidation: an authentication that saw another value does not cache. */
  let generation = 0;
  const cacheKey = (token: string) => createHash('sha256').update(token, 'utf8').digest('base64url');
  const principalOf = (c: CachedPrincipal): ApiKeyPrincipal => ({
    kind: 'api-key',
    tenant: c.tenant,
    keyId: c.keyId,
    collections: c.collections,
    access: new Set(c.access),
  });
  const forget = (match: (c: CachedPrincipal) => boolean) => {
    generation++;
    for (const [k, c] of cache) if (match(c)) cache.delete(k);
  };

  return {
    async issue(input, context) {
      const now = clock();
      return control.write(async (trx) => {
        await requireActiveTenant(trx, input.tenant);
        const issued = await insertApiKey(trx, input, now);
        await appendAuditEvent(
          trx,
          auditEventFrom(context, {
            at: now.toISOString(),
            tenant: input.tenant,
            action: 'api-key.issue',
            target: { apiKeyId: issued.id, collections: issued.collections, access: issued.access },
            outcome: 'success',
          }),
        );
        return issued;
      });
    },

    async list(tenant) {
      const rows = await control.db
        .selectFrom('api_keys')
        .selectAll()
        .where('tenant', '=', tenant)
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      return rows.map(toInfo);
    },

    async revoke(tenant, keyId, context) {
      const now = clock();
      // Before (no authentication in flight caches its answer) and after the commit (no entry survives it).
      forget((c) => c.keyId === keyId);
      const info = await control.write(async (trx) => {
        const row = await trx
          .selectFrom('api_keys')
          .selectAll()
          .where('id', '=', keyId)
          .where('tenant', '=', tenant)
          .executeTakeFirst();
        if (!row) throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no such API key');
        if (row.revoked_at !== null) return toInfo(row);
        const at = now.toISOString();
        await trx.updateTable('api_keys').set({ revoked_at: at }).where('id', '=', keyId).execute();
        await appendAuditEvent(
          trx,
          auditEventFrom(context, {
            at,
            tenant,
            action: 'api-key.revoke',
            target: { apiKeyId: keyId },
            outcome: 'success',
          }),
        );
        return toInfo({ ...row, revoked_at: at });
      });
      forget((c) => c.keyId === keyId);
      try {
        options.onRevoked?.(tenant, keyId);
      } catch {
        // telling others is best effort: their cache's TTL bounds what a lost notice costs
      }
      return info;
    },

    forgetTenant(tenant) {
      forget((c) => c.tenant === tenant);
    },

    forgetKey(keyId) {
      forget((c) => c.keyId === keyId);
    },

    async authenticate(token) {
      const key = cacheMs > 0 && typeof token === 'string' ? cacheKey(token) : undefined;
      if (key !== undefined) {
        const hit = cache.get(key);
        if (hit !== undefined) {
          const now = clock().getTime();
          if (now < hit.cachedUntil && now < hit.keyExpiresAt) {
            cache.delete(key);
            cache.set(key, hit);
            lastUse.touch(hit.keyId);
            return principalOf(hit);
          }
          cache.delete(key);
        }
      }
      const seen = generation;
      const parsed = parseBearerToken(token);
      const id = parsed?.kind === 'ak' ? parsed.id : undefined;
      const row =
        id === undefined
          ? undefined
          : await control.db
              .selectFrom('api_keys')
              .innerJoin('tenants', 'tenants.id', 'api_keys.tenant')
              .select([
                'api_keys.id',
                'api_keys.tenant',
                'api_keys.secret_hash',
                'api_keys.collections',
                'api_keys.access',
                'api_keys.expires_at',
                'api_keys.revoked_at',
                'tenants.state as tenantState',
              ])
              .where('api_keys.id', '=', id)
              .executeTakeFirst();
      const matches = bearerSecretMatches('ak', id ?? 'ak_', parsed?.secret ?? '', row?.secret_hash);
      const now = clock();
      if (
        !matches ||
        row === undefined ||
        row.revoked_at !== null ||
        (row.expires_at !== null && Date.parse(row.expires_at) <= now.getTime()) ||
        row.tenantState !== 'active'
      ) {
        throw unauthenticated();
      }
      lastUse.touch(row.id);
      const collections = JSON.parse(row.collections) as '*' | string[];
      const entry: CachedPrincipal = {
        tenant: row.tenant,
        keyId: row.id,
        collections: collections === '*' ? '*' : Object.freeze([...collections]),
        access: Object.freeze(JSON.parse(row.access) as ApiKeyAccess[]),
        keyExpiresAt: row.expires_at === null ? Number.POSITIVE_INFINITY : Date.parse(row.expires_at),
        cachedUntil: now.getTime() + cacheMs,
      };
      // Not when a revocation ran while the row was being read: its answer may be outdated.
      if (key !== undefined && seen === generation) {
        if (cache.size >= cacheMax) {
          const oldest = cache.keys().next();
          if (!oldest.done) cache.delete(oldest.value);
        }
        cache.set(key, entry);
      }
      return principalOf(entry);
    },

    flush: () => lastUse.flush(),
  };
}
