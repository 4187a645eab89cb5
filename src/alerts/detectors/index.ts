/**
 * The built-in detectors over the audit log, made from their config (`server.alerts`,
 * docs/alerts.md). The state checks (keyd, the audit log's health, overdue backups, the
 * certificate) are in ../state-checks.ts.
 */
import { breakGlassDetector, noGrantDetector, tenantClosureDetector } from './access-events.ts';
import { apiKeyNetworkDetector } from './api-key-network.ts';
import { auditVerificationDetector } from './audit-verification.ts';
import { backupEventsDetector } from './backup-events.ts';
import { bruteForceDetector } from './brute-force.ts';
import { exportVolumeDetector } from './export-volume.ts';
import { staffReadsDetector } from './staff-reads.ts';
import type { Detector } from './types.ts';

export interface DetectorConfig {
  /** Window of the counting detectors. */
  windowMs: number;
  bruteForceAccountFailures: number;
  bruteForceAddressFailures: number;
  noGrantRefusals: number;
  staffRecordReads: number;
  staffTenants: number;
  exports: number;
}

export function builtInDetectors(config: DetectorConfig): Detector[] {
  return [
    bruteForceDetector({
      accountFailures: config.bruteForceAccountFailures,
      addressFailures: config.bruteForceAddressFailures,
      windowMs: config.windowMs,
    }),
    breakGlassDetector(),
    auditVerificationDetector(),
    noGrantDetector({ refusals: config.noGrantRefusals, windowMs: config.windowMs }),
    tenantClosureDetector(),
    staffReadsDetector({
      records: config.staffRecordReads,
      tenants: config.staffTenants,
      windowMs: config.windowMs,
    }),
    exportVolumeDetector({ exports: config.exports, windowMs: config.windowMs }),
    apiKeyNetworkDetector(),
    backupEventsDetector(),
  ];
}
