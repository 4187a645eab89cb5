/**
 * What an alert's deliveries say, written once for the webhook and the mail: the alert's ids,
 * kind, severity, times, count and evidence (audit log indices). Nothing else: no customer value,
 * no secret, no note (notes are staff's free text and stay in the console).
 */
import type { AlertView } from './alerts.ts';

export interface AlertMessage {
  type: 'alert.opened';
  alert: {
    id: string;
    kind: string;
    severity: string;
    subject: { kind: string; id: string };
    firstSeen: string;
    lastSeen: string;
    count: number;
    evidence: number[];
    state: string;
  };
}

export function alertMessage(alert: AlertView): AlertMessage {
  return {
    type: 'alert.opened',
    alert: {
      id: alert.id,
      kind: alert.kind,
      severity: alert.severity,
      subject: { kind: alert.subject.kind, id: alert.subject.id },
      firstSeen: alert.firstSeen,
      lastSeen: alert.lastSeen,
      count: alert.count,
      evidence: [...alert.evidence],
      state: alert.state,
    },
  };
}

/** The mail's subject and plain-text body. */
export function alertMail(message: AlertMessage): { subject: string; text: string } {
  const a = message.alert;
  return {
    subject: `[Tresor] ${a.severity} alert: ${a.kind} (${a.subject.kind} ${a.subject.id})`,
    text: [
      `Tresor raised an alert.`,
      '',
      `alert:     ${a.id}`,
      `kind:      ${a.kind}`,
      `severity:  ${a.severity}`,
      `subject:   ${a.subject.kind} ${a.subject.id}`,
      `first seen: ${a.firstSeen}`,
      `last seen:  ${a.lastSeen}`,
      `count:     ${a.count}`,
      `evidence (audit log indices): ${a.evidence.join(', ')}`,
      '',
      'Acknowledge and resolve it in the console or with GET/POST /v1/alerts.',
      '',
    ].join('\n'),
  };
}
