/**
 * Checks of state no audit entry tells: keyd sealed or unreachable, the audit log unable to record
 * (sequencer failing, checkpoint signing overdue — a gap in signed checkpoints —, disk low), no
 * backup done for too long, the TLS certificate near its end. They run every `intervalMs`; each
 * check that finds a problem raises (or bumps) its alert, so the count says how many checks found
 * it and `lastSeen` when the last did. Their alerts carry no audit evidence (an empty list): what
 * they saw is state, not an entry.
 *
 * Each probe is handed in by the composition root as a function, so this part needs no client of
 * its own; a probe that throws counts as its component failing, never as a crash of the checks.
 */
import { X509Certificate } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { Store } from '../store/types.ts';
import type { AlertsDB } from './alert-store-schema.ts';
import type { AlertSignal } from './alert-vocabulary.ts';
import type { AlertService } from './alerts.ts';

export interface StateCheck {
  readonly name: string;
  run(now: Date): Promise<AlertSignal | undefined>;
}

const signal = (
  kind: AlertSignal['kind'],
  severity: AlertSignal['severity'],
  component: string,
  now: Date,
): AlertSignal => ({
  kind,
  severity,
  subject: { kind: 'component', id: component },
  at: now.toISOString(),
  evidence: [],
  count: 1,
});

/** keyd's `health` answer: `sealed`, or a failure to answer at all. */
export function keydCheck(health: () => Promise<{ status: string }>): StateCheck {
  return {
    name: 'keyd',
    async run(now) {
      let status: string;
      try {
        status = (await health()).status;
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (code === 'TRESOR_ERR_KEYD_SEALED') return signal('keyd.sealed', 'critical', 'keyd', now);
        return signal('keyd.unreachable', 'critical', 'keyd', now);
      }
      if (status === 'ok') return undefined;
      return signal(status === 'sealed' ? 'keyd.sealed' : 'keyd.unreachable', 'critical', 'keyd', now);
    },
  };
}

/** The audit log's own verdict (audit-log.ts health): the request pipeline fails closed on it. */
export function auditHealthCheck(health: () => { ok: boolean }): StateCheck {
  return {
    name: 'audit',
    async run(now) {
      return health().ok ? undefined : signal('audit.unhealthy', 'critical', 'audit-log', now);
    },
  };
}

/** The newest backup that completed (or the time the checks started, before any) is older than `overdueMs`. */
export function backupOverdueCheck(options: {
  lastDone: () => Promise<string | undefined>;
  overdueMs: number;
  since: Date;
}): StateCheck {
  return {
    name: 'backupOverdue',
    async run(now) {
      const last = await options.lastDone();
      const from = last === undefined ? options.since.getTime() : Date.parse(last);
      return now.getTime() - from > options.overdueMs
        ? signal('backup.overdue', 'high', 'backup', now)
        : undefined;
    },
  };
}

/** The server certificate (read again at each check: a reload may have replaced it) ends within `withinMs`. */
export function certificateCheck(options: { certificatePem: () => string; withinMs: number }): StateCheck {
  return {
    name: 'certificate',
    async run(now) {
      const validTo = Date.parse(new X509Certificate(options.certificatePem()).validTo);
      return validTo - now.getTime() < options.withinMs
        ? signal('certificate.expiring', 'high', 'tls', now)
        : undefined;
    },
  };
}

export interface StateChecksDeps {
  control: Store<AlertsDB>;
  checks: readonly StateCheck[];
  alerts: Pick<AlertService, 'raiseIn'>;
  enqueueIn(trx: Transaction<AlertsDB>, alertId: string): Promise<void>;
  opened(alertIds: readonly string[]): void;
  intervalMs: number;
  now: () => Date;
  warn(obj: object, msg: string): void;
}

export interface StateChecks {
  /** One round of every check now (also what the timer runs). */
  runOnce(): Promise<void>;
  close(): Promise<void>;
}

export function startStateChecks(deps: StateChecksDeps): StateChecks {
  let running: Promise<void> | undefined;
  let closed = false;

  async function round(): Promise<void> {
    const now = deps.now();
    const signals: AlertSignal[] = [];
    for (const check of deps.checks) {
      try {
        const found = await check.run(now);
        if (found) signals.push(found);
      } catch (error) {
        deps.warn({ check: check.name, code: (error as { code?: string }).code }, 'alert state check failed');
      }
    }
    if (signals.length === 0 || closed) return;
    const opened = await deps.control.write(async (trx) => {
      const ids: string[] = [];
      for (const s of signals) {
        const raised = await deps.alerts.raiseIn(trx, s);
        if (raised.opened) {
          ids.push(raised.id);
          await deps.enqueueIn(trx, raised.id);
        }
      }
      return ids;
    });
    if (opened.length > 0) deps.opened(opened);
  }

  function runOnce(): Promise<void> {
    running ??= round()
      .catch((error: unknown) => {
        deps.warn({ code: (error as { code?: string }).code }, 'alert state checks: a round failed');
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  }

  const timer = deps.intervalMs > 0 ? setInterval(() => void runOnce(), deps.intervalMs) : undefined;
  timer?.unref();
  return {
    runOnce,
    async close() {
      closed = true;
      if (timer) clearInterval(timer);
      await running;
    },
  };
}
