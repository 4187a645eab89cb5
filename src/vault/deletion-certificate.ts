/**
 * Deletion certificates: what a closed tenant is handed as proof that its data is gone — which
 * tenant, which tenant key ids keyd destroyed and when, when the close finished, and the date by
 * which every backup that could still hold its ciphertext has aged out (docs/architecture.md, invariant 9).
 * It is issued once, when keyd has destroyed the key at the end of the close's grace period, and
 * keyd builds it (src/keyd/signing-deletion-certificates.ts) from its own record of the destruction,
 * so it states the destruction as it happened, whoever asks (docs/keyd.md).
 *
 * The signed bytes are the RFC 8785 (JCS) canonical JSON of the certificate, so anyone can
 * re-derive them from the JSON object; keyd signs them with its purpose-bound Ed25519 key
 * `tresor-keyd/deletion-certificate` (RFC 8032, pure Ed25519). Verification needs only node:crypto
 * (or any Ed25519 library) and keyd's public key.
 */
import { createPublicKey, verify } from 'node:crypto';
import type { DeletionCertificateRequest, KeyService } from '../keyd/operations.ts';
import {
  canonicalDeletionCertificate,
  DELETION_CERTIFICATE_TYPE,
  type DeletionCertificate,
} from '../keyd/signing-deletion-certificates.ts';

// keyd builds the certificate from its own record of the destruction (docs/keyd.md); the format is its.
export { canonicalDeletionCertificate, DELETION_CERTIFICATE_TYPE, type DeletionCertificate };

const ED25519_PUBLIC_KEY_BYTES = 32;
const ED25519_SIGNATURE_BYTES = 64;

export interface SignedDeletionCertificate {
  certificate: DeletionCertificate;
  /** The exact signed text: canonical JSON of `certificate`. */
  body: string;
  /** Base64 Ed25519 signature over the UTF-8 bytes of `body`. */
  signature: string;
  /** keyd's signing key name, e.g. `tresor-keyd/deletion-certificate`. */
  keyName: string;
}

/** The backup horizon: closedAt + retention, as a date (backups taken up to closedAt age out by then). */
export function backupsAgedOutBy(closedAt: string, backupRetentionDays: number): string {
  return new Date(Date.parse(closedAt) + backupRetentionDays * 86_400_000).toISOString().slice(0, 10);
}

/**
 * Has keyd issue the certificate: keyd adds, from its own store, every key version it destroyed and
 * when, and its own backup horizon; it refuses a tenant whose keys it has not destroyed.
 */
export async function signDeletionCertificate(
  keys: KeyService,
  request: DeletionCertificateRequest,
): Promise<SignedDeletionCertificate> {
  const { body, signature, keyName } = await keys.call('signDeletionCertificate', request);
  const certificate = parseDeletionCertificate(body);
  if (certificate === undefined || certificate.tenant !== request.tenant) {
    throw new TypeError('keyd answered with a body that is not this tenant’s deletion certificate');
  }
  return { certificate, body, signature: Buffer.from(signature).toString('base64'), keyName };
}

/**
 * Whether `signature` is keyd's Ed25519 signature of exactly `body` under `publicKey` (the raw
 * 32-byte key from keyd's `publicKey` operation). Any changed byte of the body fails. A body that
 * is not the canonical form of a deletion certificate fails too, so the bytes checked are the
 * bytes a reader sees.
 */
export function verifyDeletionCertificate(
  body: string | Uint8Array,
  signature: string | Uint8Array,
  publicKey: Uint8Array,
): boolean {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body);
  const sig = typeof signature === 'string' ? Buffer.from(signature, 'base64') : Buffer.from(signature);
  if (sig.length !== ED25519_SIGNATURE_BYTES || publicKey.length !== ED25519_PUBLIC_KEY_BYTES) return false;
  const key = createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') },
    format: 'jwk',
  });
  if (!verify(null, bytes, key, sig)) return false;
  const parsed = parseDeletionCertificate(bytes.toString('utf8'));
  return parsed !== undefined && canonicalDeletionCertificate(parsed) === bytes.toString('utf8');
}

/** The certificate in a body, or undefined when the body is not one. */
export function parseDeletionCertificate(body: string): DeletionCertificate | undefined {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  const isString = (x: unknown): x is string => typeof x === 'string';
  if (
    v.type !== DELETION_CERTIFICATE_TYPE ||
    !isString(v.tenant) ||
    (v.tenantName !== undefined && !isString(v.tenantName)) ||
    !Array.isArray(v.keyIdsDestroyed) ||
    !v.keyIdsDestroyed.every(isString) ||
    !isString(v.keydDestroyedAt) ||
    !isString(v.closedAt) ||
    !isString(v.backupsAgedOutBy) ||
    (v.keydBackupsAgedOutBy !== undefined && !isString(v.keydBackupsAgedOutBy)) ||
    !isString(v.reason)
  ) {
    return undefined;
  }
  return v as unknown as DeletionCertificate;
}
