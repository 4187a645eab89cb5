/**
 * The per-leaf work of `tresor audit verify` over one batch of rows — the leaf hash (RFC 9162 §2.1.1)
 * and the exact canonical-form and own-index check (canonical-check.ts) — as a function of the batch
 * alone, so that it can run on a worker thread (leaf-check-pool.ts) while the verifier's thread reads
 * the next rows and builds the tree from the hashes, in log order. The verifier decides what each
 * result means; this only reports it.
 */
import * as crypto from 'node:crypto';
import { scanCanonicalLeaf, scanFailure, scannedIndexIs, scannedIndexText } from './canonical-check.ts';

/** The leaf is canonical JSON naming its own row index. */
export const LEAF_OK = 0;
/** The leaf is not canonical JSON; the detail says why. */
export const LEAF_NOT_CANONICAL = 1;
/** The leaf is canonical but names another index; the detail is the index text it has (null: none). */
export const LEAF_OWN_INDEX = 2;
export type LeafStatus = typeof LEAF_OK | typeof LEAF_NOT_CANONICAL | typeof LEAF_OWN_INDEX;

/** Rows first … first + count - 1 as 0x00 ‖ leaf₀ ‖ 0x00 ‖ … ‖ 0x00 (verify.ts LeafBatch). */
export interface LeafBatchRows {
  first: number;
  count: number;
  bytes: Uint8Array;
  /** count + 1 offsets: starts[i] is the 0x00 before leaf i, starts[count] the final one. */
  starts: Uint32Array;
}

export interface LeafBatchCheck {
  /** SHA-256(0x00 ‖ leaf) of each leaf, 32 bytes each back to back. */
  hashes: Uint8Array;
  /** A LeafStatus per leaf. */
  status: Uint8Array;
  /** The detail of each leaf whose status is not LEAF_OK, in order. */
  details: (string | null)[];
}

export function checkLeafBatch(batch: LeafBatchRows): LeafBatchCheck {
  const { first, count, bytes, starts } = batch;
  const hashes = Buffer.alloc(count * 32); // not from the shared pool: the worker transfers it
  const status = new Uint8Array(count);
  const details: (string | null)[] = [];
  for (let i = 0; i < count; i++) {
    const from = starts[i] as number;
    const to = starts[i + 1] as number;
    hashes.write(sha256Latin1(bytes.subarray(from, to)), i * 32, 'latin1');
    const s = checkLeaf(bytes, from + 1, to, first + i);
    if (s !== LEAF_OK) {
      status[i] = s;
      details.push(leafCheckDetail(s, bytes));
    }
  }
  return { hashes, status, details };
}

/** Checks leaf bytes[start, end) of row `index`; bytes[end] must be a control byte (canonical-check.ts). */
export function checkLeaf(bytes: Uint8Array, start: number, end: number, index: number): LeafStatus {
  if (!scanCanonicalLeaf(bytes, start, end)) return LEAF_NOT_CANONICAL;
  return scannedIndexIs(bytes, index) ? LEAF_OK : LEAF_OWN_INDEX;
}

/** The detail of the last checkLeaf, which returned `status`, over `bytes`. */
export function leafCheckDetail(status: LeafStatus, bytes: Uint8Array): string | null {
  if (status === LEAF_NOT_CANONICAL) return scanFailure();
  return status === LEAF_OWN_INDEX ? (scannedIndexText(bytes) ?? null) : null;
}

const oneShotHash = (crypto as { hash?: typeof crypto.hash }).hash;

/** SHA-256 as a 32-character latin1 ('binary') string; string input is hashed as its UTF-8 bytes. */
export function sha256Latin1(data: string | Uint8Array): string {
  if (oneShotHash !== undefined) return oneShotHash('sha256', data, 'binary');
  return crypto.createHash('sha256').update(data).digest('binary');
}
