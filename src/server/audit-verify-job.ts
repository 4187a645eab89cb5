/**
 * The live audit log, re-verified on a schedule (`audit.verifyIntervalMinutes`, daily by default):
 * the control store's log read beside the running server (one read-only snapshot; neither SQLite WAL
 * readers nor PostgreSQL's block the writer; backend.ts opens the right one) and checked by the audit verifier (src/audit/verify.ts) — every entry's canonical
 * form, the tree recomputed from the leaves, every stored checkpoint's signature, and the latest
 * checkpoint the local witness holds (which must be reached: no rollback, no truncation). The result
 * is audited as `audit.verify` (system actor `audit-verify`: size, checkpoints, the kinds of problems
 * found, never an entry's content), so the detectors raise `audit.verification-failed` from the log
 * itself; a failure also fails the `audit.verify` job (tresor status, the job metrics).
 *
 * Entries below the archived end (audit/archived-end.ts) are read back from the sealed segments on
 * the backup destinations and checked with the rest (audit/verify-archived.ts); a segment missing or
 * tampered with on any destination fails the run (kind `segment`).
 */

import type { AuditArchive } from '../audit/archived-segments.ts';
import { appendAuditEvent, type WithAuditEvents } from '../audit/event.ts';
import type { AuditLogSnapshot } from '../audit/log-reader.ts';
import { ed25519VerifierKey } from '../audit/note.ts';
import { systemEvent } from '../audit/system-event.ts';
import { verifyAuditLogWithArchive } from '../audit/verify-archived.ts';
import { TresorError } from '../errors.ts';
import type { KeyService } from '../keyd/operations.ts';
import type { Store } from '../store/types.ts';

export interface LiveAuditCheck {
  ok: boolean;
  size: number;
  problems: number;
  kinds: string[];
}

export async function verifyLiveAuditLog(deps: {
  /** A read-only snapshot of the live log (backend.ts openLog). */
  openLog: () => Promise<AuditLogSnapshot>;
  origin: string;
  keyd: KeyService;
  witnessLatest: () => Promise<string | null>;
  /** The archived end E (0: nothing archived), read after the snapshot is opened. */
  archivedEnd: () => Promise<number>;
  /** The segments' destinations and key, asked for only when E > 0. */
  archive: (origin: string) => Promise<AuditArchive>;
}): Promise<LiveAuditCheck> {
  const key = await deps.keyd.call('publicKey', { purpose: 'audit-checkpoint' });
  const witnessed = await deps.witnessLatest();
  const reader = await deps.openLog();
  try {
    const end = await deps.archivedEnd();
    const report = await verifyAuditLogWithArchive(
      reader,
      { end, archive: deps.archive },
      {
        witness: witnessed === null ? [] : [witnessed],
        verifierKey: ed25519VerifierKey(deps.origin, key.publicKey),
        origin: deps.origin,
      },
    );
    const kinds: string[] = [...new Set(report.problems.map((p) => p.kind))].sort();
    const witnessMissing = witnessed !== null && report.witnessCheckpoints !== 1;
    if (witnessMissing) kinds.push('witness-checkpoint');
    return { ok: report.ok && !witnessMissing, size: report.size, problems: report.problems.length, kinds };
  } finally {
    await reader.close();
  }
}

/** One scheduled run: verify, audit the result, fail the job when the log does not hold. */
export async function runLiveAuditVerification(deps: {
  openLog: () => Promise<AuditLogSnapshot>;
  origin: () => string;
  keyd: KeyService;
  witnessLatest: () => Promise<string | null>;
  archivedEnd: () => Promise<number>;
  archive: (origin: string) => Promise<AuditArchive>;
  control: Store<WithAuditEvents>;
  clock: () => Date;
}): Promise<void> {
  const check = await verifyLiveAuditLog({ ...deps, origin: deps.origin() });
  const event = systemEvent(
    {
      id: 'audit-verify',
      action: 'audit.verify',
      outcome: check.ok ? 'success' : 'failure',
      target: { size: check.size, problems: check.problems, kinds: check.kinds },
    },
    deps.clock(),
  );
  await deps.control.write((trx) => appendAuditEvent(trx, event));
  if (!check.ok)
    throw new TresorError(
      'TRESOR_ERR_AUDIT_VERIFICATION_FAILED',
      `the audit log failed verification: ${check.problems} problem(s) (${check.kinds.join(', ')})`,
    );
}
