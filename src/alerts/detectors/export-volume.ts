/**
 * Unusual export volume: a tenant's full exports (`tenant.export`, success) within the window reach
 * the threshold. An export is the whole of a tenant's data leaving at once; a few a day is a
 * backup habit, more is a leaked admin key being used.
 */
import { VaultAction } from '../../vault/vault-audit.ts';
import { createThresholdWindow } from './threshold-window.ts';
import type { Detector } from './types.ts';

export function exportVolumeDetector(config: { exports: number; windowMs: number }): Detector {
  const tenants = createThresholdWindow({ threshold: config.exports, windowMs: config.windowMs });
  return {
    name: 'exportVolume',
    observe({ index, event }) {
      if (event.action !== VaultAction.tenantExport || event.outcome !== 'success' || event.tenant === null)
        return [];
      const crossed = tenants.hit(event.tenant, event.at, index);
      if (!crossed) return [];
      return [
        {
          kind: 'export.volume',
          severity: 'high',
          subject: { kind: 'tenant', id: event.tenant },
          at: event.at,
          evidence: crossed.evidence,
          count: crossed.weight,
        },
      ];
    },
  };
}
