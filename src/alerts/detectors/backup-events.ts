/**
 * Backups that did not work, from the backup job's own audit events (`backup.create`, outcome
 * failure): each destination that did not take the backup raises `backup.destination-failing`
 * about it; a run no destination holds, or one interrupted by a stop, raises `backup.failed`.
 */
import type { AlertSignal } from '../alert-vocabulary.ts';
import type { Detector } from './types.ts';

export function backupEventsDetector(): Detector {
  return {
    name: 'backupEvents',
    observe({ index, event }) {
      if (event.action !== 'backup.create' || event.outcome !== 'failure') return [];
      const signals: AlertSignal[] = [];
      const destinations = event.target?.destinations;
      if (Array.isArray(destinations))
        for (const d of destinations as { name?: unknown; held?: unknown }[])
          if (d.held === false && typeof d.name === 'string')
            signals.push({
              kind: 'backup.destination-failing',
              severity: 'high',
              subject: { kind: 'destination', id: d.name },
              at: event.at,
              evidence: [index],
              count: 1,
            });
      const outcome = event.target?.outcome;
      if (outcome === 'failed' || outcome === 'interrupted')
        signals.push({
          kind: 'backup.failed',
          severity: 'critical',
          subject: { kind: 'component', id: 'backup' },
          at: event.at,
          evidence: [index],
          count: 1,
        });
      return signals;
    },
  };
}
