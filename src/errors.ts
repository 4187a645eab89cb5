/**
 * Tresor's error catalogue: every error a request can meet, with a stable code and its HTTP status.
 * Domains throw TresorError; src/http/problem.ts maps it (and keyd's and crypto's errors) once to
 * RFC 9457 problem+json. Messages name the problem and never carry customer values or secrets.
 */
export const ERRORS = {
  TRESOR_ERR_BAD_REQUEST: { status: 400, title: 'Bad Request' },
  TRESOR_ERR_MALFORMED_JSON: { status: 400, title: 'Malformed JSON' },
  TRESOR_ERR_INVALID_CURSOR: { status: 400, title: 'Invalid cursor' },
  TRESOR_ERR_UNAUTHENTICATED: { status: 401, title: 'Authentication required' },
  TRESOR_ERR_SECOND_FACTOR_REQUIRED: { status: 401, title: 'Second factor required' },
  TRESOR_ERR_FORBIDDEN: { status: 403, title: 'Forbidden' },
  TRESOR_ERR_NOT_FOUND: { status: 404, title: 'Not Found' },
  TRESOR_ERR_METHOD_NOT_ALLOWED: { status: 405, title: 'Method Not Allowed' },
  TRESOR_ERR_CONFLICT: { status: 409, title: 'Conflict' },
  TRESOR_ERR_TENANT_STATE: { status: 409, title: 'Tenant is not in a state that allows this' },
  TRESOR_ERR_GRANT_STATE: { status: 409, title: 'Grant is not in a state that allows this' },
  TRESOR_ERR_GONE: { status: 410, title: 'Gone' },
  TRESOR_ERR_PRECONDITION_FAILED: { status: 412, title: 'Precondition Failed' },
  TRESOR_ERR_PAYLOAD_TOO_LARGE: { status: 413, title: 'Payload Too Large' },
  TRESOR_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported Media Type' },
  TRESOR_ERR_VALIDATION: { status: 422, title: 'Unprocessable Content' },
  TRESOR_ERR_UNKNOWN_FIELDS: { status: 422, title: 'Unknown fields' },
  TRESOR_ERR_SCHEMA_CHANGE_REFUSED: { status: 422, title: 'Schema change would orphan data' },
  TRESOR_ERR_PRECONDITION_REQUIRED: { status: 428, title: 'Precondition Required' },
  TRESOR_ERR_RATE_LIMITED: { status: 429, title: 'Too Many Requests' },
  TRESOR_ERR_INTERNAL: { status: 500, title: 'Internal Server Error' },
  TRESOR_ERR_UNAVAILABLE: { status: 503, title: 'Service Unavailable' },
  TRESOR_ERR_WEBAUTHN_REFUSED: { status: 401, title: 'WebAuthn response refused' },
  TRESOR_ERR_CSRF: { status: 403, title: 'Missing or invalid CSRF token' },
} as const;

export type TresorErrorCode = keyof typeof ERRORS;

export class TresorError extends Error {
  readonly code: TresorErrorCode;
  /** Safe, structured detail for clients (field names, limits) — never values. Only shown below 500. */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: TresorErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'TresorError';
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return ERRORS[this.code].status;
  }
}
