/**
 * The words of alerts, defined once: the kinds the built-in detectors raise, their severities, the
 * kinds of subject an alert is about, and the states a person moves an alert through. The store's
 * checks, the HTTP schemas, the deliveries and docs/alerts.md all use these lists.
 *
 * A subject is always an id (an account, a staff member, a tenant, a client address, a grant, a part
 * of Tresor such as `keyd`), never a customer value: alerts are read by staff, sent to webhooks and
 * mailed, so they must hold nothing a customer entrusted to the vault.
 */

export const ALERT_KINDS = [
  /** Failed sign-ins of one account within the window reached the threshold. */
  'brute-force.account',
  /** Failed sign-ins from one client address within the window reached the threshold. */
  'brute-force.address',
  /** A security officer opened an emergency (break-glass) grant. */
  'break-glass.used',
  /** A staff member was refused tenant data for lack of a live grant. */
  'access.refused-no-grant',
  /** A tenant was closed (its keys are destroyed when the grace ends). */
  'tenant.closed',
  /** A staff member read more records through grants within the window than the threshold. */
  'staff.bulk-reads',
  /** A staff member reached more tenants through grants within the window than the threshold. */
  'staff.many-tenants',
  /** A tenant exported its data more often within the window than the threshold. */
  'export.volume',
  /** A tenant API key was used from a network (IPv4 /24, IPv6 /48) it was not seen from before. */
  'api-key.new-network',
  /** A backup run failed (no destination holds it) or was interrupted. */
  'backup.failed',
  /** A backup destination did not take a backup. */
  'backup.destination-failing',
  /** No backup completed for longer than the threshold. */
  'backup.overdue',
  /** keyd answers but is sealed: nothing that needs a key is served. */
  'keyd.sealed',
  /** keyd does not answer. */
  'keyd.unreachable',
  /** The audit log cannot record: sequencer failing, checkpoint signing overdue (a gap), disk low. */
  'audit.unhealthy',
  /** The live audit log failed its scheduled verification against the latest witnessed checkpoint. */
  'audit.verification-failed',
  /** The server's TLS certificate expires within the threshold. */
  'certificate.expiring',
] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

export const ALERT_SEVERITIES = ['low', 'medium', 'high', 'critical'] as const;
export type AlertSeverity = (typeof ALERT_SEVERITIES)[number];

export const SUBJECT_KINDS = [
  'account',
  'address',
  'staff',
  'tenant',
  'api-key',
  'destination',
  'component',
] as const;
export type SubjectKind = (typeof SUBJECT_KINDS)[number];

/** open → acknowledged (someone is on it) → resolved; open → resolved directly is allowed too. */
export const ALERT_STATES = ['open', 'acknowledged', 'resolved'] as const;
export type AlertState = (typeof ALERT_STATES)[number];

/** What an alert is about: only ids. */
export interface AlertSubject {
  kind: SubjectKind;
  id: string;
}

/** Evidence kept per alert: audit log indices, the first EVIDENCE_HEAD and then the newest. */
export const MAX_EVIDENCE = 50;
export const EVIDENCE_HEAD = 10;

/** A detector's finding: raise an alert of `kind` about `subject`, or bump the open one. */
export interface AlertSignal {
  kind: AlertKind;
  severity: AlertSeverity;
  subject: AlertSubject;
  /** When the evidence happened (the audit entries' time). */
  at: string;
  /** Audit log indices of the entries that led to it (all of them since the last signal). */
  evidence: readonly number[];
  /** How many occurrences this signal adds to the alert's count. */
  count: number;
}
