/** Refusals of what a caller typed for an account: its name, a factor's label, a password. */
import { TresorError } from '../errors.ts';
import { hasControlCharacter } from '../text.ts';

export const MAX_NAME_CHARS = 100;
const MAX_LABEL_CHARS = 100;

export function invalid(field: string, message: string): TresorError {
  return new TresorError('TRESOR_ERR_VALIDATION', `${field}: ${message}`, { field });
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
