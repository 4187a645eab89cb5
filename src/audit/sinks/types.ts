/**
 * What the audit log hands to its outside sinks, and what a sink promises back.
 *
 * A sink is a destination outside the control store (a JSON Lines file, a syslog collector, a SIEM
 * webhook). The dispatcher (./dispatcher.ts) drives each one from its own durable cursor, so a
 * sink only has to deliver what it is given, in the order given, and say truthfully when the
 * destination has taken it: the cursor moves only after the returned promise resolves.
 */

/** One committed entry of the log, as stored in `audit_log` (see ../log-schema.ts). */
export interface SequencedEntry {
  /** 0-based leaf index (RFC 9162 §2.1); the entry names it too. */
  index: number;
  tenant: string | null;
  /** The entry's RFC 8785 canonical JSON text: exactly the leaf bytes. */
  leaf: string;
}

/** A signed checkpoint (C2SP signed note) of the first `size` entries. */
export interface SequencedCheckpoint {
  size: number;
  note: string;
}

export interface AuditSink {
  /** Unique among the configured sinks, [a-z0-9-]{1,32}; names its cursor file and its status. */
  readonly name: string;
  /** Resolves once the destination has durably accepted every entry (as far as its protocol can tell). */
  deliverEntries(entries: readonly SequencedEntry[]): Promise<void>;
  /** Resolves once the destination has durably accepted the checkpoint. */
  deliverCheckpoint(note: string, size: number): Promise<void>;
  /** Releases files, sockets and keys; the sink is not used afterwards. */
  close(): Promise<void>;
}

/** The subset of a pino logger the sinks use. */
export interface SinkLogger {
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
  error(object: object, message?: string): void;
}

/** RFC-style pattern for sink names: they become file names, so nothing that could walk a path. */
export const SINK_NAME_PATTERN = /^[a-z0-9-]{1,32}$/;
