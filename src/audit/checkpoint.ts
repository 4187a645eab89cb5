/**
 * Checkpoints of the audit log in the C2SP format (c2sp.org/tlog-checkpoint): a signed note whose
 * text is the origin, the tree size and the base64 RFC 9162 root hash, one per line, then optional
 * extension lines. keyd signs them with Ed25519; witnesses and verifiers need nothing of ours.
 *
 *   tresor.example/audit
 *   20852163
 *   CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=
 *
 *   — tresor-keyd/audit-checkpoint <base64(key ID || Ed25519 signature)>
 */

import {
  type Checkpoint,
  CheckpointError,
  type CheckpointErrorCode,
  formatCheckpoint,
  parseCheckpoint,
} from '../tlog/checkpoint-text.ts';
import { type NoteSignature, type NoteSigner, type NoteVerifier, openNote, signNote } from './note.ts';

// The checkpoint text itself (one encoder, shared with keyd) is in src/tlog/checkpoint-text.ts.
export { type Checkpoint, CheckpointError, type CheckpointErrorCode, formatCheckpoint, parseCheckpoint };

/** Formats and signs a checkpoint; the log's key name should equal the origin or be published with it. */
export async function signCheckpoint(
  checkpoint: Checkpoint,
  signers: readonly NoteSigner[],
): Promise<string> {
  return signNote(formatCheckpoint(checkpoint), signers);
}

export interface VerifiedCheckpoint {
  checkpoint: Checkpoint;
  /** Signatures by the given verifiers, all valid. */
  verified: NoteSignature[];
  /** Signatures by other keys (witness cosignatures, rotated keys), ignored. */
  unverified: NoteSignature[];
}

/**
 * Opens a signed checkpoint with the log's verifier key(s) (openNote's rules: at least one known
 * signature, all known signatures valid), then parses its text. With `origin`, refuses a checkpoint
 * of any other log, so a key shared between logs cannot vouch for the wrong one.
 */
export function verifyCheckpoint(
  note: string | Uint8Array,
  verifiers: readonly NoteVerifier[],
  options: { origin?: string } = {},
): VerifiedCheckpoint {
  const { text, verified, unverified } = openNote(note, verifiers);
  const checkpoint = parseCheckpoint(text);
  if (options.origin !== undefined && checkpoint.origin !== options.origin) {
    throw new CheckpointError('TRESOR_ERR_CHECKPOINT_ORIGIN_MISMATCH', 'checkpoint is from another log');
  }
  return { checkpoint, verified, unverified };
}
