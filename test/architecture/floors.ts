/**
 * The house's floors, top to bottom: the one table the import check (imports.test.ts) and
 * docs/architecture.md go by. A part is a top-level folder of src/ (or a file directly in src/,
 * named with its extension). An import may point down to a lower floor or stay inside its own
 * part; it may not point up, nor sideways to another part of the same floor unless SIDEWAYS_ALLOWED
 * names that pair with its reason.
 */
export interface Floor {
  /** The parts that live on this floor. */
  readonly parts: readonly string[];
  /** What lives here, for failure messages and the docs. */
  readonly holds: string;
}

export interface SidewaysImport {
  readonly from: string;
  readonly to: string;
  readonly why: string;
}

export const FLOORS: readonly Floor[] = [
  { parts: ['cli'], holds: 'the command line: parses flags, starts things' },
  { parts: ['server'], holds: 'the composition root: wiring only' },
  { parts: ['http'], holds: 'routes, request pipeline, problem answers, OpenAPI' },
  // alerts judge what every domain below records (sign-ins, grants, tenants, the audit log itself).
  {
    parts: ['alerts'],
    holds: 'detectors over the audit log, stored alerts, their delivery (webhook, mail)',
  },
  { parts: ['access'], holds: 'grants and access reviews' },
  { parts: ['identity'], holds: 'people, operators, API keys, sessions, second factors' },
  // backup reads vault's tenant list and audit's checkpoints and verification, so it sits above vault.
  {
    parts: ['backup'],
    holds: 'backups: store snapshots, encrypted archives, destinations, retention, restore',
  },
  { parts: ['vault'], holds: 'tenants, collections, records, data keys' },
  // monitor sits beside audit and does not import it: the server hands it the audit log's counts.
  {
    parts: ['audit', 'monitor'],
    holds: 'the tamper-evident audit log and its sinks; metrics and the metrics listener',
  },
  {
    parts: ['keyd', 'config', 'store', 'probe'],
    holds: 'the key service (and its client), configuration, storage, the availability prober',
  },
  // keyd backs up its own store to the same destinations as the server's backups, so the generic
  // half of a backup (destinations, retention, chunk cipher) sits beneath keyd.
  {
    parts: ['objects'],
    holds: 'backup objects: destinations (folder, S3) with read-back, backup ids, retention, chunk cipher',
  },
  // keyd checks the consistency proof of every checkpoint it signs and formats the checkpoint text
  // itself, so the log's formats sit beneath keyd (audit builds on them).
  {
    parts: ['tlog'],
    holds: 'transparency-log formats: the RFC 9162 Merkle tree and proofs, the C2SP checkpoint text',
  },
  {
    parts: ['crypto', 'tls', 'errors.ts', 'text.ts', 'thread-priority.ts', 'ts-worker.ts'],
    holds:
      'primitives: cryptography, certificates, the error catalogue, text checks, thread priority, worker threads',
  },
];

export const SIDEWAYS_ALLOWED: readonly SidewaysImport[] = [
  {
    from: 'crypto',
    to: 'errors.ts',
    why: 'the error catalogue is the one vocabulary of errors; crypto may use it and nothing else of ours',
  },
];
