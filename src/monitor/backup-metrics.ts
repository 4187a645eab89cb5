/**
 * Backups per destination, read from the backup records at each scrape: when the newest backup that
 * a destination holds and read back was taken (its age is `time() - …`), whether the newest finished
 * copy there failed, and whether the newest trial restore or verification there failed. With the
 * configured interval beside them, one rule says "overdue" for any schedule. Destination names come
 * from the operator's configuration; nothing of a backup's contents is read.
 */
import { Gauge, type Registry } from 'prom-client';
import { labelVocabulary, PLAIN_NAME } from './label-values.ts';

/** How many recent runs a scrape reads (a destination that failed this many times in a row is failing). */
export const RECENT_RUNS = 50;

/** A backup run as the metrics read it (the backup records' view, narrowed). */
export interface BackupRunFacts {
  startedAt: string;
  outcome: string;
  destinations: readonly {
    name: string;
    state: string;
    verification: { result: string } | null;
  }[];
}

export interface BackupMetricsSource {
  /** The configured destinations' names, so one that never held a backup shows as never. */
  destinations: readonly string[];
  /** The scheduled interval in seconds (0: no schedule). */
  intervalSeconds: number;
  /** The newest runs, newest first. */
  recent(limit: number): Promise<readonly BackupRunFacts[]>;
}

interface DestinationFacts {
  lastSuccess: number;
  failing: boolean;
  verificationFailed: boolean;
}

export interface BackupMetrics {
  watch(source: BackupMetricsSource): void;
}

export function backupMetrics(registry: Registry): BackupMetrics {
  const registers = [registry];
  const names = labelVocabulary(PLAIN_NAME, 32);
  let source: BackupMetricsSource | undefined;
  let reading: Promise<Map<string, DestinationFacts> | undefined> | undefined;
  // The four gauges of one scrape share one read of the records.
  const facts = () => {
    reading ??= (source ? summarise(source).catch(() => undefined) : Promise.resolve(undefined)).finally(
      () => {
        reading = undefined;
      },
    );
    return reading;
  };
  const perDestination = (name: string, help: string, value: (f: DestinationFacts) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['destination'] as const,
      registers,
      async collect() {
        this.reset();
        for (const [destination, f] of (await facts()) ?? []) this.set({ destination }, value(f));
      },
    });
  perDestination(
    'tresor_backup_last_success_timestamp_seconds',
    'Start (Unix time) of the newest backup this destination holds and read back; 0 when none.',
    (f) => f.lastSuccess,
  );
  perDestination(
    'tresor_backup_destination_failing',
    '1 when the newest finished copy at this destination failed, else 0.',
    (f) => (f.failing ? 1 : 0),
  );
  perDestination(
    'tresor_backup_verification_failed',
    '1 when the newest trial restore or verification at this destination failed, else 0.',
    (f) => (f.verificationFailed ? 1 : 0),
  );
  new Gauge({
    name: 'tresor_backup_interval_seconds',
    help: 'The configured backup interval (0: no schedule).',
    registers,
    collect() {
      this.reset();
      if (source) this.set(source.intervalSeconds);
      else this.remove();
    },
  });

  async function summarise(from: BackupMetricsSource): Promise<Map<string, DestinationFacts>> {
    const byName = new Map<string, DestinationFacts>();
    const fresh = (): DestinationFacts => ({ lastSuccess: 0, failing: false, verificationFailed: false });
    for (const name of from.destinations) byName.set(names.of(name), fresh());
    const seenFinished = new Set<string>();
    const seenVerified = new Set<string>();
    for (const run of await from.recent(RECENT_RUNS)) {
      const started = Date.parse(run.startedAt) / 1000;
      for (const copy of run.destinations) {
        const name = names.of(copy.name);
        const f = byName.get(name) ?? fresh();
        byName.set(name, f);
        if (copy.state === 'checked' && f.lastSuccess === 0 && Number.isFinite(started))
          f.lastSuccess = started;
        if ((copy.state === 'checked' || copy.state === 'failed') && !seenFinished.has(name)) {
          seenFinished.add(name);
          f.failing = copy.state === 'failed';
        }
        if (copy.verification && !seenVerified.has(name)) {
          seenVerified.add(name);
          f.verificationFailed = copy.verification.result === 'failed';
        }
      }
    }
    return byName;
  }

  return {
    watch(backups) {
      source = backups;
    },
  };
}
