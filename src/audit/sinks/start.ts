/**
 * The configured sinks (SIEM file, syslog, webhook) fed from the log: each keeps its own durable
 * cursor (the server's: in the control store; else under the state folder), so it resumes after a
 * restart and a slow one holds up nobody. With several processes on one database, the lease holder
 * alone delivers (dispatcher.ts), and a new holder goes on from the stored cursors.
 */
import { readFileSync } from 'node:fs';
import type { AuditLogReader } from '../log.ts';
import type { AuditSequencer } from '../sequencer.ts';
import { createSinks, parseSinkConfig } from './config.ts';
import type { SinkCursors } from './cursors.ts';
import { createSinkDispatcher, type SinkDispatcher } from './dispatcher.ts';

export interface StartSinksOptions {
  /** The JSON file listing the sinks; none configured: no dispatcher. */
  sinksFile: string | undefined;
  /** Folder for the sinks' cursor files, when `cursors` is not given. */
  stateDir: string;
  /** Where the cursors are kept (the control store's table); default: files in stateDir. */
  cursors?: SinkCursors;
  /**
   * Several processes on one database: deliver only while this process holds the sequencer's lease
   * (`held`, and `confirm` asks the database before each delivery); `onChange` wakes the sinks.
   */
  lease?: {
    held(): boolean;
    onChange(listener: (held: boolean) => void): unknown;
    confirm(): Promise<boolean>;
  };
  /** The part of the audit log (audit-log.ts) the sinks read and follow. */
  audit: {
    reader: Pick<AuditLogReader, 'entries' | 'checkpointsAfter'>;
    sequencer: Pick<AuditSequencer, 'treeHead'>;
    onEntries(listener: () => void): unknown;
    onCheckpoint(listener: () => void): unknown;
  };
  /** Where the sinks' warnings and failures go. */
  warn(obj: object, msg: string): void;
}

/** Starts the dispatcher over the configured sinks, or answers undefined when there are none. */
export function startSinks(options: StartSinksOptions): SinkDispatcher | undefined {
  const { sinksFile: file, audit, warn, lease } = options;
  if (file === undefined) return undefined;
  const sinks = createSinks(parseSinkConfig(JSON.parse(readFileSync(file, 'utf8')), file));
  if (sinks.length === 0) return undefined;
  const dispatcher = createSinkDispatcher({
    sinks,
    stateDir: options.stateDir,
    ...(options.cursors ? { cursors: options.cursors } : {}),
    ...(lease ? { leads: () => lease.held(), confirmLead: () => lease.confirm() } : {}),
    async readEntries(from, limit) {
      const rows = await audit.reader.entries({ from, limit, below: audit.sequencer.treeHead().size });
      return rows.map((r) => ({ index: r.index, tenant: r.tenant, leaf: r.leaf }));
    },
    readCheckpoints: (after, limit) => audit.reader.checkpointsAfter(after, limit),
    logger: { info: () => {}, warn, error: warn },
  });
  audit.onEntries(() => dispatcher.notify());
  audit.onCheckpoint(() => dispatcher.notify());
  lease?.onChange(() => dispatcher.notify());
  dispatcher.notify();
  return dispatcher;
}
