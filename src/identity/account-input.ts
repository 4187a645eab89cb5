/** Refusals of what a caller typed for an account: its e-mail, name, a factor's label, a password. */
import { TresorError } from '../errors.ts';
import { hasControlCharacter } from '../text.ts';

export const MAX_NAME_CHARS = 100;
const MAX_LABEL_CHARS = 100;
const EMAIL_PATTERN = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

export function invalid(field: string, message: string): TresorError {
  return new TresorError('TRESOR_ERR_VALIDATION', `${field}: ${message}`, { field });
}

/** An e-mail address trimmed and lower-cased (accounts are unique by it), or VALIDATION. */
export function normaliseEmail(email: string): string {
  const e = typeof email === 'string' ? email.trim().toLowerCase() : '';
  if (!EMAIL_PATTERN.test(e)) {
    throw new TresorError('TRESOR_ERR_VALIDATION', 'email: not an e-mail address', { field: 'email' });
  }
  return e;
}

export function checkLabel(label: string | undefined): string | null {
  if (label === undefined) return null;
  if (typeof label !== 'string' || label.length > MAX_LABEL_CHARS || hasControlCharacter(label)) {
    throw invalid('label', `at most ${MAX_LABEL_CHARS} printable characters`);
  }
  return label;
}

export function refusedPassword(reasons: string[]): TresorError {
  return new TresorError('TRESOR_ERR_VALIDATION', 'password: refused by the password policy', {
    field: 'password',
    reasons,
  });
}
