/**
 * The text of a C2SP checkpoint (c2sp.org/tlog-checkpoint §Note text): the origin, the tree size
 * and the base64 RFC 9162 root hash, one per line, then optional extension lines. One encoder for
 * everyone: the audit log's checkpointer formats a checkpoint with it to show what it asks for,
 * and keyd formats the very bytes it signs with it from the parts the caller sends (keyd never
 * signs checkpoint text it was handed).
 *
 *   tresor.example/audit
 *   20852163
 *   CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=
 */
import { TresorError } from '../errors.ts';
import { hasControlCharacter } from '../text.ts';
import { HASH_SIZE } from './merkle.ts';

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

export type CheckpointErrorCode =
  | 'TRESOR_ERR_CHECKPOINT_MALFORMED'
  | 'TRESOR_ERR_CHECKPOINT_ORIGIN_MISMATCH'
  | 'TRESOR_ERR_CHECKPOINT_INCONSISTENT';

export class CheckpointError extends TresorError<CheckpointErrorCode> {}

// c2sp.org/signed-note §Format: "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or plus".
export function isValidKeyName(name: string): boolean {
  return name.length > 0 && !/[\p{White_Space}+]/u.test(name) && !hasLoneSurrogate(name);
}

/** An ASCII control character other than newline (C0 or DEL): signed notes allow only newline. */
export function hasNoteControlCharacter(text: string): boolean {
  return hasControlCharacter(text, ['\n']);
}

export function hasLoneSurrogate(text: string): boolean {
  return /\p{Surrogate}/u.test(text);
}

/**
 * Whether `origin` may name one of our logs: tlog-checkpoint says the origin "SHOULD be a
 * schema-less URL containing neither Unicode spaces nor plus"; ours must also be a valid note key
 * name, since the log's key is named by it.
 */
export function isValidOrigin(origin: string): boolean {
  return isValidKeyName(origin) && !hasNoteControlCharacter(origin);
}

/** The note text of a checkpoint. Our own origins must also be valid key names (no spaces, no '+'). */
export function formatCheckpoint(checkpoint: Checkpoint): string {
  const malformed = (why: string) => new CheckpointError('TRESOR_ERR_CHECKPOINT_MALFORMED', why);
  const { origin, size, rootHash, extensions } = checkpoint;
  if (!isValidOrigin(origin)) throw malformed('invalid origin');
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
