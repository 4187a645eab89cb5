/**
 * The retention job: at each destination, the complete backups it holds (listBackups) are planned
 * with that destination's policy (planRetention) and those to go are deleted (manifest first), each
 * deletion recorded and audited as `backup.delete` (system actor `backup-retention`). A destination
 * that fails is reported and the others go on. `backupHorizon` is the date a deletion certificate
 * states: when the last backup taken before a moment has aged out everywhere, retention's period
 * included (agedOutAt).
 */
import { systemEvent } from '../audit/system-event.ts';
import type { ConfiguredDestination } from '../objects/configured-destinations.ts';
import { deleteBackup, listBackups } from '../objects/destination.ts';
import { agedOutAt, planRetention } from '../objects/retention.ts';
import type { BackupRecords } from './backup-records.ts';

export interface RetentionReport {
  deleted: { destination: string; backupId: string }[];
  failed: { destination: string; code: string }[];
}

export async function applyRetention(deps: {
  records: BackupRecords;
  destinations: readonly ConfiguredDestination[];
  clock: () => Date;
}): Promise<RetentionReport> {
  const report: RetentionReport = { deleted: [], failed: [] };
  for (const d of deps.destinations) {
    try {
      const complete = (await listBackups(d.destination)).filter((b) => b.complete);
      const plan = planRetention(complete, d.retention, deps.clock());
      for (const backupId of plan.delete) {
        await deleteBackup(d.destination, backupId);
        const at = deps.clock();
        await deps.records.deleted(
          backupId,
          d.name,
          at.toISOString(),
          systemEvent(
            { id: 'backup-retention', action: 'backup.delete', target: { backupId, destination: d.name } },
            at,
          ),
        );
        report.deleted.push({ destination: d.name, backupId });
      }
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      report.failed.push({
        destination: d.name,
        code:
          typeof code === 'string' && code.startsWith('TRESOR_ERR_') ? code : 'TRESOR_ERR_BACKUP_DESTINATION',
      });
    }
  }
  return report;
}

/** When a backup taken at `takenAt` is gone from every destination: agedOutAt plus the job's period. */
export function backupHorizon(
  takenAt: Date,
  destinations: readonly ConfiguredDestination[],
  retentionPeriodMs: number,
): Date {
  return new Date(
    agedOutAt(
      takenAt,
      destinations.map((d) => d.retention),
    ).getTime() + retentionPeriodMs,
  );
}
