/**
 * How many staff access grants are live now, and how many of them are break-glass: numbers for the
 * metrics (monitor/state-metrics.ts), read without an actor and without an audit entry since they
 * name no grant, person or tenant. "Live" is the pipeline's test: active and not yet expired.
 */
import type { Store } from '../store/types.ts';
import type { AccessDB } from './access-store-schema.ts';

export async function liveGrantCounts(
  control: Store<AccessDB>,
  now: () => Date,
): Promise<{ active: number; breakGlass: number }> {
  const rows = await control.db
    .selectFrom('grants')
    .select(['break_glass', (eb) => eb.fn.countAll<number>().as('n')])
    .where('state', '=', 'active')
    .where('expires_at', '>', now().toISOString())
    .groupBy('break_glass')
    .execute();
  let active = 0;
  let breakGlass = 0;
  for (const row of rows) {
    active += Number(row.n);
    if (row.break_glass === 1) breakGlass += Number(row.n);
  }
  return { active, breakGlass };
}
