/**
 * The audit log failing its own verification, from the server's `audit.verify` job's audit event
 * (outcome failure): the live log re-verified against the latest witnessed checkpoint does not hold
 * (an entry altered, the tree's root not the signed one, a checkpoint gap or rollback). Critical,
 * about the audit log itself; the evidence is the failed verification's own entry.
 */
import type { Detector } from './types.ts';

export function auditVerificationDetector(): Detector {
  return {
    name: 'auditVerification',
    observe({ index, event }) {
      if (event.action !== 'audit.verify' || event.outcome !== 'failure' || event.actor.kind !== 'system')
        return [];
      return [
        {
          kind: 'audit.verification-failed',
          severity: 'critical',
          subject: { kind: 'component', id: 'audit-log' },
          at: event.at,
          evidence: [index],
          count: 1,
        },
      ];
    },
  };
}
