/**
 * A store snapshot: consistent copies of every store file of the moment, taken while writes go on.
 * This is the one part of a backup that depends on the storage backend: SQLite copies each file
 * (sqlite-snapshot.ts); PostgreSQL (issue 18) will implement the same interface with its own dump.
 * Everything after it — encryption, chunks, manifest, destinations, restore — sees only files.
 */

export type SnapshotFileKind = 'control' | 'tenant';

export interface SnapshotFile {
  /** The file's path relative to the data folder, as restore recreates it, e.g. `tenants/acme.sqlite`. */
  name: string;
  kind: SnapshotFileKind;
  /** The tenant whose store this is; null for the control store. */
  tenant: string | null;
  /** The newest schema migration the copy holds. */
  schemaVersion: string;
  size: number;
  /** SHA-256 (hex) of the copy's bytes: restore checks the decrypted file against it. */
  sha256: string;
  /** Where the copy lies in the snapshot's scratch folder. */
  path: string;
}

export interface StoreSnapshotter {
  /** Which backend made the copies (recorded in the manifest; restore needs the same backend). */
  readonly backend: string;
  /**
   * Copies the control store and the stores of `tenants` into `scratch` (an empty private folder
   * the caller removes afterwards). Each copy is a consistent state of its store; the control store
   * is copied first. A tenant whose store no longer exists (closed since it was listed) is left out.
   */
  snapshot(scratch: string, tenants: readonly string[]): Promise<SnapshotFile[]>;
}
