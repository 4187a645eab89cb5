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

import { TresorError } from '../errors.ts';
import { HASH_SIZE } from './merkle.ts';
import {
  hasNoteControlCharacter,
  isValidKeyName,
  type NoteSignature,
  type NoteSigner,
  type NoteVerifier,
  openNote,
  signNote,
} from './note.ts';

export interface Checkpoint {
  /** Unique identifier of the log, e.g. `tresor.example/audit`. */
  origin: string;
  /** Number of leaves in the tree. */
  size: number;
  /** RFC 9162 MTH of the first `size` leaves, 32 bytes. */
  rootHash: Buffer;
  /** Opaque, non-empty extension lines; the spec does NOT RECOMMEND them. */
  extensions: string[];
}

export type CheckpointErrorCode = 'TRESOR_ERR_CHECKPOINT_MALFORMED' | 'TRESOR_ERR_CHECKPOINT_ORIGIN_MISMATCH';

export class CheckpointError extends TresorError<CheckpointErrorCode> {}

/** The note text of a checkpoint. Our own origins must also be valid key names (no spaces, no '+'). */
export function formatCheckpoint(checkpoint: Checkpoint): string {
  const malformed = (why: string) => new CheckpointError('TRESOR_ERR_CHECKPOINT_MALFORMED', why);
  const { origin, size, rootHash, extensions } = checkpoint;
  // tlog-checkpoint: the origin "SHOULD be a schema-less URL containing neither Unicode spaces nor plus".
  if (!isValidKeyName(origin) || hasNoteControlCharacter(origin)) throw malformed('invalid origin');
  if (!Number.isSafeInteger(size) || size < 0) throw malformed('invalid tree size');
  if (rootHash.length !== HASH_SIZE) throw malformed('a root hash is 32 bytes');
  for (const line of extensions) {
    if (line.length === 0 || line.includes('\n') || hasNoteControlCharacter(line))
      throw malformed('invalid extension line');
  }
  return [origin, String(size), rootHash.toString('base64'), ...extensions]
    .map((line) => `${line}\n`)
    .join('');
}

/** Parses checkpoint note text strictly (c2sp.org/tlog-checkpoint §Note text). */
export function parseCheckpoint(text: string): Checkpoint {
  const malformed = (why: string) =>
    new CheckpointError('TRESOR_ERR_CHECKPOINT_MALFORMED', `malformed checkpoint: ${why}`);
  if (!text.endsWith('\n') || hasNoteControlCharacter(text))
    throw malformed('text must be newline-terminated lines');
  const lines = text.slice(0, -1).split('\n');
  // "a sequence of at least three non-empty lines"; "Extension lines, if any, MUST be non-empty."
  if (lines.length < 3 || lines.some((line) => line.length === 0))
    throw malformed('expected at least 3 non-empty lines');
  const [origin, sizeLine, rootLine, ...extensions] = lines as [string, string, string, ...string[]];
  // "ASCII decimal ... with no leading zeroes (unless the tree is empty ...)"; we also need it below 2^53.
  if (!/^(0|[1-9][0-9]*)$/.test(sizeLine)) throw malformed('tree size is not a canonical decimal');
  const size = Number(sizeLine);
  if (!Number.isSafeInteger(size)) throw malformed('tree size out of range');
  const rootHash = Buffer.from(rootLine, 'base64');
  if (rootHash.length !== HASH_SIZE || rootHash.toString('base64') !== rootLine) {
    throw malformed('root hash is not the base64 of 32 bytes');
  }
  return { origin, size, rootHash, extensions };
}

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
