/**
 * Staff reading unusually much through their grants: per staff member within the window,
 *
 * - `staff.bulk-reads`: the records read (record.read, record.list, record.search: the ids each
 *   returned) reach the threshold — a grant is for helping with a case, not for paging through a
 *   customer's data;
 * - `staff.many-tenants`: the distinct tenants reached reach the threshold.
 *
 * Only events of staff acting through a grant count (actor.grantId): staff reach records no other way.
 */
import { VaultAction } from '../../vault/vault-audit.ts';
import type { AlertSignal } from '../alert-vocabulary.ts';
import { createThresholdWindow } from './threshold-window.ts';
import type { Detector } from './types.ts';

export interface StaffReadsConfig {
  records: number;
  tenants: number;
  windowMs: number;
}

const READS: ReadonlySet<string> = new Set([
  VaultAction.recordRead,
  VaultAction.recordList,
  VaultAction.recordSearch,
]);
const MAX_STAFF = 10_000;

export function staffReadsDetector(config: StaffReadsConfig): Detector {
  const records = createThresholdWindow({ threshold: config.records, windowMs: config.windowMs });
  // Per staff member: tenant → [time last seen, index of its first sighting not yet reported].
  const tenantsOf = new Map<string, Map<string, { t: number; index: number | null }>>();

  function tenantCrossing(staff: string, tenant: string, at: string, index: number): number[] | undefined {
    const t = Date.parse(at);
    if (!Number.isFinite(t)) return undefined;
    const seen = tenantsOf.get(staff) ?? new Map<string, { t: number; index: number | null }>();
    tenantsOf.delete(staff);
    tenantsOf.set(staff, seen);
    if (tenantsOf.size > MAX_STAFF) tenantsOf.delete(tenantsOf.keys().next().value as string);
    for (const [id, s] of seen) if (s.t <= t - config.windowMs) seen.delete(id);
    const known = seen.get(tenant);
    if (known) known.t = t;
    else seen.set(tenant, { t, index });
    if (seen.size < config.tenants) return undefined;
    const fresh: number[] = [];
    for (const s of seen.values())
      if (s.index !== null) {
        fresh.push(s.index);
        s.index = null;
      }
    return fresh.length > 0 ? fresh.sort((a, b) => a - b) : undefined;
  }

  return {
    name: 'staffReads',
    observe({ index, event }) {
      if (event.actor.kind !== 'staff' || !event.actor.grantId || event.outcome !== 'success') return [];
      if (!READS.has(event.action) || event.tenant === null) return [];
      const signals: AlertSignal[] = [];
      const ids = event.target?.recordIds;
      const n = Array.isArray(ids) ? ids.length : 0;
      const staff = { kind: 'staff' as const, id: event.actor.id };
      const crossed = n > 0 ? records.hit(event.actor.id, event.at, index, n) : undefined;
      if (crossed)
        signals.push({
          kind: 'staff.bulk-reads',
          severity: 'high',
          subject: staff,
          at: event.at,
          evidence: crossed.evidence,
          count: crossed.weight,
        });
      const tenants = tenantCrossing(event.actor.id, event.tenant, event.at, index);
      if (tenants)
        signals.push({
          kind: 'staff.many-tenants',
          severity: 'high',
          subject: staff,
          at: event.at,
          evidence: tenants,
          count: tenants.length,
        });
      return signals;
    },
  };
}
