/**
 * The one place where Tresor's error codes become HTTP: RFC 9457 problem+json bodies with a stable
 * `type` per code, status and title from the error catalogue (src/errors.ts). Details appear only
 * below 500; a 5xx says nothing of internals beyond the catalogue's fixed detail for its code.
 * Key-service failures fail closed: keyd sealed or unreachable → 503, never data from elsewhere.
 */
import { ERRORS, type ErrorEntry, TresorError } from '../errors.ts';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
const TYPE_BASE = 'https://tresor.dev/problems/';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  code: string;
}

function slug(code: string): string {
  return code
    .replace(/^TRESOR_ERR_/, '')
    .toLowerCase()
    .replace(/_/g, '-');
}

/**
 * Maps any thrown value to a problem. Errors outside the catalogue, and codes the catalogue keeps
 * internal, are a 500 without detail.
 */
export function toProblem(err: unknown): Problem {
  const known = err instanceof TresorError ? err : undefined;
  const entry: ErrorEntry | undefined = known && ERRORS[known.code];
  if (known === undefined || entry === undefined || entry.internal) {
    return {
      type: `${TYPE_BASE}internal`,
      title: ERRORS.TRESOR_ERR_INTERNAL.title,
      status: ERRORS.TRESOR_ERR_INTERNAL.status,
      code: 'TRESOR_ERR_INTERNAL',
    };
  }
  const { status, title } = entry;
  const problem: Problem = { type: `${TYPE_BASE}${slug(known.code)}`, title, status, code: known.code };
  if (status < 500) {
    problem.detail = known.message;
    if (known.details) Object.assign(problem, { errors: known.details });
  } else if (entry.detail !== undefined) {
    problem.detail = entry.detail;
  }
  return problem;
}
