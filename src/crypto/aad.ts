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
function wellFormed(text: string, what: string): string {
  // A lone surrogate has no UTF-8 form (Buffer.from would silently write U+FFFD instead).
  if (!text.isWellFormed()) {
    throw new CryptoError('TRESOR_ERR_AAD_INVALID', `${what} is not well-formed Unicode`);
  }
  return text;
}

/** Writes a 4-byte big-endian length and the UTF-8 of `text` at `offset`; returns the next offset. */
function writeLengthPrefixed(out: Buffer, offset: number, text: string, byteLength: number): number {
  out.writeUInt32BE(byteLength, offset);
  return offset + 4 + out.write(text, offset + 4, byteLength, 'utf8');
}

/**
 * The encoding above, computed in one pass over the sorted names and written into one buffer (it runs
 * for every field sealed or opened). `prefix` bytes, if given, come first: the envelope's header.
 */
export function encodeAad(purpose: string, context: AadContext, prefix?: Uint8Array): Buffer {
  if (purpose.length === 0 || purpose.length > 64) {
    throw new CryptoError('TRESOR_ERR_AAD_INVALID', 'AAD purpose must be 1 to 64 characters');
  }
  wellFormed(purpose, 'AAD purpose');
  const keys = Object.keys(context).sort();
  const texts = new Array<string>(keys.length);
  const types = new Uint8Array(keys.length);
  const lengths = new Array<number>(2 * keys.length);
  const purposeLength = Buffer.byteLength(purpose, 'utf8');
  let size = (prefix?.length ?? 0) + DOMAIN.length + 4 + purposeLength;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    const value = context[key];
    let text: string;
    if (typeof value === 'string') {
      types[i] = 0x73;
      text = value;
    } else if (typeof value === 'number' && Number.isSafeInteger(value)) {
      types[i] = 0x6e;
      text = String(value);
    } else {
      throw new CryptoError(
        'TRESOR_ERR_AAD_INVALID',
        `AAD component "${key}" must be a string or a safe integer`,
      );
    }
    const valueLength = Buffer.byteLength(wellFormed(text, `AAD component "${key}"`), 'utf8');
    if (key.length === 0 || valueLength > MAX_PART) {
      throw new CryptoError('TRESOR_ERR_AAD_INVALID', `AAD component "${key}" is empty or too long`);
    }
    const keyLength = Buffer.byteLength(wellFormed(key, 'AAD component name'), 'utf8');
    texts[i] = text;
    lengths[2 * i] = keyLength;
    lengths[2 * i + 1] = valueLength;
    size += 4 + keyLength + 1 + 4 + valueLength;
  }
  const out = Buffer.allocUnsafe(size);
  let offset = 0;
  if (prefix) {
    out.set(prefix, 0);
    offset = prefix.length;
  }
  offset += DOMAIN.copy(out, offset);
  offset = writeLengthPrefixed(out, offset, purpose, purposeLength);
  for (let i = 0; i < keys.length; i++) {
    offset = writeLengthPrefixed(out, offset, keys[i] as string, lengths[2 * i] as number);
    out[offset] = types[i] as number;
    offset = writeLengthPrefixed(out, offset + 1, texts[i] as string, lengths[2 * i + 1] as number);
  }
  if (offset !== size) throw new CryptoError('TRESOR_ERR_AAD_INVALID', 'AAD length mismatch');
  return out;
}
