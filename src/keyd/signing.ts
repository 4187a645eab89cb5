/**
 * keyd's Ed25519 signing keys (RFC 8032), one per purpose, and their C2SP signed-note identities
 * (c2sp.org/signed-note), so any note verifier can check Tresor's checkpoints and certificates:
 *
 *   key name      tresor-keyd/<purpose>           (non-empty, no spaces, no '+')
 *   key ID        SHA-256(name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)[:4]      (0x01 = Ed25519)
 *   verifier key  <name>+<key ID as 8 hex digits>+<base64(0x01 ‖ public key)>
 *
 * The private key is kept as the RFC 8032 32-byte seed (wrapped by the root key in keyd's store);
 * node:crypto does the signing.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
} from 'node:crypto';
import { secretFromText, wipe } from '../crypto/index.ts';

export const SIGNING_PURPOSES = [
  'audit-checkpoint',
  'deletion-certificate',
  'backup-manifest',
  'trust-statement',
] as const;
export type SigningPurpose = (typeof SIGNING_PURPOSES)[number];

/** c2sp.org/signed-note §Signature types: 0x01 = Ed25519. */
export const ED25519_SIGNATURE_TYPE = 0x01;
export const ED25519_SEED_BYTES = 32;
export const ED25519_PUBLIC_KEY_BYTES = 32;
export const ED25519_SIGNATURE_BYTES = 64;

// RFC 8410 §7: PKCS#8 PrivateKeyInfo for id-Ed25519 (1.3.101.112) around a 32-byte seed.
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export function isSigningPurpose(value: unknown): value is SigningPurpose {
  return typeof value === 'string' && (SIGNING_PURPOSES as readonly string[]).includes(value);
}

export function signingKeyName(purpose: SigningPurpose): string {
  return `tresor-keyd/${purpose}`;
}

/** A fresh key pair: the 32-byte seed (secret) and the 32-byte public key. */
export function generateEd25519(): { seed: Buffer; publicKey: Buffer } {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const seed = secretFromText(jwk.d ?? '', 'base64url'); // not a pool slice: it is wiped
  const publicKey = Buffer.from(jwk.x ?? '', 'base64url');
  if (seed.length !== ED25519_SEED_BYTES || publicKey.length !== ED25519_PUBLIC_KEY_BYTES) {
    throw new Error('unexpected Ed25519 key encoding');
  }
  return { seed, publicKey };
}

function privateKeyFromSeed(seed: Uint8Array) {
  if (seed.length !== ED25519_SEED_BYTES) throw new Error('an Ed25519 seed is 32 bytes');
  const der = Buffer.alloc(PKCS8_ED25519_PREFIX.length + seed.length); // not a pool slice: wiped below
  der.set(PKCS8_ED25519_PREFIX);
  der.set(seed, PKCS8_ED25519_PREFIX.length);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    wipe(der);
  }
}

export function ed25519PublicKey(seed: Uint8Array): Buffer {
  const jwk = createPublicKey(privateKeyFromSeed(seed)).export({ format: 'jwk' });
  return Buffer.from(jwk.x ?? '', 'base64url');
}

/** The raw 64-byte Ed25519 signature of `message` (RFC 8032 §5.1.6: pure Ed25519, no prehash). */
export function signEd25519(seed: Uint8Array, message: Uint8Array): Buffer {
  return sign(null, message, privateKeyFromSeed(seed));
}

/** The note key ID: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]. */
export function noteKeyId(name: string, publicKey: Uint8Array): Buffer {
  return createHash('sha256')
    .update(name, 'utf8')
    .update(Buffer.of(0x0a, ED25519_SIGNATURE_TYPE))
    .update(publicKey)
    .digest()
    .subarray(0, 4);
}

export function noteVerifierKey(name: string, publicKey: Uint8Array): string {
  if (name.length === 0 || /[\s+]/u.test(name)) throw new Error('note key names have no spaces and no "+"');
  const keyData = Buffer.concat([Buffer.of(ED25519_SIGNATURE_TYPE), publicKey]).toString('base64');
  return `${name}+${noteKeyId(name, publicKey).toString('hex')}+${keyData}`;
}

/** Whether `signature` is the Ed25519 signature of `message` under the raw 32-byte `publicKey`. */
export function verifyEd25519(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== ED25519_PUBLIC_KEY_BYTES || signature.length !== ED25519_SIGNATURE_BYTES)
    return false;
  const key = createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') },
    format: 'jwk',
  });
  return verify(null, message, key, signature);
}
