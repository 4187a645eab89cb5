/**
 * The versioned ciphertext format. Every stored ciphertext says which key sealed it:
 *
 *   0      1        2          3 .. 3+n   +12     ...          +16
 *   'T'  version  n=len(id)   key id      nonce   ciphertext   tag
 *
 * version 1 = AES-256-GCM. The header (magic, version, key id) is authenticated together with
 * the caller's context, so neither the key id nor the context can be swapped unnoticed.
 */

import { type AadContext, encodeAad } from './aad.ts';
import { aeadOpen, aeadSeal, NONCE_BYTES, TAG_BYTES } from './aead.ts';
import { CryptoError } from './errors.ts';
import { checkKeyId, KEY_ID_PATTERN } from './key-id.ts';

const MAGIC = 0x54; // 'T'
export const FORMAT_AES_256_GCM = 1;

export interface EnvelopeHeader {
  format: number;
  keyId: string;
}

function encodeHeader(keyId: string): Buffer {
  const id = Buffer.from(checkKeyId(keyId), 'ascii');
  return Buffer.concat([Buffer.of(MAGIC, FORMAT_AES_256_GCM, id.length), id]);
}

/** Reads the header without decrypting: which key id is needed. Throws on anything malformed. */
export function readEnvelopeHeader(envelope: Uint8Array): EnvelopeHeader & { headerLength: number } {
  const buf = Buffer.from(envelope.buffer, envelope.byteOffset, envelope.byteLength);
  if (buf.length < 3 || buf[0] !== MAGIC) {
    throw new CryptoError('TRESOR_ERR_CIPHERTEXT_MALFORMED', 'not a Tresor ciphertext');
  }
  if (buf[1] !== FORMAT_AES_256_GCM) {
    throw new CryptoError('TRESOR_ERR_CIPHERTEXT_MALFORMED', `unknown ciphertext format ${buf[1]}`);
  }
  const idLength = buf[2] ?? 0;
  const headerLength = 3 + idLength;
  if (idLength === 0 || buf.length < headerLength + NONCE_BYTES + TAG_BYTES) {
    throw new CryptoError('TRESOR_ERR_CIPHERTEXT_MALFORMED', 'ciphertext is truncated');
  }
  // latin1 maps each byte to one character, so a non-ASCII byte fails the pattern; 'ascii' would
  // clear its high bit and report a key id the envelope does not contain.
  const keyId = buf.subarray(3, headerLength).toString('latin1');
  if (!KEY_ID_PATTERN.test(keyId)) {
    throw new CryptoError('TRESOR_ERR_CIPHERTEXT_MALFORMED', 'ciphertext names an invalid key id');
  }
  return { format: FORMAT_AES_256_GCM, keyId, headerLength };
}

export function sealEnvelope(
  key: Uint8Array,
  keyId: string,
  plaintext: Uint8Array,
  purpose: string,
  context: AadContext,
): Buffer {
  const header = encodeHeader(keyId);
  const aad = encodeAad(purpose, context, header);
  const { nonce, ciphertext, tag } = aeadSeal(key, plaintext, aad);
  return Buffer.concat([header, nonce, ciphertext, tag]);
}

/**
 * Opens an envelope sealed under `keyId`. The caller resolves the key from the header's key id
 * (readEnvelopeHeader) and passes both; a key id that differs from the header is refused.
 */
export function openEnvelope(
  key: Uint8Array,
  keyId: string,
  envelope: Uint8Array,
  purpose: string,
  context: AadContext,
): Buffer {
  const { keyId: headerKeyId, headerLength } = readEnvelopeHeader(envelope);
  if (headerKeyId !== keyId) {
    throw new CryptoError('TRESOR_ERR_KEY_ID_MISMATCH', 'ciphertext was sealed under another key id');
  }
  const buf = Buffer.from(envelope.buffer, envelope.byteOffset, envelope.byteLength);
  const header = buf.subarray(0, headerLength);
  const nonce = buf.subarray(headerLength, headerLength + NONCE_BYTES);
  const ciphertext = buf.subarray(headerLength + NONCE_BYTES, buf.length - TAG_BYTES);
  const tag = buf.subarray(buf.length - TAG_BYTES);
  const aad = encodeAad(purpose, context, header);
  return aeadOpen(key, { nonce, ciphertext, tag }, aad);
}
