/**
 * Errors of the crypto layer. Callers switch on `code`, never on the message; messages name the
 * problem but never contain key material or plaintext. The codes and their HTTP status are in the
 * catalogue (src/errors.ts).
 */
import { type ErrorCode, TresorError } from '../errors.ts';

export const CRYPTO_ERROR_CODES = [
  'TRESOR_ERR_CIPHERTEXT_MALFORMED',
  'TRESOR_ERR_DECRYPT_FAILED',
  'TRESOR_ERR_KEY_INVALID',
  'TRESOR_ERR_KEY_ID_MISMATCH',
  'TRESOR_ERR_AAD_INVALID',
] as const satisfies readonly ErrorCode[];

export type CryptoErrorCode = (typeof CRYPTO_ERROR_CODES)[number];

export class CryptoError extends TresorError<CryptoErrorCode> {}
