/**
 * `tresor audit verify`, the core: recomputes the RFC 9162 tree of the audit log from its entries and
 * checks it against every signed checkpoint of the store and of the witness (docs/audit.md,
 * "Formats"). It is independent of SQLite: the CLI feeds it from a control.sqlite file
 * (log-reader.ts) or from an export file (export-file.ts), and it needs only the verifier key.
 *
 * What it checks, and the problem each failure is reported as:
 * - each entry: its leaf hash against the stored level-0 hash, its leaf text being RFC 8785 canonical
 *   JSON of an object, its own `index` equal to its row index (entry-modified, index-mismatch);
 * - the row indices run 0, 1, 2, … without a hole (gap);
 * - each checkpoint: a valid signature by the key (checkpoint-signature), the log's origin
 *   (checkpoint-origin), no two of one size with different roots (checkpoint-inconsistent), a size
 *   the log reaches (truncated) and a root equal to the recomputed tree's at that size (root-mismatch);
 * - each witness checkpoint likewise, and none newer than the store or disagreeing with it (rollback);
 * - over a pruned log, the sealed segments holding its archived part (verify-archived.ts: segment).
 * The roots of all checkpoints matching the one recomputed tree is what makes them consistent: two
 * checkpoints that are both roots of prefixes of one log are consistent by definition (RFC 9162 §2.1.4).
 *
 * `firstBadIndex` is the smallest entry index implicated. A root mismatch without per-entry evidence
 * (entry and stored hash both rewritten) implicates the range after the last checkpoint that matched:
 * the index given is its start, the message names the range.
 *
 * Memory is O(log n) plus the checkpoints: the tree keeps only its peaks (MerkleAccumulator's merge),
 * the checkpoints are loaded first (they are few) and met in size order as the entries stream past.
 * Speed (≥ 200,000 entries/s is the target; bench/audit-verify.ts measures it): the SQLite reader
 * hands over leaves a few thousand at a time as one buffer of UTF-8 bytes (LeafBatch), so a leaf is
 * never decoded to a string; the leaf check (canonical-check.ts) scans those bytes in place and
 * accepts exactly canonical JSON — no JSON.parse, no re-serialisation — allocating nothing per entry;
 * the two SHA-256 calls per entry (leaf, amortised one interior node) take crypto.hash's fast path
 * with latin1 strings for hashes. The CLI runs the per-leaf work (leaf-batch-check.ts) on a worker
 * thread while this one reads and builds the tree (verifyAuditLogInParallel): the same checks,
 * results applied in log order.
 */
import * as crypto from 'node:crypto';
import { availableParallelism } from 'node:os';
import { LONE_SURROGATE } from './canonical-check.ts';
import { type Checkpoint, parseCheckpoint, verifyCheckpoint } from './checkpoint.ts';
import {
  checkLeaf,
  checkLeafBatch,
  LEAF_NOT_CANONICAL,
  LEAF_OK,
  LEAF_OWN_INDEX,
  type LeafBatchCheck,
  type LeafBatchRows,
  type LeafStatus,
  leafCheckDetail,
  sha256Latin1,
} from './leaf-batch-check.ts';
import { createLeafCheckPool } from './leaf-check-pool.ts';
import { emptyRoot, MerkleAccumulator } from './merkle.ts';
import { type NoteVerifier, parseNote, parseVerifierKey } from './note.ts';

export type ProblemKind =
  | 'entry-modified'
  | 'index-mismatch'
  | 'gap'
  | 'checkpoint-signature'
  | 'checkpoint-origin'
  | 'root-mismatch'
  | 'truncated'
  | 'checkpoint-inconsistent'
  | 'rollback'
  | 'segment';

export interface VerifyProblem {
  kind: ProblemKind;
  /** The first entry index implicated, when one is. */
  index?: number;
  /** The tree size of the checkpoint concerned, when one is. */
  size?: number;
  message: string;
}

export interface VerifyReport {
  ok: boolean;
  /** Entries read. */
  size: number;
  /** Store checkpoints with a valid signature for the log's origin. */
  checkpoints: number;
  /** Witness checkpoints with a valid signature for the log's origin. */
  witnessCheckpoints: number;
  /** The largest checkpoint size whose root matched the recomputed tree (0 if none): entries past it are unsigned. */
  verifiedSize: number;
  origin: string | null;
  firstBadIndex: number | null;
  problems: VerifyProblem[];
  /** Problems found but not listed, beyond MAX_LISTED_PROBLEMS. */
  omittedProblems: number;
}

export interface VerifyEntry {
  /** The row index (position in the store or export). */
  index: number;
  /** The leaf: the entry's canonical JSON text. */
  leaf: string;
  /**
   * The level-0 hash the store holds for this index, when the source has one: 32 bytes, or the same
   * bytes as a 32-character latin1 ('binary') string, which is cheaper to hand out per entry; null
   * when the source keeps leaf hashes but has none for this index (itself a sign of tampering).
   */
  storedLeafHash?: Buffer | string | null | undefined;
}

/**
 * Consecutive rows `first`, `first + 1`, … `first + count - 1` in one buffer, as the SQLite reader
 * hands them over: 0x00 ‖ leaf₀ ‖ 0x00 ‖ leaf₁ ‖ … ‖ 0x00, leaves as their UTF-8 bytes. The 0x00 before
 * a leaf is RFC 9162's leaf hash prefix, so bytes[starts[i], starts[i + 1]) is exactly the input of
 * leaf i's hash; the final 0x00 ends the last leaf. No leaf holds a 0x00 byte.
 */
export interface LeafBatch extends LeafBatchRows {
  /** The level-0 hashes stored for the rows, 32 bytes each back to back, as a latin1 string. */
  storedLeafHashes: string;
}

export interface VerifyInput<E = Iterable<VerifyEntry | LeafBatch>> {
  entries: E;
  /** Signed checkpoint notes from the store (or export file). */
  checkpoints: Iterable<string>;
  /** Signed checkpoint notes held by the witness. */
  witness?: Iterable<string>;
  /** The C2SP note verifier key `name+hexid+base64` of the checkpoint signer. */
  verifierKey: string;
  /** The log's origin; by default the origin of the smallest validly signed store checkpoint. */
  origin?: string;
}

export { type CanonicalCheck, checkCanonicalObject, MAX_CANONICAL_DEPTH } from './canonical-check.ts';

/** A report lists this many problems at most; the rest are counted (the first bad index stays exact). */
export const MAX_LISTED_PROBLEMS = 1000;

/** Verifies a log whose entries are a synchronous iterable (the SQLite reader). */
export function verifyAuditLog(input: VerifyInput): VerifyReport {
  const run = new LogVerification(input);
  for (const e of input.entries) {
    if ('starts' in e) run.addBatch(e);
    else run.add(e.index, e.leaf, e.storedLeafHash);
  }
  return run.finish();
}

/**
 * verifyAuditLog with the leaf hashes and canonical checks of each LeafBatch on `workers` worker
 * threads (leaf-check-pool.ts) while this thread reads the rows and applies the results in log order:
 * the same checks and the same report, sooner where a core is free. When the workers fall behind
 * (their cores busy with other work) this thread checks the next batches itself instead of waiting,
 * so a loaded machine costs little more than verifyAuditLog. By default one worker per core beside
 * this thread's; with none, it is verifyAuditLog. With `nice` (a verification in the background of a
 * serving process) the workers lower their CPU priority and this thread only waits for them.
 */
export async function verifyAuditLogInParallel(
  input: VerifyInput<Iterable<VerifyEntry | LeafBatch> | AsyncIterable<VerifyEntry | LeafBatch>>,
  options: { workers?: number; nice?: number } = {},
): Promise<VerifyReport> {
  const workers = options.workers ?? availableParallelism() - 1;
  const { entries } = input;
  if (workers < 1)
    return Symbol.asyncIterator in entries
      ? verifyAuditLogAsync(input)
      : verifyAuditLog({ ...input, entries });
  const run = new LogVerification(input);
  const pool = createLeafCheckPool(workers, options.nice !== undefined ? { nice: options.nice } : {});
  // In log order: batches checked or being checked, and entries (rows not in a batch) behind them.
  const ahead: Ahead[] = [];
  let onWorkers = 0; // batches sent whose result has not come back
  const applyReady = () => {
    for (let e = ahead[0]; e !== undefined; e = ahead[0]) {
      if ('batch' in e) {
        if (e.check === null) return;
        run.applyBatch(e.batch, e.check);
      } else {
        run.add(e.index, e.leaf, e.storedLeafHash);
      }
      ahead.shift();
    }
  };
  const awaitFirst = async () => {
    const e = ahead[0];
    if (e !== undefined && 'batch' in e && e.check === null && e.pending !== null) e.check = await e.pending;
    applyReady();
  };
  // One row or batch in log order; the loop below feeds it from a synchronous source (the SQLite
  // reader) with for…of, or from an asynchronous one (segments read back first) with for await.
  const step = async (e: VerifyEntry | LeafBatch) => {
    if ('starts' in e) {
      // In the background (nice set), this thread waits for the workers instead of checking:
      // it is the server's event loop, which must stay free for requests.
      while (options.nice !== undefined && onWorkers >= 4 * workers) {
        const before = onWorkers;
        await awaitFirst();
        if (onWorkers === before) await new Promise(setImmediate);
      }
      if (onWorkers < 4 * workers) {
        const item: AheadBatch = { batch: e, check: null, pending: pool.check(e) };
        item.pending?.then(
          (check) => {
            item.check = check;
            onWorkers -= 1;
          },
          () => {
            onWorkers -= 1; // awaited in turn (awaitFirst); a failure must not go unhandled meanwhile
          },
        );
        ahead.push(item);
        onWorkers += 1;
      } else {
        // The workers are behind (their cores are busy): this thread checks the batch rather than wait.
        ahead.push({ batch: e, check: checkLeafBatch(e), pending: null });
      }
      await new Promise(setImmediate); // lets the workers' results in
    } else {
      ahead.push(e);
    }
    applyReady();
    // Results checked here wait behind a slow worker's batch; keep that queue short.
    while (ahead.length > 4 * (workers + 1)) await awaitFirst();
  };
  try {
    if (Symbol.asyncIterator in entries) for await (const e of entries) await step(e);
    else for (const e of entries) await step(e);
    while (ahead.length > 0) await awaitFirst();
  } finally {
    await pool.close();
  }
  return run.finish();
}

/** A batch in verifyAuditLogInParallel: `pending` while on a worker (null if checked here), `check` once known. */
interface AheadBatch {
  batch: LeafBatch;
  check: LeafBatchCheck | null;
  pending: Promise<LeafBatchCheck> | null;
}

type Ahead = AheadBatch | VerifyEntry;

/** Verifies a log whose entries arrive asynchronously (an export file read line by line). */
export async function verifyAuditLogAsync(
  input: VerifyInput<AsyncIterable<VerifyEntry | LeafBatch> | Iterable<VerifyEntry | LeafBatch>>,
): Promise<VerifyReport> {
  const run = new LogVerification(input);
  for await (const e of input.entries) {
    if ('starts' in e) run.addBatch(e);
    else run.add(e.index, e.leaf, e.storedLeafHash);
  }
  return run.finish();
}

type Source = 'store' | 'witness';

// How the level-0 hash stored for an entry compares with the recomputed one.
const STORED_SAME = 0;
const STORED_DIFFERENT = 1;
const STORED_NONE = 2;
type StoredHash = typeof STORED_SAME | typeof STORED_DIFFERENT | typeof STORED_NONE;

const PER_ENTRY: ReadonlySet<ProblemKind> = new Set(['entry-modified', 'index-mismatch', 'gap']);
const RANGE: ReadonlySet<ProblemKind> = new Set(['root-mismatch', 'rollback']);

interface Target {
  size: number;
  root: Buffer;
  source: Source;
}

class LogVerification {
  readonly #problems: VerifyProblem[] = [];
  #omitted = 0;
  #firstBad: number | null = null;
  readonly #tree = new RecomputedTree();
  readonly #scratch = Buffer.alloc(32);
  readonly #targets: Target[] = [];
  #nextTarget = 0;
  readonly #storeRoots = new Map<number, Buffer>();
  readonly #origin: string | null;
  readonly #storeCount: number;
  readonly #witnessCount: number;
  #maxStoreSize = -1;
  /** Largest checkpoint size whose root matched, and the first mismatch of each source. */
  #matchedSize = 0;
  #storeMismatch: VerifyProblem | null = null;
  #laterStoreMismatches = 0;
  #witnessMismatch = false;
  #nextRow = 0;
  /** Largest index with evidence against the entry itself (-1: none yet). */
  #lastEvidence = -1;
  /** The open run of index mismatches with one offset, so a renumbering is one problem, not n. */
  #shift: { problem: VerifyProblem; offset: number; end: number } | null = null;

  constructor(input: VerifyInput<unknown>) {
    const verifier = parseVerifierKey(input.verifierKey);
    const store = this.#open([...input.checkpoints], 'store', verifier);
    const witness = this.#open([...(input.witness ?? [])], 'witness', verifier);
    this.#origin = input.origin ?? store.find((c) => c.checkpoint)?.checkpoint?.origin ?? null;
    let storeCount = 0;
    let witnessCount = 0;
    for (const { checkpoint, source, position } of [...store, ...witness]) {
      if (checkpoint === undefined) continue;
      const where = describe(source, position, checkpoint.size);
      if (this.#origin !== null && checkpoint.origin !== this.#origin) {
        this.#report({
          kind: 'checkpoint-origin',
          size: checkpoint.size,
          message: `${where} is for log "${checkpoint.origin}", not "${this.#origin}"`,
        });
        continue;
      }
      if (source === 'store') {
        storeCount += 1;
        const seen = this.#storeRoots.get(checkpoint.size);
        if (seen !== undefined && !seen.equals(checkpoint.rootHash)) {
          this.#report({
            kind: 'checkpoint-inconsistent',
            size: checkpoint.size,
            message: `two store checkpoints of size ${checkpoint.size} have different roots: they cannot both be prefixes of one log`,
          });
        }
        if (seen === undefined) this.#storeRoots.set(checkpoint.size, checkpoint.rootHash);
        this.#maxStoreSize = Math.max(this.#maxStoreSize, checkpoint.size);
      } else {
        witnessCount += 1;
        const inStore = this.#storeRoots.get(checkpoint.size);
        if (inStore !== undefined && !inStore.equals(checkpoint.rootHash)) {
          this.#report({
            kind: 'checkpoint-inconsistent',
            size: checkpoint.size,
            message: `the witness and the store hold different checkpoints of size ${checkpoint.size}: the store was rewritten`,
          });
        }
      }
      this.#targets.push({ size: checkpoint.size, root: checkpoint.rootHash, source });
    }
    this.#storeCount = storeCount;
    this.#witnessCount = witnessCount;
    // Store checkpoints before witness ones of the same size, so a witness mismatch already explained
    // by the store's own checkpoint is not reported twice.
    this.#targets.sort(
      (a, b) => a.size - b.size || (a.source === b.source ? 0 : a.source === 'store' ? -1 : 1),
    );
    this.#checkTargets(emptyRoot());
  }

  add(index: number, leaf: string, storedLeafHash: Buffer | string | null | undefined): void {
    // RFC 9162 §2.1.1's leaf prefix 0x00, the leaf's UTF-8, and the control byte the scanner stops at.
    const bytes = Buffer.from(`\u0000${leaf}\u0000`, 'utf8');
    const end = bytes.length - 1;
    const hash = sha256Latin1(bytes.subarray(0, end));
    const stored =
      storedLeafHash === null
        ? STORED_NONE
        : storedLeafHash !== undefined && !this.#sameHash(hash, storedLeafHash)
          ? STORED_DIFFERENT
          : STORED_SAME;
    // UTF-8 cannot carry a lone surrogate (it became U+FFFD above), so it is looked for in the string.
    const lone = leaf.search(LONE_SURROGATE);
    if (lone >= 0) {
      this.#entry(index, hash, stored, LEAF_NOT_CANONICAL, `lone surrogate at offset ${lone}`);
      return;
    }
    const status = checkLeaf(bytes, 1, end, index);
    this.#entry(index, hash, stored, status, leafCheckDetail(status, bytes));
  }

  addBatch(batch: LeafBatch): void {
    this.applyBatch(batch, checkLeafBatch(batch));
  }

  /** Takes in a batch whose leaves checkLeafBatch has checked (here or on a worker thread). */
  applyBatch(batch: LeafBatch, check: LeafBatchCheck): void {
    const { hashes, status, details } = check;
    const packed = Buffer.from(hashes.buffer, hashes.byteOffset, hashes.byteLength).toString('latin1');
    let detail = 0;
    for (let i = 0; i < batch.count; i++) {
      const hash = packed.slice(i * 32, i * 32 + 32);
      const stored = batch.storedLeafHashes.startsWith(hash, i * 32) ? STORED_SAME : STORED_DIFFERENT;
      const s = status[i] as LeafStatus;
      this.#entry(batch.first + i, hash, stored, s, s === LEAF_OK ? null : (details[detail++] ?? null));
    }
  }

  // One entry: its leaf hash, how the stored one compares, and the leaf check's result.
  #entry(index: number, hash: string, stored: StoredHash, status: LeafStatus, detail: string | null): void {
    if (index !== this.#nextRow) this.#rowOutOfSequence(index);
    if (index >= this.#nextRow) this.#nextRow = index + 1;
    if (stored === STORED_NONE) {
      this.#report({ kind: 'entry-modified', index, message: `no leaf hash is stored for entry ${index}` });
    } else if (stored === STORED_DIFFERENT) {
      this.#report({
        kind: 'entry-modified',
        index,
        message: `entry ${index} does not hash to the leaf hash stored for it`,
      });
    }
    if (status === LEAF_NOT_CANONICAL) {
      this.#report({
        kind: 'entry-modified',
        index,
        message: `entry ${index} is not canonical JSON: ${detail}`,
      });
    } else if (status === LEAF_OWN_INDEX) {
      this.#ownIndexMismatch(index, detail ?? undefined);
    } else {
      this.#shift = null;
    }
    this.#tree.append(hash);
    if (
      this.#nextTarget < this.#targets.length &&
      (this.#targets[this.#nextTarget] as Target).size === this.#tree.size
    ) {
      this.#checkTargets(this.#tree.root());
    }
  }

  finish(): VerifyReport {
    const size = this.#tree.size;
    // Rows reach this index; checkpoints within it went unreached only because rows are missing.
    const extent = Math.max(size, this.#nextRow);
    const unreached = this.#targets.slice(this.#nextTarget);
    const storeWithin = unreached.filter((t) => t.source === 'store' && t.size <= extent);
    const first = storeWithin[0];
    if (first !== undefined && this.#storeMismatch === null) {
      this.#storeMismatch = {
        kind: 'root-mismatch',
        index: this.#matchedSize,
        size: first.size,
        message: `the log has too few entries for its signed checkpoint of size ${first.size}: entries missing somewhere in [${this.#matchedSize}, ${first.size})`,
      };
      this.#report(this.#storeMismatch);
      this.#laterStoreMismatches += storeWithin.length - 1;
    } else {
      this.#laterStoreMismatches += storeWithin.length;
    }
    if (this.#storeMismatch !== null && this.#laterStoreMismatches > 0) {
      this.#storeMismatch.message += `; ${this.#laterStoreMismatches} later checkpoint(s) differ too`;
    }
    const storeBeyond = unreached.filter((t) => t.source === 'store' && t.size > extent);
    const witnessBeyond = unreached.filter((t) => t.source === 'witness' && t.size > extent);
    const largestStore = storeBeyond.at(-1);
    if (largestStore !== undefined) {
      this.#report({
        kind: 'truncated',
        index: extent,
        size: largestStore.size,
        message: `the log ends at index ${extent} but ${storeBeyond.length} store checkpoint(s) reach ${largestStore.size}: entries [${extent}, ${largestStore.size}) were removed`,
      });
    }
    const largestWitness = witnessBeyond.at(-1);
    if (largestWitness !== undefined && largestWitness.size > this.#maxStoreSize) {
      this.#report({
        kind: 'rollback',
        index: Math.min(extent, Math.max(this.#maxStoreSize, 0)),
        size: largestWitness.size,
        message: `the witness holds a checkpoint of size ${largestWitness.size}, newer than anything in the store (log ${extent} entries, latest checkpoint ${this.#maxStoreSize < 0 ? 'none' : this.#maxStoreSize}): the store was rolled back`,
      });
    } else if (largestWitness !== undefined && largestStore === undefined) {
      this.#report({
        kind: 'truncated',
        index: extent,
        size: largestWitness.size,
        message: `the log ends at index ${extent} but the witness holds a checkpoint of size ${largestWitness.size}`,
      });
    }
    return {
      ok: this.#problems.length === 0 && this.#omitted === 0,
      size,
      checkpoints: this.#storeCount,
      witnessCheckpoints: this.#witnessCount,
      verifiedSize: this.#matchedSize,
      origin: this.#origin,
      firstBadIndex: this.#firstBad,
      problems: this.#problems,
      omittedProblems: this.#omitted,
    };
  }

  #open(notes: string[], source: Source, verifier: NoteVerifier) {
    return notes.map((note, position) => {
      try {
        return {
          checkpoint: verifyCheckpoint(note, [verifier]).checkpoint as Checkpoint | undefined,
          source,
          position,
        };
      } catch (err) {
        const size = sizeOfUnverified(note);
        this.#report({
          kind: 'checkpoint-signature',
          ...(size === undefined ? {} : { size }),
          message: `${describe(source, position, size)} does not verify with the key: ${(err as Error).message}`,
        });
        return { checkpoint: undefined, source, position };
      }
    });
  }

  // Compares the recomputed root with every checkpoint of the current size.
  #checkTargets(root: Buffer): void {
    const size = this.#tree.size;
    const from = this.#matchedSize; // ranges start after the last match below this size
    for (; this.#nextTarget < this.#targets.length; this.#nextTarget++) {
      const target = this.#targets[this.#nextTarget] as Target;
      if (target.size !== size) break;
      const matches = crypto.timingSafeEqual(target.root, root);
      if (matches) {
        this.#matchedSize = size;
        continue;
      }
      if (target.source === 'store') {
        if (this.#storeMismatch !== null) {
          this.#laterStoreMismatches += 1;
          continue;
        }
        this.#storeMismatch = {
          kind: 'root-mismatch',
          index: from,
          size,
          message: `the recomputed tree of size ${size} does not match its signed checkpoint: an entry changed somewhere in [${from}, ${size})`,
        };
        this.#report(this.#storeMismatch);
      } else if (this.#storeMismatch === null && !this.#witnessMismatch) {
        // The store agrees with its own checkpoints but not with what was witnessed: an older copy
        // of the store, or one rewritten and re-signed past the witness.
        this.#witnessMismatch = true;
        this.#report({
          kind: 'rollback',
          index: from,
          size,
          message: `the log of size ${size} does not match the witnessed checkpoint of that size: the store was rolled back or rewritten somewhere in [${from}, ${size})`,
        });
      }
    }
  }

  #rowOutOfSequence(index: number): void {
    if (index > this.#nextRow) {
      this.#report({
        kind: 'gap',
        index: this.#nextRow,
        message:
          index === this.#nextRow + 1
            ? `entry ${this.#nextRow} is missing`
            : `entries [${this.#nextRow}, ${index}) are missing`,
      });
    } else {
      this.#report({
        kind: 'index-mismatch',
        index: Math.max(0, index),
        message: `row ${index} comes after row ${this.#nextRow - 1}: rows out of order or repeated`,
      });
    }
  }

  #ownIndexMismatch(index: number, own: string | undefined): void {
    const offset = own === undefined ? Number.NaN : Number(own) - index;
    const run = this.#shift;
    if (run !== null && run.offset === offset && run.end === index) {
      run.end = index + 1;
      run.problem.message = `entries [${run.problem.index}, ${run.end}) name index ${offset > 0 ? '+' : ''}${offset} from their position: entries inserted, removed or moved`;
      return;
    }
    const problem: VerifyProblem = {
      kind: 'index-mismatch',
      index,
      message:
        own === undefined
          ? `entry ${index} has no index of its own`
          : `entry ${index} names itself index ${own}: entries inserted, removed or moved`,
    };
    this.#report(problem);
    this.#shift = Number.isNaN(offset) ? null : { problem, offset, end: index + 1 };
  }

  #report(problem: VerifyProblem): void {
    if (problem.index !== undefined && PER_ENTRY.has(problem.kind)) {
      this.#lastEvidence = Math.max(this.#lastEvidence, problem.index);
    }
    // A mismatch over [a, b) implicates a only when no entry in that range was found at fault itself.
    const explained =
      RANGE.has(problem.kind) && problem.index !== undefined && this.#lastEvidence >= problem.index;
    if (
      problem.index !== undefined &&
      !explained &&
      (this.#firstBad === null || problem.index < this.#firstBad)
    ) {
      this.#firstBad = problem.index;
    }
    if (this.#problems.length < MAX_LISTED_PROBLEMS) this.#problems.push(problem);
    else this.#omitted += 1;
  }

  #sameHash(hash: string, stored: Buffer | string): boolean {
    if (typeof stored === 'string') return stored === hash;
    this.#scratch.write(hash, 0, 'latin1');
    return this.#scratch.equals(stored);
  }
}

/**
 * The tree as it is recomputed: MerkleAccumulator's binary-counter merge (merkle.ts; RFC 9162 §2.1.1
 * splits at the largest power of two), specialised for speed. Hashes are held as 32-character latin1
 * strings (one character per byte): crypto.hash returns those through its fast path and V8 makes
 * them far more cheaply than a Buffer, which together halved the cost of the two SHA-256 calls per
 * entry — the verifier's largest cost. root() converts the peaks and goes through MerkleAccumulator.
 */
class RecomputedTree {
  size = 0;
  readonly #peaks: string[] = [];
  // 0x01 || left || right, RFC 9162 §2.1.1's interior node input, refilled for each node.
  readonly #nodeInput = Buffer.concat([Buffer.of(0x01), Buffer.alloc(64)]);

  append(leafHash: string): void {
    let h = leafHash;
    for (let s = this.size; s % 2 === 1; s = (s - 1) / 2) {
      this.#nodeInput.write(this.#peaks.pop() as string, 1, 'latin1');
      this.#nodeInput.write(h, 33, 'latin1');
      h = sha256Latin1(this.#nodeInput);
    }
    this.#peaks.push(h);
    this.size += 1;
  }

  root(): Buffer {
    const peaks = this.#peaks.map((p) => Buffer.from(p, 'latin1'));
    return MerkleAccumulator.restore(this.size, peaks).root();
  }
}

function describe(source: Source, position: number, size: number | undefined): string {
  const what =
    source === 'store' ? `store checkpoint #${position + 1}` : `witness checkpoint #${position + 1}`;
  return size === undefined ? what : `${what} (size ${size})`;
}

// The size a checkpoint claims, read without trusting it, only to name it in a problem.
function sizeOfUnverified(note: string): number | undefined {
  try {
    return parseCheckpoint(parseNote(note).text).size;
  } catch {
    return undefined;
  }
}
