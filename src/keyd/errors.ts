/**
 * keyd's errors. Every error crossing the keyd protocol carries one of these codes; their HTTP
 * status is in the catalogue (src/errors.ts), where TRESOR_ERR_KEYD_UNAVAILABLE and
 * TRESOR_ERR_KEYD_SEALED fail closed with 503. Messages name the problem and never contain key
 * material.
 */
import { CRYPTO_ERROR_CODES, type CryptoErrorCode } from '../crypto/errors.ts';
import { type ErrorCode, TresorError } from '../errors.ts';

/** keyd's own codes, each with the message a KeydError gets when the thrower gives none. */
export const KEYD_ERRORS = {
  TRESOR_ERR_KEYD_SEALED: 'keyd is sealed',
  TRESOR_ERR_KEYD_UNAVAILABLE: 'keyd cannot be reached',
  TRESOR_ERR_NOT_INITIALISED: 'keyd has not been initialised',
  TRESOR_ERR_ALREADY_INITIALISED: 'keyd is already initialised',
  TRESOR_ERR_UNSEAL_FAILED: 'unseal failed',
  TRESOR_ERR_SHARE_INVALID: 'unseal share is invalid',
  TRESOR_ERR_SEAL_CORRUPT: 'sealed root keyring is corrupt',
  TRESOR_ERR_STORE_CORRUPT: 'key store row is corrupt',
  TRESOR_ERR_TENANT_KEY_EXISTS: 'tenant key already exists',
  TRESOR_ERR_TENANT_KEY_UNKNOWN: 'no key for this tenant',
  TRESOR_ERR_TENANT_KEY_DESTROYED: 'tenant key has been destroyed',
  TRESOR_ERR_TENANT_KEY_PENDING_DESTROY: 'tenant key is scheduled for destruction',
  TRESOR_ERR_KEY_VERSION_RETIRED: 'key version has been retired',
  TRESOR_ERR_KEY_VERSION_ACTIVE: 'the active key version cannot be retired',
  TRESOR_ERR_KEY_VERSION_IN_USE: 'key version still wraps keys',
  TRESOR_ERR_KEY_ID_UNKNOWN: 'unknown key id',
  TRESOR_ERR_WRAPPED_KEY_INVALID: 'wrapped key does not open for this tenant, key id and purpose',
  TRESOR_ERR_KEY_EXHAUSTED: 'key has reached its usage limit',
  TRESOR_ERR_PURPOSE_INVALID: 'key purpose is invalid for this operation',
  TRESOR_ERR_REQUEST_INVALID: 'malformed keyd request',
  TRESOR_ERR_FORBIDDEN: 'caller is not allowed to perform this operation',
  TRESOR_ERR_CONFIG_INVALID: 'keyd configuration is invalid',
  TRESOR_ERR_INTERNAL: 'internal keyd error',
  // What keyd checks before it signs (signing-checks.ts, signing-checkpoints.ts)
  TRESOR_ERR_SIGN_REFUSED: 'keyd refuses to sign this request',
  TRESOR_ERR_CHECKPOINT_INCONSISTENT:
    'the checkpoint is not a consistent extension of the last one keyd signed',
  TRESOR_ERR_CHECKPOINT_STALE: 'the consistency proof starts from a tree keyd did not sign last',
  TRESOR_ERR_CHECKPOINT_ORIGIN_MISMATCH: 'the checkpoint is of another log than the one keyd signs for',
  // keyd's own backups (src/keyd/backup/)
  TRESOR_ERR_BACKUP_RUNNING: 'a keyd backup is running',
  TRESOR_ERR_BACKUP_FAILED: 'keyd backup failed',
} as const satisfies Partial<Record<ErrorCode, string>>;

/**
 * The codes a KeydError carries: keyd's own, and the crypto layer's, which keyd's server passes on
 * over the wire as they are.
 */
export type KeydErrorCode = keyof typeof KEYD_ERRORS | CryptoErrorCode;

const KEYD_ERROR_CODES: ReadonlySet<string> = new Set([...Object.keys(KEYD_ERRORS), ...CRYPTO_ERROR_CODES]);

export function isKeydErrorCode(code: string): code is KeydErrorCode {
  return KEYD_ERROR_CODES.has(code);
}

export class KeydError extends TresorError<KeydErrorCode> {
  constructor(code: KeydErrorCode, message?: string) {
    super(code, message ?? (KEYD_ERRORS as Readonly<Record<string, string>>)[code] ?? code);
  }
}
