/**
 * What a detector is: a pure judge of audit entries, in log order. It keeps its windows in memory
 * and answers the signals an entry completes; it never reads a store and never waits, so the watch
 * (alert-watch.ts) can run every detector over a batch in one pass, off the request path.
 */
import type { AuditEvent } from '../../audit/event.ts';
import type { AlertSignal } from '../alert-vocabulary.ts';

/** An audit log entry as the detectors see it: its index (the evidence) and its event. */
export interface WatchedEntry {
  index: number;
  event: AuditEvent;
}

export interface Detector {
  /** For logs and the docs: the setting section it is configured by. */
  readonly name: string;
  observe(entry: WatchedEntry): AlertSignal[];
}
