export { type AadContext, type AadValue, encodeAad } from './aad.ts';
export { aeadOpen, aeadSeal, KEY_BYTES, NONCE_BYTES, type Sealed, TAG_BYTES } from './aead.ts';
export { auditHmac, deriveAuditHmacKey } from './audit-hmac.ts';
export { type BlindIndexScope, blindIndex, deriveBlindIndexKey } from './blind-index.ts';
export { constantTimeEqual, wipe } from './compare.ts';
export { openEnvelope, readEnvelopeHeader, sealEnvelope } from './envelope.ts';
export { CryptoError, type CryptoErrorCode } from './errors.ts';
export { hkdf } from './hkdf.ts';
export { checkKeyId, isKeyPurpose, KEY_PURPOSES, type KeyPurpose, newKeyId } from './key-id.ts';
