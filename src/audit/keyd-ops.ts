/**
 * keyd's operations in the audit log. keyd keeps its own hash-chained operations log (in its own
 * store, apart from the data); this job copies each operation into the audit log as an entry of
 * the system actor `keyd`, with keyd's chain hash, so key operations are in the one tamper-evident
 * log the customer watches — and keyd's chain head is anchored there (a truncated keyd log no
 * longer matches the hashes the audit log already holds).
 *
 * Left out: operations that only read keyd's state (status, health, public keys, the log itself)
 * and signing (audit checkpoints every second — mirroring them would make an idle log grow by
 * itself — and deletion certificates, whose issue the tenant's close entries already record). A reset of
 * keyd's checkpoint tree (a restored deployment, a new log) is copied: the fork it makes is in the log. The copy is exactly once: the events and the advanced cursor commit together.
 *
 * A repeated request (rotate, retire, destroy sent again with its request id after its answer was
 * lost) is copied as what it is, `keyd.repeated-request` pointing at the entry it repeats, never as
 * a second rotation: an auditor counting rotations must count the changes keyd made, and one
 * reviewing a caller must still see that it asked twice (a failover, a lost answer).
 */
import type { OpsLogEntry } from '../keyd/operations.ts';
import { repeatedRequestOf } from '../keyd/repeated-request-detail.ts';
import type { Store } from '../store/types.ts';
import { type AuditEvent, appendAuditEvent, type WithAuditEvents } from './event.ts';
import type { WithAuditLog } from './log-schema.ts';

/**
 * keyd's operations-log entry, as its `opsLog` operation returns it. Its detail is read only to
 * tell a repeated request; it is not copied.
 */
export type KeydOpsEntry = Omit<OpsLogEntry, 'detail'> & Partial<Pick<OpsLogEntry, 'detail'>>;

/** The action of a request keyd answered as a repeat of an earlier one, without acting again. */
export const KEYD_REPEATED_REQUEST = 'keyd.repeated-request';

export const KEYD_OPS_CURSOR = 'keyd-ops';
const NOT_MIRRORED = new Set([
  'status',
  'health',
  'publicKey',
  'opsLog',
  'hello',
  'sign',
  'signCheckpoint',
  'checkpointTree',
  'signDeletionCertificate',
]);
const PAGE = 500;

export interface KeydOpsMirror {
  /** Copies every keyd operation since the last copy; returns how many were looked at. */
  runOnce(): Promise<number>;
}

export function createKeydOpsMirror(deps: {
  control: Store<WithAuditLog & WithAuditEvents>;
  opsLog(from: number, limit: number): Promise<KeydOpsEntry[]>;
}): KeydOpsMirror {
  async function cursor(): Promise<number> {
    const row = await deps.control.db
      .selectFrom('audit_cursors')
      .select('seq')
      .where('source', '=', KEYD_OPS_CURSOR)
      .executeTakeFirst();
    return row ? Number(row.seq) : 0;
  }

  return {
    async runOnce() {
      let seen = 0;
      for (;;) {
        const after = await cursor();
        const ops = await deps.opsLog(after + 1, PAGE);
        const fresh = ops.filter((o) => o.seq > after);
        if (fresh.length === 0) return seen;
        seen += fresh.length;
        const last = fresh[fresh.length - 1] as KeydOpsEntry;
        // Only reads of keyd (this job's own opsLog calls among them): advance the cursor now and
        // then, not on every pass, so an idle log costs no write.
        if (fresh.every((o) => NOT_MIRRORED.has(o.op)) && fresh.length < 100) return seen;
        await deps.control.write(async (trx) => {
          for (const op of fresh) {
            if (NOT_MIRRORED.has(op.op)) continue;
            await appendAuditEvent(trx, keydOpEvent(op));
          }
          await trx
            .insertInto('audit_cursors')
            .values({ source: KEYD_OPS_CURSOR, seq: last.seq })
            .onConflict((oc) => oc.column('source').doUpdateSet({ seq: last.seq }))
            .execute();
        });
        if (ops.length < PAGE) return seen;
      }
    },
  };
}

/**
 * One keyd operation as an audit event. A repeated request (the same client request id after a
 * lost answer, src/keyd/repeated-requests.ts) changed nothing: it is `keyd.repeated-request`, naming
 * the operation and the keyd entry whose change it repeats, so a count of `keyd.rotate-tenant-key`
 * (or retire, destroy) is the count of changes made, and the caller's second ask stays visible.
 */
function keydOpEvent(op: KeydOpsEntry): AuditEvent {
  const action = `keyd.${op.op.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  const target = { keydSeq: op.seq, caller: op.caller, keyId: op.keyId, keydHash: op.hash };
  const repeatOf = op.outcome === 'ok' ? repeatedRequestOf(op.detail) : null;
  return {
    at: op.at,
    actor: { kind: 'system', id: 'keyd' },
    tenant: op.tenant,
    action: repeatOf === null ? action : KEYD_REPEATED_REQUEST,
    target: repeatOf === null ? target : { ...target, repeats: action, repeatOf },
    outcome: op.outcome === 'ok' ? 'success' : 'failure',
  };
}
