/**
 * The one place where Tresor's error codes become HTTP: RFC 9457 problem+json bodies with a stable
 * `type` per code. Details appear only below 500; a 5xx says nothing of internals.
 * Key-service failures fail closed: keyd sealed or unreachable → 503, never data from elsewhere.
 */
import { CryptoError } from '../crypto/index.ts';
import { ERRORS, TresorError } from '../errors.ts';
import { KeydError } from '../keyd/errors.ts';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
const TYPE_BASE = 'https://tresor.dev/problems/';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  code: string;
}

const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  TRESOR_ERR_KEYD_UNAVAILABLE: 503,
  TRESOR_ERR_KEYD_SEALED: 503,
  TRESOR_ERR_KEY_EXHAUSTED: 503,
  TRESOR_ERR_REQUEST_INVALID: 400,
  TRESOR_ERR_FORBIDDEN: 403,
  TRESOR_ERR_TENANT_KEY_UNKNOWN: 404,
  TRESOR_ERR_KEY_ID_UNKNOWN: 404,
  TRESOR_ERR_TENANT_KEY_EXISTS: 409,
  TRESOR_ERR_TENANT_KEY_DESTROYED: 410,
  TRESOR_ERR_TENANT_KEY_PENDING_DESTROY: 409,
  TRESOR_ERR_KEY_VERSION_RETIRED: 410,
  TRESOR_ERR_KEY_VERSION_ACTIVE: 409,
  TRESOR_ERR_KEY_VERSION_IN_USE: 409,
};

const TITLES: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  410: 'Gone',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

function slug(code: string): string {
  return code
    .replace(/^TRESOR_ERR_/, '')
    .toLowerCase()
    .replace(/_/g, '-');
}

/** Maps any thrown value to a problem. Unknown errors and stored-data corruption are 500 without detail. */
export function toProblem(err: unknown): Problem {
  if (err instanceof TresorError) {
    const { status, title } = ERRORS[err.code];
    const problem: Problem = { type: `${TYPE_BASE}${slug(err.code)}`, title, status, code: err.code };
    if (status < 500) {
      problem.detail = err.message;
      if (err.details) Object.assign(problem, { errors: err.details });
    }
    return problem;
  }
  if (err instanceof KeydError || err instanceof CryptoError) {
    const status = STATUS_BY_CODE[err.code] ?? 500;
    const problem: Problem = {
      type: `${TYPE_BASE}${slug(err.code)}`,
      title: TITLES[status] ?? 'Error',
      status,
      code: err.code,
    };
    if (status < 500) problem.detail = err.message;
    else if (status === 503)
      problem.detail = 'the key service is not available; no data is served without it';
    return problem;
  }
  return {
    type: `${TYPE_BASE}internal`,
    title: TITLES[500] as string,
    status: 500,
    code: 'TRESOR_ERR_INTERNAL',
  };
}
