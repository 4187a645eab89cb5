/**
 * Account passwords: the choice policy of NIST SP 800-63B-4 §3.1.1.2 ("Password Verifiers") and
 * argon2id storage.
 *
 * Policy, in the section's order:
 * - length in Unicode code points after NFKC normalisation (each code point one character; the
 *   normalisation is applied before hashing too, so a password typed on another keyboard matches).
 *   §3.1.1.2 asks for ≥ 15 when the password is the only factor and ≥ 8 when it is part of MFA;
 *   every Tresor console account has a second factor, so the default minimum of 12 is above the
 *   MFA floor. Maximum 128 (the section: permit at least 64) — long enough for passphrases, short
 *   enough to bound the hashing input;
 * - every printable character, spaces and Unicode included; only control characters and lone
 *   surrogates are refused (they cannot be typed and do not survive round trips);
 * - NO composition rules (the section: SHALL NOT require mixtures of character types);
 * - a blocklist: commonly used and breached values, repetitive or sequential characters, and
 *   context-specific words (the service name, the user's e-mail and name).
 *
 * The blocklist check. The bundled list (common-passwords.txt: the 1,000 most frequent passwords
 * of a 10-million-password breach corpus) is nearly all shorter than 12 characters, so an exact
 * match alone would catch little. Instead a password is refused when it is *predictable*: when it
 * is made, end to end (case and spaces ignored, common leetspeak undone for word matching), of
 *   - at most one blocklisted or context word (repeated any number of times: "monkeymonkey"),
 *   - runs of one repeated character (≥ 3: "aaaa", "!!!!"),
 *   - runs along the alphabet, the digits or a keyboard row, either direction (≥ 3: "abcd", "4321",
 *     "qwerty"),
 *   - and at most one short filler of up to 6 digits or symbols ("2024!!", "#1").
 * So "password1234", "Qwerty123456", "tresor2024!!" and "aaaaaaaaaaaa" are refused, while a
 * passphrase or a random string is not. Fewer than 5 distinct characters is refused as repetitive.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { type Algorithm, hash as argon2Hash, verify as argon2Verify } from '@node-rs/argon2';

/**
 * RFC 9106 §4, the SECOND RECOMMENDED option (for when 2 GiB per hash is too much): argon2id with
 * t=3 passes, p=4 lanes, m=2^16 KiB (64 MiB), a 128-bit salt (the package draws 16 random bytes per
 * hash) and a 256-bit tag. One hash costs about 0.12 s and 64 MiB here (docs/identity.md, "Password
 * hashing"). A stored hash made with other settings is replaced at its next login (needsRehash).
 */
export const ARGON2ID_OPTIONS = {
  algorithm: 2 as Algorithm, // Argon2id (a const enum, not importable under isolatedModules)
  memoryCost: 65_536,
  timeCost: 3,
  parallelism: 4,
  outputLen: 32,
} as const;

/** RFC 9106 §3.1: a salt of 128 bits is enough for password hashing. */
const MIN_SALT_BYTES = 16;

export interface Argon2Cost {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
}

/**
 * TEST-ONLY. The test runner (scripts/test-password-cost.mjs, preloaded by scripts/run-tests.mjs)
 * puts a low cost under this global symbol so the thousands of hashes the suite makes stay fast.
 * Nothing in the configuration, environment or command line reaches it: only code already running
 * in the process could set it. The cost of ARGON2ID_OPTIONS itself is asserted by a test that
 * lifts the override (test/identity/passwords.test.ts).
 */
export const TEST_ARGON2ID_COST = Symbol.for('tresor.test.argon2id-cost');

function isCost(value: unknown): value is Argon2Cost {
  const c = value as Partial<Argon2Cost> | null;
  return (
    typeof c === 'object' &&
    c !== null &&
    Number.isSafeInteger(c.memoryCost) &&
    Number.isSafeInteger(c.timeCost) &&
    Number.isSafeInteger(c.parallelism)
  );
}

/** The argon2id settings new hashes are made with: ARGON2ID_OPTIONS, outside the test runner. */
export function argon2idOptions(): Argon2Cost & { algorithm: Algorithm; outputLen: number } {
  const test = (globalThis as Record<symbol, unknown>)[TEST_ARGON2ID_COST];
  return isCost(test) ? { ...ARGON2ID_OPTIONS, ...test } : ARGON2ID_OPTIONS;
}

/**
 * argon2 runs on libuv's thread pool (UV_THREADPOOL_SIZE threads: 64 as bin/tresor.js sets it, 4
 * where it could not), off the event loop, one thread per hash. A burst of logins could take every
 * thread for a tenth of a second each, and file reads, tenant stores' fsyncs and the like would queue
 * behind them; so hashing may use at most half the pool, and never more slots than the machine has
 * cores (a hash is CPU work: more at once only share the cores), and the rest waits here, in order.
 * This also bounds hashing memory to 64 MiB per slot.
 */
const HASHING_SLOTS = Math.max(1, Math.min(Math.floor(threadPoolSize() / 2), availableParallelism()));
let hashing = 0;
const waiting: (() => void)[] = [];

function threadPoolSize(): number {
  const size = Number(process.env.UV_THREADPOOL_SIZE);
  return Number.isSafeInteger(size) && size >= 1 && size <= 1024 ? size : 4;
}

async function inHashingSlot<T>(work: () => Promise<T>): Promise<T> {
  if (hashing >= HASHING_SLOTS) await new Promise<void>((resolve) => waiting.push(resolve));
  else hashing += 1;
  try {
    return await work();
  } finally {
    const next = waiting.shift();
    if (next)
      next(); // the slot passes straight to the next in line
    else hashing -= 1;
  }
}

export interface PasswordPolicy {
  minLength: number;
  maxLength: number;
}

export const DEFAULT_PASSWORD_POLICY: PasswordPolicy = { minLength: 12, maxLength: 128 };

/** The service name, always a context word (SP 800-63B-4 §3.1.1.2). */
export const SERVICE_CONTEXT_WORDS: readonly string[] = ['tresor'];

export type PasswordRefusal =
  | 'too-short'
  | 'too-long'
  | 'unprintable'
  | 'common'
  | 'repetitive-or-sequential'
  | 'context-specific';

export type PasswordPolicyResult = { ok: true } | { ok: false; reasons: PasswordRefusal[] };

export interface PasswordContext {
  email?: string;
  name?: string;
}

/** Longer inputs are not hashed at all: bounds the work a login request can cause. */
const MAX_VERIFY_CHARS = 1024;
const MIN_DISTINCT_CHARS = 5;
const MIN_RUN = 3;
const MAX_FILLER = 6;
const MIN_WORD = 4;
const MAX_WORD = 32;

const SEQUENCES = [
  'abcdefghijklmnopqrstuvwxyz',
  '01234567890',
  'qwertyuiop',
  'asdfghjkl',
  'zxcvbnm',
  'qwertzuiop', // German and Central European layouts
  'yxcvbnm',
  'azertyuiop', // French
  'qsdfghjklm',
  'wxcvbn',
  '1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p', // keyboard columns, walked down
];
const LEET: Readonly<Record<string, string>> = {
  '0': 'o',
  '1': 'i',
  '3': 'e',
  '4': 'a',
  '5': 's',
  '7': 't',
  '@': 'a',
  $: 's',
  '!': 'i',
};

let commonPasswords: ReadonlySet<string> | undefined;

/** The bundled list, read once on first use. */
function commonPasswordList(): ReadonlySet<string> {
  commonPasswords ??= new Set(
    readFileSync(new URL('./common-passwords.txt', import.meta.url), 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#')),
  );
  return commonPasswords;
}

export function normalisePassword(password: string): string {
  return password.normalize('NFKC');
}

export function checkPasswordPolicy(
  password: string,
  context: PasswordContext = {},
  policy: PasswordPolicy = DEFAULT_PASSWORD_POLICY,
): PasswordPolicyResult {
  const reasons: PasswordRefusal[] = [];
  if (typeof password !== 'string') return { ok: false, reasons: ['too-short'] };
  if (/\p{Cs}/u.test(password)) return { ok: false, reasons: ['unprintable'] }; // lone surrogate: NFKC would keep it
  const normalised = normalisePassword(password);
  const length = [...normalised].length;
  if (length < policy.minLength) reasons.push('too-short');
  if (length > policy.maxLength) reasons.push('too-long');
  if (/\p{Cc}/u.test(normalised)) reasons.push('unprintable');
  if (length > policy.maxLength) return { ok: false, reasons };

  const chars = [...normalised.toLowerCase().replace(/\s+/gu, '')];
  const common = commonPasswordList();
  const contextWords = contextWordsOf(context);
  if (new Set(chars).size < MIN_DISTINCT_CHARS || cover(chars, () => false) !== 'none') {
    reasons.push('repetitive-or-sequential');
  } else if (cover(chars, (w) => common.has(w)) === 'word') {
    reasons.push('common');
  }
  if (cover(chars, (w) => contextWords.has(w)) === 'word') reasons.push('context-specific');
  return reasons.length === 0 ? { ok: true } : { ok: false, reasons };
}

/** argon2id (ARGON2ID_OPTIONS) of the NFKC-normalised password, with a random salt. */
export function hashPassword(password: string): Promise<string> {
  const options = argon2idOptions();
  return inHashingSlot(() => argon2Hash(normalisePassword(password), options));
}

/** False for a wrong password, an over-long input or a malformed hash; never throws. */
export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  if (typeof password !== 'string' || typeof hash !== 'string' || password.length > MAX_VERIFY_CHARS) {
    return false;
  }
  try {
    return await inHashingSlot(() => argon2Verify(hash, normalisePassword(password)));
  } catch {
    return false;
  }
}

/**
 * True when a stored hash was made with other settings than today's (another algorithm, version
 * or cost) or cannot be read: the caller rehashes the password it has just verified.
 */
export function needsRehash(hash: string): boolean {
  const match = /^\$argon2id\$v=(\d+)\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/.exec(
    hash,
  );
  if (!match) return true;
  const [, version, m, t, p, salt, digest] = match;
  const options = argon2idOptions();
  return (
    version !== '19' ||
    Number(m) !== options.memoryCost ||
    Number(t) !== options.timeCost ||
    Number(p) !== options.parallelism ||
    Buffer.from(salt ?? '', 'base64').length < MIN_SALT_BYTES ||
    Buffer.from(digest ?? '', 'base64').length !== options.outputLen
  );
}

/** 'tresor', and the pieces (≥ 4 characters) of the e-mail's local part and of the name. */
function contextWordsOf(context: PasswordContext): ReadonlySet<string> {
  const words = new Set<string>(SERVICE_CONTEXT_WORDS);
  const sources = [context.email?.split('@')[0], context.name];
  for (const source of sources) {
    if (typeof source !== 'string') continue;
    const lower = normalisePassword(source).toLowerCase();
    const whole = lower.replace(/[\s._+-]+/gu, '');
    for (const piece of [whole, ...lower.split(/[^\p{L}\p{N}]+/u)]) {
      if ([...piece].length >= MIN_WORD && piece.length <= MAX_WORD) words.add(piece);
    }
  }
  return words;
}

/**
 * Whether `chars` can be cut, end to end, into predictable pieces (see the header): runs, at most
 * one filler, and one word accepted by `isWord` (repeated any number of times) — 'word' if some
 * cut uses such a word, 'runs' if cuts exist only without one. Dynamic programming over
 * (position, filler used, word chosen); passwords are ≤ 128 characters.
 */
function cover(chars: readonly string[], isWord: (word: string) => boolean): 'none' | 'runs' | 'word' {
  const n = chars.length;
  const plain = chars;
  const unleet = chars.map((c) => LEET[c] ?? c);
  // reach[i]: the states that can cut chars[0, i) — key `${fillerUsed}|${word}` ('' = no word yet).
  const reach: Array<Set<string>> = Array.from({ length: n + 1 }, () => new Set<string>());
  reach[0]?.add('0|');
  for (let i = 0; i < n; i++) {
    const states = reach[i];
    if (!states || states.size === 0) continue;
    const runEnds = runEndsFrom(plain, i);
    for (const state of states) {
      const [filler = '0', word = ''] = state.split('|');
      for (const end of runEnds) reach[end]?.add(state);
      if (filler === '0') {
        for (
          let end = i + 1;
          end <= Math.min(n, i + MAX_FILLER) && !/\p{L}/u.test(plain[end - 1] ?? '');
          end++
        ) {
          reach[end]?.add(`1|${word}`);
        }
      }
      for (let end = i + MIN_WORD; end <= Math.min(n, i + MAX_WORD); end++) {
        for (const candidate of [plain.slice(i, end).join(''), unleet.slice(i, end).join('')]) {
          if ((word === '' || word === candidate) && isWord(candidate))
            reach[end]?.add(`${filler}|${candidate}`);
        }
      }
    }
  }
  const ends = [...(reach[n] ?? [])];
  if (ends.some((state) => !state.endsWith('|'))) return 'word';
  return ends.length > 0 ? 'runs' : 'none';
}

/** Ends (exclusive) of the repeated-character and sequence runs of length ≥ 3 starting at `start`. */
function runEndsFrom(chars: readonly string[], start: number): number[] {
  const ends: number[] = [];
  let end = start + 1;
  while (end < chars.length && chars[end] === chars[start]) end++;
  for (let e = start + MIN_RUN; e <= end; e++) ends.push(e);
  for (const sequence of SEQUENCES) {
    for (const direction of [1, -1]) {
      let e = start + 1;
      while (e < chars.length && follows(sequence, chars[e - 1] ?? '', chars[e] ?? '', direction)) e++;
      for (let k = start + MIN_RUN; k <= e; k++) ends.push(k);
    }
  }
  return ends;
}

function follows(sequence: string, a: string, b: string, direction: number): boolean {
  for (let i = sequence.indexOf(a); i !== -1; i = sequence.indexOf(a, i + 1)) {
    if (sequence[i + direction] === b) return true;
  }
  return false;
}
