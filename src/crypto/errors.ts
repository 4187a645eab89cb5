/**
 * Errors of the crypto layer. Callers switch on `code`, never on the message; messages name the
 * problem but never contain key material or plaintext.
 */
export type CryptoErrorCode =
  | 'TRESOR_ERR_CIPHERTEXT_MALFORMED'
  | 'TRESOR_ERR_DECRYPT_FAILED'
  | 'TRESOR_ERR_KEY_INVALID'
  | 'TRESOR_ERR_KEY_ID_MISMATCH'
  | 'TRESOR_ERR_AAD_INVALID';

export class CryptoError extends Error {
  readonly code: CryptoErrorCode;

  constructor(code: CryptoErrorCode, message: string) {
    super(message);
    this.name = 'CryptoError';
    this.code = code;
  }
}
