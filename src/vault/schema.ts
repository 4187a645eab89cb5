/**
 * Collection schemas: what a collection may hold, and the checks every value passes before it is
 * encrypted. "Only the data that is needed" (docs/architecture.md): a field that is not declared is refused with 422
 * naming it; every field carries a classification; a collection may carry a retention period.
 *
 * Errors name fields and a fixed problem code ('type', 'required', 'too-long', …) and never echo a
 * value: error bodies and logs must not become a copy of customer data.
 *
 * Names are /^[a-z][a-z0-9_]{0,62}$/ (they appear in AADs, index rows, audit events and URLs);
 * `constructor` and `prototype` match that pattern but are refused so that no field name can shadow
 * an Object.prototype member in code that handles records (`__proto__` already fails the pattern).
 */
import { TresorError } from '../errors.ts';

export const FIELD_TYPES = ['string', 'number', 'boolean', 'date', 'object'] as const;
export type FieldType = (typeof FIELD_TYPES)[number];

export const CLASSIFICATIONS = ['public', 'internal', 'confidential', 'personal', 'sensitive'] as const;
export type Classification = (typeof CLASSIFICATIONS)[number];

/** Types whose values have a canonical string form, and so a blind index. */
export const SEARCHABLE_TYPES: ReadonlySet<FieldType> = new Set(['string', 'number', 'boolean', 'date']);

/**
 * Searchable types whose values are usually few or guessable (two booleans, the days of a few
 * years, small counts and amounts): their blind index is close to plaintext for anyone who reads
 * the data store, who sees which records share a value and how often each occurs, and can often
 * name the value from its frequency alone (docs/security/blind-index.md). Such a field is searchable
 * only when its declaration says `acknowledgeLeakage: true`.
 */
export const LOW_CARDINALITY_TYPES: ReadonlySet<FieldType> = new Set(['number', 'boolean', 'date']);

export const NAME_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;
/** The longest name NAME_PATTERN admits. */
export const NAME_MAX_LENGTH = 63;
const RESERVED_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type RecordData = Record<string, JsonValue>;

export interface FieldSchema {
  type: FieldType;
  classification: Classification;
  required: boolean;
  searchable: boolean;
  /** Present (true) when the declaration accepted what the field's blind index reveals. */
  acknowledgeLeakage?: true;
  /**
   * Schema metadata, not customer data (it is stored in plaintext with the schema): filled in when a
   * record is created without the field, and written into existing records when the field is added
   * or becomes required.
   */
  default?: JsonValue;
}

export interface CollectionSchema {
  fields: Record<string, FieldSchema>;
  retentionDays: number | null;
}

/** The body of PUT /v1/collections/{name}. */
export interface CollectionDeclaration {
  fields: Record<
    string,
    {
      type: FieldType;
      classification: Classification;
      required?: boolean;
      searchable?: boolean;
      acknowledgeLeakage?: boolean;
      default?: JsonValue;
    }
  >;
  retentionDays?: number | null;
  /** Fields to remove together with their data (explicit, so no data is orphaned by accident). */
  drop?: string[];
}

export interface VaultLimits {
  maxCollections: number;
  maxFieldsPerCollection: number;
  /** UTF-8 bytes of one string value. */
  maxStringBytes: number;
  /** JSON bytes of one object value. */
  maxObjectBytes: number;
  /** Nesting of one object value (the field's object itself is depth 1). */
  maxObjectDepth: number;
  /** JSON bytes of all values of one record. */
  maxRecordBytes: number;
  defaultListLimit: number;
  maxListLimit: number;
  maxRetentionDays: number;
  /** Records deleted per retention transaction (and per audit event). */
  retentionBatch: number;
  /** scrypt log2(N) for passphrase exports; age's default is 18. */
  exportScryptLogN: number;
  /** Shortest accepted export passphrase: it alone protects the archive against offline guessing. */
  minPassphraseLength: number;
}

export const DEFAULT_LIMITS: VaultLimits = {
  maxCollections: 1000,
  maxFieldsPerCollection: 128,
  maxStringBytes: 64 * 1024,
  maxObjectBytes: 64 * 1024,
  maxObjectDepth: 16,
  maxRecordBytes: 1024 * 1024,
  defaultListLimit: 50,
  maxListLimit: 500,
  maxRetentionDays: 36_500,
  retentionBatch: 500,
  exportScryptLogN: 18,
  minPassphraseLength: 12,
};

/** Fixed problem codes for a field: safe to show, never a value. */
export type FieldProblem =
  | 'required'
  | 'type'
  | 'too-long'
  | 'too-deep'
  | 'too-large'
  | 'not-finite'
  | 'invalid-date'
  | 'malformed-unicode'
  | 'forbidden-key'
  | 'not-searchable';

export interface FieldError {
  field: string;
  problem: FieldProblem;
}

export function validationError(message: string, errors: FieldError[]): TresorError {
  return new TresorError('TRESOR_ERR_VALIDATION', message, {
    fields: [...new Set(errors.map((e) => e.field))],
    problems: errors,
  });
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

export function isValidName(name: unknown): name is string {
  return typeof name === 'string' && NAME_PATTERN.test(name) && !RESERVED_NAMES.has(name);
}

/** A caller-supplied name for an error detail: bounded, so an error cannot be made huge. */
function shown(name: string): string {
  return name.length > 100 ? `${name.slice(0, 100)}…` : name;
}

function unknownFieldsError(names: string[]): TresorError {
  const list = names.slice(0, 50).map(shown);
  return new TresorError('TRESOR_ERR_UNKNOWN_FIELDS', `unknown fields: ${list.join(', ')}`, {
    fields: list,
  });
}

// --- values ------------------------------------------------------------------------------------

/** A lone surrogate cannot be encoded as UTF-8; refusing it keeps stored and searched bytes exact. */
const LONE_SURROGATE = /\p{Surrogate}/u;

const DATE_ONLY = /^(\d{4})-(\d{2})-(\d{2})$/;
// RFC 3339 §5.6 date-time (the ISO 8601 profile of the internet): seconds and an offset are required.
const DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):(\d{2}))$/;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] ?? 0);
}

/**
 * The canonical form of an ISO 8601 date (YYYY-MM-DD, kept as is) or RFC 3339 date-time (the UTC
 * instant, millisecond precision), or undefined if the text is not a real calendar date.
 */
export function canonicalDate(text: string): string | undefined {
  if (text.length > 40) return undefined;
  const d = DATE_ONLY.exec(text);
  if (d) {
    const [y, m, day] = [Number(d[1]), Number(d[2]), Number(d[3])];
    return m >= 1 && m <= 12 && day >= 1 && day <= daysInMonth(y, m) ? text : undefined;
  }
  const t = DATE_TIME.exec(text);
  if (!t) return undefined;
  const [y, mo, day, h, mi, s] = [1, 2, 3, 4, 5, 6].map((i) => Number(t[i])) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (mo < 1 || mo > 12 || day < 1 || day > daysInMonth(y, mo) || h > 23 || mi > 59 || s > 59)
    return undefined;
  let offsetMinutes = 0;
  if (t[8] !== 'Z') {
    const oh = Number(t[10]);
    const om = Number(t[11]);
    if (oh > 23 || om > 59) return undefined;
    offsetMinutes = (t[9] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const ms = t[7] ? Math.floor(Number(`0.${t[7]}`) * 1000) : 0;
  const instant = new Date(0);
  instant.setUTCFullYear(y, mo - 1, day); // Date.UTC would map years 0-99 to 1900-1999
  instant.setUTCHours(h, mi, s, ms);
  return new Date(instant.getTime() - offsetMinutes * 60_000).toISOString();
}

/** Walks an object value: JSON types only, bounded depth and size, no `__proto__` keys. */
function checkObject(value: unknown, limits: VaultLimits): FieldProblem | undefined {
  let nodes = 0;
  const walk = (v: unknown, depth: number): FieldProblem | undefined => {
    if (++nodes > limits.maxObjectBytes) return 'too-large';
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return undefined;
    if (typeof v === 'number') return Number.isFinite(v) ? undefined : 'not-finite';
    if (depth >= limits.maxObjectDepth) return 'too-deep';
    if (Array.isArray(v)) {
      for (const item of v) {
        const p = walk(item, depth + 1);
        if (p) return p;
      }
      return undefined;
    }
    if (!isPlainObject(v)) return 'type';
    for (const key of Object.keys(v)) {
      if (key === '__proto__') return 'forbidden-key';
      const p = walk(v[key], depth + 1);
      if (p) return p;
    }
    return undefined;
  };
  if (!isPlainObject(value)) return 'type';
  const problem = walk(value, 0);
  if (problem) return problem;
  return Buffer.byteLength(JSON.stringify(value)) > limits.maxObjectBytes ? 'too-large' : undefined;
}

/** Checks one value against its field type; undefined when it is acceptable. */
export function checkValue(def: FieldSchema, value: unknown, limits: VaultLimits): FieldProblem | undefined {
  switch (def.type) {
    case 'string':
      if (typeof value !== 'string') return 'type';
      if (Buffer.byteLength(value) > limits.maxStringBytes) return 'too-long';
      return LONE_SURROGATE.test(value) ? 'malformed-unicode' : undefined;
    case 'number':
      if (typeof value !== 'number') return 'type';
      return Number.isFinite(value) ? undefined : 'not-finite';
    case 'boolean':
      return typeof value === 'boolean' ? undefined : 'type';
    case 'date':
      if (typeof value !== 'string') return 'type';
      return canonicalDate(value) === undefined ? 'invalid-date' : undefined;
    case 'object':
      return checkObject(value, limits);
  }
}

/**
 * The string a blind index is computed over: one canonical form per equal value, so that 1 and
 * 1.0, or two spellings of the same instant, find each other. Only for SEARCHABLE_TYPES.
 */
export function indexForm(type: FieldType, value: JsonValue): string {
  switch (type) {
    case 'string':
      return value as string;
    case 'number':
      return String(Object.is(value, -0) ? 0 : value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'date':
      return canonicalDate(value as string) ?? '';
    case 'object':
      throw new TypeError('object fields have no index form');
  }
}

function recordSize(data: RecordData, limits: VaultLimits): void {
  if (Buffer.byteLength(JSON.stringify(data)) > limits.maxRecordBytes) {
    throw new TresorError('TRESOR_ERR_PAYLOAD_TOO_LARGE', 'record is too large', {
      limit: limits.maxRecordBytes,
    });
  }
}

function checkKnown(schema: CollectionSchema, input: Record<string, unknown>): void {
  const unknown = Object.keys(input).filter((k) => !Object.hasOwn(schema.fields, k));
  if (unknown.length > 0) throw unknownFieldsError(unknown);
}

/**
 * A create body → the record's data: unknown fields refused (422 naming them), each value checked,
 * defaults filled in, required fields present. `null` means "absent" (as in a merge patch).
 */
export function validateNewRecord(schema: CollectionSchema, input: unknown, limits: VaultLimits): RecordData {
  if (!isPlainObject(input)) {
    throw new TresorError('TRESOR_ERR_VALIDATION', 'a record must be a JSON object');
  }
  checkKnown(schema, input);
  const data: RecordData = {};
  const errors: FieldError[] = [];
  for (const [name, def] of Object.entries(schema.fields)) {
    const value = Object.hasOwn(input, name) ? input[name] : undefined;
    if (value === undefined || value === null) {
      if (def.default !== undefined) data[name] = def.default;
      else if (def.required) errors.push({ field: name, problem: 'required' });
      continue;
    }
    const problem = checkValue(def, value, limits);
    if (problem) errors.push({ field: name, problem });
    else data[name] = value as JsonValue;
  }
  if (errors.length > 0) throw validationError('record does not match the collection schema', errors);
  recordSize(data, limits);
  return data;
}

/**
 * A partial update (JSON merge patch, RFC 7396 §2, top level only): named fields are replaced,
 * `null` removes an optional field. Returns the merged data, checked like a new record.
 */
export function applyPatch(
  schema: CollectionSchema,
  current: RecordData,
  patch: unknown,
  limits: VaultLimits,
): { data: RecordData; changed: string[] } {
  if (!isPlainObject(patch)) {
    throw new TresorError('TRESOR_ERR_VALIDATION', 'a patch must be a JSON object');
  }
  checkKnown(schema, patch);
  const errors: FieldError[] = [];
  const changed = Object.keys(patch);
  const data: RecordData = {};
  for (const [name, def] of Object.entries(schema.fields)) {
    const value = Object.hasOwn(patch, name) ? patch[name] : current[name];
    if (value === undefined || value === null) {
      if (def.required) errors.push({ field: name, problem: 'required' });
      continue;
    }
    const problem = Object.hasOwn(patch, name) ? checkValue(def, value, limits) : undefined;
    if (problem) errors.push({ field: name, problem });
    else data[name] = value as JsonValue;
  }
  if (errors.length > 0) throw validationError('patch does not match the collection schema', errors);
  recordSize(data, limits);
  return { data, changed };
}

export interface WhereTerm {
  field: string;
  /** indexForm of the searched value — goes into a MAC, never into a log or an audit event. */
  form: string;
}

/** Parses a search's `where` (POST …/records/search): every field known and searchable, every value of the field's type. */
export function parseWhere(schema: CollectionSchema, where: unknown, limits: VaultLimits): WhereTerm[] {
  if (where === undefined) return [];
  if (!isPlainObject(where)) throw new TresorError('TRESOR_ERR_BAD_REQUEST', 'where must be an object');
  checkKnown(schema, where);
  const terms: WhereTerm[] = [];
  const errors: FieldError[] = [];
  for (const field of Object.keys(where).sort()) {
    const def = schema.fields[field] as FieldSchema;
    if (!def.searchable) {
      errors.push({ field, problem: 'not-searchable' });
      continue;
    }
    const value = parseWhereValue(def.type, where[field]);
    const problem = value === undefined ? 'type' : checkValue(def, value, limits);
    if (value === undefined || problem) errors.push({ field, problem: problem ?? 'type' });
    else terms.push({ field, form: indexForm(def.type, value) });
  }
  if (errors.length > 0) throw validationError('where names fields that cannot be searched so', errors);
  return terms;
}

const JSON_NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

/** Query strings carry text; the field's type says how to read it. */
function parseWhereValue(type: FieldType, raw: unknown): JsonValue | undefined {
  switch (type) {
    case 'number':
      if (typeof raw === 'number') return raw;
      return typeof raw === 'string' && JSON_NUMBER.test(raw) ? Number(raw) : undefined;
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      return raw === 'true' ? true : raw === 'false' ? false : undefined;
    case 'string':
    case 'date':
      return typeof raw === 'string' ? raw : undefined;
    case 'object':
      return undefined;
  }
}

// --- declarations ------------------------------------------------------------------------------

const DECL_KEYS: ReadonlySet<string> = new Set(['fields', 'retentionDays', 'drop']);
const FIELD_DECL_KEYS: ReadonlySet<string> = new Set([
  'type',
  'classification',
  'required',
  'searchable',
  'acknowledgeLeakage',
  'default',
]);

export function checkCollectionName(name: unknown): string {
  if (!isValidName(name)) {
    throw new TresorError('TRESOR_ERR_VALIDATION', 'collection names are 1-63 characters of [a-z0-9_]', {
      fields: ['name'],
    });
  }
  return name;
}

/** Checks a PUT body and returns the schema it declares and the fields it asks to drop. */
export function parseDeclaration(
  decl: unknown,
  limits: VaultLimits,
): { schema: CollectionSchema; drop: string[] } {
  const refuse = (message: string, fields: string[] = []) =>
    new TresorError('TRESOR_ERR_VALIDATION', message, { fields: fields.slice(0, 50).map(shown) });
  if (!isPlainObject(decl)) throw refuse('a collection declaration must be a JSON object');
  const extra = Object.keys(decl).filter((k) => !DECL_KEYS.has(k));
  if (extra.length > 0) throw refuse('unknown properties in the declaration', extra);
  const { fields, retentionDays, drop } = decl;
  if (!isPlainObject(fields)) throw refuse('fields must be an object', ['fields']);
  const names = Object.keys(fields);
  if (names.length === 0) throw refuse('a collection needs at least one field', ['fields']);
  if (names.length > limits.maxFieldsPerCollection) {
    throw new TresorError('TRESOR_ERR_VALIDATION', 'too many fields', {
      fields: ['fields'],
      limit: limits.maxFieldsPerCollection,
    });
  }
  const badNames = names.filter((n) => !isValidName(n));
  if (badNames.length > 0) {
    throw refuse('field names are 1-63 characters of [a-z0-9_], starting with a letter', badNames);
  }
  const out: Record<string, FieldSchema> = {};
  for (const name of names) out[name] = parseFieldDeclaration(name, fields[name], limits);

  let retention: number | null = null;
  if (retentionDays !== undefined && retentionDays !== null) {
    if (
      typeof retentionDays !== 'number' ||
      !Number.isSafeInteger(retentionDays) ||
      retentionDays < 1 ||
      retentionDays > limits.maxRetentionDays
    ) {
      throw new TresorError(
        'TRESOR_ERR_VALIDATION',
        `retentionDays must be an integer from 1 to ${limits.maxRetentionDays}`,
        { fields: ['retentionDays'], limit: limits.maxRetentionDays },
      );
    }
    retention = retentionDays;
  }

  let dropped: string[] = [];
  if (drop !== undefined) {
    if (!Array.isArray(drop) || !drop.every(isValidName)) {
      throw refuse('drop must be a list of field names', ['drop']);
    }
    dropped = [...new Set(drop)];
    const kept = dropped.filter((n) => Object.hasOwn(out, n));
    if (kept.length > 0) throw refuse('a field cannot be both declared and dropped', kept);
  }
  return { schema: { fields: out, retentionDays: retention }, drop: dropped };
}

function parseFieldDeclaration(name: string, def: unknown, limits: VaultLimits): FieldSchema {
  const refuse = (message: string) => new TresorError('TRESOR_ERR_VALIDATION', message, { fields: [name] });
  if (!isPlainObject(def)) throw refuse(`field ${name}: the definition must be an object`);
  const extra = Object.keys(def).filter((k) => !FIELD_DECL_KEYS.has(k));
  if (extra.length > 0)
    throw refuse(`field ${name}: unknown properties ${extra.slice(0, 10).map(shown).join(', ')}`);
  const { type, classification, required, searchable, acknowledgeLeakage } = def;
  if (!(FIELD_TYPES as readonly unknown[]).includes(type)) {
    throw refuse(`field ${name}: type must be one of ${FIELD_TYPES.join(', ')}`);
  }
  if (!(CLASSIFICATIONS as readonly unknown[]).includes(classification)) {
    throw refuse(`field ${name}: classification must be one of ${CLASSIFICATIONS.join(', ')}`);
  }
  if (required !== undefined && typeof required !== 'boolean')
    throw refuse(`field ${name}: required is a boolean`);
  if (searchable !== undefined && typeof searchable !== 'boolean') {
    throw refuse(`field ${name}: searchable is a boolean`);
  }
  const field: FieldSchema = {
    type: type as FieldType,
    classification: classification as Classification,
    required: required ?? false,
    searchable: searchable ?? false,
  };
  if (field.searchable && !SEARCHABLE_TYPES.has(field.type)) {
    throw refuse(`field ${name}: ${field.type} fields cannot be searchable`);
  }
  if (acknowledgeLeakage !== undefined && typeof acknowledgeLeakage !== 'boolean') {
    throw refuse(`field ${name}: acknowledgeLeakage is a boolean`);
  }
  if (acknowledgeLeakage === true) {
    if (!field.searchable)
      throw refuse(`field ${name}: acknowledgeLeakage applies only to a searchable field`);
    field.acknowledgeLeakage = true;
  } else if (field.searchable && LOW_CARDINALITY_TYPES.has(field.type)) {
    throw new TresorError(
      'TRESOR_ERR_SEARCH_LEAKAGE_UNACKNOWLEDGED',
      `field ${name}: a searchable ${field.type} field's blind index shows anyone who reads the data store which records share a value and how often each value occurs, which for a ${field.type} is close to the value itself; declare it with "acknowledgeLeakage": true to accept that (docs/security/blind-index.md)`,
      { fields: [name] },
    );
  }
  if (Object.hasOwn(def, 'default') && def.default !== undefined && def.default !== null) {
    if (checkValue(field, def.default, limits))
      throw refuse(`field ${name}: default does not match its type`);
    field.default = def.default as JsonValue;
  }
  return field;
}

/** Two schemas declare the same thing (so a repeated PUT changes nothing). */
export function sameSchema(a: CollectionSchema, b: CollectionSchema): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
