/**
 * The keyd operations: one contract shared by the in-process service (service.ts), the wire
 * protocol (protocol.ts, server.ts) and the client (client.ts). Binary values are Buffers here and
 * base64 on the wire. Nothing here ever carries the root key or a tenant key in plaintext: only
 * data keys (purpose-bound, wrapped by a tenant key) leave keyd unwrapped, to their caller.
 */
import type { KeyPurpose } from '../crypto/index.ts';
import type { SealStatus } from './root/types.ts';
import type { SigningPurpose } from './signing.ts';

/** Who called, as the transport proved it: `unix:<name>` on the socket, `mtls:<CN>#<sha256 prefix>` over TLS, `system` for keyd's own jobs. */
export interface Caller {
  id: string;
  /** admin may run every operation; server may run data-path and tenant lifecycle operations. */
  role: 'admin' | 'server';
}

/** Data-key purposes handed out to callers; 'signing' stays inside keyd. */
export type DataKeyPurpose = Exclude<KeyPurpose, 'signing'>;

export interface TenantKeyInfo {
  tenant: string;
  keyId: string; // e.g. tk.<tenant-hash>.v3 — names tenant and version
  version: number;
  state: 'active' | 'decrypt-only' | 'retired' | 'destroyed';
  rootVersion: number | null;
  createdAt: string;
  rotateAfter: string | null;
  /** AES-GCM encryptions performed with this version (data keys wrapped). */
  encryptions: number;
}

export interface TenantKeyStatus {
  tenant: string;
  state: 'active' | 'pending-destroy' | 'destroyed';
  destroyAfter: string | null;
  destroyedAt: string | null;
  versions: TenantKeyInfo[];
}

export interface DataKey {
  keyId: string; // dk_<random>
  purpose: DataKeyPurpose;
  tenant: string;
  /** The data key in plaintext — for the caller's memory only, wipe after use. */
  key: Buffer;
  /** The data key wrapped by the tenant key: store this beside the data. */
  wrapped: Buffer;
}

export interface DestroyResult {
  tenant: string;
  state: 'pending-destroy' | 'destroyed';
  destroyAfter: string | null;
  destroyedAt: string | null;
  /** Every tenant key id (all versions) that is now gone for good (empty while pending). */
  keyIdsDestroyed: string[];
}

/**
 * A backup's own data key: fresh for every backup, wrapped by keyd's backup key (which never leaves
 * keyd) and bound to the backup id, so a backup can be decrypted only through keyd, and only as itself.
 */
export interface BackupDataKey {
  backupId: string;
  keyId: string; // bdk_<random>
  /** The data key in plaintext — for the caller's memory only, wipe after use. */
  key: Buffer;
  /** The data key wrapped by keyd's backup key: store this in the backup's manifest. */
  wrapped: Buffer;
}

export interface CheckpointSignRequest {
  origin: string;
  size: number;
  rootHash: Buffer;
  /** The size of keyd's remembered tree the proof starts from (0 before the first checkpoint). */
  fromSize: number;
  /** RFC 9162 §2.1.4 consistency proof from (fromSize, keyd's root) to (size, rootHash). */
  proof: Buffer[];
}

export interface CheckpointTree {
  origin: string | null;
  size: number;
  rootHash: Buffer | null;
}

/** What the closing server knows and keyd does not; keyd adds the destroyed key ids and times. */
export interface DeletionCertificateRequest {
  tenant: string;
  tenantName?: string;
  /** When the close completed (ISO 8601). */
  closedAt: string;
  /** YYYY-MM-DD: the server's backup horizon. */
  backupsAgedOutBy: string;
  reason: string;
}

export interface SignedDeletionCertificateBody {
  /** The exact signed text: RFC 8785 canonical JSON of the certificate. */
  body: string;
  signature: Buffer;
  keyName: string;
}

export interface SigningKeyInfo {
  /** C2SP signed-note key name: `tresor-keyd/<purpose>`, e.g. `tresor-keyd/audit-checkpoint`. */
  name: string;
  /** Raw 32-byte Ed25519 public key. */
  publicKey: Buffer;
  /** C2SP note verifier key: `<name>+<hex key hash>+<base64(0x01 ‖ public key)>`. */
  verifierKey: string;
}

export interface OpsLogEntry {
  seq: number;
  at: string;
  caller: string;
  op: string;
  tenant: string | null;
  keyId: string | null;
  outcome: 'ok' | 'error';
  detail: string | null;
  /** SHA-256 over the previous hash and this entry: the log is a hash chain. */
  hash: string;
}

/** One destination's outcome in a keyd backup. */
export interface KeydBackupOutcome {
  destination: string;
  ok: boolean;
  /** The error code when not ok; never a key or a byte of the store. */
  error?: string;
}

/** A keyd backup just taken (src/keyd/backup/). */
export interface KeydBackupResult {
  backupId: string;
  createdAt: string;
  /** Bytes stored at each destination that holds it. */
  size: number;
  destinations: KeydBackupOutcome[];
}

/** What one of keyd's backup destinations holds, oldest first; `error` when it could not be listed. */
export interface KeydBackupListing {
  destination: string;
  backups: { id: string; takenAt: string; complete: boolean }[];
  error?: string;
}

export interface HealthInfo {
  status: 'ok' | 'sealed';
  seal: SealStatus;
  rootVersion: number | null;
  store: 'ok' | 'error';
  uptimeSeconds: number;
}

/** Every operation: name → [arguments, result]. */
export interface KeydOperations {
  status: [Record<string, never>, SealStatus];
  unseal: [{ secret: string }, SealStatus];
  seal: [Record<string, never>, SealStatus];
  health: [Record<string, never>, HealthInfo];
  createTenantKey: [{ tenant: string }, TenantKeyInfo];
  tenantKeyStatus: [{ tenant: string }, TenantKeyStatus];
  generateDataKey: [{ tenant: string; purpose: DataKeyPurpose }, DataKey];
  unwrapDataKey: [
    { tenant: string; purpose: DataKeyPurpose; keyId: string; wrapped: Buffer },
    { key: Buffer },
  ];
  /** Re-encryption job: the same data key, wrapped again by the tenant's active version. */
  rewrapDataKey: [
    { tenant: string; purpose: DataKeyPurpose; keyId: string; wrapped: Buffer },
    { wrapped: Buffer },
  ];
  /**
   * `requestId` (here and in the two below): the client's id for this request, so that a repeat
   * of it — on this instance or another — answers the first outcome instead of acting twice
   * (repeated-requests.ts). The keyd client sets one on every call.
   */
  rotateTenantKey: [{ tenant: string; requestId?: string }, TenantKeyInfo];
  retireTenantKeyVersion: [{ tenant: string; version: number; requestId?: string }, TenantKeyInfo];
  /** mode 'schedule': soft-delete (unwraps refused, cancellable) until graceSeconds pass; 'now': crypto-shred at once. */
  destroyTenantKey: [
    { tenant: string; mode: 'schedule' | 'now'; graceSeconds?: number; requestId?: string },
    DestroyResult,
  ];
  cancelTenantKeyDestroy: [{ tenant: string }, TenantKeyStatus];
  rotateRootKey: [Record<string, never>, { version: number; rewrapped: number }];
  retireRootKeyVersion: [{ version: number }, { version: number }];
  /** A fresh 256-bit data key for one backup, wrapped by keyd's backup key (created on first use). */
  generateBackupDataKey: [{ backupId: string }, BackupDataKey];
  /** Restore and verification: the backup's data key, if it was wrapped for exactly this backup id and key id. */
  unwrapBackupDataKey: [{ backupId: string; keyId: string; wrapped: Buffer }, { key: Buffer }];
  /**
   * Ed25519 signature of a backup-manifest or trust statement, each checked to be a well-formed
   * statement of its purpose (signing-statements.ts). Checkpoints and deletion certificates are
   * never signed from bytes the caller sends: signCheckpoint and signDeletionCertificate.
   */
  sign: [{ purpose: SigningPurpose; message: Buffer }, { signature: Buffer; keyName: string }];
  /**
   * A C2SP checkpoint of the audit log, its text formatted by keyd from these parts and signed only
   * if it is a consistent extension of the last one keyd signed: `proof` is the RFC 9162
   * consistency proof from keyd's remembered tree (`fromSize`, see checkpointTree) to this one.
   */
  signCheckpoint: [CheckpointSignRequest, { signature: Buffer; keyName: string }];
  /** The last checkpoint tree keyd signed (origin null and size 0 before the first). */
  checkpointTree: [Record<string, never>, CheckpointTree];
  /**
   * Admin only: keyd's remembered tree is set to a checkpoint keyd signed before (its signature is
   * checked) — restoring a whole deployment goes back to the backup's checkpoint so the restored log
   * may go on from there — or, with no arguments, forgotten (the next checkpoint pins the origin
   * again: a new log). Either makes a fork possible, so it is recorded in keyd's ops log and copied
   * into the audit log (docs/keyd.md).
   */
  resetCheckpointTree: [
    { origin?: string; size?: number; rootHash?: Buffer; signature?: Buffer },
    CheckpointTree,
  ];
  /**
   * A deletion certificate built by keyd from its own record of the tenant's destroyed keys
   * (key ids, destruction time) and its own backup horizon; the caller adds what only it knows.
   */
  signDeletionCertificate: [DeletionCertificateRequest, SignedDeletionCertificateBody];
  publicKey: [{ purpose: SigningPurpose }, SigningKeyInfo];
  opsLog: [{ from?: number; limit?: number }, { entries: OpsLogEntry[] }];
  /** keyd's own backup, now: its store encrypted under a key only the root keyring unwraps. */
  backupKeyd: [Record<string, never>, KeydBackupResult];
  listKeydBackups: [Record<string, never>, { destinations: KeydBackupListing[] }];
  /**
   * When a key destroyed at `at` (default now) has left every keyd backup, from keyd's backup
   * retention and schedule (ISO 8601); null when keyd takes backups only on demand.
   */
  keydBackupHorizon: [{ at?: string }, { agedOutBy: string | null }];
}

export type KeydOperationName = keyof KeydOperations;
export type OpArgs<K extends KeydOperationName> = KeydOperations[K][0];
export type OpResult<K extends KeydOperationName> = KeydOperations[K][1];

/** Operations a sealed keyd still answers. */
export const SEALED_OPERATIONS: ReadonlySet<KeydOperationName> = new Set(['status', 'unseal', 'health']);

/**
 * Operations reserved for the admin role. Cancelling a scheduled destruction is not among them:
 * the server cancels a tenant's close on an operator admin's audited request, while the key is
 * still pending destruction.
 */
export const ADMIN_OPERATIONS: ReadonlySet<KeydOperationName> = new Set([
  'seal',
  'rotateRootKey',
  'retireRootKeyVersion',
  'opsLog',
  'backupKeyd',
  'listKeydBackups',
  'resetCheckpointTree',
]);

/** Anything that can perform keyd operations: the in-process service or a remote client. */
export interface KeyService {
  call<K extends KeydOperationName>(op: K, args: OpArgs<K>, caller?: Caller): Promise<OpResult<K>>;
}
