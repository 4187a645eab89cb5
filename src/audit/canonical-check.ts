/**
 * An exact check that a leaf is already in RFC 8785 (JCS) canonical form, run over the leaf's UTF-8
 * bytes — the bytes the leaf hash covers — without building the value: `tresor audit verify` must
 * check every entry at ≥ 200,000 entries/s, and JSON.parse followed by canonicalJson runs at a fifth
 * of that. The leaf is canonical iff it is exactly what canonicalJson would print for the value it
 * denotes, in UTF-8 (§3.2.4), so this scanner accepts precisely those bytes:
 * - no whitespace between tokens (RFC 8785 §3.2.1);
 * - strings as ECMAScript JSON.stringify prints them (§3.2.2.2): only `\"`, `\\`, `\b`, `\f`, `\n`,
 *   `\r`, `\t` and lowercase `\u00xx` for the other controls below U+0020; everything else raw, as
 *   well-formed UTF-8 (RFC 3629 §4), which also refuses lone surrogates (I-JSON, RFC 7493 §2.1, as
 *   canonicalJson does);
 * - numbers exactly as Number.prototype.toString prints them (§3.2.2.3): integers of up to 15 digits
 *   are checked in place, any other number by round trip;
 * - object members sorted by their names' UTF-16 code units, without duplicates (§3.2.3).
 * It also finds the top-level member `index`, the entry's own position in the log.
 *
 * The scanner reads the byte at `end` instead of testing the bound at every byte: that byte must be a
 * control character, which no canonical token holds, so every token stops there and fails.
 */

/** Deeper nesting is refused rather than risking the call stack on hostile input; entries are shallow. */
export const MAX_CANONICAL_DEPTH = 256;

export type CanonicalCheck = { ok: true; index: string | undefined } | { ok: false; reason: string };

/** A lone surrogate among the UTF-16 code units of a JS string (u mode: a pair is one code point). */
export const LONE_SURROGATE = /\p{Cs}/u;

/** Checks a leaf given as a JS string; on success gives the raw text of its `index` member. */
export function checkCanonicalObject(leaf: string): CanonicalCheck {
  const lone = leaf.search(LONE_SURROGATE);
  if (lone >= 0) return { ok: false, reason: `lone surrogate at offset ${lone}` };
  const bytes = Buffer.from(`${leaf}\u0000`, 'utf8');
  if (!scanCanonicalLeaf(bytes, 0, bytes.length - 1)) return { ok: false, reason: scanFailure() };
  return { ok: true, index: scannedIndexText(bytes) };
}

// The scanner's state lives in the module so the hot path allocates nothing per call; it is synchronous.
const EMPTY = new Uint8Array(1);
let bytes: Uint8Array = EMPTY;
let base = 0;
let stop = 0;
let pos = 0;
let reason = '';
let indexStart = -1;
let indexEnd = -1;
/** The top-level `index` as a number when it is a non-negative integer of up to 15 digits, else -1. */
let indexValue = -1;
/** The last integer number() read in place, and where its text started. */
let integer = -1;
let integerStart = -1;

/**
 * Whether `leaf[start, end)` is a canonical JSON object; `leaf[end]` must be a control character
 * (below U+0020). On success the `index` member is then known to scannedIndexIs/scannedIndexText.
 */
export function scanCanonicalLeaf(leaf: Uint8Array, start: number, end: number): boolean {
  if (!(start >= 0 && start <= end && end < leaf.length && (leaf[end] as number) < 0x20)) {
    throw new RangeError('a leaf must be followed by a control byte');
  }
  bytes = leaf;
  base = start;
  stop = end;
  pos = start;
  reason = '';
  indexStart = -1;
  indexEnd = -1;
  indexValue = -1;
  integerStart = -1;
  let ok = bytes[pos] === 0x7b /* { */ ? object(0) : fail('not a JSON object');
  if (ok && pos !== end) ok = fail(`unexpected text at byte ${pos - base}`);
  bytes = EMPTY;
  return ok;
}

/** Why the last scan failed. */
export function scanFailure(): string {
  return reason;
}

/** Whether the last scanned leaf's own `index` member is exactly the decimal form of `expected`. */
export function scannedIndexIs(leaf: Uint8Array, expected: number): boolean {
  if (indexValue >= 0) return indexValue === expected;
  return scannedIndexText(leaf) === String(expected);
}

/** The last scanned leaf's own `index` text, if it had one. */
export function scannedIndexText(leaf: Uint8Array): string | undefined {
  return indexStart < 0 ? undefined : utf8(leaf, indexStart, indexEnd);
}

function utf8(leaf: Uint8Array, start: number, end: number): string {
  return Buffer.from(leaf.buffer, leaf.byteOffset, leaf.byteLength).toString('utf8', start, end);
}

function fail(why: string): false {
  if (reason === '') reason = why;
  return false;
}

function at(): string {
  return `at byte ${pos - base}`;
}

function value(depth: number): boolean {
  const c = bytes[pos] as number;
  switch (c) {
    case 0x7b: // {
      return object(depth + 1);
    case 0x5b: // [
      return array(depth + 1);
    case 0x22: // "
      return string() >= 0;
    case 0x74: // true
      return literal(bytes[pos + 1] === 0x72 && bytes[pos + 2] === 0x75 && bytes[pos + 3] === 0x65, 4);
    case 0x66: // false
      return literal(
        bytes[pos + 1] === 0x61 &&
          bytes[pos + 2] === 0x6c &&
          bytes[pos + 3] === 0x73 &&
          bytes[pos + 4] === 0x65,
        5,
      );
    case 0x6e: // null
      return literal(bytes[pos + 1] === 0x75 && bytes[pos + 2] === 0x6c && bytes[pos + 3] === 0x6c, 4);
    default:
      if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return number();
      return fail(`unexpected character ${at()}`);
  }
}

function literal(matches: boolean, length: number): boolean {
  if (!matches) return fail(`unexpected character ${at()}`);
  pos += length;
  return true;
}

function object(depth: number): boolean {
  if (depth > MAX_CANONICAL_DEPTH) return fail('nested too deeply');
  pos += 1; // {
  if (bytes[pos] === 0x7d) {
    pos += 1;
    return true;
  }
  // The previous member name as a range of the bytes (between its quotes), and whether it was plain ASCII.
  let prevStart = -1;
  let prevEnd = -1;
  let prevPlain = false;
  for (;;) {
    if (bytes[pos] !== 0x22) return fail(`expected a member name ${at()}`);
    const start = pos + 1;
    const kind = string();
    if (kind < 0) return false;
    const end = pos - 1;
    const plain = kind === 0;
    if (prevStart >= 0) {
      const order =
        plain && prevPlain
          ? compareBytes(prevStart, prevEnd, start, end)
          : compareDecoded(prevStart, prevEnd, start, end);
      if (order >= 0) {
        const name = utf8(bytes, start, end);
        return fail(order === 0 ? `duplicate member "${name}"` : `member "${name}" out of order`);
      }
    }
    prevStart = start;
    prevEnd = end;
    prevPlain = plain;
    if (bytes[pos] !== 0x3a) return fail(`expected ':' ${at()}`);
    pos += 1;
    const valueStart = pos;
    if (!value(depth)) return false;
    if (depth === 0 && plain && isIndexName(start, end)) {
      indexStart = valueStart;
      indexEnd = pos;
      indexValue = integerStart === valueStart ? integer : -1;
    }
    const c = bytes[pos];
    pos += 1;
    if (c === 0x7d) return true;
    if (c !== 0x2c) return fail(`expected ',' or '}' at byte ${pos - 1 - base}`);
  }
}

function isIndexName(start: number, end: number): boolean {
  return (
    end - start === 5 &&
    bytes[start] === 0x69 &&
    bytes[start + 1] === 0x6e &&
    bytes[start + 2] === 0x64 &&
    bytes[start + 3] === 0x65 &&
    bytes[start + 4] === 0x78
  );
}

// Names are ordered by their UTF-16 code units (RFC 8785 §3.2.3). For plain ASCII names without escapes
// the bytes are those code units and are compared in place; any other pair is decoded first.
function compareBytes(aStart: number, aEnd: number, bStart: number, bEnd: number): number {
  const n = Math.min(aEnd - aStart, bEnd - bStart);
  for (let i = 0; i < n; i++) {
    const d = (bytes[aStart + i] as number) - (bytes[bStart + i] as number);
    if (d !== 0) return d;
  }
  return aEnd - aStart - (bEnd - bStart);
}

function compareDecoded(aStart: number, aEnd: number, bStart: number, bEnd: number): number {
  const a = JSON.parse(utf8(bytes, aStart - 1, aEnd + 1)) as string;
  const b = JSON.parse(utf8(bytes, bStart - 1, bEnd + 1)) as string;
  return a < b ? -1 : a === b ? 0 : 1;
}

function array(depth: number): boolean {
  if (depth > MAX_CANONICAL_DEPTH) return fail('nested too deeply');
  pos += 1; // [
  if (bytes[pos] === 0x5d) {
    pos += 1;
    return true;
  }
  for (;;) {
    if (!value(depth)) return false;
    const c = bytes[pos];
    pos += 1;
    if (c === 0x5d) return true;
    if (c !== 0x2c) return fail(`expected ',' or ']' at byte ${pos - 1 - base}`);
  }
}

// 1 for the bytes a canonical string holds as themselves: printable ASCII but '"' and '\\'.
const PLAIN_BYTE = new Uint8Array(256);
for (let b = 0x20; b <= 0x7f; b++) PLAIN_BYTE[b] = b === 0x22 || b === 0x5c ? 0 : 1;

// After the opening quote; returns -1 when not canonical, else 0 for plain ASCII without escapes, 1 if not.
function string(): number {
  pos += 1;
  let kind = 0;
  for (;;) {
    let c = bytes[pos] as number;
    while (PLAIN_BYTE[c] === 1) c = bytes[++pos] as number;
    if (c === 0x22) {
      pos += 1;
      return kind;
    }
    kind = 1;
    if (c === 0x5c) {
      const e = bytes[pos + 1];
      // " \ b f n r t: the two-character escapes JSON.stringify uses (ECMA-262 QuoteJSONString).
      if (e === 0x22 || e === 0x5c || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        pos += 2;
        continue;
      }
      if (e === 0x75 && isControlEscape()) {
        pos += 6;
        continue;
      }
      return notCanonical(`escape not in canonical form ${at()}`);
    }
    if (c < 0x20) return notCanonical(pos === stop ? 'unterminated string' : `raw control character ${at()}`);
    const n = utf8SequenceLength();
    if (n === 0) return notCanonical(`not well-formed UTF-8 (or a lone surrogate) ${at()}`);
    pos += n;
  }
}

// \u00xx in lowercase hex, only for controls without a short escape (not 08, 09, 0a, 0c, 0d).
function isControlEscape(): boolean {
  if (bytes[pos + 2] !== 0x30 || bytes[pos + 3] !== 0x30) return false;
  const high = bytes[pos + 4];
  const low = bytes[pos + 5] as number;
  const digit = low >= 0x30 && low <= 0x39 ? low - 0x30 : low >= 0x61 && low <= 0x66 ? low - 0x57 : -1;
  if (digit < 0 || (high !== 0x30 && high !== 0x31)) return false;
  const code = (high === 0x31 ? 16 : 0) + digit;
  return code !== 0x08 && code !== 0x09 && code !== 0x0a && code !== 0x0c && code !== 0x0d;
}

// RFC 3629 §4 (Unicode Table 3-7): the length of the well-formed sequence at pos, 0 if there is none.
// Overlong forms, surrogates (ED A0–BF) and code points above U+10FFFF are refused.
function utf8SequenceLength(): number {
  const c = bytes[pos] as number;
  const c1 = bytes[pos + 1] as number;
  if (c >= 0xc2 && c <= 0xdf) return isContinuation(c1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    const low = c === 0xe0 ? 0xa0 : 0x80;
    const high = c === 0xed ? 0x9f : 0xbf;
    return c1 >= low && c1 <= high && isContinuation(bytes[pos + 2] as number) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    const low = c === 0xf0 ? 0x90 : 0x80;
    const high = c === 0xf4 ? 0x8f : 0xbf;
    return c1 >= low &&
      c1 <= high &&
      isContinuation(bytes[pos + 2] as number) &&
      isContinuation(bytes[pos + 3] as number)
      ? 4
      : 0;
  }
  return 0;
}

function isContinuation(b: number): boolean {
  return b >= 0x80 && b <= 0xbf;
}

function notCanonical(why: string): number {
  fail(why);
  return -1;
}

function isDigit(b: number): boolean {
  return b >= 0x30 && b <= 0x39;
}

// digits . e E + -
function isNumberByte(b: number): boolean {
  return isDigit(b) || b === 0x2e || b === 0x65 || b === 0x45 || b === 0x2b || b === 0x2d;
}

function number(): boolean {
  const start = pos;
  const negative = bytes[pos] === 0x2d;
  if (negative) pos += 1;
  const digitsStart = pos;
  let v = 0;
  for (let b = bytes[pos] as number; isDigit(b); b = bytes[++pos] as number) v = v * 10 + (b - 0x30);
  const digits = pos - digitsStart;
  // An integer of up to 15 digits (below 2^53, so exact) without a leading zero is its own
  // Number-to-String form (RFC 8785 §3.2.2.3); "0" too, but not "-0".
  if (
    !isNumberByte(bytes[pos] as number) &&
    digits > 0 &&
    digits <= 15 &&
    (bytes[digitsStart] !== 0x30 || (digits === 1 && !negative))
  ) {
    integer = negative ? -1 : v;
    integerStart = negative ? -1 : start;
    return true;
  }
  while (isNumberByte(bytes[pos] as number)) pos += 1;
  integerStart = -1;
  const token = utf8(bytes, start, pos);
  // The round trip refuses every other spelling of the same value (1.0, 1E3, -0, 01, 1e21 for 1e+21)
  // and whatever is not a number.
  if (String(Number(token)) !== token) return fail(`number "${token}" not in canonical form`);
  return true;
}
