/**
 * Argument checks for every keyd operation, shared by the service and the wire protocol. Unknown
 * fields are refused, every string and Buffer is bounded, and a failure names the field:
 * KeydError TRESOR_ERR_REQUEST_INVALID (TRESOR_ERR_PURPOSE_INVALID for a known but wrong purpose).
 */
import { KEY_PURPOSES } from '../crypto/index.ts';
import { KEY_ID_PATTERN } from '../crypto/key-id.ts';
import { hasControlCharacter } from '../text.ts';
import { isValidOrigin } from '../tlog/checkpoint-text.ts';
import { KeydError } from './errors.ts';
import type { Caller, DataKeyPurpose, KeydOperationName, OpArgs } from './operations.ts';
import { ED25519_SIGNATURE_BYTES, SIGNING_PURPOSES } from './signing.ts';

export const TENANT_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** Backup ids name objects at a destination and bind a backup's data key (src/backup/backup-id.ts). */
export const BACKUP_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Request ids the client makes for requests keyd does at most once (repeated-requests.ts). */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;
export const CALLER_ID_PATTERN = /^[\x21-\x7e]{1,200}$/;
export const DATA_KEY_PURPOSES: readonly DataKeyPurpose[] = KEY_PURPOSES.filter(
  (p): p is DataKeyPurpose => p !== 'signing',
);

/** Envelope of a 32-byte key: 3 + key id (≤ 64) + nonce 12 + 32 + tag 16 = 127 bytes at most. */
export const MAX_WRAPPED_BYTES = 256;
/** Checkpoint notes and deletion certificates are small; bound what keyd signs. */
export const MAX_SIGN_MESSAGE_BYTES = 64 * 1024;
export const MAX_SECRET_CHARS = 8192;
export const MAX_GRACE_SECONDS = 400 * 86400;
export const MAX_OPS_LOG_PAGE = 1000;
const MAX_VERSION = 2 ** 31 - 1;
/** RFC 9162 §2.1.4: a consistency proof has at most about 2·log2(size) hashes; 2^53 leaves → < 110. */
export const MAX_PROOF_HASHES = 128;
export const MAX_ORIGIN_CHARS = 256;
/** Tenant names and close reasons in a deletion certificate. */
export const MAX_CERTIFICATE_TEXT_CHARS = 1000;
const HASH_BYTES = 32;

type Args = Record<string, unknown>;

function invalid(field: string, why: string): KeydError {
  return new KeydError('TRESOR_ERR_REQUEST_INVALID', `${field}: ${why}`);
}

function fields(args: unknown, required: readonly string[], optional: readonly string[] = []): Args {
  if (typeof args !== 'object' || args === null || Array.isArray(args) || Buffer.isBuffer(args)) {
    throw invalid('args', 'must be an object');
  }
  const a = args as Args;
  for (const key of Object.keys(a)) {
    if (!required.includes(key) && !optional.includes(key)) throw invalid(key, 'unknown field');
  }
  for (const key of required) {
    if (a[key] === undefined) throw invalid(key, 'is required');
  }
  return a;
}

function tenant(a: Args): string {
  const t = a.tenant;
  if (typeof t !== 'string' || !TENANT_ID_PATTERN.test(t))
    throw invalid('tenant', 'must be 1-64 of [A-Za-z0-9_-]');
  return t;
}

/** A request id, when given: {requestId} to spread into the checked arguments, else nothing. */
function requestIdOf(a: Args): { requestId?: string } {
  if (a.requestId === undefined) return {};
  if (typeof a.requestId !== 'string' || !REQUEST_ID_PATTERN.test(a.requestId))
    throw invalid('requestId', 'must be 16-64 of [A-Za-z0-9_-]');
  return { requestId: a.requestId };
}

function backupId(a: Args): string {
  const b = a.backupId;
  if (typeof b !== 'string' || !BACKUP_ID_PATTERN.test(b))
    throw invalid('backupId', 'must be 1-64 of [A-Za-z0-9._-], starting with a letter or digit');
  return b;
}

function dataKeyPurpose(a: Args): DataKeyPurpose {
  const p = a.purpose;
  if (p === 'signing') {
    throw new KeydError('TRESOR_ERR_PURPOSE_INVALID', 'purpose: signing keys never leave keyd');
  }
  if (typeof p !== 'string' || !(DATA_KEY_PURPOSES as readonly string[]).includes(p)) {
    throw invalid('purpose', `must be one of ${DATA_KEY_PURPOSES.join(', ')}`);
  }
  return p as DataKeyPurpose;
}

function signingPurpose(a: Args): (typeof SIGNING_PURPOSES)[number] {
  const p = a.purpose;
  if (typeof p !== 'string' || !(SIGNING_PURPOSES as readonly string[]).includes(p)) {
    throw invalid('purpose', `must be one of ${SIGNING_PURPOSES.join(', ')}`);
  }
  return p as (typeof SIGNING_PURPOSES)[number];
}

function origin(a: Args): string {
  const o = a.origin;
  if (typeof o !== 'string' || o.length > MAX_ORIGIN_CHARS || !isValidOrigin(o)) {
    throw invalid(
      'origin',
      `must be a log name of at most ${MAX_ORIGIN_CHARS} characters, no spaces, no "+"`,
    );
  }
  return o;
}

function plainText(a: Args, field: string): string {
  const v = a[field];
  if (typeof v !== 'string' || v.length > MAX_CERTIFICATE_TEXT_CHARS || hasControlCharacter(v)) {
    throw invalid(
      field,
      `must be at most ${MAX_CERTIFICATE_TEXT_CHARS} characters without control characters`,
    );
  }
  return v;
}

function isIsoTime(value: string): boolean {
  const t = Date.parse(value);
  return !Number.isNaN(t) && new Date(t).toISOString() === value;
}

function isIsoDate(value: string): boolean {
  return /^\d{4}-\d{2}-\d{2}$/.test(value) && isIsoTime(`${value}T00:00:00.000Z`);
}

function keyId(a: Args): string {
  const k = a.keyId;
  if (typeof k !== 'string' || !KEY_ID_PATTERN.test(k))
    throw invalid('keyId', 'must be 1-64 of [A-Za-z0-9._:-]');
  return k;
}

function bytes(a: Args, field: string, min: number, max: number): Buffer {
  const v = a[field];
  if (!(v instanceof Uint8Array)) throw invalid(field, 'must be bytes');
  if (v.length < min || v.length > max) throw invalid(field, `must be ${min} to ${max} bytes`);
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function integer(a: Args, field: string, min: number, max: number): number {
  const v = a[field];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw invalid(field, `must be an integer from ${min} to ${max}`);
  }
  return v;
}

const none = (args: unknown): Record<string, never> => {
  fields(args, []);
  return {};
};

const VALIDATORS: { [K in KeydOperationName]: (args: unknown) => OpArgs<K> } = {
  status: none,
  seal: none,
  health: none,
  rotateRootKey: none,
  unseal: (args) => {
    const a = fields(args, ['secret']);
    if (typeof a.secret !== 'string' || a.secret.length > MAX_SECRET_CHARS) {
      throw invalid('secret', `must be a string of at most ${MAX_SECRET_CHARS} characters`);
    }
    return { secret: a.secret };
  },
  createTenantKey: (args) => ({ tenant: tenant(fields(args, ['tenant'])) }),
  tenantKeyStatus: (args) => ({ tenant: tenant(fields(args, ['tenant'])) }),
  rotateTenantKey: (args) => {
    const a = fields(args, ['tenant'], ['requestId']);
    return { tenant: tenant(a), ...requestIdOf(a) };
  },
  cancelTenantKeyDestroy: (args) => ({ tenant: tenant(fields(args, ['tenant'])) }),
  generateDataKey: (args) => {
    const a = fields(args, ['tenant', 'purpose']);
    return { tenant: tenant(a), purpose: dataKeyPurpose(a) };
  },
  unwrapDataKey: (args) => {
    const a = fields(args, ['tenant', 'purpose', 'keyId', 'wrapped']);
    return {
      tenant: tenant(a),
      purpose: dataKeyPurpose(a),
      keyId: keyId(a),
      wrapped: bytes(a, 'wrapped', 1, MAX_WRAPPED_BYTES),
    };
  },
  rewrapDataKey: (args) => {
    const a = fields(args, ['tenant', 'purpose', 'keyId', 'wrapped']);
    return {
      tenant: tenant(a),
      purpose: dataKeyPurpose(a),
      keyId: keyId(a),
      wrapped: bytes(a, 'wrapped', 1, MAX_WRAPPED_BYTES),
    };
  },
  retireTenantKeyVersion: (args) => {
    const a = fields(args, ['tenant', 'version'], ['requestId']);
    return { tenant: tenant(a), version: integer(a, 'version', 1, MAX_VERSION), ...requestIdOf(a) };
  },
  destroyTenantKey: (args) => {
    const a = fields(args, ['tenant', 'mode'], ['graceSeconds', 'requestId']);
    if (a.mode !== 'schedule' && a.mode !== 'now') throw invalid('mode', "must be 'schedule' or 'now'");
    if (a.mode === 'now' && a.graceSeconds !== undefined)
      throw invalid('graceSeconds', "only applies to mode 'schedule'");
    return {
      tenant: tenant(a),
      mode: a.mode,
      ...(a.graceSeconds === undefined
        ? {}
        : { graceSeconds: integer(a, 'graceSeconds', 0, MAX_GRACE_SECONDS) }),
      ...requestIdOf(a),
    };
  },
  retireRootKeyVersion: (args) => ({
    version: integer(fields(args, ['version']), 'version', 1, MAX_VERSION),
  }),
  generateBackupDataKey: (args) => ({ backupId: backupId(fields(args, ['backupId'])) }),
  unwrapBackupDataKey: (args) => {
    const a = fields(args, ['backupId', 'keyId', 'wrapped']);
    return { backupId: backupId(a), keyId: keyId(a), wrapped: bytes(a, 'wrapped', 1, MAX_WRAPPED_BYTES) };
  },
  sign: (args) => {
    const a = fields(args, ['purpose', 'message']);
    return { purpose: signingPurpose(a), message: bytes(a, 'message', 1, MAX_SIGN_MESSAGE_BYTES) };
  },
  signCheckpoint: (args) => {
    const a = fields(args, ['origin', 'size', 'rootHash', 'fromSize', 'proof']);
    const proof = a.proof;
    if (!Array.isArray(proof) || proof.length > MAX_PROOF_HASHES) {
      throw invalid('proof', `must be a list of at most ${MAX_PROOF_HASHES} hashes`);
    }
    return {
      origin: origin(a),
      size: integer(a, 'size', 0, Number.MAX_SAFE_INTEGER),
      rootHash: bytes(a, 'rootHash', HASH_BYTES, HASH_BYTES),
      fromSize: integer(a, 'fromSize', 0, Number.MAX_SAFE_INTEGER),
      proof: proof.map((_, i) => bytes(proof as unknown as Args, String(i), HASH_BYTES, HASH_BYTES)),
    };
  },
  checkpointTree: none,
  resetCheckpointTree: (args) => {
    const a = fields(args, [], ['origin', 'size', 'rootHash', 'signature']);
    const given = ['origin', 'size', 'rootHash', 'signature'].filter((k) => a[k] !== undefined);
    if (given.length === 0) return {};
    if (given.length !== 4) throw invalid('args', 'a checkpoint needs origin, size, rootHash and signature');
    return {
      origin: origin(a),
      size: integer(a, 'size', 0, Number.MAX_SAFE_INTEGER),
      rootHash: bytes(a, 'rootHash', HASH_BYTES, HASH_BYTES),
      signature: bytes(a, 'signature', ED25519_SIGNATURE_BYTES, ED25519_SIGNATURE_BYTES),
    };
  },
  signDeletionCertificate: (args) => {
    const a = fields(args, ['tenant', 'closedAt', 'backupsAgedOutBy', 'reason'], ['tenantName']);
    if (typeof a.closedAt !== 'string' || !isIsoTime(a.closedAt)) {
      throw invalid('closedAt', 'must be an ISO 8601 time as toISOString writes it');
    }
    if (typeof a.backupsAgedOutBy !== 'string' || !isIsoDate(a.backupsAgedOutBy)) {
      throw invalid('backupsAgedOutBy', 'must be a date, YYYY-MM-DD');
    }
    return {
      tenant: tenant(a),
      ...(a.tenantName === undefined ? {} : { tenantName: plainText(a, 'tenantName') }),
      closedAt: a.closedAt,
      backupsAgedOutBy: a.backupsAgedOutBy,
      reason: plainText(a, 'reason'),
    };
  },
  publicKey: (args) => ({ purpose: signingPurpose(fields(args, ['purpose'])) }),
  backupKeyd: none,
  listKeydBackups: none,
  keydBackupHorizon: (args) => {
    const a = fields(args, [], ['at']);
    if (a.at === undefined) return {};
    if (typeof a.at !== 'string' || a.at.length > 40 || Number.isNaN(Date.parse(a.at))) {
      throw invalid('at', 'must be an ISO 8601 time');
    }
    return { at: new Date(a.at).toISOString() };
  },
  opsLog: (args) => {
    const a = fields(args, [], ['from', 'limit']);
    return {
      ...(a.from === undefined ? {} : { from: integer(a, 'from', 1, Number.MAX_SAFE_INTEGER) }),
      ...(a.limit === undefined ? {} : { limit: integer(a, 'limit', 1, MAX_OPS_LOG_PAGE) }),
    };
  },
};

export const OPERATION_NAMES = Object.keys(VALIDATORS) as KeydOperationName[];

export function isOperationName(op: unknown): op is KeydOperationName {
  return typeof op === 'string' && Object.hasOwn(VALIDATORS, op);
}

/** Checks and copies an operation's arguments; throws TRESOR_ERR_REQUEST_INVALID naming the field. */
export function validateArgs<K extends KeydOperationName>(op: K, args: unknown): OpArgs<K> {
  return VALIDATORS[op](args);
}

export function isCaller(caller: unknown): caller is Caller {
  if (typeof caller !== 'object' || caller === null) return false;
  const c = caller as Partial<Caller>;
  return (
    typeof c.id === 'string' && CALLER_ID_PATTERN.test(c.id) && (c.role === 'admin' || c.role === 'server')
  );
}
