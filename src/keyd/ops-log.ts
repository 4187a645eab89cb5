/**
 * keyd's operations log is a SHA-256 hash chain: every entry's hash covers the previous entry's
 * hash and its own fields, so an edited, dropped, inserted or reordered entry breaks the chain at
 * that entry. (The audit log proper is a Merkle tree with signed checkpoints; this log records who
 * used which key, inside keyd, and needs only tamper evidence.)
 *
 *   hash(1)   = SHA-256("tresor-keyd-ops-v1\n" ‖ GENESIS_HASH ‖ "\n" ‖ JSON([seq, at, caller, op, tenant, keyId, outcome, detail]))
 *   hash(n)   = the same with hash(n-1) in place of GENESIS_HASH   (hashes are lowercase hex)
 *
 * Entries never hold secrets: key ids, tenant ids, outcomes and short details only.
 */
import { createHash } from 'node:crypto';
import type { OpsLogEntry } from './operations.ts';

const DOMAIN = 'tresor-keyd-ops-v1\n';
export const GENESIS_HASH = '0'.repeat(64);
const MAX_DETAIL = 200;

/** An entry before the store numbers and chains it. */
export interface OpsLogDraft {
  at: string;
  caller: string;
  op: string;
  tenant: string | null;
  keyId: string | null;
  outcome: 'ok' | 'error';
  detail: string | null;
  /**
   * The client's id for a request keyd must do at most once (repeated-requests.ts): stored beside
   * the entry, in the same transaction as the change, and not part of the hash chain.
   */
  requestId?: string;
}

/** A stored entry with the hash it was chained to. */
export interface ChainedOpsLogEntry extends OpsLogEntry {
  prevHash: string;
}

export type OpsLogVerification =
  | { ok: true; entries: number; headHash: string }
  | { ok: false; entries: number; firstBadSeq: number; reason: string };

/** Keeps details short and single-line; they are for operators, never for secrets. */
export function clampDetail(detail: string | null): string | null {
  if (detail === null) return null;
  const line = detail.replace(/[\r\n\t]+/g, ' ');
  return line.length > MAX_DETAIL ? `${line.slice(0, MAX_DETAIL - 1)}…` : line;
}

export function opsLogHash(prevHash: string, seq: number, draft: OpsLogDraft): string {
  const body = JSON.stringify([
    seq,
    draft.at,
    draft.caller,
    draft.op,
    draft.tenant,
    draft.keyId,
    draft.outcome,
    draft.detail,
  ]);
  return createHash('sha256').update(DOMAIN).update(prevHash).update('\n').update(body).digest('hex');
}

/**
 * Recomputes the chain over entries in seq order; reports the first entry that does not fit.
 * Entries may come page by page (PostgreSQL's store reads the log in pages).
 */
export async function verifyOpsChain(
  entries: Iterable<ChainedOpsLogEntry> | AsyncIterable<ChainedOpsLogEntry>,
): Promise<OpsLogVerification> {
  let expectedSeq = 1;
  let prev = GENESIS_HASH;
  let count = 0;
  for await (const e of entries) {
    const bad = (reason: string): OpsLogVerification => ({
      ok: false,
      entries: count,
      firstBadSeq: e.seq,
      reason,
    });
    if (e.seq !== expectedSeq) return bad(`expected seq ${expectedSeq}: an entry is missing or out of order`);
    if (e.prevHash !== prev) return bad('prev_hash does not match the previous entry');
    if (opsLogHash(prev, e.seq, e) !== e.hash) return bad('hash does not match the entry');
    prev = e.hash;
    expectedSeq += 1;
    count += 1;
  }
  return { ok: true, entries: count, headHash: prev };
}
