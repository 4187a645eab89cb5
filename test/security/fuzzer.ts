/**
 * The schema-driven fuzzer: fast-check over the served OpenAPI document. Every operation gets
 * hostile values in every parameter (path, query, header) and in its JSON body — the whole body
 * and each declared property — with the credentials that fit it, so the values reach validation
 * and the handler, not just the authentication layer:
 *
 * - wrong types (numbers, booleans, null, arrays, objects where strings go, and the reverse);
 * - huge strings (100,000 characters: under the body limit, so the handler sees them);
 * - unicode edge cases (lone surrogates, NUL, BOM, right-to-left override, combining marks, emoji,
 *   U+FFFF), control characters, CRLF, percent-encoding tricks, SQL and template fragments;
 * - prototype keys (`__proto__`, `constructor.prototype`), sent as raw JSON so they reach the parser;
 * - nested depth (10,000 levels of arrays and objects);
 * - numbers at limits (±2^53, ±1.8e308, 5e-324, -0, 1e400, NaN and Infinity as raw JSON text).
 *
 * Pass: no answer of 500 or above, no dropped connection. The caller checks afterwards that the
 * server is alive and the seeded data unchanged. Path parameters that are not the one being
 * attacked get scratch values (never the seeded collection or records), so an accepted hostile
 * value can only ever land in scratch data.
 */
import { request as httpsRequest } from 'node:https';
import fc from 'fast-check';
import type { JsonSchema, Operation } from './targets.ts';

/** A value to send: `json` is spliced into the body text as is, `text` goes into a URL or header. */
export interface Hostile {
  label: string;
  json: string;
  text: string;
}

const HUGE = 'A'.repeat(100_000);
const DEEP_ARRAY = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
const DEEP_OBJECT = `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`;

const STRINGS: readonly string[] = [
  '',
  ' ',
  HUGE,
  '\uD800',
  '\uDFFF\uD800',
  '\u0000',
  'a\u0000b',
  '\uFEFF',
  '\u202Eevil',
  'e\u0301\u0301\u0301\u0301',
  '\u{1F600}\u{1F4A9}',
  '\uFFFF',
  '\r\nSet-Cookie: x=1',
  '\u001b[31m',
  "' OR '1'='1' --",
  '1; DROP TABLE records',
  '"; }',
  '../../../../etc/passwd',
  '..%2f..%2fetc%2fpasswd',
  '%00',
  '%',
  '%ZZ',
  '%C0%AF',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a template-injection probe, meant literally
  '${7*7}{{7*7}}',
  '<script>alert(1)</script>',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'rec_00000000000000000000000000000000',
  'ten_',
  '-1',
  '0x10',
  '1e999',
];

/** Numbers as JSON text: some are not JSON at all (NaN, Infinity), which must be a 400. */
const NUMBERS: readonly string[] = [
  '0',
  '-0',
  '-1',
  '9007199254740991',
  '9007199254740993',
  '-9007199254740993',
  '1.7976931348623157e308',
  '-1.7976931348623157e308',
  '5e-324',
  '1e400',
  '0.1',
  'NaN',
  'Infinity',
  '-Infinity',
  '2147483648',
  '4294967296',
];

const STRUCTURES: readonly string[] = [
  'null',
  'true',
  'false',
  '[]',
  '{}',
  '[1,"a",null]',
  '{"__proto__":{"polluted":true}}',
  '{"constructor":{"prototype":{"polluted":true}}}',
  DEEP_ARRAY,
  DEEP_OBJECT,
  `[${'"x",'.repeat(20_000)}"x"]`,
];

export const HOSTILE_VALUES: readonly Hostile[] = [
  ...STRINGS.map((s) => ({
    label: `string ${JSON.stringify(s.slice(0, 24))}${s.length > 24 ? `…(${s.length})` : ''}`,
    json: JSON.stringify(s),
    text: s,
  })),
  ...NUMBERS.map((n) => ({ label: `number ${n}`, json: n, text: n })),
  ...STRUCTURES.map((j) => ({
    label: `json ${j.slice(0, 24)}${j.length > 24 ? `…(${j.length})` : ''}`,
    json: j,
    text: j,
  })),
];

/** Body-level attacks: bodies that are not objects, or objects carrying prototype keys. */
function wholeBodies(base: string): Hostile[] {
  const inner = base.slice(1, -1);
  const withKey = (k: string) => `{${k}${inner === '' ? '' : `,${inner}`}}`;
  return [
    ...STRUCTURES.map((j) => ({ label: `body ${j.slice(0, 24)}`, json: j, text: j })),
    { label: 'body "a string"', json: '"a string"', text: '' },
    { label: 'body 42', json: '42', text: '' },
    { label: 'body __proto__ key', json: withKey('"__proto__":{"admin":true,"polluted":true}'), text: '' },
    {
      label: 'body constructor.prototype',
      json: withKey('"constructor":{"prototype":{"polluted":true}}'),
      text: '',
    },
    { label: 'body duplicate keys', json: `{"a":1,"a":2${inner === '' ? '' : `,${inner}`}}`, text: '' },
    { label: 'body not JSON', json: '{"a":', text: '' },
    { label: 'body huge key', json: withKey(`${JSON.stringify(HUGE)}:1`), text: '' },
  ];
}

/** A plausible value for a schema, so the other properties of a body pass and the attacked one is reached. */
function plausible(schema: JsonSchema | undefined, depth = 0): unknown {
  if (schema === undefined || depth > 4) return 'x';
  if (schema.const !== undefined) return schema.const;
  if (schema.enum !== undefined && schema.enum.length > 0) return schema.enum[0];
  const alt = schema.anyOf?.[0] ?? schema.oneOf?.[0];
  if (alt !== undefined) return plausible(alt, depth + 1);
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (type) {
    case 'integer':
    case 'number':
      return typeof schema.minimum === 'number' ? schema.minimum : 1;
    case 'boolean':
      return true;
    case 'array':
      return [];
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(schema.properties ?? {})) out[k] = plausible(v, depth + 1);
      return out;
    }
    case 'null':
      return null;
    default:
      return 'fuzz_scratch';
  }
}

/** What the non-attacked path parameters are: scratch names and ids that hold no seeded data. */
function scratch(name: string): string {
  return name === 'name' ? 'fuzz_scratch' : `${name}_00000000000000000000000000000000`;
}

export interface FuzzCase {
  op: Operation;
  /** What is attacked: `path:id`, `query:limit`, `header:if-match`, `body`, `body.email`. */
  target: string;
  value: Hostile;
}

export interface Credentials {
  tenantKey: string;
  /** The admin session's cookie header value and CSRF token, read at call time (step-ups renew it). */
  session(): { cookie: string; csrf: string };
}

export interface Sent {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string | undefined;
}

/**
 * encodeURIComponent, except for a lone surrogate, which it refuses (URIError): the string's UTF-8
 * bytes as Node's encoder writes them (a lone surrogate as U+FFFD), each percent-encoded.
 */
function uriComponent(v: string): string {
  try {
    return encodeURIComponent(v);
  } catch {
    return [...Buffer.from(v, 'utf8')]
      .map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`)
      .join('');
  }
}

/** The request a case sends; undefined when the value cannot be put on the wire at all. */
export function requestFor(c: FuzzCase, creds: Credentials): Sent | undefined {
  const { op, target, value } = c;
  const [where, name] = target.split(':') as [string, string | undefined];
  let path = op.path;
  for (const p of op.parameters.filter((p) => p.in === 'path')) {
    const v = where === 'path' && p.name === name ? value.text : scratch(p.name);
    // Percent tricks go raw (the server decodes them); everything else encoded, as a client would.
    const encoded = /^%|%2f|%C0/.test(v) ? v : uriComponent(v);
    path = path.replace(`{${p.name}}`, encoded);
  }
  if (where === 'query') path += `?${uriComponent(name as string)}=${uriComponent(value.text)}`;
  const headers: Record<string, string> = {};
  if (where === 'header') {
    // A header value Node refuses to send (CR, LF, NUL, non-Latin-1) cannot reach the server at all.
    if (/[^\t\x20-\x7e\x80-\xff]/.test(value.text) || value.text.length > 8000) return undefined;
    headers[name as string] = value.text;
  }
  let body: string | undefined;
  if (op.body !== undefined || target.startsWith('body')) {
    const base = JSON.stringify(plausible(op.body) ?? {});
    if (target === 'body') body = value.json;
    else if (target.startsWith('body.')) {
      const prop = target.slice('body.'.length);
      const obj = { ...(plausible(op.body) as Record<string, unknown>) };
      obj[prop] = '\u0000PLACEHOLDER\u0000';
      body = JSON.stringify(obj).replace('"\\u0000PLACEHOLDER\\u0000"', value.json);
    } else body = base;
  }
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (op.caller === 'tenant-key') headers.authorization = `Bearer ${creds.tenantKey}`;
  if (op.caller === 'admin-session') {
    const s = creds.session();
    headers.cookie = s.cookie;
    headers['x-csrf-token'] = s.csrf;
  }
  return { method: op.method, path, headers, body };
}

/** Every case of an operation: each parameter and each body property with each hostile value. */
export function casesOf(op: Operation): FuzzCase[] {
  const targets: { target: string; values: readonly Hostile[] }[] = [];
  for (const p of op.parameters) targets.push({ target: `${p.in}:${p.name}`, values: HOSTILE_VALUES });
  if (op.body !== undefined) {
    targets.push({ target: 'body', values: wholeBodies(JSON.stringify(plausible(op.body) ?? {})) });
    for (const prop of Object.keys(op.body.properties ?? {})) {
      targets.push({ target: `body.${prop}`, values: HOSTILE_VALUES });
    }
  }
  // An operation with nothing declared still gets an unexpected query parameter and body.
  if (targets.length === 0) {
    targets.push({ target: 'query:unexpected', values: HOSTILE_VALUES });
    targets.push({ target: 'body', values: wholeBodies('{}') });
  }
  return targets.flatMap((t) => t.values.map((value) => ({ op, target: t.target, value })));
}

export interface Outcome {
  status: number;
  /** The error when no answer came (a dropped connection). */
  error?: string;
}

export function send(origin: string, ca: Buffer, sent: Sent, timeoutMs = 60_000): Promise<Outcome> {
  const url = new URL(origin);
  return new Promise((resolve) => {
    let req: ReturnType<typeof httpsRequest>;
    try {
      req = httpsRequest(
        {
          host: url.hostname,
          port: url.port,
          method: sent.method,
          path: sent.path,
          headers: {
            ...sent.headers,
            ...(sent.body !== undefined ? { 'content-length': String(Buffer.byteLength(sent.body)) } : {}),
          },
          ca,
          agent: false,
          timeout: timeoutMs,
        },
        (res) => {
          // An event stream (the audit stream) never ends by design: its answering is enough.
          if (String(res.headers['content-type']).startsWith('text/event-stream')) {
            res.destroy();
            resolve({ status: res.statusCode ?? 0 });
            return;
          }
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
          res.on('error', (err) =>
            resolve({ status: res.statusCode ?? 0, error: `answer cut: ${err.message}` }),
          );
        },
      );
    } catch (err) {
      // Refused by Node's client before anything was sent: not the server's doing.
      resolve({ status: -1, error: `not sendable: ${(err as Error).message}` });
      return;
    }
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ status: 0, error: err.message }));
    req.end(sent.body);
  });
}

export interface FuzzReport {
  requests: number;
  /** 5xx answers and dropped connections, one line each. */
  findings: string[];
  /** Status counts, e.g. { '400': 812, '404': 90 }. */
  statuses: Record<string, number>;
}

/**
 * Runs `perOperation` cases of each operation, drawn by fast-check (seeded, so a failing run can be
 * repeated with the printed seed) from all of its cases.
 */
export async function fuzz(options: {
  origin: string;
  ca: Buffer;
  ops: readonly Operation[];
  creds: Credentials;
  perOperation: number;
  seed: number;
}): Promise<FuzzReport> {
  const findings: string[] = [];
  const statuses: Record<string, number> = {};
  let requests = 0;
  for (const op of options.ops) {
    const all = casesOf(op);
    const picked = fc.sample(fc.constantFrom(...all), { numRuns: options.perOperation, seed: options.seed });
    // The first and last cases of each target (wrong type, huge, depth, limits) are always sent.
    const cases = [...new Set([...picked, ...all.filter((_, i) => i % 97 === 0)])];
    for (const c of cases) {
      const sent = requestFor(c, options.creds);
      if (sent === undefined) continue;
      // A browser names its page's origin on each change it sends with the session cookie, and the
      // server refuses a cookie-borne change without it (403 TRESOR_ERR_ORIGIN_REFUSED) before any
      // handler runs: without it the session's hostile values would reach nothing.
      if (sent.headers.cookie !== undefined) sent.headers.origin ??= options.origin;
      const outcome = await send(options.origin, options.ca, sent);
      if (outcome.status === -1) continue;
      requests++;
      statuses[String(outcome.status)] = (statuses[String(outcome.status)] ?? 0) + 1;
      if (outcome.error !== undefined)
        findings.push(`${op.key} ${c.target}=${c.value.label}: dropped (${outcome.error})`);
      else if (outcome.status >= 500)
        findings.push(`${op.key} ${c.target}=${c.value.label}: ${outcome.status}`);
    }
  }
  return { requests, findings, statuses };
}
