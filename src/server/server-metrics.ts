/**
 * Wiring only: hands the metrics (monitor/metrics.ts) the sources they read — the audit log, the
 * backup records, the job runner, the control store's group commit, the tenant stores, the key cache, the live grant
 * counts, keyd's health and the certificates in use — as the narrow functions monitor defines,
 * since monitor imports none of these parts. Returns what stops the audit subscription.
 */
import { readFileSync } from 'node:fs';
import { liveGrantCounts } from '../access/grant-counts.ts';
import { readArchivedEnd } from '../audit/archived-end.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { BackupView } from '../backup/backup-records.ts';
import type { KeydClient } from '../keyd/client.ts';
import type { KeyCache } from '../keyd/key-cache.ts';
import type { StateMetricsSources, TresorMetrics } from '../monitor/index.ts';
import type { GroupCommitFacts } from '../monitor/store-metrics.ts';
import type { TenantStores } from '../store/sqlite/tenant-stores.ts';
import type { Store } from '../store/types.ts';
import type { ControlDB } from './control-store.ts';
import type { AvailabilityView } from './probe-job.ts';

export interface ServerMetricsParts {
  audit: AuditLog;
  /** The control store; its group commit's counters where the backend keeps them (both do today). */
  control: Store<ControlDB> & { stats?(): GroupCommitFacts };
  tenantStores: Pick<TenantStores<unknown>, 'stats'>;
  keyd: KeydClient;
  keyCache: KeyCache;
  jobs: StateMetricsSources['jobs'];
  backups: {
    destinations: readonly string[];
    intervalMinutes: number;
    list(limit: number): Promise<BackupView[]>;
  };
  /** The HTTPS certificate file. */
  certFile: string;
  /** The server's client certificate towards keyd (mutual TLS), if keyd is reached over TCP. */
  keydCertFile?: string;
  /** The server's own probe results as availability (probe-job.ts). */
  availability?: () => Promise<AvailabilityView>;
  clock: () => Date;
}

export function watchServerParts(metrics: TresorMetrics, parts: ServerMetricsParts): () => void {
  const { audit, control, clock } = parts;
  metrics.keyd.watch(() => parts.keyd.call('health', {}));
  metrics.backups.watch({
    destinations: parts.backups.destinations,
    intervalSeconds: Math.round(parts.backups.intervalMinutes * 60),
    recent: (limit) => parts.backups.list(limit),
  });
  metrics.state.watch({
    ...(parts.jobs ? { jobs: parts.jobs } : {}),
    ...(control.stats ? { groupCommit: () => (control.stats as () => GroupCommitFacts)() } : {}),
    tenantStores: () => parts.tenantStores.stats(),
    keyCache: () => parts.keyCache.stats(),
    grants: () => liveGrantCounts(control, clock),
    certificates: {
      server: () => readFileSync(parts.certFile),
      ...(parts.keydCertFile ? { 'keyd-client': () => readFileSync(parts.keydCertFile as string) } : {}),
    },
    ...(parts.availability ? { availability: parts.availability } : {}),
  });
  return metrics.audit.watch(
    {
      onEntries: (listener) => audit.onEntries(listener),
      onCheckpoint: (listener) => audit.onCheckpoint(listener),
      treeSize: () => audit.sequencer.treeHead().size,
      signedSize: () => audit.checkpointer.health().signedSize,
      healthy: () => audit.health().ok,
      archivedEntries: () => readArchivedEnd(control.db),
      sequencer: () => {
        const h = audit.sequencer.health();
        return { pendingSources: h.pendingSources, failing: h.failingSince !== undefined };
      },
    },
    clock,
  );
}
