/**
 * The backup manifest: what a backup holds and how to open it, written last (its presence marks a
 * complete backup) as RFC 8785 canonical JSON (src/audit/canonical.ts), and signed by keyd's
 * purpose-bound Ed25519 key `tresor-keyd/backup-manifest` (RFC 8032, pure Ed25519).
 *
 * keyd signs a short statement rather than the manifest itself (a large backup's chunk list
 * outgrows what keyd signs):
 *
 *   tresor-backup-manifest/v1 LF <backup id> LF <SHA-256 hex of the manifest's bytes> LF
 *
 * The signature object `manifest.sig` beside it holds the key name, that digest and the base64
 * signature. Anyone with keyd's public key can check a backup by hand (docs/backup.md).
 *
 * `auditSegments` names the audit log's sealed segments (src/audit/segment.ts) the backup's
 * destinations held when it was made, contiguous from entry 0, each with the SHA-256 of its segment
 * manifest's bytes: so the signature binds them too, and a restore checks them (audit-segments.ts).
 * A manifest without the field (made before segments, or with archiving off) names none.
 */
import { createPublicKey, verify } from 'node:crypto';
import { canonicalJson } from '../audit/canonical.ts';
import { isSegmentId } from '../audit/segment.ts';
import type { KeyService } from '../keyd/operations.ts';
import { isBackupId } from '../objects/backup-id.ts';
import { sha256Hex } from '../objects/destination.ts';
import { invalidBackup } from './errors.ts';
import type { SnapshotFileKind } from './snapshot.ts';

export const MANIFEST_FORMAT = 'tresor-backup/v1';
export const SIGNATURE_FORMAT = 'tresor-backup-signature/v1';
export const MANIFEST_KEY_NAME = 'tresor-keyd/backup-manifest';
const STATEMENT = 'tresor-backup-manifest/v1';
const ED25519_PUBLIC_KEY_BYTES = 32;
const ED25519_SIGNATURE_BYTES = 64;

export interface ManifestFile {
  name: string;
  kind: SnapshotFileKind;
  tenant: string | null;
  schemaVersion: string;
  size: number;
  /** SHA-256 (hex) of the file's plaintext bytes. */
  sha256: string;
}

export interface ManifestChunk {
  index: number;
  /** Stored bytes: nonce ‖ ciphertext ‖ tag. */
  size: number;
  /** SHA-256 (hex) of the stored bytes. */
  sha256: string;
}

export interface ManifestTenant {
  id: string;
  state: string;
}

/** A sealed audit segment a backup names: its id and the SHA-256 (hex) of its manifest's bytes. */
export interface ManifestSegment {
  id: string;
  manifestSha256: string;
}

export interface BackupManifest {
  format: typeof MANIFEST_FORMAT;
  backupId: string;
  /** When the backup started (ISO 8601). */
  createdAt: string;
  /** The store backend that made the snapshot (`sqlite`); restore needs the same. */
  backend: string;
  cipher: 'AES-256-GCM';
  /** Plaintext bytes per chunk (the last may be shorter). */
  chunkSize: number;
  /** The backup's data key wrapped by keyd's backup key (base64), and its key id. */
  dataKey: { keyId: string; wrapped: string };
  /** The audit log's signed checkpoint (C2SP note text) taken just before the snapshot. */
  auditCheckpoint: string;
  tenants: ManifestTenant[];
  /** The files in the order their bytes follow one another in the encrypted stream. */
  files: ManifestFile[];
  chunks: ManifestChunk[];
  /** The audit segments at the destinations, contiguous from 0; absent: none (older manifests). */
  auditSegments?: ManifestSegment[];
}

export interface ManifestSignature {
  format: typeof SIGNATURE_FORMAT;
  keyName: string;
  manifestSha256: string;
  /** Base64 Ed25519 signature of the statement above. */
  signature: string;
}

/** The manifest's bytes: its canonical JSON in UTF-8. */
export function manifestBytes(manifest: BackupManifest): Buffer {
  return Buffer.from(canonicalJson(manifest), 'utf8');
}

function statement(backupId: string, manifestSha256: string): Buffer {
  return Buffer.from(`${STATEMENT}\n${backupId}\n${manifestSha256}\n`, 'utf8');
}

/** Has keyd sign the manifest; returns the signature object's bytes. */
export async function signManifest(keys: KeyService, backupId: string, bytes: Buffer): Promise<Buffer> {
  const digest = sha256Hex(bytes);
  const { signature, keyName } = await keys.call('sign', {
    purpose: 'backup-manifest',
    message: statement(backupId, digest),
  });
  const signed: ManifestSignature = {
    format: SIGNATURE_FORMAT,
    keyName,
    manifestSha256: digest,
    signature: Buffer.from(signature).toString('base64'),
  };
  return Buffer.from(canonicalJson(signed), 'utf8');
}

/** keyd's published backup-manifest key: its name and raw 32-byte Ed25519 public key. */
export interface ManifestKey {
  name: string;
  publicKey: Uint8Array;
}

/**
 * Checks the signature object against the manifest's bytes and keyd's public key, then parses the
 * manifest strictly. Throws TRESOR_ERR_BACKUP_INVALID naming the first check that fails.
 */
export function openManifest(
  backupId: string,
  bytes: Buffer,
  signatureBytes: Buffer,
  key: ManifestKey,
): BackupManifest {
  const refuse = (why: string) => invalidBackup(backupId, why);
  const sig = parseJsonObject(signatureBytes);
  if (
    sig === undefined ||
    sig.format !== SIGNATURE_FORMAT ||
    typeof sig.keyName !== 'string' ||
    typeof sig.manifestSha256 !== 'string' ||
    typeof sig.signature !== 'string'
  ) {
    throw refuse('the signature object is malformed');
  }
  if (sig.keyName !== key.name) throw refuse(`signed by ${JSON.stringify(sig.keyName)}, not ${key.name}`);
  const digest = sha256Hex(bytes);
  if (sig.manifestSha256 !== digest) throw refuse('the manifest is not the one that was signed');
  const signature = Buffer.from(sig.signature, 'base64');
  if (
    signature.length !== ED25519_SIGNATURE_BYTES ||
    key.publicKey.length !== ED25519_PUBLIC_KEY_BYTES ||
    !verify(null, statement(backupId, digest), ed25519Key(key.publicKey), signature)
  ) {
    throw refuse("the manifest signature does not verify under keyd's backup-manifest key");
  }
  const manifest = parseManifest(bytes);
  if (manifest === undefined) throw refuse('the manifest is malformed');
  if (manifest.backupId !== backupId) throw refuse('the manifest names another backup');
  if (!manifestBytes(manifest).equals(bytes)) throw refuse('the manifest is not in canonical form');
  return manifest;
}

function ed25519Key(publicKey: Uint8Array) {
  return createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') },
    format: 'jwk',
  });
}

function parseJsonObject(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

const HEX_SHA256 = /^[0-9a-f]{64}$/;
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(\/[A-Za-z0-9][A-Za-z0-9._-]{0,127})?$/;
const isString = (x: unknown): x is string => typeof x === 'string';
const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

function only(
  v: Record<string, unknown>,
  keys: readonly string[],
  optional: readonly string[] = [],
): boolean {
  return (
    Object.keys(v).every((k) => keys.includes(k) || optional.includes(k)) &&
    keys.every((k) => Object.hasOwn(v, k))
  );
}

/** The named segments: well-formed, each once, in log order and contiguous from entry 0. */
function isSegmentList(x: unknown): boolean {
  if (!Array.isArray(x)) return false;
  let end = 0;
  for (const s of x) {
    if (!isObject(s) || !only(s, ['id', 'manifestSha256'])) return false;
    if (!isString(s.id) || !isSegmentId(s.id)) return false;
    if (!isString(s.manifestSha256) || !HEX_SHA256.test(s.manifestSha256)) return false;
    const [first, last] = s.id.slice('audit.'.length).split('-').map(Number);
    if (first !== end || last === undefined || last <= first) return false;
    end = last;
  }
  return true;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** The manifest in `bytes`, if every field has its type and no field is unknown; else undefined. */
export function parseManifest(bytes: Buffer): BackupManifest | undefined {
  const v = parseJsonObject(bytes);
  const keys = [
    'format',
    'backupId',
    'createdAt',
    'backend',
    'cipher',
    'chunkSize',
    'dataKey',
    'auditCheckpoint',
    'tenants',
    'files',
    'chunks',
  ];
  if (v === undefined || !only(v, keys, ['auditSegments'])) return undefined;
  const { dataKey, tenants, files, chunks } = v;
  const ok =
    v.format === MANIFEST_FORMAT &&
    isBackupId(v.backupId) &&
    isString(v.createdAt) &&
    !Number.isNaN(Date.parse(v.createdAt)) &&
    isString(v.backend) &&
    v.cipher === 'AES-256-GCM' &&
    isCount(v.chunkSize) &&
    (v.chunkSize as number) > 0 &&
    isObject(dataKey) &&
    only(dataKey, ['keyId', 'wrapped']) &&
    isString(dataKey.keyId) &&
    isString(dataKey.wrapped) &&
    isString(v.auditCheckpoint) &&
    Array.isArray(tenants) &&
    tenants.every((t) => isObject(t) && only(t, ['id', 'state']) && isString(t.id) && isString(t.state)) &&
    Array.isArray(files) &&
    files.every(
      (f) =>
        isObject(f) &&
        only(f, ['name', 'kind', 'tenant', 'schemaVersion', 'size', 'sha256']) &&
        isString(f.name) &&
        FILE_NAME.test(f.name) &&
        (f.kind === 'control' || f.kind === 'tenant') &&
        (f.tenant === null || isString(f.tenant)) &&
        isString(f.schemaVersion) &&
        isCount(f.size) &&
        isString(f.sha256) &&
        HEX_SHA256.test(f.sha256),
    ) &&
    new Set(files.map((f) => (f as { name: string }).name)).size === files.length &&
    Array.isArray(chunks) &&
    chunks.length > 0 &&
    chunks.every(
      (c, i) =>
        isObject(c) &&
        only(c, ['index', 'size', 'sha256']) &&
        c.index === i &&
        isCount(c.size) &&
        isString(c.sha256) &&
        HEX_SHA256.test(c.sha256),
    ) &&
    (v.auditSegments === undefined || isSegmentList(v.auditSegments));
  return ok ? (v as unknown as BackupManifest) : undefined;
}

/** The object names of a backup's chunks: `<backup id>/chunk-000000`, … */
export function chunkObject(backupId: string, index: number): string {
  return `${backupId}/chunk-${String(index).padStart(6, '0')}`;
}
