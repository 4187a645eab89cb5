/**
 * The configured sinks (SIEM file, syslog, webhook) fed from the log: each keeps its own durable
 * cursor under the state folder, so it resumes after a restart and a slow one holds up nobody.
 */
import { readFileSync } from 'node:fs';
import type { AuditLogReader } from '../log.ts';
import type { AuditSequencer } from '../sequencer.ts';
import { createSinks, parseSinkConfig } from './config.ts';
import { createSinkDispatcher, type SinkDispatcher } from './dispatcher.ts';

export interface StartSinksOptions {
  /** The JSON file listing the sinks; none configured: no dispatcher. */
  sinksFile: string | undefined;
  /** Folder for the sinks' cursor files. */
  stateDir: string;
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
  const { sinksFile: file, audit, warn } = options;
  if (file === undefined) return undefined;
  const sinks = createSinks(parseSinkConfig(JSON.parse(readFileSync(file, 'utf8')), file));
  if (sinks.length === 0) return undefined;
  const dispatcher = createSinkDispatcher({
    sinks,
    stateDir: options.stateDir,
    async readEntries(from, limit) {
      const rows = await audit.reader.entries({ from, limit, below: audit.sequencer.treeHead().size });
      return rows.map((r) => ({ index: r.index, tenant: r.tenant, leaf: r.leaf }));
    },
    readCheckpoints: (after, limit) => audit.reader.checkpointsAfter(after, limit),
    logger: { info: () => {}, warn, error: warn },
  });
  audit.onEntries(() => dispatcher.notify());
  audit.onCheckpoint(() => dispatcher.notify());
  dispatcher.notify();
  return dispatcher;
}
