/**
 * The audit log's Merkle tree (RFC 9162 §2.1). The code lives in src/tlog/merkle.ts, a floor
 * beneath keyd, because keyd checks the consistency proof of every checkpoint it signs with the
 * same verifier the audit log and outside verifiers use.
 */
export * from '../tlog/merkle.ts';
