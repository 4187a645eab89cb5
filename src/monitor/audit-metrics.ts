/**
 * The audit log as metrics: what happens (every durable entry counted by action, outcome and kind
 * of actor), how far behind the log is (append lag, unsigned entries, sequencer state), and the
 * events the alerting rules watch for — failed logins and lockouts, refusals, break-glass access,
 * exports, tenant closures — which are all audit entries already. Entries are read as the sequencer
 * appends them (so every node counts what it sequenced, and a restart starts the counters again,
 * which Prometheus's rate() expects); only the action, outcome, actor kind, time and break-glass
 * flag are read from an entry, never its tenant, ids, target or source address.
 *
 * The source is handed in by the server (monitor sits beside audit and does not import it).
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import { AUDIT_ACTION, labelVocabulary } from './label-values.ts';
import { scrapeTimeGauge } from './scrape-time.ts';

/** What the metrics read from the audit log. */
export interface AuditMetricsSource {
  /** Called with each batch of newly durable entries (their canonical JSON leaves). */
  onEntries(listener: (entries: readonly { leaf: string }[]) => void): () => void;
  onCheckpoint(listener: (checkpoint: { size: number }) => void): () => void;
  /** Entries in the log now. */
  treeSize(): number;
  /** Entries covered by the latest signed checkpoint. */
  signedSize(): number;
  /** Whether audited requests are served now (fail closed when not). */
  healthy(): boolean;
  sequencer(): { pendingSources: number; failing: boolean };
  /** The archived cursor: entries below it were pruned from the live store (held in sealed segments). */
  archivedEntries?(): Promise<number>;
}

const ACTOR_KINDS = new Set(['operator-admin', 'customer', 'staff', 'system', 'api-key', 'anonymous']);
const OUTCOMES = new Set(['success', 'failure', 'denied']);
/** From the same transaction (milliseconds) to an outbox held up by a failing sequencer (minutes). */
const LAG_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export interface AuditMetrics {
  /** Starts counting the log's entries; returns the unsubscribe. */
  watch(source: AuditMetricsSource, now: () => Date): () => void;
}

export function auditMetrics(registry: Registry): AuditMetrics {
  const registers = [registry];
  const actions = labelVocabulary(AUDIT_ACTION, 200);
  const events = new Counter({
    name: 'tresor_audit_events_total',
    help: 'Audit entries appended to the log, by action, outcome and kind of actor.',
    labelNames: ['action', 'outcome', 'actor_kind'] as const,
    registers,
  });
  const breakGlass = new Counter({
    name: 'tresor_audit_break_glass_events_total',
    help: 'Audit entries of staff acting through a break-glass grant.',
    registers,
  });
  const loginFailures = new Counter({
    name: 'tresor_login_failures_total',
    help: 'Console login attempts refused: outcome failure (wrong credentials) or denied (throttled).',
    labelNames: ['outcome'] as const,
    registers,
  });
  const lockouts = new Counter({
    name: 'tresor_login_lockouts_total',
    help: 'Accounts locked by the login throttle.',
    registers,
  });
  const lag = new Histogram({
    name: 'tresor_audit_append_lag_seconds',
    help: 'Time from an audit event being committed to its entry being durable in the log.',
    buckets: LAG_BUCKETS,
    registers,
  });
  // The login outcomes exist from the start, so a rate() over them is 0 rather than absent.
  loginFailures.inc({ outcome: 'failure' }, 0);
  loginFailures.inc({ outcome: 'denied' }, 0);

  let source: AuditMetricsSource | undefined;
  let lastCheckpointAt: number | undefined;
  const gauge = (
    name: string,
    help: string,
    value: (s: AuditMetricsSource) => number | undefined | Promise<number | undefined>,
  ) => scrapeTimeGauge(registry, name, help, () => (source ? value(source) : undefined));
  gauge('tresor_audit_up', '1 while the audit log can record (audited requests are served), else 0.', (s) =>
    s.healthy() ? 1 : 0,
  );
  gauge('tresor_audit_log_entries', 'Entries in the audit log.', (s) => s.treeSize());
  gauge(
    'tresor_audit_unsigned_entries',
    'Entries not yet covered by a signed checkpoint (the checkpoint gap).',
    (s) => Math.max(0, s.treeSize() - s.signedSize()),
  );
  gauge(
    'tresor_audit_archived_entries',
    'Entries below the archived cursor: pruned from the live store, held in sealed segments on every backup destination (0 until a prune).',
    (s) => s.archivedEntries?.(),
  );
  gauge(
    'tresor_audit_checkpoint_timestamp_seconds',
    'When this node last signed a checkpoint (Unix time); absent until its first one.',
    () => (lastCheckpointAt === undefined ? undefined : lastCheckpointAt / 1000),
  );
  gauge(
    'tresor_audit_sequencer_pending_sources',
    'Stores holding committed audit events the sequencer has not moved into the log yet.',
    (s) => s.sequencer().pendingSources,
  );
  gauge(
    'tresor_audit_sequencer_failing',
    '1 while the sequencer\u2019s passes fail (not yet recovered), else 0.',
    (s) => (s.sequencer().failing ? 1 : 0),
  );

  return {
    watch(audit, now) {
      source = audit;
      const offEntries = audit.onEntries((entries) => {
        const at = now().getTime();
        for (const { leaf } of entries) count(JSON.parse(leaf) as LeafFields, at);
      });
      const offCheckpoint = audit.onCheckpoint(() => {
        lastCheckpointAt = now().getTime();
      });
      return () => {
        offEntries();
        offCheckpoint();
      };
    },
  };

  function count(entry: LeafFields, at: number): void {
    const action = typeof entry.action === 'string' ? actions.of(entry.action) : 'other';
    const outcome =
      typeof entry.outcome === 'string' && OUTCOMES.has(entry.outcome) ? entry.outcome : 'other';
    const kind = entry.actor?.kind;
    events.inc({
      action,
      outcome,
      actor_kind: typeof kind === 'string' && ACTOR_KINDS.has(kind) ? kind : 'other',
    });
    if (entry.grant?.breakGlass === true) breakGlass.inc();
    if (action === 'auth.login' && (outcome === 'failure' || outcome === 'denied'))
      loginFailures.inc({ outcome });
    if (action === 'auth.lockout') lockouts.inc();
    const committed = typeof entry.at === 'string' ? Date.parse(entry.at) : Number.NaN;
    if (Number.isFinite(committed)) lag.observe(Math.max(0, (at - committed) / 1000));
  }
}

/** The few fields of an entry the metrics read. */
interface LeafFields {
  at?: unknown;
  action?: unknown;
  outcome?: unknown;
  actor?: { kind?: unknown };
  grant?: { breakGlass?: unknown };
}
