/**
 * The only request-body parser: strict JSON, I-JSON (RFC 7493) rather than everything RFC 8259
 * tolerates. A body that another parser might read differently from ours is refused, so what the
 * validation layer checks is exactly what the handler gets:
 *
 * - media type `application/json`, optionally `charset=utf-8` (RFC 8259 §11 defines no other
 *   parameter); anything else is 415 — Fastify answers 415 itself for types with no parser;
 * - valid UTF-8 only (RFC 7493 §2.1), decoded with a fatal decoder rather than replaced silently;
 * - no duplicate object keys (RFC 7493 §2.3: "MUST NOT include duplicate names"; RFC 8259 §4 leaves
 *   the outcome to the parser, which is how two components end up seeing two different values);
 * - no `__proto__`, `constructor` or `prototype` keys at any depth (prototype pollution: harmless in
 *   JSON.parse's output, dangerous in whatever merges it later);
 * - no escaped lone surrogates (RFC 7493 §2.1; they also break RFC 8785 canonical forms);
 * - at most MAX_JSON_DEPTH nested objects/arrays, checked before descending, so a deep body costs
 *   neither stack nor time.
 *
 * The grammar is checked by a small scanner (RFC 8259 §2–7); values are then produced by
 * JSON.parse, so numbers and strings get the platform's exact semantics. Errors name an offset,
 * never the offending text.
 */
import { TresorError } from '../errors.ts';

export const MAX_JSON_DEPTH = 32;
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const HEX4 = /^[0-9A-Fa-f]{4}$/;
const SIMPLE_ESCAPES = new Set(['"', '\\', '/', 'b', 'f', 'n', 'r', 't']);
/** In a `u` regexp a surrogate pair is one code point, so this matches only unpaired surrogates. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

function malformed(offset: number): TresorError {
  return new TresorError(
    'TRESOR_ERR_MALFORMED_JSON',
    `the request body is not valid JSON (offset ${offset})`,
  );
}

function refused(reason: string, offset: number): TresorError {
  return new TresorError('TRESOR_ERR_BAD_REQUEST', `${reason} (offset ${offset})`);
}

/** Checks a media type for a JSON body: `application/json` with at most `charset=utf-8`. */
export function isAcceptedJsonMediaType(contentType: string): boolean {
  const [type, ...params] = contentType.split(';').map((part) => part.trim().toLowerCase());
  if (type !== 'application/json') return false;
  return params.every((p) => p === '' || /^charset="?utf-8"?$/.test(p));
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes and parses a request body; undefined for an empty body. Throws TresorError 400. */
export function parseJsonBody(raw: Buffer): unknown {
  if (raw.length === 0) return undefined;
  let text: string;
  try {
    text = utf8.decode(raw);
  } catch {
    throw new TresorError('TRESOR_ERR_MALFORMED_JSON', 'the request body is not valid UTF-8');
  }
  scanStrictJson(text);
  return JSON.parse(text);
}

/** Throws unless `text` is one JSON value that meets the rules in the header comment. */
export function scanStrictJson(text: string): void {
  let pos = 0;

  const skipWhitespace = () => {
    // RFC 8259 §2: ws = space, tab, line feed, carriage return.
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) pos++;
      else return;
    }
  };

  /** Scans a string token starting at its opening quote; returns the decoded value when asked. */
  const scanString = (decode: boolean): string | undefined => {
    const start = pos;
    pos++; // opening quote
    let escapedUnicode = false;
    for (;;) {
      if (pos >= text.length) throw malformed(pos);
      const c = text.charCodeAt(pos);
      if (c === 0x22) break;
      if (c < 0x20) throw malformed(pos); // §7: control characters must be escaped
      if (c === 0x5c) {
        const e = text[pos + 1];
        if (e === 'u') {
          if (!HEX4.test(text.slice(pos + 2, pos + 6))) throw malformed(pos);
          escapedUnicode = true;
          pos += 6;
        } else if (e !== undefined && SIMPLE_ESCAPES.has(e)) {
          pos += 2;
        } else {
          throw malformed(pos);
        }
        continue;
      }
      pos++;
    }
    pos++; // closing quote
    if (!decode && !escapedUnicode) return undefined;
    const value = JSON.parse(text.slice(start, pos)) as string;
    if (escapedUnicode && LONE_SURROGATE.test(value))
      throw refused('a string contains a lone surrogate', start);
    return value;
  };

  const scanValue = (depth: number): void => {
    skipWhitespace();
    const c = text[pos];
    if (c === '{' || c === '[') {
      if (depth + 1 > MAX_JSON_DEPTH) throw refused(`JSON nested deeper than ${MAX_JSON_DEPTH} levels`, pos);
      if (c === '{') scanObject(depth + 1);
      else scanArray(depth + 1);
    } else if (c === '"') {
      scanString(false);
    } else if (text.startsWith('true', pos)) {
      pos += 4;
    } else if (text.startsWith('false', pos)) {
      pos += 5;
    } else if (text.startsWith('null', pos)) {
      pos += 4;
    } else {
      NUMBER.lastIndex = pos;
      if (!NUMBER.test(text)) throw malformed(pos);
      pos = NUMBER.lastIndex;
    }
  };

  const scanObject = (depth: number): void => {
    pos++; // {
    const keys = new Set<string>();
    skipWhitespace();
    if (text[pos] === '}') {
      pos++;
      return;
    }
    for (;;) {
      skipWhitespace();
      if (text[pos] !== '"') throw malformed(pos);
      const keyAt = pos;
      const key = scanString(true) as string;
      if (FORBIDDEN_KEYS.has(key)) throw refused('the object key is not allowed', keyAt);
      if (keys.has(key)) throw refused('duplicate object key', keyAt);
      keys.add(key);
      skipWhitespace();
      if (text[pos] !== ':') throw malformed(pos);
      pos++;
      scanValue(depth);
      skipWhitespace();
      if (text[pos] === ',') {
        pos++;
        continue;
      }
      if (text[pos] === '}') {
        pos++;
        return;
      }
      throw malformed(pos);
    }
  };

  const scanArray = (depth: number): void => {
    pos++; // [
    skipWhitespace();
    if (text[pos] === ']') {
      pos++;
      return;
    }
    for (;;) {
      scanValue(depth);
      skipWhitespace();
      if (text[pos] === ',') {
        pos++;
        continue;
      }
      if (text[pos] === ']') {
        pos++;
        return;
      }
      throw malformed(pos);
    }
  };

  scanValue(0);
  skipWhitespace();
  if (pos !== text.length) throw malformed(pos);
}
