/**
 * keyd's error catalogue. Every error crossing the keyd protocol carries one of these codes; the
 * HTTP layer maps them once to problem+json (TRESOR_ERR_KEYD_UNAVAILABLE and TRESOR_ERR_KEYD_SEALED → 503).
 * Messages name the problem and never contain key material.
 */
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
} as const;

export type KeydErrorCode = keyof typeof KEYD_ERRORS;

export class KeydError extends Error {
  readonly code: KeydErrorCode | string;

  constructor(code: KeydErrorCode | string, message?: string) {
    super(message ?? KEYD_ERRORS[code as KeydErrorCode] ?? code);
    this.name = 'KeydError';
    this.code = code;
  }
}

/** Codes that mean "no key can be had right now": callers fail closed with 503. */
export const UNAVAILABLE_CODES: ReadonlySet<string> = new Set([
  'TRESOR_ERR_KEYD_SEALED',
  'TRESOR_ERR_KEYD_UNAVAILABLE',
]);
