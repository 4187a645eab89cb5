/**
 * Retention: a collection's retentionDays gives each record an expiry (creation + period); this job
 * deletes expired records and their blind-index rows. "Only the data that is needed" (docs/architecture.md) — what
 * the customer declared they keep for N days is gone after N days, without anyone asking.
 *
 * Deletion runs in batches (limits.retentionBatch records of one collection per transaction), each
 * batch with its own audit event by the system actor {kind: 'system', id: 'retention'}, so a large
 * backlog neither holds one huge transaction nor produces one unreadable event. Inside each
 * transaction the expiry is checked again, so concurrent runs or a retention change in between can
 * only delete what is really expired, and each record is audited once.
 */
import { type AuditEvent, appendAuditEvent } from '../audit/event.ts';
import { auditEvent, VaultAction } from './vault-audit.ts';
import type { VaultContext } from './vault-context.ts';

export const RETENTION_ACTOR: AuditEvent['actor'] = { kind: 'system', id: 'retention' };

export async function runRetention(ctx: VaultContext, tenant: string): Promise<{ deleted: number }> {
  const store = await ctx.stores(tenant);
  const now = ctx.clock().getTime();
  let deleted = 0;
  for (;;) {
    const due = await store.db
      .selectFrom('records')
      .select(['id', 'collection'])
      .where('expires_at', 'is not', null)
      .where('expires_at', '<=', now)
      .orderBy('expires_at')
      .limit(ctx.limits.retentionBatch)
      .execute();
    if (due.length === 0) break;
    const byCollection = new Map<string, string[]>();
    for (const { id, collection } of due) {
      const ids = byCollection.get(collection) ?? [];
      ids.push(id);
      byCollection.set(collection, ids);
    }
    let progress = 0;
    for (const [collection, ids] of byCollection) {
      progress += await store.write(async (trx) => {
        const expired = await trx
          .selectFrom('records')
          .select('id')
          .where('id', 'in', ids)
          .where('expires_at', '<=', now)
          .execute();
        const recordIds = expired.map((r) => r.id);
        if (recordIds.length === 0) return 0;
        await trx.deleteFrom('blind_index').where('record_id', 'in', recordIds).execute();
        await trx.deleteFrom('records').where('id', 'in', recordIds).execute();
        await appendAuditEvent(
          trx,
          auditEvent(
            { actor: RETENTION_ACTOR },
            ctx.clock().toISOString(),
            tenant,
            VaultAction.recordDelete,
            {
              collection,
              recordIds,
              reason: 'retention',
            },
          ),
        );
        return recordIds.length;
      });
    }
    deleted += progress;
    if (progress === 0) break; // everything due was taken by a concurrent run
  }
  return { deleted };
}

const DAY_MS = 86_400_000;

/**
 * When the tenant's retention must next run, after a run that started at `runStart`: the earlier of
 * its earliest remaining expiry and runStart + its shortest retention period (what a record created
 * since can expire at, at the earliest); null when no collection keeps records for a period and no
 * record has an expiry (retention-due.ts).
 */
export async function nextRetentionDue(
  ctx: VaultContext,
  tenant: string,
  runStart: number,
): Promise<number | null> {
  const store = await ctx.stores(tenant);
  const earliest = await store.db
    .selectFrom('records')
    .select((eb) => eb.fn.min('expires_at').as('at'))
    .where('expires_at', 'is not', null)
    .executeTakeFirst();
  const shortest = await store.db
    .selectFrom('collections')
    .select((eb) => eb.fn.min('retention_days').as('days'))
    .where('retention_days', 'is not', null)
    .executeTakeFirst();
  const candidates: number[] = [];
  if (earliest?.at !== null && earliest?.at !== undefined) candidates.push(Number(earliest.at));
  if (shortest?.days !== null && shortest?.days !== undefined)
    candidates.push(runStart + Number(shortest.days) * DAY_MS);
  return candidates.length === 0 ? null : Math.min(...candidates);
}
