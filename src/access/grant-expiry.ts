/**
 * Grant work nobody asked for, done by the system actor `grants`: recording the expiries time has
 * brought, and ending a person's grants when their role, account or access is taken away.
 */
import type { Transaction } from 'kysely';
import type { AccessDB } from './access-store-schema.ts';
import { auditIn } from './audited-write.ts';
import { type GrantContext, moveGrantIn } from './grant-context.ts';
import { grantTarget } from './grant-state.ts';
import { GRANTS_SYSTEM_ACTOR } from './grant-vocabulary.ts';

export interface GrantExpiry {
  /** For PeopleServiceOptions.onAccessRemoved: ends every pending/approved/active grant of the person inside trx, audited. */
  endGrantsOfIn(trx: Transaction<AccessDB>, personId: string, reason: string): Promise<number>;
  /** Records every expiry that time has brought (grant.expire, system actor `grants`); returns how many. */
  expireDue(): Promise<number>;
}

export function grantExpiry(ctx: GrantContext): GrantExpiry {
  const { control, now } = ctx;
  return {
    async endGrantsOfIn(trx, personId, reason) {
      const rows = await trx
        .selectFrom('grants')
        .selectAll()
        .where('requester', '=', personId)
        .where('state', 'in', ['pending', 'approved', 'active'])
        .execute();
      const at = now().toISOString();
      const t = now().getTime();
      for (const row of rows) {
        const lapsed = ctx.stateAt(row, t) === 'expired';
        const state = lapsed ? 'expired' : 'revoked';
        const endReason = lapsed ? (ctx.deadlineOf(row)?.reason ?? 'expired') : reason;
        await moveGrantIn(trx, row, { state, ended_at: at, end_reason: endReason });
        await auditIn(
          trx,
          GRANTS_SYSTEM_ACTOR,
          { at, tenant: row.tenant, action: lapsed ? 'grant.expire' : 'grant.end' },
          { ...grantTarget(row), from: row.state, endReason },
          undefined,
        );
      }
      return rows.length;
    },

    async expireDue() {
      return control.write(async (trx) => {
        const t = now().getTime();
        const rows = await trx
          .selectFrom('grants')
          .selectAll()
          .where('state', 'in', ['pending', 'approved', 'active'])
          .execute();
        const at = new Date(t).toISOString();
        let count = 0;
        for (const row of rows) {
          const deadline = ctx.deadlineOf(row);
          if (deadline === undefined || t < deadline.at) continue;
          const endedAt = new Date(deadline.at).toISOString();
          await moveGrantIn(trx, row, { state: 'expired', ended_at: endedAt, end_reason: deadline.reason });
          await auditIn(
            trx,
            GRANTS_SYSTEM_ACTOR,
            { at, tenant: row.tenant, action: 'grant.expire' },
            { ...grantTarget(row), from: row.state, endReason: deadline.reason, endedAt },
            undefined,
          );
          count++;
        }
        return count;
      });
    },
  };
}
