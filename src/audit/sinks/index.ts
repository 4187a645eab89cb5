/** The audit log's outside sinks: what the sequencer and the server wire up. */
export {
  createSinks,
  type FileSinkConfig,
  parseSinkConfig,
  type SinkConfig,
  type SyslogSinkConfig,
  type WebhookSinkConfig,
} from './config.ts';
export {
  auditSinkCursorsMigration,
  auditSinkCursorsPgMigration,
  fileSinkCursors,
  type SinkCursor,
  type SinkCursors,
  storedSinkCursors,
  type WithAuditSinkCursors,
} from './cursors.ts';
export {
  createSinkDispatcher,
  type SinkDispatcher,
  type SinkDispatcherOptions,
  type SinkStatus,
} from './dispatcher.ts';
export {
  checkpointRecord,
  createJsonlFileSink,
  entryRecord,
  type JsonlFileSinkOptions,
} from './jsonl-file.ts';
export { createSyslogSink, type SyslogSinkOptions, structuredData } from './syslog.ts';
export type { AuditSink, SequencedCheckpoint, SequencedEntry, SinkLogger } from './types.ts';
export { SINK_NAME_PATTERN } from './types.ts';
export { createWebhookSink, MIN_SECRET_BYTES, type WebhookSinkOptions, webhookSignature } from './webhook.ts';
