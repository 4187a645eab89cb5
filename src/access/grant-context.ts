/**
 * What the grant service's parts share: the store, the clock, the checked configuration, and the
 * reads every part makes inside its transaction.
 */
import type { Transaction } from 'kysely';
import { TresorError } from '../errors.ts';
import { FRESH_2FA_MS } from '../identity/people.ts';
import type { SessionPrincipal } from '../identity/session-principal.ts';
import type { Store } from '../store/types.ts';
import type { AccessDB, GrantState, GrantsTable } from './access-store-schema.ts';
import { type Refusal, writeAudited } from './audited-write.ts';
import { type GrantInfo, grantDeadline, grantInfoOf, grantStateAt } from './grant-state.ts';
import { checkConfig, DEFAULT_GRANT_CONFIG, GRANT_ID_PATTERN, type GrantConfig } from './grant-vocabulary.ts';

export interface GrantServiceOptions {
  control: Store<AccessDB>;
  now: () => Date;
  config?: Partial<GrantConfig>;
}

export interface GrantContext {
  control: Store<AccessDB>;
  now: () => Date;
  config: GrantConfig;
  deadlineOf(row: GrantsTable): { at: number; reason: string } | undefined;
  stateAt(row: GrantsTable, t: number): GrantState;
  toInfo(row: GrantsTable, t: number): GrantInfo;
  /** One audited write: a Refusal it returns is thrown after its audit event committed. */
  run<T>(work: (trx: Transaction<AccessDB>) => Promise<T | Refusal>): Promise<T>;
  /**
   * When the session last passed a second factor, read from the session row (live, the actor's own):
   * the caller's copy of the principal is not trusted for this. null when none or the session ended.
   */
  fresh2faIn(trx: Transaction<AccessDB>, actor: SessionPrincipal): Promise<number | null>;
}

export function grantContextOf(options: GrantServiceOptions): GrantContext {
  const { control, now } = options;
  const config = checkConfig({ ...DEFAULT_GRANT_CONFIG, ...options.config });
  return {
    control,
    now,
    config,
    deadlineOf: (row) => grantDeadline(row, config.requestTtlMs),
    stateAt: (row, t) => grantStateAt(row, t, config.requestTtlMs),
    toInfo: (row, t) => grantInfoOf(row, t, config.requestTtlMs),
    run: (work) => writeAudited(control, work),
    async fresh2faIn(trx, actor) {
      if (actor.kind !== 'session' || typeof actor.sessionId !== 'string') return null;
      const s = await trx
        .selectFrom('sessions')
        .select(['person', 'revoked_at', 'idle_expires_at', 'absolute_expires_at', 'fresh_2fa_at'])
        .where('id', '=', actor.sessionId)
        .executeTakeFirst();
      const t = now().getTime();
      if (
        !s ||
        s.person !== actor.personId ||
        s.revoked_at !== null ||
        Date.parse(s.idle_expires_at) <= t ||
        Date.parse(s.absolute_expires_at) <= t ||
        s.fresh_2fa_at === null
      )
        return null;
      const at = Date.parse(s.fresh_2fa_at);
      // Not from the future, and recent enough.
      return at <= t && t - at <= FRESH_2FA_MS ? at : null;
    },
  };
}

export const tenantIn = (trx: Transaction<AccessDB>, id: unknown) =>
  typeof id === 'string'
    ? trx.selectFrom('tenants').select(['id', 'state']).where('id', '=', id).executeTakeFirst()
    : Promise.resolve(undefined);

export const grantIn = (trx: Transaction<AccessDB>, id: unknown) =>
  typeof id === 'string' && GRANT_ID_PATTERN.test(id)
    ? trx.selectFrom('grants').selectAll().where('id', '=', id).executeTakeFirst()
    : Promise.resolve(undefined);

/**
 * Moves a grant forward: writes `change` and returns the row as it now stands — only if the grant
 * still stands as `row` (its state and approvals) was read. A decision taken on that reading by a
 * racing request (another node) makes the update miss; the affected-row count decides, and the
 * loser fails with TRESOR_ERR_CONFLICT, its job's writes undone.
 */
export async function moveGrantIn(
  trx: Transaction<AccessDB>,
  row: GrantsTable,
  change: Partial<Omit<GrantsTable, 'id'>>,
): Promise<GrantsTable> {
  const moved = await trx
    .updateTable('grants')
    .set(change)
    .where('id', '=', row.id)
    .where('state', '=', row.state)
    .where('customer_approved_at', row.customer_approved_at === null ? 'is' : '=', row.customer_approved_at)
    .where('employee_approved_at', row.employee_approved_at === null ? 'is' : '=', row.employee_approved_at)
    .executeTakeFirst();
  if (moved.numUpdatedRows !== 1n) {
    throw new TresorError(
      'TRESOR_ERR_CONFLICT',
      'the grant was changed by another request meanwhile; try again',
    );
  }
  return { ...row, ...change };
}
