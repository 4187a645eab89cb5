/**
 * Login throttling, per account and per source address, durable in the control store.
 *
 * NIST SP 800-63B §5.2.2 (rate limiting): the verifier SHALL limit failed attempts on an account to
 * no more than 100; delays growing with each failure are one of the techniques it names. So:
 * - account: after `delayAfter` (3) consecutive failures the next try waits `baseDelayMs` (1 s),
 *   doubling with each further failure up to `maxDelayMs`; at `lockoutThreshold` (10, never more)
 *   consecutive failures the account is locked for `lockoutMs` (15 min). The lockout is lifted by
 *   time, by an admin (`liftIn`) or by the account's recovery flow; a success resets the count;
 * - account, absolute: never more than `hourlyLimit` (100, never more) failures in any 60 minutes,
 *   a sliding window of failure times that no lift clears — the ceiling holds even if an admin
 *   lifts the lockout again and again;
 * - address, against password spraying: what counts is how many *distinct accounts* failed from
 *   one address within `addressQuietMs` (1 h, sliding per account). Past `addressDelayAfter` (20)
 *   of them, every attempt from the address waits, growing delays up to `addressMaxDelayMs`, with
 *   a 429 and Retry-After. Repeated failures against one account count once here: that account's
 *   own counter above locks it, and nobody else behind the address (a NAT, or a load balancer not
 *   listed in `trustProxy`) is delayed for it. No address lockout: many people share one address.
 *   A failure that names no account (a wrong recovery code, account-recovery.ts) counts as one
 *   more account each time;
 * - an admin unlock (`liftIn`) lifts the account's lockout and delays and takes the account out of
 *   every address's count, so the failures that were its own no longer delay anyone from those
 *   addresses, itself included. Delays an address earned across many other accounts stay: they
 *   are the protection against spraying, and only time lifts them.
 *
 * The account subject is a hash of side, tenant and e-mail as typed (normalised), not the person
 * id: an address nobody has is throttled exactly like a real one, so throttling tells nothing about
 * which accounts exist. The throttle returns "retry after" and never sleeps.
 *
 * Checking and recording must happen in one write() (use `checkIn` then `recordFailureIn` with
 * the same trx): writes are serialised, so parallel guesses cannot all pass one check.
 */
import { createHash } from 'node:crypto';
import type { Transaction } from 'kysely';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import type { IdentityDB } from './identity-store-schema.ts';

/** SP 800-63B §5.2.2: "no more than 100" failed attempts. */
export const MAX_HOURLY_FAILURES = 100;
/** The issue: lockout after at most 10 failed tries. */
export const MAX_LOCKOUT_THRESHOLD = 10;
const HOUR_MS = 3_600_000;

export interface LoginThrottleConfig {
  delayAfter: number;
  baseDelayMs: number;
  maxDelayMs: number;
  lockoutThreshold: number;
  lockoutMs: number;
  hourlyLimit: number;
  addressDelayAfter: number;
  addressMaxDelayMs: number;
  addressQuietMs: number;
}

export const DEFAULT_LOGIN_THROTTLE_CONFIG: LoginThrottleConfig = {
  delayAfter: 3,
  baseDelayMs: 1_000,
  maxDelayMs: 60_000,
  lockoutThreshold: MAX_LOCKOUT_THRESHOLD,
  lockoutMs: 15 * 60_000,
  hourlyLimit: MAX_HOURLY_FAILURES,
  addressDelayAfter: 20,
  addressMaxDelayMs: 5 * 60_000,
  addressQuietMs: HOUR_MS,
};

export type ThrottleVerdict =
  | { allowed: true }
  | { allowed: false; retryAfterMs: number; reason: 'delay' | 'locked' | 'hourly-limit' };

export interface ThrottleSubjects {
  account: string;
  address: string;
}

export interface LoginThrottle {
  readonly config: LoginThrottleConfig;
  /** A read outside any transaction: a cheap refusal before any password hashing. */
  check(subjects: ThrottleSubjects): Promise<ThrottleVerdict>;
  /** The same, inside the write that will record the outcome. */
  checkIn(trx: Transaction<IdentityDB>, subjects: ThrottleSubjects): Promise<ThrottleVerdict>;
  /** Counts one failure for both subjects; `locked` is true when this failure locked the account. */
  recordFailureIn(trx: Transaction<IdentityDB>, subjects: ThrottleSubjects): Promise<{ locked: boolean }>;
  /**
   * Counts a failure for the address only (flows that bypass the account lockout, e.g. recovery):
   * against `account` when known (once per account), else as one more account.
   */
  recordAddressFailureIn(trx: Transaction<IdentityDB>, address: string, account?: string): Promise<void>;
  /** A successful login: the account's consecutive failures start again from zero. */
  recordSuccessIn(trx: Transaction<IdentityDB>, account: string): Promise<void>;
  /**
   * Lifts a lockout and the delays (admin, recovery) and takes the account out of the addresses'
   * counts; the hourly ceiling stays.
   */
  liftIn(trx: Transaction<IdentityDB>, account: string): Promise<void>;
}

/** The account subject of a login identifier (side, tenant, normalised e-mail). */
export function accountSubject(side: string, tenant: string | null, email: string): string {
  const digest = createHash('sha256')
    .update('tresor-login-account/v1')
    .update(Buffer.of(0))
    .update(side)
    .update(Buffer.of(0))
    .update(tenant ?? '')
    .update(Buffer.of(0))
    .update(email)
    .digest('hex');
  return `account:${digest}`;
}

export function addressSubject(address: string): string {
  return `address:${typeof address === 'string' ? address.slice(0, 64) : ''}`;
}

/** The refusal of a throttled attempt: the same whatever the reason, with when to retry. */
export function rateLimited(retryAfterMs: number): TresorError {
  return new TresorError('TRESOR_ERR_RATE_LIMITED', 'too many failed attempts; retry later', {
    retryAfterSeconds: Math.max(1, Math.ceil(retryAfterMs / 1000)),
  });
}

function checkConfig(config: LoginThrottleConfig): LoginThrottleConfig {
  for (const [name, value] of Object.entries(config)) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`login throttle: ${name}`);
  }
  if (config.lockoutThreshold < 1 || config.lockoutThreshold > MAX_LOCKOUT_THRESHOLD) {
    throw new RangeError(`login throttle: lockoutThreshold must be 1 to ${MAX_LOCKOUT_THRESHOLD}`);
  }
  if (config.hourlyLimit < 1 || config.hourlyLimit > MAX_HOURLY_FAILURES) {
    throw new RangeError(`login throttle: hourlyLimit must be 1 to ${MAX_HOURLY_FAILURES}`);
  }
  return config;
}

type Row = IdentityDB['login_throttle'];
type Reader = Pick<Transaction<IdentityDB>, 'selectFrom'>;

export function createLoginThrottle(options: {
  control: Store<IdentityDB>;
  now: () => Date;
  config?: Partial<LoginThrottleConfig>;
}): LoginThrottle {
  const config = checkConfig({ ...DEFAULT_LOGIN_THROTTLE_CONFIG, ...options.config });
  const { now } = options;

  const read = (db: Reader, subject: string) =>
    db.selectFrom('login_throttle').selectAll().where('subject', '=', subject).executeTakeFirst();

  const delay = (failures: number, after: number, max: number) =>
    failures < after ? 0 : Math.min(max, config.baseDelayMs * 2 ** Math.min(30, failures - after));

  function accountVerdict(row: Row | undefined, t: number): ThrottleVerdict {
    if (!row) return { allowed: true };
    const recent = recentFailures(row, t);
    if (recent.length >= config.hourlyLimit) {
      return { allowed: false, reason: 'hourly-limit', retryAfterMs: (recent[0] ?? t) + HOUR_MS - t };
    }
    if (row.locked_until !== null) {
      const until = Date.parse(row.locked_until);
      if (until > t) return { allowed: false, reason: 'locked', retryAfterMs: until - t };
      return { allowed: true }; // lifted by time
    }
    const last = row.last_failure_at === null ? 0 : Date.parse(row.last_failure_at);
    const wait = last + delay(row.consecutive_failures, config.delayAfter, config.maxDelayMs) - t;
    return wait > 0 ? { allowed: false, reason: 'delay', retryAfterMs: wait } : { allowed: true };
  }

  /** The accounts that failed from an address within the quiet period, with their last failure. */
  function addressAccounts(row: Row | undefined, t: number): Map<string, number> {
    const fresh = new Map<string, number>();
    if (!row) return fresh;
    let parsed: unknown;
    try {
      parsed = JSON.parse(row.recent_failures);
    } catch {
      parsed = {};
    }
    // An array is the earlier format (a count, no accounts): it starts again from nothing.
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return fresh;
    for (const [account, at] of Object.entries(parsed)) {
      if (typeof at === 'number' && at <= t && t - at < config.addressQuietMs) fresh.set(account, at);
    }
    return fresh;
  }

  function addressVerdict(row: Row | undefined, t: number): ThrottleVerdict {
    const accounts = addressAccounts(row, t);
    if (accounts.size === 0) return { allowed: true };
    const last = Math.max(...accounts.values());
    const wait = last + delay(accounts.size, config.addressDelayAfter, config.addressMaxDelayMs) - t;
    return wait > 0 ? { allowed: false, reason: 'delay', retryAfterMs: wait } : { allowed: true };
  }

  async function writeAddress(
    trx: Transaction<IdentityDB>,
    subject: string,
    accounts: Map<string, number>,
    at: Date,
  ): Promise<void> {
    const last = accounts.size === 0 ? null : new Date(Math.max(...accounts.values())).toISOString();
    await upsert(trx, {
      subject,
      consecutive_failures: accounts.size,
      last_failure_at: last,
      locked_until: null,
      recent_failures: JSON.stringify(Object.fromEntries(accounts)),
      updated_at: at.toISOString(),
    });
  }

  async function verdict(db: Reader, subjects: ThrottleSubjects): Promise<ThrottleVerdict> {
    const t = now().getTime();
    const account = accountVerdict(await read(db, subjects.account), t);
    const address = addressVerdict(await read(db, addressSubject(subjects.address)), t);
    if (account.allowed) return address;
    if (address.allowed) return account;
    return account.retryAfterMs >= address.retryAfterMs ? account : address;
  }

  async function upsert(trx: Transaction<IdentityDB>, row: Row): Promise<void> {
    await trx
      .insertInto('login_throttle')
      .values(row)
      .onConflict((oc) =>
        oc.column('subject').doUpdateSet({
          consecutive_failures: row.consecutive_failures,
          last_failure_at: row.last_failure_at,
          locked_until: row.locked_until,
          recent_failures: row.recent_failures,
          updated_at: row.updated_at,
        }),
      )
      .execute();
  }

  async function recordAddressFailureIn(
    trx: Transaction<IdentityDB>,
    address: string,
    account?: string,
  ): Promise<void> {
    const at = now();
    const t = at.getTime();
    const subject = addressSubject(address);
    const accounts = addressAccounts(await read(trx, subject), t);
    accounts.set(account ?? `unattributed:${t}:${accounts.size}`, t);
    await writeAddress(trx, subject, accounts, at);
  }

  return {
    config,
    check: (subjects) => verdict(options.control.db, subjects),
    checkIn: (trx, subjects) => verdict(trx, subjects),

    async recordFailureIn(trx, subjects) {
      const at = now();
      const t = at.getTime();
      const row = await read(trx, subjects.account);
      // A lockout that has run out is lifted by time: counting starts again.
      const expired = row?.locked_until != null && Date.parse(row.locked_until) <= t;
      const failures = (row === undefined || expired ? 0 : row.consecutive_failures) + 1;
      const recent = [...(row ? recentFailures(row, t) : []), t];
      const locked = failures >= config.lockoutThreshold;
      await upsert(trx, {
        subject: subjects.account,
        consecutive_failures: failures,
        last_failure_at: at.toISOString(),
        locked_until: locked ? new Date(t + config.lockoutMs).toISOString() : null,
        recent_failures: JSON.stringify(recent),
        updated_at: at.toISOString(),
      });
      await recordAddressFailureIn(trx, subjects.address, subjects.account);
      return { locked };
    },

    recordAddressFailureIn,

    async recordSuccessIn(trx, account) {
      await trx
        .updateTable('login_throttle')
        .set({ consecutive_failures: 0, locked_until: null, updated_at: now().toISOString() })
        .where('subject', '=', account)
        .execute();
    },

    async liftIn(trx, account) {
      const at = now();
      await trx
        .updateTable('login_throttle')
        .set({ consecutive_failures: 0, locked_until: null, updated_at: at.toISOString() })
        .where('subject', '=', account)
        .execute();
      // The addresses this account failed from (its subject is hex after a fixed prefix: no LIKE
      // wildcard in it).
      const rows = await trx
        .selectFrom('login_throttle')
        .selectAll()
        .where('subject', 'like', 'address:%')
        .where('recent_failures', 'like', `%"${account}"%`)
        .execute();
      for (const row of rows) {
        const accounts = addressAccounts(row, at.getTime());
        accounts.delete(account);
        await writeAddress(trx, row.subject, accounts, at);
      }
    },
  };
}

/** The failure times (epoch ms) of the last hour, oldest first. */
function recentFailures(row: Row, t: number): number[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(row.recent_failures);
  } catch {
    parsed = [];
  }
  if (!Array.isArray(parsed)) return [];
  return parsed.filter((v): v is number => typeof v === 'number' && v > t - HOUR_MS && v <= t);
}
