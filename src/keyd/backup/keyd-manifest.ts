/**
 * The manifest of a keyd backup and its signature (docs/backup.md, "keyd's own backups").
 *
 * The manifest is RFC 8785 canonical JSON (the `canonicalize` package) describing the encrypted
 * store's chunks, the store file's size and SHA-256, the root keyring file that goes alongside (if
 * the provider has one), and the store key: a fresh 256-bit key wrapped by the root keyring, which
 * only an unsealed root keyring can open. keyd signs, with its Ed25519 key
 * `tresor-keyd/backup-manifest`, the statement
 *
 *   tresor-keyd-backup-manifest/v1\n<backup id>\n<SHA-256 hex of manifest.json's bytes>\n
 *
 * (its own first line, so a keyd backup's signature can never pass for a data backup's, whose
 * statement starts `tresor-backup-manifest/v1`). The manifest names the signer's public key; a
 * restore checks the signature with it, then that the restored store holds that very key, and,
 * when the operator pins one (`--verifier-key`), that it is the pinned key.
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import canonicalize from 'canonicalize';
import { isBackupId } from '../../objects/backup-id.ts';
import { invalidBackup } from '../../objects/errors.ts';
import type { RootProviderKind } from '../root/types.ts';

export const KEYD_MANIFEST_FORMAT = 'tresor-keyd-backup/v1';
export const KEYD_SIGNATURE_FORMAT = 'tresor-keyd-backup-signature/v1';
export const KEYD_MANIFEST_STATEMENT = 'tresor-keyd-backup-manifest/v1';
/** The root keyring file travels as its own object, already sealed (passphrase, shares or dev key). */
export const KEYRING_OBJECT = 'root-keyring.sealed';
export const STORE_CHUNK_PREFIX = 'store-';
/** AAD purpose of the store key wrapped by the root keyring (src/crypto/aad.ts). */
export const STORE_KEY_AAD = 'keyd-backup-store-key';

export interface KeydManifestObject {
  size: number;
  sha256: string;
}

export interface KeydBackupManifest {
  format: typeof KEYD_MANIFEST_FORMAT;
  backupId: string;
  createdAt: string;
  provider: RootProviderKind;
  cipher: 'AES-256-GCM';
  chunkSize: number;
  /** The store key wrapped by the root keyring (an envelope naming root.v<n>), base64. */
  storeKey: { wrapped: string; rootVersion: number };
  /** The plaintext store file (keystore.sqlite): size and SHA-256. */
  store: KeydManifestObject;
  /** The sealed root keyring file, stored as KEYRING_OBJECT; null for pkcs11 (the token holds it). */
  keyring: KeydManifestObject | null;
  chunks: { index: number; size: number; sha256: string }[];
  /** keyd's backup-manifest signing key: its note key name and raw public key (base64). */
  signer: { keyName: string; publicKey: string };
}

export interface KeydManifestSignature {
  format: typeof KEYD_SIGNATURE_FORMAT;
  keyName: string;
  manifestSha256: string;
  signature: string;
}

export function canonical(value: unknown): Buffer {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value has no JSON form');
  return Buffer.from(text, 'utf8');
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** What keyd signs for a manifest: its own domain, the backup id and the manifest's digest. */
export function keydManifestStatement(backupId: string, manifestSha256: string): Buffer {
  return Buffer.from(`${KEYD_MANIFEST_STATEMENT}\n${backupId}\n${manifestSha256}\n`, 'utf8');
}

export function chunkObject(index: number): string {
  return `${STORE_CHUNK_PREFIX}${String(index).padStart(6, '0')}`;
}

const HEX64 = /^[0-9a-f]{64}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const PROVIDERS: readonly string[] = ['dev-file', 'passphrase', 'shamir', 'pkcs11'];

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isSize(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

function isDescribed(v: unknown): v is KeydManifestObject {
  return isObject(v) && isSize(v.size) && typeof v.sha256 === 'string' && HEX64.test(v.sha256);
}

/**
 * Checks the signature over `manifestBytes` and parses them; TRESOR_ERR_BACKUP_INVALID naming the
 * check that failed. The bytes must be the manifest's canonical form, as written.
 */
export function openKeydManifest(
  backupId: string,
  manifestBytes: Buffer,
  signatureBytes: Buffer,
): KeydBackupManifest {
  let manifest: unknown;
  let signature: unknown;
  try {
    manifest = JSON.parse(manifestBytes.toString('utf8'));
    signature = JSON.parse(signatureBytes.toString('utf8'));
  } catch {
    throw invalidBackup(backupId, 'manifest or signature is not JSON');
  }
  const m = manifest as Record<string, unknown>;
  const s = signature as Record<string, unknown>;
  if (
    !isObject(m) ||
    m.format !== KEYD_MANIFEST_FORMAT ||
    m.backupId !== backupId ||
    !isBackupId(m.backupId) ||
    typeof m.createdAt !== 'string' ||
    typeof m.provider !== 'string' ||
    !PROVIDERS.includes(m.provider) ||
    m.cipher !== 'AES-256-GCM' ||
    !Number.isSafeInteger(m.chunkSize) ||
    (m.chunkSize as number) < 1 ||
    !isObject(m.storeKey) ||
    typeof m.storeKey.wrapped !== 'string' ||
    !BASE64.test(m.storeKey.wrapped) ||
    !Number.isSafeInteger(m.storeKey.rootVersion) ||
    !isDescribed(m.store) ||
    !(m.keyring === null || isDescribed(m.keyring)) ||
    !Array.isArray(m.chunks) ||
    !m.chunks.every(
      (c, i) =>
        isObject(c) &&
        c.index === i &&
        isSize(c.size) &&
        typeof c.sha256 === 'string' &&
        HEX64.test(c.sha256),
    ) ||
    m.chunks.length === 0 ||
    !isObject(m.signer) ||
    typeof m.signer.keyName !== 'string' ||
    typeof m.signer.publicKey !== 'string'
  ) {
    throw invalidBackup(backupId, 'manifest is not a keyd backup manifest for this id');
  }
  if (!canonical(m).equals(manifestBytes)) throw invalidBackup(backupId, 'manifest is not in canonical form');
  const digest = sha256Hex(manifestBytes);
  if (
    !isObject(s) ||
    s.format !== KEYD_SIGNATURE_FORMAT ||
    s.manifestSha256 !== digest ||
    s.keyName !== (m.signer as Record<string, unknown>).keyName ||
    typeof s.signature !== 'string'
  ) {
    throw invalidBackup(backupId, 'signature does not name this manifest');
  }
  const publicKey = Buffer.from((m.signer as Record<string, string>).publicKey as string, 'base64');
  const sig = Buffer.from(s.signature, 'base64');
  if (publicKey.length !== 32 || sig.length !== 64) throw invalidBackup(backupId, 'signature is malformed');
  const key = createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: publicKey.toString('base64url') },
    format: 'jwk',
  });
  if (!verify(null, keydManifestStatement(backupId, digest), key, sig)) {
    throw invalidBackup(backupId, "manifest signature does not verify under the signer's key");
  }
  return m as unknown as KeydBackupManifest;
}
