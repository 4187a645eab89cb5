/**
 * Tresor's error catalogue: every error code of every layer (the API's, keyd's, crypto's, the audit
 * log's, configuration's), each with its HTTP status and title, and the one base class they are all
 * thrown as. src/http/problem.ts maps any TresorError through this table to RFC 9457 problem+json.
 * Messages name the problem and never carry customer values, key material or secrets.
 *
 * An entry may also carry:
 * - `detail`: the fixed detail of a 5xx answer (5xx answers never show the message);
 * - `internal`: the code never reaches a client by name; it is answered as TRESOR_ERR_INTERNAL,
 *   like any error outside this catalogue.
 */
export interface ErrorEntry {
  readonly status: number;
  readonly title: string;
  readonly detail?: string;
  readonly internal?: true;
}

/** keyd sealed or unreachable: no key can be had, so nothing is served (fail closed). */
const KEY_SERVICE_UNAVAILABLE = 'the key service is not available; no data is served without it';

export const ERRORS = {
  // The API's own.
  TRESOR_ERR_BAD_REQUEST: { status: 400, title: 'Bad Request' },
  TRESOR_ERR_MALFORMED_JSON: { status: 400, title: 'Malformed JSON' },
  TRESOR_ERR_INVALID_CURSOR: { status: 400, title: 'Invalid cursor' },
  TRESOR_ERR_SEARCH_LEAKAGE_UNACKNOWLEDGED: {
    status: 400,
    title: 'A searchable field of this type reveals its values; acknowledge the leakage to declare it',
  },
  /** A record search with its values in the URL (`GET …/records?where[f]=v`): they go in a POST body. */
  TRESOR_ERR_SEARCH_IN_URL: {
    status: 400,
    title: 'Searched values do not go in the URL; POST them to /v1/collections/{name}/records/search',
  },
  TRESOR_ERR_UNAUTHENTICATED: { status: 401, title: 'Authentication required' },
  TRESOR_ERR_SECOND_FACTOR_REQUIRED: { status: 401, title: 'Second factor required' },
  TRESOR_ERR_FORBIDDEN: { status: 403, title: 'Forbidden' },
  /** A password change whose current password is wrong (counted by the login throttle, audited). */
  TRESOR_ERR_PASSWORD_INCORRECT: { status: 403, title: 'Current password is incorrect' },
  TRESOR_ERR_NOT_FOUND: { status: 404, title: 'Not Found' },
  TRESOR_ERR_METHOD_NOT_ALLOWED: { status: 405, title: 'Method Not Allowed' },
  TRESOR_ERR_REQUEST_TIMEOUT: { status: 408, title: 'Request Timeout' },
  TRESOR_ERR_CONFLICT: { status: 409, title: 'Conflict' },
  /** A retry arrived while the first request with its Idempotency-Key is still running. */
  TRESOR_ERR_IDEMPOTENCY_IN_PROGRESS: { status: 409, title: 'Request with this Idempotency-Key in progress' },
  TRESOR_ERR_TENANT_STATE: { status: 409, title: 'Tenant is not in a state that allows this' },
  TRESOR_ERR_GRANT_STATE: { status: 409, title: 'Grant is not in a state that allows this' },
  TRESOR_ERR_GONE: { status: 410, title: 'Gone' },
  TRESOR_ERR_PRECONDITION_FAILED: { status: 412, title: 'Precondition Failed' },
  TRESOR_ERR_PAYLOAD_TOO_LARGE: { status: 413, title: 'Payload Too Large' },
  TRESOR_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported Media Type' },
  TRESOR_ERR_VALIDATION: { status: 422, title: 'Unprocessable Content' },
  /** An Idempotency-Key reused for a different request (method, path or body). */
  TRESOR_ERR_IDEMPOTENCY_KEY_REUSED: { status: 422, title: 'Idempotency-Key reused for another request' },
  TRESOR_ERR_UNKNOWN_FIELDS: { status: 422, title: 'Unknown fields' },
  TRESOR_ERR_SCHEMA_CHANGE_REFUSED: { status: 422, title: 'Schema change would orphan data' },
  TRESOR_ERR_PRECONDITION_REQUIRED: { status: 428, title: 'Precondition Required' },
  TRESOR_ERR_RATE_LIMITED: { status: 429, title: 'Too Many Requests' },
  TRESOR_ERR_HEADERS_TOO_LARGE: { status: 431, title: 'Request Header Fields Too Large' },
  TRESOR_ERR_INTERNAL: { status: 500, title: 'Internal Server Error' },
  TRESOR_ERR_UNAVAILABLE: { status: 503, title: 'Service Unavailable' },
  TRESOR_ERR_WEBAUTHN_REFUSED: { status: 401, title: 'WebAuthn response refused' },
  TRESOR_ERR_CSRF: { status: 403, title: 'Missing or invalid CSRF token' },
  /** A cookie-authenticated state change whose Origin (or Sec-Fetch-Site/Referer) is not the server's own. */
  TRESOR_ERR_ORIGIN_REFUSED: { status: 403, title: 'Cross-origin request refused' },
  /** An API or machine path asked on the plain-HTTP listener: refused, never redirected (src/http/redirect.ts). */
  TRESOR_ERR_HTTPS_REQUIRED: { status: 403, title: 'HTTPS required' },

  // keyd's (TRESOR_ERR_FORBIDDEN and TRESOR_ERR_INTERNAL above are keyd's too). Key-service
  // failures fail closed: keyd sealed or unreachable, or a data key at its limit → 503.
  TRESOR_ERR_KEYD_SEALED: { status: 503, title: 'Service Unavailable', detail: KEY_SERVICE_UNAVAILABLE },
  TRESOR_ERR_KEYD_UNAVAILABLE: { status: 503, title: 'Service Unavailable', detail: KEY_SERVICE_UNAVAILABLE },
  TRESOR_ERR_KEY_EXHAUSTED: { status: 503, title: 'Service Unavailable', detail: KEY_SERVICE_UNAVAILABLE },
  TRESOR_ERR_NOT_INITIALISED: { status: 500, title: 'Internal Server Error' },
  TRESOR_ERR_ALREADY_INITIALISED: { status: 500, title: 'Internal Server Error' },
  TRESOR_ERR_UNSEAL_FAILED: { status: 500, title: 'Internal Server Error' },
  TRESOR_ERR_SHARE_INVALID: { status: 500, title: 'Internal Server Error' },
  TRESOR_ERR_SEAL_CORRUPT: { status: 500, title: 'Internal Server Error' },
  TRESOR_ERR_STORE_CORRUPT: { status: 500, title: 'Internal Server Error' },
  TRESOR_ERR_TENANT_KEY_EXISTS: { status: 409, title: 'Conflict' },
  TRESOR_ERR_TENANT_KEY_UNKNOWN: { status: 404, title: 'Not Found' },
  TRESOR_ERR_TENANT_KEY_DESTROYED: { status: 410, title: 'Gone' },
  TRESOR_ERR_TENANT_KEY_PENDING_DESTROY: { status: 409, title: 'Conflict' },
  TRESOR_ERR_KEY_VERSION_RETIRED: { status: 410, title: 'Gone' },
  TRESOR_ERR_KEY_VERSION_ACTIVE: { status: 409, title: 'Conflict' },
  TRESOR_ERR_KEY_VERSION_IN_USE: { status: 409, title: 'Conflict' },
  TRESOR_ERR_KEY_ID_UNKNOWN: { status: 404, title: 'Not Found' },
  TRESOR_ERR_WRAPPED_KEY_INVALID: { status: 500, title: 'Internal Server Error' },
  TRESOR_ERR_PURPOSE_INVALID: { status: 500, title: 'Internal Server Error' },
  TRESOR_ERR_REQUEST_INVALID: { status: 400, title: 'Bad Request' },
  /**
   * keyd refused to sign (docs/keyd.md, "What keyd checks before it signs"): the request is not a
   * well-formed document of its purpose, an old-style opaque `sign`, or a deletion certificate for
   * a tenant whose keys keyd has not destroyed. A checkpoint that would fork the log, shrink it or
   * come with a proof that does not verify; one whose proof starts from a tree keyd did not sign
   * last (another node signed meanwhile: ask keyd's tree and prove again).
   */
  TRESOR_ERR_SIGN_REFUSED: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_CHECKPOINT_INCONSISTENT: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_CHECKPOINT_STALE: { status: 500, title: 'Internal Server Error', internal: true },
  /** keyd's configuration, and the server's (ConfigError, met at start-up, before any request). */
  TRESOR_ERR_CONFIG_INVALID: { status: 500, title: 'Internal Server Error' },

  // The crypto layer's: a ciphertext or key that does not check out is a server-side fault.
  TRESOR_ERR_CIPHERTEXT_MALFORMED: { status: 500, title: 'Internal Server Error' },
  TRESOR_ERR_DECRYPT_FAILED: { status: 500, title: 'Internal Server Error' },
  TRESOR_ERR_KEY_INVALID: { status: 500, title: 'Internal Server Error' },
  TRESOR_ERR_KEY_ID_MISMATCH: { status: 500, title: 'Internal Server Error' },
  TRESOR_ERR_AAD_INVALID: { status: 500, title: 'Internal Server Error' },

  // The audit log's: met by `tresor audit verify` and the sequencer, never named to a client.
  TRESOR_ERR_WITNESS_ROLLBACK: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_WITNESS_FORK: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_WITNESS_MALFORMED: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_AUDIT_EXPORT_MALFORMED: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_AUDIT_STORE_UNREADABLE: { status: 500, title: 'Internal Server Error', internal: true },
  /** A sealed audit segment on a destination that does not check out (tampered, cut, another log's). */
  TRESOR_ERR_AUDIT_SEGMENT_INVALID: { status: 500, title: 'Internal Server Error', internal: true },
  /** The archived part of the audit log asked for, and no destination holds a valid copy of its segment. */
  TRESOR_ERR_AUDIT_ARCHIVE_UNAVAILABLE: { status: 503, title: 'Service Unavailable' },
  /** The scheduled re-verification of the live audit log found it does not hold (server/audit-verify-job.ts). */
  TRESOR_ERR_AUDIT_VERIFICATION_FAILED: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_CHECKPOINT_MALFORMED: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_CHECKPOINT_ORIGIN_MISMATCH: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_MERKLE_ARGUMENT: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_MERKLE_HASH_SOURCE: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_CANONICAL_JSON: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_NOTE_MALFORMED: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_NOTE_KEY_INVALID: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_NOTE_SIGNATURE_INVALID: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_NOTE_UNVERIFIED: { status: 500, title: 'Internal Server Error', internal: true },

  // Backups' (src/backup/): met by the backup job, backup verification and restore.
  TRESOR_ERR_BACKUP_NOT_FOUND: { status: 404, title: 'Backup not found' },
  /** A backup could not be taken: a store could not be copied, or no destination took it. */
  TRESOR_ERR_BACKUP_FAILED: { status: 500, title: 'Internal Server Error', internal: true },
  /** A stored backup whose signature, a digest, its decryption or its format does not check out. */
  TRESOR_ERR_BACKUP_INVALID: { status: 500, title: 'Internal Server Error', internal: true },
  /** A destination that cannot be written, or whose read-back differs from what was written. */
  TRESOR_ERR_BACKUP_DESTINATION: { status: 500, title: 'Internal Server Error', internal: true },
  TRESOR_ERR_RESTORE_TARGET_NOT_EMPTY: { status: 409, title: 'Restore target is not empty' },
  /** A backup was asked for while one is still being taken (one at a time). */
  TRESOR_ERR_BACKUP_RUNNING: { status: 409, title: 'A backup is running' },
  /** A verification was asked for while one is still running (one at a time). */
  TRESOR_ERR_BACKUP_VERIFYING: { status: 409, title: 'A backup verification is running' },
  /** A backup stopped part-way because the server is shutting down; its partial objects are removed. */
  TRESOR_ERR_BACKUP_INTERRUPTED: { status: 500, title: 'Internal Server Error', internal: true },
  /**
   * Restoring one tenant into the running system (src/backup/tenant-restore.ts) refused a backup:
   * its signature, a digest, its decryption, its audit checkpoint against the live log, or the
   * tenant's restored store does not check out. Not the caller's input, but not a server fault
   * either: the operator is told which check failed (the message names it, never a value).
   */
  TRESOR_ERR_RESTORE_REFUSED: { status: 422, title: 'Restore refused' },
  /** The tenant was closed after the backup was taken: its key is shredded, its data cannot come back. */
  TRESOR_ERR_TENANT_SHREDDED: { status: 410, title: 'Tenant key shredded' },
  /** A tenant restore was asked for while one is still running (one at a time). */
  TRESOR_ERR_RESTORE_RUNNING: { status: 409, title: 'A restore is running' },
  /**
   * Backups and tenant restores snapshot SQLite files: a deployment on PostgreSQL is backed up with
   * PostgreSQL's own tools, so they are refused there (the deployment's state, not the input).
   */
  TRESOR_ERR_BACKEND_UNSUPPORTED: { status: 409, title: 'Not available on this storage backend' },

  // Alerts' (src/alerts/): read, acknowledged and resolved by the security role.
  TRESOR_ERR_ALERT_NOT_FOUND: { status: 404, title: 'Alert not found' },
  /** Acknowledging an alert that is not open, or resolving one already resolved. */
  TRESOR_ERR_ALERT_STATE: { status: 409, title: 'Alert is not in a state that allows this' },
} as const satisfies Record<string, ErrorEntry>;

export type ErrorCode = keyof typeof ERRORS;

/** Kept for the callers that name it: every code of the catalogue. */
export type TresorErrorCode = ErrorCode;

/**
 * The one error class of the catalogue. A layer whose callers tell its errors apart with
 * `instanceof` subclasses it with its own narrower code union, e.g.
 * `class NoteError extends TresorError<NoteErrorCode> {}`; `name` is the subclass's.
 */
export interface TresorError<C extends ErrorCode = ErrorCode> extends Error {
  readonly code: C;
  /** Safe, structured detail for clients (field names, limits) — never values. Only shown below 500. */
  readonly details: Readonly<Record<string, unknown>> | undefined;
  readonly status: number;
}

interface TresorErrorConstructor {
  new <C extends ErrorCode = ErrorCode>(
    code: C,
    message: string,
    details?: Record<string, unknown>,
  ): TresorError<C>;
  /** Not generic: `instanceof TresorError` narrows to TresorError<ErrorCode>, where a generic class gives TresorError<any>. */
  readonly prototype: TresorError;
}

export const TresorError: TresorErrorConstructor = class TresorError<C extends ErrorCode> extends Error {
  readonly code: C;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: C, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return ERRORS[this.code].status;
  }
};
