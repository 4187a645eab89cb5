/**
 * The words and limits of a grant request, defined once: the HTTP schema (src/http/routes/access.ts)
 * states the same bounds the service enforces here, so the published API and the server agree.
 */
import type { TresorError } from '../errors.ts';
import { hasControlCharacter } from '../text.ts';
import { isValidName } from '../vault/schema.ts';
import { invalid } from './access-errors.ts';
import {
  APPROVAL_POLICIES,
  type ApprovalPolicy,
  GRANT_ACCESSES,
  type GrantAccess,
} from './access-store-schema.ts';

export {
  APPROVAL_POLICIES,
  type ApprovalPolicy,
  GRANT_ACCESSES,
  GRANT_STATES,
  type GrantAccess,
  type GrantState,
} from './access-store-schema.ts';

export const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
export const DEFAULT_GRANT_DURATION_MS = 60 * MINUTE;
export const MAX_GRANT_DURATION_MS = 8 * HOUR;
/**
 * The longest grant any configuration allows, in minutes: the top of the range that
 * src/config/server-config.ts accepts for access.maxGrantMinutes (7 days). The HTTP schema's bound;
 * the configured maximum (480 minutes by default) is enforced by checkRequest.
 */
export const GRANT_MINUTES_CEILING = 7 * 24 * 60;
export const DEFAULT_REQUEST_TTL_MS = 72 * HOUR;
export const REASON_MIN_CHARS = 10;
export const REASON_MAX_CHARS = 500;
export const MAX_GRANT_COLLECTIONS = 64;
/** A ticket reference: letters, digits and a few separators (`SUP-1234`, `jira:OPS#77`), 1–100 chars. */
export const TICKET_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:#/-]{0,99}$/;
export const TICKET_MAX_CHARS = 100;
export const GRANT_ID_PATTERN = /^grt_[0-9a-f]{24}$/;
export const PERSON_ID_PATTERN = /^psn_[0-9a-f]{24}$/;

/** The system actor of grant work nobody asked for (expiry, grants ended with an account). */
export const GRANTS_SYSTEM_ACTOR = { kind: 'system', id: 'grants' } as const;

export interface GrantRequestInput {
  tenant: string;
  collections: '*' | string[];
  access: GrantAccess;
  reason: string;
  ticket: string;
  durationMinutes?: number;
}

export interface GrantConfig {
  /** When a request names no duration (60 min). */
  defaultDurationMs: number;
  /** The hard maximum; a longer request is refused (8 h). */
  maxDurationMs: number;
  /** A tenant without a policy of its own ('customer'). */
  defaultPolicy: ApprovalPolicy;
  /** A request must be decided, and an approved grant activated, within this (72 h). */
  requestTtlMs: number;
}

export const DEFAULT_GRANT_CONFIG: GrantConfig = {
  defaultDurationMs: DEFAULT_GRANT_DURATION_MS,
  maxDurationMs: MAX_GRANT_DURATION_MS,
  defaultPolicy: 'customer',
  requestTtlMs: DEFAULT_REQUEST_TTL_MS,
};

export interface CheckedRequest {
  tenant: string;
  collections: '*' | string[];
  access: GrantAccess;
  reason: string;
  ticket: string;
  durationMs: number;
}

export function checkRequest(input: unknown, config: GrantConfig): CheckedRequest | TresorError {
  if (typeof input !== 'object' || input === null) return invalid('body', 'an object');
  const i = input as Record<string, unknown>;
  if (typeof i.tenant !== 'string' || i.tenant.length < 1 || i.tenant.length > 64)
    return invalid('tenant', 'a tenant id');
  let collections: '*' | string[];
  if (i.collections === '*') collections = '*';
  else if (
    Array.isArray(i.collections) &&
    i.collections.length >= 1 &&
    i.collections.length <= MAX_GRANT_COLLECTIONS &&
    i.collections.every(isValidName) &&
    new Set(i.collections).size === i.collections.length
  )
    collections = [...(i.collections as string[])];
  else return invalid('collections', `"*" or 1–${MAX_GRANT_COLLECTIONS} distinct collection names`);
  if (!(GRANT_ACCESSES as readonly unknown[]).includes(i.access))
    return invalid('access', `one of ${GRANT_ACCESSES.join(', ')}`);
  const reason = typeof i.reason === 'string' ? i.reason.trim() : '';
  if (reason.length < REASON_MIN_CHARS || reason.length > REASON_MAX_CHARS || hasControlCharacter(reason))
    return invalid('reason', `${REASON_MIN_CHARS}–${REASON_MAX_CHARS} printable characters`);
  if (typeof i.ticket !== 'string' || !TICKET_PATTERN.test(i.ticket))
    return invalid('ticket', `1–${TICKET_MAX_CHARS} characters: letters, digits and . _ : # / -`);
  let durationMs = config.defaultDurationMs;
  if (i.durationMinutes !== undefined) {
    const m = i.durationMinutes;
    if (typeof m !== 'number' || !Number.isSafeInteger(m) || m < 1)
      return invalid('durationMinutes', 'a whole number of minutes, at least 1');
    durationMs = m * MINUTE;
    if (durationMs > config.maxDurationMs) {
      return invalid('durationMinutes', `at most ${config.maxDurationMs / MINUTE} minutes`, {
        max: config.maxDurationMs / MINUTE,
      });
    }
  }
  return {
    tenant: i.tenant,
    collections,
    access: i.access as GrantAccess,
    reason,
    ticket: i.ticket,
    durationMs,
  };
}

export function checkConfig(config: GrantConfig): GrantConfig {
  const positive = (n: number) => Number.isSafeInteger(n) && n > 0;
  if (!positive(config.maxDurationMs) || !positive(config.defaultDurationMs))
    throw new RangeError('grants: durations must be positive whole milliseconds');
  if (config.defaultDurationMs > config.maxDurationMs)
    throw new RangeError('grants: the default duration exceeds the maximum');
  if (!positive(config.requestTtlMs)) throw new RangeError('grants: requestTtlMs');
  if (!APPROVAL_POLICIES.includes(config.defaultPolicy)) throw new RangeError('grants: defaultPolicy');
  return config;
}

/** An id fit to be written into an audit event (never arbitrary caller text). */
export const safeId = (id: unknown, pattern = GRANT_ID_PATTERN) =>
  typeof id === 'string' && pattern.test(id) ? id : '(malformed)';
