/**
 * Associated data: binds every ciphertext to where it belongs. A value encrypted for tenant A,
 * collection c, record r, field f, version v decrypts only with exactly that context, so a
 * ciphertext copied to another record, field or tenant fails authentication (NIST SP 800-38D §5.2.1.2).
 *
 * Encoding (unambiguous, so two different contexts never share bytes):
 *   "tresor-aad-v1" ‖ u32 len ‖ purpose ‖ for each key in sorted order: u32 len ‖ key ‖ type ‖ u32 len ‖ value
 * where type is 0x73 ('s') for strings and 0x6e ('n') for safe integers written in decimal.
 */
import { CryptoError } from './errors.ts';

export type AadValue = string | number;
export type AadContext = Readonly<Record<string, AadValue>>;

const DOMAIN = Buffer.from('tresor-aad-v1', 'utf8');
const MAX_PART = 4096;

/**
 * UTF-8 bytes of `text`, refusing strings that are not well-formed UTF-16: a lone surrogate would be
 * encoded as U+FFFD, so '\uD800' and '\uFFFD' would share bytes and the encoding would be ambiguous.
 */
function utf8(text: string, what: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.toString('utf8') !== text) {
    throw new CryptoError('TRESOR_ERR_AAD_INVALID', `${what} is not well-formed Unicode`);
  }
  return bytes;
}

function lengthPrefixed(bytes: Buffer): Buffer[] {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bytes.length);
  return [len, bytes];
}

export function encodeAad(purpose: string, context: AadContext): Buffer {
  if (purpose.length === 0 || purpose.length > 64) {
    throw new CryptoError('TRESOR_ERR_AAD_INVALID', 'AAD purpose must be 1 to 64 characters');
  }
  const parts: Buffer[] = [DOMAIN, ...lengthPrefixed(utf8(purpose, 'AAD purpose'))];
  for (const key of Object.keys(context).sort()) {
    const value = context[key];
    let type: number;
    let text: string;
    if (typeof value === 'string') {
      type = 0x73;
      text = value;
    } else if (typeof value === 'number' && Number.isSafeInteger(value)) {
      type = 0x6e;
      text = String(value);
    } else {
      throw new CryptoError(
        'TRESOR_ERR_AAD_INVALID',
        `AAD component "${key}" must be a string or a safe integer`,
      );
    }
    const valueBytes = utf8(text, `AAD component "${key}"`);
    if (key.length === 0 || valueBytes.length > MAX_PART) {
      throw new CryptoError('TRESOR_ERR_AAD_INVALID', `AAD component "${key}" is empty or too long`);
    }
    parts.push(
      ...lengthPrefixed(utf8(key, 'AAD component name')),
      Buffer.of(type),
      ...lengthPrefixed(valueBytes),
    );
  }
  return Buffer.concat(parts);
}
