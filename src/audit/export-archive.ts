/**
 * The encrypted audit archive: the export file (export-file.ts) inside one age file
 * (age-encryption.org/v1), encrypted to one or more recipients (age1…) or to a passphrase (scrypt
 * recipient). The JSON Lines never touch the disk: they are streamed through the encrypter into
 * the file, and read back through the decrypter. `age -d` opens the archive as well as Tresor does.
 *
 * Reading takes two passes (checkpoints first, entries next: export-file.ts), so the file key is
 * unwrapped once from the header and both passes decrypt with it: a passphrase costs one scrypt.
 */
import { open } from 'node:fs/promises';
import { PassThrough, Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Decrypter, Encrypter } from 'age-encryption';
import { TresorError } from '../errors.ts';

/** The first line of every age file. */
const AGE_MAGIC = 'age-encryption.org/v1\n';
const AGE_RECIPIENT = /^age1[0-9a-z]{10,4000}$/;
/** An age header is a few stanzas; one this large is not a header. */
const MAX_HEADER_BYTES = 1 << 20;
export const MIN_ARCHIVE_PASSPHRASE_LENGTH = 12;
const MAX_ARCHIVE_PASSPHRASE_LENGTH = 1024;

/** Whom an archive is encrypted to. */
export type ArchiveRecipients = { recipients: string[] } | { passphrase: string };

/** What opens an archive: age identities (AGE-SECRET-KEY-1…) or the passphrase. */
export type ArchiveIdentities = { identities: string[] } | { passphrase: string };

export type AuditArchiveErrorCode = 'TRESOR_ERR_VALIDATION' | 'TRESOR_ERR_DECRYPT_FAILED';

export class AuditArchiveError extends TresorError<AuditArchiveErrorCode> {}

/** An encrypter for the given recipients, checked before anything is read or written. */
export function archiveEncrypter(to: ArchiveRecipients, scryptLogN?: number): Encrypter {
  const encrypter = new Encrypter();
  if ('passphrase' in to) {
    const { length } = to.passphrase;
    if (length < MIN_ARCHIVE_PASSPHRASE_LENGTH || length > MAX_ARCHIVE_PASSPHRASE_LENGTH) {
      throw new AuditArchiveError(
        'TRESOR_ERR_VALIDATION',
        `the passphrase must be ${MIN_ARCHIVE_PASSPHRASE_LENGTH} to ${MAX_ARCHIVE_PASSPHRASE_LENGTH} characters`,
      );
    }
    if (scryptLogN !== undefined) encrypter.setScryptWorkFactor(scryptLogN);
    encrypter.setPassphrase(to.passphrase);
    return encrypter;
  }
  if (to.recipients.length === 0) {
    throw new AuditArchiveError('TRESOR_ERR_VALIDATION', 'give at least one recipient');
  }
  for (const recipient of to.recipients) {
    // The recipient is a public key: naming it in the error is safe and helps.
    const invalid = new AuditArchiveError(
      'TRESOR_ERR_VALIDATION',
      `not an age recipient (age1…): ${recipient.slice(0, 80)}`,
    );
    if (!AGE_RECIPIENT.test(recipient)) throw invalid;
    try {
      encrypter.addRecipient(recipient);
    } catch {
      throw invalid;
    }
  }
  return encrypter;
}

/**
 * A stream whose bytes are encrypted into `out` (which is not ended: the caller owns it). End the
 * returned stream, then await `done`: the last ciphertext byte has then been written to `out`.
 */
export async function encryptingStream(
  encrypter: Encrypter,
  out: Writable,
): Promise<{ input: Writable; done: Promise<void> }> {
  const input = new PassThrough();
  const encrypted = await encrypter.encrypt(Readable.toWeb(input) as ReadableStream<Uint8Array>);
  const done = pipeline(Readable.fromWeb(encrypted as import('node:stream/web').ReadableStream), out, {
    end: false,
  });
  return { input, done };
}

/** Whether the file is an age file (else it is taken as a plaintext export). */
export async function isAgeFile(path: string): Promise<boolean> {
  const head = await readPrefix(path, AGE_MAGIC.length);
  return head.toString('latin1') === AGE_MAGIC;
}

/**
 * Opens an archive: unwraps its file key with the identities or passphrase (a wrong one, or a
 * changed header, throws TRESOR_ERR_DECRYPT_FAILED), and returns a function that streams
 * the plaintext, as often as needed. A changed payload byte fails that stream when it is reached.
 */
export async function openArchive(path: string, by: ArchiveIdentities): Promise<() => Promise<Readable>> {
  const header = await readPrefix(path, MAX_HEADER_BYTES);
  const unwrapper = new Decrypter();
  try {
    if ('passphrase' in by) unwrapper.addPassphrase(by.passphrase);
    else for (const identity of by.identities) unwrapper.addIdentity(identity);
  } catch {
    throw new AuditArchiveError('TRESOR_ERR_VALIDATION', 'an identity is not an age identity');
  }
  let fileKey: Uint8Array;
  try {
    fileKey = await unwrapper.decryptHeader(header);
  } catch {
    throw new AuditArchiveError(
      'TRESOR_ERR_DECRYPT_FAILED',
      'the archive cannot be opened with the given identity or passphrase (or its header was changed)',
    );
  }
  return async () => {
    const decrypter = new Decrypter();
    // The header's MAC is checked again with this key on every pass.
    decrypter.addIdentity({ unwrapFileKey: () => fileKey });
    const handle = await open(path, 'r');
    const ciphertext = Readable.toWeb(handle.createReadStream()) as ReadableStream<Uint8Array>;
    const plaintext = await decrypter.decrypt(ciphertext);
    return Readable.fromWeb(plaintext as import('node:stream/web').ReadableStream);
  };
}

async function readPrefix(path: string, max: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(max);
    let filled = 0;
    while (filled < max) {
      const { bytesRead } = await handle.read(buffer, filled, max - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buffer.subarray(0, filled);
  } finally {
    await handle.close();
  }
}
