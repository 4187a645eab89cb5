/**
 * `tresor audit verify`, the core: recomputes the RFC 9162 tree of the audit log from its entries and
 * checks it against every signed checkpoint of the store and of the witness (DESIGN.md, "Audit
 * formats"). It is independent of SQLite: the CLI feeds it from a control.sqlite file
 * (log-reader.ts) or from an export file (export-file.ts), and it needs only the verifier key.
 *
 * What it checks, and the problem each failure is reported as:
 * - each entry: its leaf hash against the stored level-0 hash, its leaf text being RFC 8785 canonical
 *   JSON of an object, its own `index` equal to its row index (entry-modified, index-mismatch);
 * - the row indices run 0, 1, 2, … without a hole (gap);
 * - each checkpoint: a valid signature by the key (checkpoint-signature), the log's origin
 *   (checkpoint-origin), no two of one size with different roots (checkpoint-inconsistent), a size
 *   the log reaches (truncated) and a root equal to the recomputed tree's at that size (root-mismatch);
 * - each witness checkpoint likewise, and none newer than the store or disagreeing with it (rollback).
 * The roots of all checkpoints matching the one recomputed tree is what makes them consistent: two
 * checkpoints that are both roots of prefixes of one log are consistent by definition (RFC 9162 §2.1.4).
 *
 * `firstBadIndex` is the smallest entry index implicated. A root mismatch without per-entry evidence
 * (entry and stored hash both rewritten) implicates the range after the last checkpoint that matched:
 * the index given is its start, the message names the range.
 *
 * Memory is O(log n) plus the checkpoints: the tree keeps only its peaks (MerkleAccumulator's merge),
 * the checkpoints are loaded first (they are few) and met in size order as the entries stream past.
 * Speed (≥ 200,000 entries/s is the target; bench/audit-verify.ts measures it): the leaf check is a
 * scanner that accepts exactly canonical JSON — no JSON.parse, no re-serialisation — and allocates
 * nothing per entry; the two SHA-256 calls per entry (leaf, amortised one interior node) take
 * crypto.hash's fast path with latin1 strings for hashes.
 */
import * as crypto from 'node:crypto';
import { type Checkpoint, parseCheckpoint, verifyCheckpoint } from './checkpoint.ts';
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
  | 'rollback';

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

export interface VerifyInput<E = Iterable<VerifyEntry>> {
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

/** A report lists this many problems at most; the rest are counted (the first bad index stays exact). */
export const MAX_LISTED_PROBLEMS = 1000;

/** Verifies a log whose entries are a synchronous iterable (the SQLite reader). */
export function verifyAuditLog(input: VerifyInput): VerifyReport {
  const run = new LogVerification(input);
  for (const e of input.entries) run.add(e.index, e.leaf, e.storedLeafHash);
  return run.finish();
}

/** Verifies a log whose entries arrive asynchronously (an export file read line by line). */
export async function verifyAuditLogAsync(
  input: VerifyInput<AsyncIterable<VerifyEntry> | Iterable<VerifyEntry>>,
): Promise<VerifyReport> {
  const run = new LogVerification(input);
  for await (const e of input.entries) run.add(e.index, e.leaf, e.storedLeafHash);
  return run.finish();
}

type Source = 'store' | 'witness';

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
    if (index !== this.#nextRow) this.#rowOutOfSequence(index);
    if (index >= this.#nextRow) this.#nextRow = index + 1;
    const hash = this.#leafHash(leaf);
    if (storedLeafHash === null) {
      this.#report({ kind: 'entry-modified', index, message: `no leaf hash is stored for entry ${index}` });
    } else if (storedLeafHash !== undefined && !this.#sameHash(hash, storedLeafHash)) {
      this.#report({
        kind: 'entry-modified',
        index,
        message: `entry ${index} does not hash to the leaf hash stored for it`,
      });
    }
    if (!scanCanonicalObject(leaf)) {
      this.#report({
        kind: 'entry-modified',
        index,
        message: `entry ${index} is not canonical JSON: ${reason}`,
      });
    } else if (!scannedIndexIs(leaf, String(index))) {
      this.#ownIndexMismatch(index, scannedIndex(leaf));
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

  // RFC 9162 §2.1.1: SHA-256(0x00 || leaf). U+0000 is the single byte 0x00 in UTF-8, so hashing the
  // string U+0000 + leaf hashes exactly those bytes, with no Buffer to fill per entry.
  #leafHash(leaf: string): string {
    return sha256Latin1(`\u0000${leaf}`);
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

const oneShotHash = (crypto as { hash?: typeof crypto.hash }).hash;

/** SHA-256 as a 32-character latin1 ('binary') string; string input is hashed as its UTF-8 bytes. */
function sha256Latin1(data: string | Buffer): string {
  if (oneShotHash !== undefined) return oneShotHash('sha256', data, 'binary');
  return crypto.createHash('sha256').update(data).digest('binary');
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

// ---------------------------------------------------------------------------------------------------
/**
 * An exact check that a leaf is already in RFC 8785 (JCS) canonical form, without building the value:
 * `tresor audit verify` must check every entry at ≥ 200,000 entries/s, and JSON.parse followed by
 * canonicalJson runs at a fifth of that. The leaf is canonical iff it is exactly what canonicalJson
 * would print for the value it denotes, so this scanner accepts precisely that text:
 * - no whitespace between tokens (RFC 8785 §3.2.1);
 * - strings as ECMAScript JSON.stringify prints them (§3.2.2.2): only `\"`, `\\`, `\b`, `\f`, `\n`,
 *   `\r`, `\t` and lowercase `\u00xx` for the other controls below U+0020; everything else raw; no
 *   lone surrogates (I-JSON, RFC 7493 §2.1, which canonicalJson refuses too);
 * - numbers exactly as Number.prototype.toString prints them (§3.2.2.3): checked by round trip;
 * - object members sorted by their names' UTF-16 code units, without duplicates (§3.2.3).
 * It also returns the text of the top-level member `index`, the entry's own position in the log.
 */

/** Deeper nesting is refused rather than risking the call stack on hostile input; entries are shallow. */
export const MAX_CANONICAL_DEPTH = 256;

export type CanonicalCheck = { ok: true; index: string | undefined } | { ok: false; reason: string };

// The scanner's state lives in the module so the hot path allocates nothing per call; it is synchronous.
let text = '';
let pos = 0;
let reason = '';
let indexStart = -1;
let indexEnd = -1;

/** Checks `leaf` is a canonical JSON object; on success gives the raw text of its `index` member. */
export function checkCanonicalObject(leaf: string): CanonicalCheck {
  const ok = scanCanonicalObject(leaf);
  const result: CanonicalCheck = ok
    ? { ok: true, index: indexStart < 0 ? undefined : leaf.slice(indexStart, indexEnd) }
    : { ok: false, reason };
  return result;
}

/** The allocation-free form for the verifier's loop: the `index` text is then at [indexStart, indexEnd). */
function scanCanonicalObject(leaf: string): boolean {
  text = leaf;
  pos = 0;
  reason = '';
  indexStart = -1;
  indexEnd = -1;
  let ok = text.charCodeAt(0) === 0x7b /* { */ ? object(0) : fail('not a JSON object');
  if (ok && pos !== text.length) ok = fail(`unexpected text at offset ${pos}`);
  text = '';
  return ok;
}

/** Whether the last scanned leaf's own `index` member is exactly the decimal `expected`. */
function scannedIndexIs(leaf: string, expected: string): boolean {
  return indexEnd - indexStart === expected.length && leaf.startsWith(expected, indexStart);
}

/** The last scanned leaf's own `index` text, if it had one. */
function scannedIndex(leaf: string): string | undefined {
  return indexStart < 0 ? undefined : leaf.slice(indexStart, indexEnd);
}

function fail(why: string): false {
  if (reason === '') reason = why;
  return false;
}

function value(depth: number): boolean {
  const c = text.charCodeAt(pos);
  switch (c) {
    case 0x7b: // {
      return object(depth + 1);
    case 0x5b: // [
      return array(depth + 1);
    case 0x22: // "
      return string() >= 0;
    case 0x74: // t
      return literal('true');
    case 0x66: // f
      return literal('false');
    case 0x6e: // n
      return literal('null');
    default:
      if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return number();
      return fail(`unexpected character at offset ${pos}`);
  }
}

function literal(word: string): boolean {
  if (!text.startsWith(word, pos)) return fail(`unexpected character at offset ${pos}`);
  pos += word.length;
  return true;
}

function object(depth: number): boolean {
  if (depth > MAX_CANONICAL_DEPTH) return fail('nested too deeply');
  pos += 1; // {
  if (text.charCodeAt(pos) === 0x7d) {
    pos += 1;
    return true;
  }
  // The previous member name as a range of the text (between its quotes) and whether it had escapes.
  let prevStart = -1;
  let prevEnd = -1;
  let prevEscaped = 0;
  for (;;) {
    if (text.charCodeAt(pos) !== 0x22) return fail(`expected a member name at offset ${pos}`);
    const start = pos + 1;
    const escaped = string();
    if (escaped < 0) return false;
    const end = pos - 1;
    if (prevStart >= 0) {
      const order =
        escaped === 0 && prevEscaped === 0
          ? compareRaw(prevStart, prevEnd, start, end)
          : compareDecoded(prevStart, prevEnd, start, end);
      if (order >= 0) {
        const name = text.slice(start, end);
        return fail(order === 0 ? `duplicate member "${name}"` : `member "${name}" out of order`);
      }
    }
    prevStart = start;
    prevEnd = end;
    prevEscaped = escaped;
    if (text.charCodeAt(pos) !== 0x3a) return fail(`expected ':' at offset ${pos}`);
    pos += 1;
    const valueStart = pos;
    if (!value(depth)) return false;
    if (depth === 0 && end - start === 5 && escaped === 0 && text.startsWith('index', start)) {
      indexStart = valueStart;
      indexEnd = pos;
    }
    const c = text.charCodeAt(pos);
    pos += 1;
    if (c === 0x7d) return true;
    if (c !== 0x2c) return fail(`expected ',' or '}' at offset ${pos - 1}`);
  }
}

// Names are ordered by their UTF-16 code units (RFC 8785 §3.2.3); without escapes the raw text is
// the name itself and is compared in place.
function compareRaw(aStart: number, aEnd: number, bStart: number, bEnd: number): number {
  const n = Math.min(aEnd - aStart, bEnd - bStart);
  for (let i = 0; i < n; i++) {
    const d = text.charCodeAt(aStart + i) - text.charCodeAt(bStart + i);
    if (d !== 0) return d;
  }
  return aEnd - aStart - (bEnd - bStart);
}

function compareDecoded(aStart: number, aEnd: number, bStart: number, bEnd: number): number {
  const a = JSON.parse(text.slice(aStart - 1, aEnd + 1)) as string;
  const b = JSON.parse(text.slice(bStart - 1, bEnd + 1)) as string;
  return a < b ? -1 : a === b ? 0 : 1;
}

function array(depth: number): boolean {
  if (depth > MAX_CANONICAL_DEPTH) return fail('nested too deeply');
  pos += 1; // [
  if (text.charCodeAt(pos) === 0x5d) {
    pos += 1;
    return true;
  }
  for (;;) {
    if (!value(depth)) return false;
    const c = text.charCodeAt(pos);
    pos += 1;
    if (c === 0x5d) return true;
    if (c !== 0x2c) return fail(`expected ',' or ']' at offset ${pos - 1}`);
  }
}

// The code units a canonical string holds as themselves: all but '"', '\\', controls and surrogates.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the controls are exactly what JCS must escape
const PLAIN_RUN = /[^"\\\u0000-\u001f\ud800-\udfff]*/y;

// After the opening quote; returns -1 when not canonical, else 1 if an escape occurred, 0 if not.
function string(): number {
  pos += 1;
  let escaped = 0;
  for (;;) {
    // Skip the run of characters that stand for themselves in one native regex step.
    PLAIN_RUN.lastIndex = pos;
    PLAIN_RUN.test(text);
    pos = PLAIN_RUN.lastIndex;
    const c = text.charCodeAt(pos);
    if (c === 0x22) {
      pos += 1;
      return escaped;
    }
    if (c === 0x5c) {
      escaped = 1;
      const e = text.charCodeAt(pos + 1);
      // " \ b f n r t: the two-character escapes JSON.stringify uses (ECMA-262 QuoteJSONString).
      if (e === 0x22 || e === 0x5c || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        pos += 2;
        continue;
      }
      if (e === 0x75 && isControlEscape(text.slice(pos + 2, pos + 6))) {
        pos += 6;
        continue;
      }
      return notCanonical(`escape not in canonical form at offset ${pos}`);
    }
    if (c < 0x20 || Number.isNaN(c)) {
      return notCanonical(Number.isNaN(c) ? 'unterminated string' : `raw control character at offset ${pos}`);
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const low = text.charCodeAt(pos + 1);
      if (c > 0xdbff || !(low >= 0xdc00 && low <= 0xdfff))
        return notCanonical(`lone surrogate at offset ${pos}`);
      pos += 2;
      continue;
    }
    pos += 1;
  }
}

// \u00xx in lowercase hex, only for controls without a short escape (not 08, 09, 0a, 0c, 0d).
function isControlEscape(hex: string): boolean {
  if (!/^00[01][0-9a-f]$/.test(hex)) return false;
  const code = Number.parseInt(hex, 16);
  return code !== 0x08 && code !== 0x09 && code !== 0x0a && code !== 0x0c && code !== 0x0d;
}

function notCanonical(why: string): number {
  fail(why);
  return -1;
}

function number(): boolean {
  const start = pos;
  for (;;) {
    const c = text.charCodeAt(pos);
    // digits . e E + -
    if ((c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d)
      pos += 1;
    else break;
  }
  const token = text.slice(start, pos);
  // RFC 8785 §3.2.2.3: the ECMAScript Number-to-String form; the round trip refuses every other
  // spelling of the same value (1.0, 1E3, -0, 01, 1e21 for 1e+21) and whatever is not a number.
  if (String(Number(token)) !== token) return fail(`number "${token}" not in canonical form`);
  return true;
}
