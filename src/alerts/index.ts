/**
 * Alerts (issue 17): detectors over the live audit log raise stored, deduplicated alerts with
 * their evidence (audit log indices); the security role reads, acknowledges and resolves them
 * (both audited); opened alerts are delivered to a signed webhook and by mail. docs/alerts.md.
 *
 *   audit log ──entries──▶ watch (alert-watch.ts) ──▶ detectors/ ──signals──┐
 *                                                                            ├──▶ alerts (alerts.ts)
 *   state checks (state-checks.ts: keyd, audit health, backups, TLS) ─signals─┘        │ opened
 *                                                                                     ▼
 *                                 delivery (alert-delivery.ts) ──▶ webhook-channel.ts, mail-channel.ts
 *
 * This part sits just below `http`: the detectors read what the domains beneath write (identity's
 * sign-ins, access's grants, vault's tenants and exports, backup's runs, the audit log itself); the
 * state checks get their probes (keyd, the log's health, backup records, the certificate file) from
 * the composition root.
 */
export type { AlertChannel } from './alert-channel.ts';
export { type AlertDelivery, createAlertDelivery } from './alert-delivery.ts';
export { type AlertMessage, alertMessage } from './alert-message.ts';
export { type AlertsDB, alertsMigration } from './alert-store-schema.ts';
export * from './alert-vocabulary.ts';
export { type AlertWatch, createAlertWatch } from './alert-watch.ts';
export { type AlertService, type AlertView, createAlertService } from './alerts.ts';
export { builtInDetectors, type DetectorConfig } from './detectors/index.ts';
export { createMailChannel } from './mail-channel.ts';
export {
  auditHealthCheck,
  backupOverdueCheck,
  certificateCheck,
  keydCheck,
  type StateCheck,
  type StateChecks,
  startStateChecks,
} from './state-checks.ts';
export { createWebhookChannel } from './webhook-channel.ts';
