/**
 * C2SP signed notes (c2sp.org/signed-note): text signed by one or more keys, the envelope of our
 * checkpoints. Only Ed25519 (signature type 0x01) is supported, the type keyd signs with.
 *
 *   note       = text "\n" 1*signature-line      text ends in "\n"; it may contain empty lines
 *   signature  = "— " key-name " " base64(key ID [4 bytes, big-endian] || signature) "\n"
 *   key ID     = SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]
 *   verifier   = key-name "+" 8 hex digits of key ID "+" base64(0x01 || public key)
 *
 * Parsing is strict: anything the spec calls malformed throws NoteError('TRESOR_ERR_NOTE_MALFORMED').
 * Opening follows the spec's verification rules: signatures by unknown keys are ignored, every
 * signature by a known key must verify, and at least one must.
 */
import { createHash, createPublicKey, type KeyObject, verify } from 'node:crypto';
import { TresorError } from '../errors.ts';
import { hasLoneSurrogate, hasNoteControlCharacter, isValidKeyName } from '../tlog/checkpoint-text.ts';

// The signed-note name and text rules are shared with keyd (src/tlog), which formats what it signs.
export { hasNoteControlCharacter, isValidKeyName };

/** c2sp.org/signed-note §Signature types: 0x01 = Ed25519. */
export const NOTE_ED25519_SIGNATURE_TYPE = 0x01;
const ED25519_PUBLIC_KEY_BYTES = 32;
const ED25519_SIGNATURE_BYTES = 64;
const KEY_ID_BYTES = 4;
const SIGNATURE_LINE_PREFIX = '\u2014 '; // em dash, space
/** The spec asks for a limit of at least 16; the Go reference (golang.org/x/mod/sumdb/note) allows 100. */
export const MAX_NOTE_SIGNATURES = 100;

export type NoteErrorCode =
  | 'TRESOR_ERR_NOTE_MALFORMED'
  | 'TRESOR_ERR_NOTE_KEY_INVALID'
  | 'TRESOR_ERR_NOTE_SIGNATURE_INVALID'
  | 'TRESOR_ERR_NOTE_UNVERIFIED';

export class NoteError extends TresorError<NoteErrorCode> {}

export interface NoteSignature {
  name: string;
  /** uint32 key ID, the first four bytes of the decoded signature. */
  keyId: number;
  /** The signature proper, without the key ID. */
  signature: Buffer;
}

export interface ParsedNote {
  /** The signed text, final newline included, separating blank line excluded. */
  text: string;
  signatures: NoteSignature[];
}

export interface NoteSigner {
  readonly name: string;
  readonly keyId: number;
  /** Signs the note text bytes; for Ed25519 returns the 64-byte RFC 8032 signature. */
  sign(message: Buffer): Promise<Buffer>;
}

export interface NoteVerifier {
  readonly name: string;
  readonly keyId: number;
  readonly publicKey: Buffer;
  verify(message: Buffer, signature: Buffer): boolean;
}

export interface OpenedNote {
  text: string;
  /** Signatures by the given verifiers, each verified (one entry per key). */
  verified: NoteSignature[];
  /** Signatures by keys not among the given verifiers, ignored as the spec requires. */
  unverified: NoteSignature[];
}

/** The note key ID of an Ed25519 public key: SHA-256(name || 0x0A || 0x01 || key)[:4], big-endian. */
export function ed25519KeyId(name: string, publicKey: Uint8Array): number {
  return keyIdOf(name, Buffer.concat([Buffer.of(NOTE_ED25519_SIGNATURE_TYPE), publicKey]));
}

/** The verifier key string that publishes an Ed25519 public key, `<name>+<hex key ID>+<base64(0x01 || key)>`. */
export function ed25519VerifierKey(name: string, publicKey: Uint8Array): string {
  if (!isValidKeyName(name)) throw new NoteError('TRESOR_ERR_NOTE_KEY_INVALID', 'invalid key name');
  if (publicKey.length !== ED25519_PUBLIC_KEY_BYTES) {
    throw new NoteError('TRESOR_ERR_NOTE_KEY_INVALID', 'an Ed25519 public key is 32 bytes');
  }
  const keyData = Buffer.concat([Buffer.of(NOTE_ED25519_SIGNATURE_TYPE), publicKey]);
  const keyId = keyIdOf(name, keyData).toString(16).padStart(8, '0');
  return `${name}+${keyId}+${keyData.toString('base64')}`;
}

/** Parses a verifier key strictly: valid name, 8 hex digits, Ed25519 key data, key ID that matches. */
export function parseVerifierKey(verifierKey: string): NoteVerifier {
  const invalid = (why: string) =>
    new NoteError('TRESOR_ERR_NOTE_KEY_INVALID', `invalid verifier key: ${why}`);
  const first = verifierKey.indexOf('+');
  const second = verifierKey.indexOf('+', first + 1);
  if (first < 0 || second < 0) throw invalid('expected <name>+<key ID>+<key data>');
  const name = verifierKey.slice(0, first);
  const idHex = verifierKey.slice(first + 1, second);
  const keyData = decodeBase64(verifierKey.slice(second + 1));
  if (!isValidKeyName(name)) throw invalid('bad key name');
  if (!/^[0-9a-fA-F]{8}$/.test(idHex)) throw invalid('the key ID is 8 hex digits');
  if (keyData === undefined || keyData.length === 0) throw invalid('key data is not base64');
  if (keyData[0] !== NOTE_ED25519_SIGNATURE_TYPE) throw invalid('unsupported signature type');
  if (keyData.length !== 1 + ED25519_PUBLIC_KEY_BYTES) throw invalid('an Ed25519 public key is 32 bytes');
  const keyId = Number.parseInt(idHex, 16);
  if (keyId !== keyIdOf(name, keyData)) throw invalid('key ID does not match the key');
  const publicKey = Buffer.from(keyData.subarray(1));
  let key: KeyObject;
  try {
    key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: publicKey.toString('base64url') },
      format: 'jwk',
    });
  } catch {
    throw invalid('not an Ed25519 public key');
  }
  return {
    name,
    keyId,
    publicKey,
    verify: (message, signature) =>
      signature.length === ED25519_SIGNATURE_BYTES && verify(null, message, key, signature),
  };
}

/**
 * A signer for an Ed25519 key whose signing happens elsewhere (keyd's `sign` operation). Each
 * signature is checked against the public key before it is used, so a wrong key never signs a note.
 */
export function ed25519NoteSigner(
  key: { name: string; publicKey: Uint8Array },
  sign: (message: Buffer) => Promise<Buffer>,
): NoteSigner {
  const verifier = parseVerifierKey(ed25519VerifierKey(key.name, key.publicKey));
  return {
    name: verifier.name,
    keyId: verifier.keyId,
    async sign(message) {
      const signature = await sign(message);
      if (!verifier.verify(message, signature)) {
        throw new NoteError(
          'TRESOR_ERR_NOTE_SIGNATURE_INVALID',
          `signer for ${key.name} returned a bad signature`,
        );
      }
      return signature;
    },
  };
}

/** Signs `text` (which must end in a newline) with each signer, in order. */
export async function signNote(text: string, signers: readonly NoteSigner[]): Promise<string> {
  checkText(text);
  if (signers.length === 0 || signers.length > MAX_NOTE_SIGNATURES) {
    throw new NoteError('TRESOR_ERR_NOTE_MALFORMED', `a note has 1 to ${MAX_NOTE_SIGNATURES} signatures`);
  }
  const message = Buffer.from(text, 'utf8');
  const signatures: NoteSignature[] = [];
  for (const signer of signers) {
    signatures.push({ name: signer.name, keyId: signer.keyId, signature: await signer.sign(message) });
  }
  return formatNote({ text, signatures });
}

/** Encodes a note with the given signatures; validates what it writes as strictly as parseNote reads. */
export function formatNote(note: ParsedNote): string {
  checkText(note.text);
  if (note.signatures.length === 0 || note.signatures.length > MAX_NOTE_SIGNATURES) {
    throw new NoteError('TRESOR_ERR_NOTE_MALFORMED', `a note has 1 to ${MAX_NOTE_SIGNATURES} signatures`);
  }
  const lines = note.signatures.map(({ name, keyId, signature }) => {
    if (!isValidKeyName(name)) throw new NoteError('TRESOR_ERR_NOTE_MALFORMED', 'invalid key name');
    if (!Number.isInteger(keyId) || keyId < 0 || keyId > 0xffffffff || signature.length === 0) {
      throw new NoteError('TRESOR_ERR_NOTE_MALFORMED', 'invalid signature');
    }
    const id = Buffer.alloc(KEY_ID_BYTES);
    id.writeUInt32BE(keyId);
    return `${SIGNATURE_LINE_PREFIX}${name} ${Buffer.concat([id, signature]).toString('base64')}\n`;
  });
  return `${note.text}\n${lines.join('')}`;
}

/** Parses a signed note without verifying it (c2sp.org/signed-note §Format). */
export function parseNote(message: string | Uint8Array): ParsedNote {
  const malformed = (why: string) => new NoteError('TRESOR_ERR_NOTE_MALFORMED', `malformed note: ${why}`);
  let note: string;
  if (typeof message === 'string') {
    if (hasLoneSurrogate(message)) throw malformed('not valid UTF-8');
    note = message;
  } else {
    try {
      note = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(message);
    } catch {
      throw malformed('not valid UTF-8');
    }
  }
  // "Signed notes MUST be valid UTF-8 and MUST NOT contain any ASCII control characters ... other than newline."
  if (hasNoteControlCharacter(note)) throw malformed('control character');
  // "the text is separated from the signatures by the last empty line in the note"
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw malformed('no blank line before the signatures');
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (block.length === 0 || !block.endsWith('\n')) throw malformed('signature lines must end in a newline');
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_NOTE_SIGNATURES) throw malformed('too many signatures');
  const signatures = lines.map((line) => {
    if (!line.startsWith(SIGNATURE_LINE_PREFIX)) throw malformed('signature line must start with an em dash');
    const rest = line.slice(SIGNATURE_LINE_PREFIX.length);
    const space = rest.indexOf(' ');
    const name = rest.slice(0, space);
    const raw = space < 0 ? undefined : decodeBase64(rest.slice(space + 1));
    if (space < 0 || !isValidKeyName(name)) throw malformed('invalid key name');
    if (raw === undefined || raw.length <= KEY_ID_BYTES)
      throw malformed('signature is not base64 of key ID and signature');
    return { name, keyId: raw.readUInt32BE(0), signature: Buffer.from(raw.subarray(KEY_ID_BYTES)) };
  });
  return { text, signatures };
}

/**
 * Parses and verifies a note (c2sp.org/signed-note §Signatures): signatures whose (name, key ID)
 * match no verifier are ignored; every signature by a known key must verify (else the whole note is
 * refused, TRESOR_ERR_NOTE_SIGNATURE_INVALID); at least one must (else TRESOR_ERR_NOTE_UNVERIFIED).
 */
export function openNote(message: string | Uint8Array, verifiers: readonly NoteVerifier[]): OpenedNote {
  const { text, signatures } = parseNote(message);
  const bytes = Buffer.from(text, 'utf8');
  const verified: NoteSignature[] = [];
  const unverified: NoteSignature[] = [];
  for (const sig of signatures) {
    const known = verifiers.filter((v) => v.name === sig.name && v.keyId === sig.keyId);
    const distinct = new Set(known.map((v) => v.publicKey.toString('base64')));
    if (distinct.size > 1) {
      throw new NoteError('TRESOR_ERR_NOTE_KEY_INVALID', `ambiguous verifiers for key ${sig.name}`);
    }
    const verifier = known[0];
    if (verifier === undefined) {
      unverified.push(sig);
    } else if (!verifier.verify(bytes, sig.signature)) {
      throw new NoteError('TRESOR_ERR_NOTE_SIGNATURE_INVALID', `invalid signature by key ${sig.name}`);
    } else if (!verified.some((v) => v.name === sig.name && v.keyId === sig.keyId)) {
      verified.push(sig);
    }
  }
  if (verified.length === 0)
    throw new NoteError('TRESOR_ERR_NOTE_UNVERIFIED', 'note has no verifiable signature');
  return { text, verified, unverified };
}

function checkText(text: string): void {
  if (!text.endsWith('\n'))
    throw new NoteError('TRESOR_ERR_NOTE_MALFORMED', 'note text must end in a newline');
  if (hasLoneSurrogate(text) || hasNoteControlCharacter(text)) {
    throw new NoteError('TRESOR_ERR_NOTE_MALFORMED', 'note text must be UTF-8 without control characters');
  }
}

function keyIdOf(name: string, keyData: Uint8Array): number {
  return createHash('sha256')
    .update(name, 'utf8')
    .update(Buffer.of(0x0a))
    .update(keyData)
    .digest()
    .readUInt32BE(0);
}

// RFC 4648 §4 standard alphabet with padding, canonical only: re-encoding must give the same text.
function decodeBase64(text: string): Buffer | undefined {
  if (text.length === 0 || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined;
}
