/**
 * Tresor's cryptography: node:crypto's primitives behind a small API, importing nothing of ours but
 * the error catalogue.
 *
 * The rule for key material (and any other secret in a Buffer): every plaintext key lives in a
 * Buffer that owns its memory — made by randomBytes, Buffer.alloc, aeadOpen, hkdf or
 * secretFromText, never by Buffer.from(string), Buffer.concat or allocUnsafe, whose small results
 * are slices of Node's shared pool that cannot be wiped as a unit — and whoever holds it last wipes
 * it when it leaves use, on success and on every error path (try/finally). Where it is enforced:
 * - aeadOpen (aead.ts) returns the plaintext in memory of its own and leaves no other copy; on a
 *   failed tag it wipes what it decrypted;
 * - keyd: the root keyrings (root/), the tenant-key cache (tenant-key-cache.ts), the backup key
 *   (backup-keys.ts) and signing seeds are wiped on forget, seal and close; data keys handed to a
 *   caller are wiped once the answer is written (served-connection.ts) or if its log entry fails
 *   (op-record.ts); the wire decoder (protocol.ts) decodes keys into memory of their own;
 * - the API server: data keys live only in the key cache (key-cache.ts), which keeps its own copy
 *   and wipes it on every removal; a key from keyd is wiped as soon as the cache has copied it
 *   (src/vault/data-keys.ts); the factor key is wiped when the server closes (factor-key.ts).
 * JavaScript strings cannot be wiped: key material never becomes one, except in the JSON of keyd's
 * wire and of the sealed root keyring file (both say so where they do it).
 */
export { type AadContext, type AadValue, encodeAad } from './aad.ts';
export { aeadOpen, aeadSeal, KEY_BYTES, NONCE_BYTES, type Sealed, TAG_BYTES } from './aead.ts';
export { auditHmac, deriveAuditHmacKey } from './audit-hmac.ts';
export { type BlindIndexScope, blindIndex, deriveBlindIndexKey } from './blind-index.ts';
export { constantTimeEqual, ownCopy, ownsItsMemory, secretCopy, secretFromText, wipe } from './compare.ts';
export { openEnvelope, readEnvelopeHeader, sealEnvelope } from './envelope.ts';
export { CryptoError, type CryptoErrorCode } from './errors.ts';
export { hkdf } from './hkdf.ts';
export { checkKeyId, isKeyPurpose, KEY_PURPOSES, type KeyPurpose, newKeyId } from './key-id.ts';
export { pooledRandomBytes } from './random-pool.ts';
