/**
 * The audit log as the rest of Tresor sees it: the sequencer (outboxes → one Merkle log), the
 * checkpointer (signed checkpoints, witness, rollback check), the reader (entries, proofs) and
 * one health verdict that the request pipeline and /readyz consult to fail closed.
 *
 *   outbox commit ──notify──▶ sequencer ──appended──▶ listeners (stream, sinks)
 *                                  │ tree head
 *                                  ▼
 *                            checkpointer ──▶ audit_checkpoints, witness, sinks
 */
import type { SqliteStore } from '../store/sqlite/store.ts';
import type { Store } from '../store/types.ts';
import type { ArchivedRange } from './archived-log.ts';
import {
  type Checkpointer,
  type CheckpointKeyd,
  type CheckpointWitness,
  createCheckpointer,
} from './checkpointer.ts';
import type { WithAuditEvents } from './event.ts';
import { type AuditLogReader, createAuditLogReader } from './log.ts';
import type { WithAuditLog } from './log-schema.ts';
import {
  type AuditSequencer,
  type AuditSequencerDeps,
  createAuditSequencer,
  type SequencedEntry,
} from './sequencer.ts';
import { type AuditTileReader, createAuditTileReader } from './tile-reader.ts';

export interface AuditCondition {
  name: string;
  /** A reason when the condition blocks audited requests; null when it is fine. */
  check(): string | null;
}

export interface AuditHealth {
  ok: boolean;
  /** Every reason the log cannot be trusted to record now (for operators; no entry contents). */
  reasons: string[];
}

export interface AuditLog {
  readonly sequencer: AuditSequencer;
  readonly checkpointer: Checkpointer;
  readonly reader: AuditLogReader;
  /** The log as C2SP tlog-tiles resources (tiles.ts). */
  readonly tiles: AuditTileReader;
  start(): Promise<void>;
  /** Whether audited requests may proceed (fail closed when not). */
  health(): AuditHealth;
  /** Adds a condition to health() (disk space, sinks…). */
  addCondition(condition: AuditCondition): void;
  /** Called with each batch of newly durable entries, in index order. */
  onEntries(listener: (entries: readonly SequencedEntry[]) => void): () => void;
  onCheckpoint(listener: (checkpoint: { size: number; note: string }) => void): () => void;
  /** The published verifier key (C2SP note verifier key). */
  verifierKey(): Promise<string>;
  close(): Promise<void>;
}

export interface AuditLogDeps {
  control: Store<WithAuditLog & WithAuditEvents>;
  openSource(source: string): Promise<Store<WithAuditEvents>>;
  listSources(): Promise<string[]>;
  /** The tenants' pending marks (pending-sources.ts): listSources lists them, the sequencer clears them. */
  pending?: AuditSequencerDeps['pending'];
  signingKey(): Promise<{ name: string; publicKey: Buffer; verifierKey: string }>;
  /** keyd's checkpoint signing: the checkpoint's parts and a consistency proof, never its text. */
  keyd: CheckpointKeyd;
  origin: string;
  witness: CheckpointWitness;
  checkpointIntervalMs?: number;
  signBoundMs?: number;
  sequencerFailureBoundMs?: number;
  /**
   * On a database several server processes share (PostgreSQL): the sequencer's lease, the
   * statements' parameter style and the channel its writes NOTIFY (sequencer.ts); absent on SQLite.
   */
  shared?: Pick<AuditSequencerDeps, 'lease' | 'numberedParameters' | 'logChannel'>;
  /** The sealed segments that serve the log below the archived end (archived-log.ts); none by default. */
  archive?: ArchivedRange;
  now?: () => Date;
}

/** A SQLite control store on a file can take the sequencer's worker thread (sequencer-thread.ts). */
export function sequencerOffloadOf(store: object): AuditSequencerDeps['offload'] {
  const sqlite = store as Partial<SqliteStore<unknown>> & { location?: unknown };
  const whileIdle = sqlite.whileIdle?.bind(sqlite);
  if (whileIdle === undefined || typeof sqlite.location !== 'string' || sqlite.location === ':memory:')
    return undefined;
  return { path: sqlite.location, whileIdle };
}

export function createAuditLog(deps: AuditLogDeps): AuditLog {
  const lease = deps.shared?.lease;
  // The worker thread writes through a SQLite connection of its own: only on SQLite.
  const offload = deps.shared?.lease === undefined ? sequencerOffloadOf(deps.control) : undefined;
  const sequencer = createAuditSequencer({
    control: deps.control,
    ...(offload ? { offload } : {}),
    ...deps.shared,
    openSource: deps.openSource,
    listSources: deps.listSources,
    ...(deps.pending ? { pending: deps.pending } : {}),
    ...(deps.now ? { now: deps.now } : {}),
    ...(deps.sequencerFailureBoundMs !== undefined ? { failureBoundMs: deps.sequencerFailureBoundMs } : {}),
  });
  const reader = createAuditLogReader(
    (deps.control as unknown as Store<WithAuditLog>).db,
    () => sequencer.treeHead().size,
    deps.archive,
  );
  const checkpointListeners = new Set<(checkpoint: { size: number; note: string }) => void>();
  const checkpointer = createCheckpointer({
    control: deps.control as unknown as Store<WithAuditLog>,
    reader,
    treeHead: () => sequencer.treeHead(),
    signingKey: deps.signingKey,
    keyd: deps.keyd,
    origin: deps.origin,
    witness: deps.witness,
    onCheckpoint(checkpoint) {
      for (const listener of checkpointListeners) {
        try {
          listener(checkpoint);
        } catch {
          // the checkpoint is durable already; a listener's failure is its own
        }
      }
    },
    ...(deps.checkpointIntervalMs !== undefined ? { intervalMs: deps.checkpointIntervalMs } : {}),
    ...(deps.signBoundMs !== undefined ? { signBoundMs: deps.signBoundMs } : {}),
    ...(deps.now ? { now: deps.now } : {}),
    // On a shared database only the sequencer's lease holder signs; the others adopt its checkpoints.
    ...(lease !== undefined ? { leads: () => lease.held() } : {}),
  });
  const conditions: AuditCondition[] = [];

  return {
    sequencer,
    checkpointer,
    reader,
    tiles: createAuditTileReader(reader, deps.archive),
    async start() {
      await sequencer.start();
      await checkpointer.start();
    },
    health() {
      const reasons: string[] = [];
      const s = sequencer.health();
      if (!s.ok && s.reason) reasons.push(s.reason);
      const c = checkpointer.health();
      if (!c.ok && c.reason) reasons.push(c.reason);
      for (const condition of conditions) {
        const reason = condition.check();
        if (reason !== null) reasons.push(reason);
      }
      return { ok: reasons.length === 0, reasons };
    },
    addCondition(condition) {
      conditions.push(condition);
    },
    onEntries(listener) {
      return sequencer.onAppended(listener);
    },
    onCheckpoint(listener) {
      checkpointListeners.add(listener);
      return () => checkpointListeners.delete(listener);
    },
    verifierKey: () => checkpointer.verifierKey(),
    async close() {
      await sequencer.drain().catch(() => undefined);
      await checkpointer.checkpoint().catch(() => undefined);
      await checkpointer.close();
      await sequencer.close();
    },
  };
}
