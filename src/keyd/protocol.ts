/**
 * The keyd wire protocol, shared by server.ts and client.ts. It stays small so it can be
 * reviewed in one sitting and fuzzed cheaply:
 *
 *   frame    = uint32 big-endian payload length ‖ payload (UTF-8 JSON), payload ≤ 1 MiB
 *   request  = {v:1, id, op, args}                          id: positive safe integer, chosen by the client
 *   response = {v:1, id, ok:true, result} | {v:1, id, ok:false, error:{code, message}}
 *
 * Responses carry the id of their request, so a connection pipelines any number of requests and
 * answers arrive in completion order. A frame with `id: null` is about the connection itself:
 * the server's greeting (`ok:true`, sent first, before the client may speak, so a refused client
 * never has unread bytes in flight), or a connection-level error such as the mTLS allowlist
 * refusal, an oversize frame or a payload that is not a request at all.
 *
 * Binary values (keys, wrapped keys, signatures) travel as `{"$b64": "<base64>"}` at any depth.
 *
 * Decoding is strict: every operation's arguments are checked against a schema of their types
 * (unknown fields refused) before the service sees them, and a bad request is answered with
 * TRESOR_ERR_REQUEST_INVALID while the connection stays usable. Only broken framing (a length
 * over the limit) ends the connection, since the stream can no longer be re-synchronised.
 *
 * Key material on the wire: a response frame carrying a data key is wiped by the sender once
 * written and by the receiver once parsed; the JSON strings V8 made on the way cannot be wiped
 * and live until garbage collection, which is why keys on this channel are only data keys, and
 * the channel itself is a 0600 socket or mTLS.
 */
import { KEY_PURPOSES, secretFromText } from '../crypto/index.ts';
import { KeydError } from './errors.ts';
import type { KeydOperationName, KeydOperations } from './operations.ts';
import { SIGNING_PURPOSES } from './signing.ts';

export const PROTOCOL_VERSION = 1;
/** Largest payload either side accepts or sends (the 4-byte length prefix excluded). */
export const MAX_FRAME_BYTES = 1024 * 1024;
/** Nesting limit for decoded values: the contract needs 4 levels, this keeps recursion bounded. */
const MAX_DEPTH = 32;
const LENGTH_BYTES = 4;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Client names in `hello` become part of the caller id in keyd's ops log: keep them log-safe. */
export const CLIENT_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Operations of the protocol itself, answered by the transport and never by the key service. */
export interface ProtocolOperations {
  /** Names the client for the ops log (Unix socket; over mTLS the certificate names it). */
  hello: [{ client: string }, { caller: string }];
}
export type WireOperationName = KeydOperationName | keyof ProtocolOperations;

export interface RequestFrame {
  v: typeof PROTOCOL_VERSION;
  id: number;
  op: WireOperationName;
  args: Record<string, unknown>;
}

export interface WireError {
  code: string;
  message: string;
}

export type ResponseFrame =
  | { v: typeof PROTOCOL_VERSION; id: number | null; ok: true; result: unknown }
  | { v: typeof PROTOCOL_VERSION; id: number | null; ok: false; error: WireError };

/** The first frame a server sends on an accepted connection. */
export interface Greeting {
  server: 'keyd';
  v: typeof PROTOCOL_VERSION;
}

// ---------------------------------------------------------------------------------------------
// Framing

/** One frame from a JSON-able message (Buffers become `$b64`). Throws TRESOR_ERR_REQUEST_INVALID over the size limit. */
export function encodeFrame(message: object): Buffer {
  const json = JSON.stringify(toWire(message, 0));
  const length = Buffer.byteLength(json, 'utf8');
  if (length > MAX_FRAME_BYTES) {
    throw new KeydError('TRESOR_ERR_REQUEST_INVALID', 'message exceeds the 1 MiB frame limit');
  }
  const frame = Buffer.alloc(LENGTH_BYTES + length);
  frame.writeUInt32BE(length, 0);
  frame.write(json, LENGTH_BYTES, 'utf8');
  return frame;
}

/**
 * Reassembles frames from a byte stream however it is chunked. `push` takes ownership of the
 * chunk (it is zeroed once consumed) and returns every payload the chunk completes, each a fresh
 * Buffer for the caller to wipe after parsing. It throws TRESOR_ERR_REQUEST_INVALID once a length
 * prefix exceeds the limit, and refuses all input after that (the stream cannot be re-synchronised).
 */
export class FrameDecoder {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #broken = false;

  push(chunk: Buffer): Buffer[] {
    if (this.#broken) throw frameTooLarge();
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const payloads: Buffer[] = [];
    while (this.#buffered >= LENGTH_BYTES) {
      const first = this.#chunks[0] as Buffer;
      const length = (first.length >= LENGTH_BYTES ? first : this.#merge()).readUInt32BE(0);
      if (length > MAX_FRAME_BYTES) {
        this.#broken = true;
        this.clear();
        throw frameTooLarge();
      }
      if (this.#buffered < LENGTH_BYTES + length) break;
      const pending = this.#merge();
      // Private copies: the payload may hold key material, which its reader wipes after parsing.
      payloads.push(Buffer.from(pending.subarray(LENGTH_BYTES, LENGTH_BYTES + length)));
      const rest = pending.subarray(LENGTH_BYTES + length);
      this.#chunks = rest.length > 0 ? [Buffer.from(rest)] : [];
      this.#buffered = rest.length;
      pending.fill(0);
    }
    return payloads;
  }

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Drops (and wipes) buffered bytes, e.g. when the connection closes. */
  clear(): void {
    for (const chunk of this.#chunks) chunk.fill(0);
    this.#chunks = [];
    this.#buffered = 0;
  }

  /** The buffered bytes as one Buffer; copies (and wipes the pieces) only when a frame spans chunks. */
  #merge(): Buffer {
    if (this.#chunks.length > 1) {
      const merged = Buffer.concat(this.#chunks);
      for (const chunk of this.#chunks) chunk.fill(0);
      this.#chunks = [merged];
    }
    return this.#chunks[0] as Buffer;
  }
}

function frameTooLarge(): KeydError {
  return new KeydError('TRESOR_ERR_REQUEST_INVALID', 'frame exceeds the 1 MiB limit');
}

/** Parses a payload as JSON (no `$b64` decoding yet, so a bad value can still be answered by id). */
export function parsePayload(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8'));
  } catch {
    throw invalid('frame is not valid JSON');
  }
}

// ---------------------------------------------------------------------------------------------
// Binary values

/** Buffers (and any Uint8Array) → `{$b64}`, recursively; undefined properties are dropped as JSON would. */
export function toWire(value: unknown, depth = 0): unknown {
  if (depth > MAX_DEPTH) throw invalid('value nests too deeply');
  if (value instanceof Uint8Array) {
    return { $b64: Buffer.from(value.buffer, value.byteOffset, value.length).toString('base64') };
  }
  if (Array.isArray(value)) return value.map((item) => toWire(item, depth + 1));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, toWire(v, depth + 1)]),
    );
  }
  return value;
}

/** `{$b64}` → Buffer, recursively. Throws TRESOR_ERR_REQUEST_INVALID on a malformed `$b64` object. */
export function fromWire(value: unknown, depth = 0): unknown {
  if (depth > MAX_DEPTH) throw invalid('value nests too deeply');
  if (Array.isArray(value)) return value.map((item) => fromWire(item, depth + 1));
  if (value !== null && typeof value === 'object') {
    if (Object.hasOwn(value, '$b64')) {
      const encoded = (value as { $b64: unknown }).$b64;
      if (Object.keys(value).length !== 1 || typeof encoded !== 'string' || !BASE64.test(encoded)) {
        throw invalid('malformed $b64 value');
      }
      // Memory of its own, not a slice of Node's pool: it may be a key its receiver wipes.
      return secretFromText(encoded, 'base64');
    }
    // fromEntries defines own properties, so a "__proto__" key cannot reach a prototype.
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromWire(v, depth + 1)]));
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Requests

type FieldSpec =
  | { type: 'string'; optional?: true }
  | { type: 'buffer'; optional?: true }
  | { type: 'buffers'; optional?: true }
  | { type: 'integer'; min: number; optional?: true }
  | { type: 'enum'; values: readonly string[]; optional?: true };

type ArgsSchema<A> = { [P in keyof A]-?: FieldSpec };

const DATA_KEY_PURPOSES = KEY_PURPOSES.filter((p) => p !== 'signing');

const tenant: FieldSpec = { type: 'string' };
const purpose: FieldSpec = { type: 'enum', values: DATA_KEY_PURPOSES };
const requestId: FieldSpec = { type: 'string', optional: true };
const wrappedKey = { tenant, purpose, keyId: { type: 'string' }, wrapped: { type: 'buffer' } } as const;

/** Argument types of every operation; the mapped type makes a new operation in the contract fail to compile until it has a schema here. */
const ARG_SCHEMAS: { [K in WireOperationName]: ArgsSchema<(KeydOperations & ProtocolOperations)[K][0]> } = {
  hello: { client: { type: 'string' } },
  status: {},
  unseal: { secret: { type: 'string' } },
  seal: {},
  health: {},
  createTenantKey: { tenant },
  tenantKeyStatus: { tenant },
  generateDataKey: { tenant, purpose },
  unwrapDataKey: wrappedKey,
  rewrapDataKey: wrappedKey,
  rotateTenantKey: { tenant, requestId },
  retireTenantKeyVersion: { tenant, version: { type: 'integer', min: 1 }, requestId },
  destroyTenantKey: {
    tenant,
    mode: { type: 'enum', values: ['schedule', 'now'] },
    graceSeconds: { type: 'integer', min: 0, optional: true },
    requestId,
  },
  cancelTenantKeyDestroy: { tenant },
  rotateRootKey: {},
  retireRootKeyVersion: { version: { type: 'integer', min: 1 } },
  generateBackupDataKey: { backupId: { type: 'string' } },
  unwrapBackupDataKey: {
    backupId: { type: 'string' },
    keyId: { type: 'string' },
    wrapped: { type: 'buffer' },
  },
  // Still decoded for every purpose, so an old-style opaque request for a checkpoint or a deletion
  // certificate gets keyd's clear refusal (TRESOR_ERR_SIGN_REFUSED), not "unknown argument".
  sign: { purpose: { type: 'enum', values: SIGNING_PURPOSES }, message: { type: 'buffer' } },
  signCheckpoint: {
    origin: { type: 'string' },
    size: { type: 'integer', min: 0 },
    rootHash: { type: 'buffer' },
    fromSize: { type: 'integer', min: 0 },
    proof: { type: 'buffers' },
  },
  checkpointTree: {},
  resetCheckpointTree: {
    origin: { type: 'string', optional: true },
    size: { type: 'integer', min: 0, optional: true },
    rootHash: { type: 'buffer', optional: true },
    signature: { type: 'buffer', optional: true },
  },
  signDeletionCertificate: {
    tenant,
    tenantName: { type: 'string', optional: true },
    closedAt: { type: 'string' },
    backupsAgedOutBy: { type: 'string' },
    reason: { type: 'string' },
  },
  publicKey: { purpose: { type: 'enum', values: SIGNING_PURPOSES } },
  backupKeyd: {},
  listKeydBackups: {},
  keydBackupHorizon: { at: { type: 'string', optional: true } },
  opsLog: {
    from: { type: 'integer', min: 0, optional: true },
    limit: { type: 'integer', min: 1, optional: true },
  },
};

export function isWireOperation(op: unknown): op is WireOperationName {
  return typeof op === 'string' && Object.hasOwn(ARG_SCHEMAS, op);
}

export type DecodedRequest =
  | { ok: true; id: number; op: WireOperationName; args: Record<string, unknown> }
  | { ok: false; id: number | null; error: KeydError };

/**
 * Checks a parsed payload against the request envelope and the operation's argument schema.
 * Never throws: the result names the id to answer (null when the id itself is unreadable).
 */
export function decodeRequest(message: unknown): DecodedRequest {
  if (!isPlainObject(message))
    return { ok: false, id: null, error: invalid('request must be a JSON object') };
  const id = isRequestId(message.id) ? message.id : null;
  try {
    if (id === null) throw invalid('request id must be a positive integer');
    if (message.v !== PROTOCOL_VERSION)
      throw invalid(`unsupported protocol version (this keyd speaks v${PROTOCOL_VERSION})`);
    for (const key of Object.keys(message)) {
      if (key !== 'v' && key !== 'id' && key !== 'op' && key !== 'args')
        throw invalid(`unknown request field: ${safeName(key)}`);
    }
    const op = message.op;
    if (!isWireOperation(op))
      throw invalid(`unknown operation: ${typeof op === 'string' ? safeName(op) : typeof op}`);
    if (!isPlainObject(message.args)) throw invalid('args must be a JSON object');
    const args = fromWire(message.args) as Record<string, unknown>;
    checkArgs(op, args);
    return { ok: true, id, op, args };
  } catch (error) {
    return { ok: false, id, error: error instanceof KeydError ? error : invalid('malformed request') };
  }
}

function checkArgs(op: WireOperationName, args: Record<string, unknown>): void {
  const schema: Record<string, FieldSpec> = ARG_SCHEMAS[op];
  for (const key of Object.keys(args)) {
    if (!Object.hasOwn(schema, key)) throw invalid(`${op}: unknown argument ${safeName(key)}`);
  }
  for (const [name, spec] of Object.entries(schema)) {
    const value = args[name];
    if (value === undefined) {
      if (spec.optional) continue;
      throw invalid(`${op}: missing argument ${name}`);
    }
    if (!matches(spec, value)) throw invalid(`${op}: argument ${name} must be ${describe(spec)}`);
  }
}

function matches(spec: FieldSpec, value: unknown): boolean {
  switch (spec.type) {
    case 'string':
      return typeof value === 'string';
    case 'buffer':
      return Buffer.isBuffer(value);
    case 'buffers':
      return Array.isArray(value) && value.every((item) => Buffer.isBuffer(item));
    case 'integer':
      return Number.isSafeInteger(value) && (value as number) >= spec.min;
    case 'enum':
      return typeof value === 'string' && spec.values.includes(value);
  }
}

function describe(spec: FieldSpec): string {
  switch (spec.type) {
    case 'string':
      return 'a string';
    case 'buffer':
      return 'binary ({"$b64": …})';
    case 'buffers':
      return 'a list of binary values';
    case 'integer':
      return `an integer ≥ ${spec.min}`;
    case 'enum':
      return `one of ${spec.values.join(', ')}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Responses

/** Checks a parsed payload against the response envelope and decodes `$b64` values in the result. Throws TRESOR_ERR_REQUEST_INVALID. */
export function decodeResponse(message: unknown): ResponseFrame {
  if (!isPlainObject(message) || message.v !== PROTOCOL_VERSION)
    throw invalid('response is not a keyd v1 frame');
  const id = message.id;
  if (id !== null && !isRequestId(id)) throw invalid('response id is malformed');
  if (message.ok === true) return { v: PROTOCOL_VERSION, id, ok: true, result: fromWire(message.result) };
  const error = message.error;
  if (
    message.ok !== false ||
    !isPlainObject(error) ||
    typeof error.code !== 'string' ||
    typeof error.message !== 'string'
  ) {
    throw invalid('response is malformed');
  }
  return { v: PROTOCOL_VERSION, id, ok: false, error: { code: error.code, message: error.message } };
}

export function okResponse(id: number | null, result: unknown): ResponseFrame {
  return { v: PROTOCOL_VERSION, id, ok: true, result };
}

export function errorResponse(id: number | null, error: WireError): ResponseFrame {
  return { v: PROTOCOL_VERSION, id, ok: false, error: { code: error.code, message: error.message } };
}

// ---------------------------------------------------------------------------------------------

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !Buffer.isBuffer(value);
}

function isRequestId(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) > 0;
}

/** Echoes a caller-supplied name in an error message only when it is short and plain. */
function safeName(name: string): string {
  return /^[A-Za-z0-9_$-]{1,64}$/.test(name) ? name : '(unprintable)';
}

function invalid(message: string): KeydError {
  return new KeydError('TRESOR_ERR_REQUEST_INVALID', message);
}
