/**
 * The encryption of a backup's chunks: AES-256-GCM (node:crypto, src/crypto/aead.ts) under the
 * backup's own data key, one fresh key per backup from keyd (src/keyd/backup-keys.ts).
 *
 *   stored chunk = nonce (12, random) ‖ ciphertext ‖ tag (16)
 *   AAD          = encodeAad('tresor-backup-chunk', { backupId, index, final })   (src/crypto/aad.ts)
 *
 * The associated data binds every chunk to its backup, its place and whether it is the last one:
 * a chunk moved to another index fails (no reordering), a backup cut after any chunk lacks the one
 * chunk sealed with final = 1 (no truncation), and a chunk of another backup fails twice, under
 * another key and another backup id (no splicing). Random nonces are safe: a key seals one
 * backup's chunks, far below 2^32 (NIST SP 800-38D §8.3).
 */
import { aeadOpen, aeadSeal, CryptoError, encodeAad, NONCE_BYTES, TAG_BYTES } from '../crypto/index.ts';
import { invalidBackup } from './errors.ts';

/** 4 MiB of plaintext per chunk by default: large enough for object stores, small enough for memory. */
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;
export const CHUNK_OVERHEAD = NONCE_BYTES + TAG_BYTES;
const CHUNK_AAD = 'tresor-backup-chunk';

export interface ChunkPlace {
  backupId: string;
  index: number;
  final: boolean;
}

function chunkAad(place: ChunkPlace): Buffer {
  return encodeAad(CHUNK_AAD, { backupId: place.backupId, index: place.index, final: place.final ? 1 : 0 });
}

export function sealChunk(key: Buffer, place: ChunkPlace, plaintext: Buffer): Buffer {
  const { nonce, ciphertext, tag } = aeadSeal(key, plaintext, chunkAad(place));
  return Buffer.concat([nonce, ciphertext, tag]);
}

/** The chunk's plaintext; TRESOR_ERR_BACKUP_INVALID when it is not this backup's chunk at this place. */
export function openChunk(key: Buffer, place: ChunkPlace, stored: Buffer): Buffer {
  if (stored.length < CHUNK_OVERHEAD) {
    throw invalidBackup(place.backupId, `chunk ${place.index} is shorter than its nonce and tag`);
  }
  try {
    return aeadOpen(
      key,
      {
        nonce: stored.subarray(0, NONCE_BYTES),
        ciphertext: stored.subarray(NONCE_BYTES, stored.length - TAG_BYTES),
        tag: stored.subarray(stored.length - TAG_BYTES),
      },
      chunkAad(place),
    );
  } catch (err) {
    if (!(err instanceof CryptoError)) throw err;
    throw invalidBackup(
      place.backupId,
      `chunk ${place.index} does not decrypt at its place (tampered, moved or from another backup)`,
    );
  }
}
