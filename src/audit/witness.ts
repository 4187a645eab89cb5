/**
 * The local witness of the audit log: every signed checkpoint is also written outside the store, so a
 * rollback of the whole store to an older copy is seen at the next start and by `tresor audit verify`.
 *
 *   <dir>/checkpoint        the latest signed note, replaced atomically (tmp + fsync + rename + fsync dir)
 *   <dir>/checkpoints.log   every note recorded, one JSON Lines record `{"note":"..."}` each, fsynced
 *
 * The witness only moves forward (c2sp.org/tlog-witness keeps the same rule for cosigners): a
 * checkpoint smaller than the latest is refused, and so is one of the same size with another root
 * (a fork). It parses the note text but does not check the signature: it keeps whatever the signer
 * produced, and verifiers check the signatures of what it holds. Folder 0700, files 0600.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { TresorError } from '../errors.ts';
import { type Checkpoint, parseCheckpoint } from './checkpoint.ts';
import { parseNote } from './note.ts';

export const WITNESS_LATEST_FILE = 'checkpoint';
export const WITNESS_LOG_FILE = 'checkpoints.log';

export type WitnessErrorCode =
  | 'TRESOR_ERR_WITNESS_ROLLBACK'
  | 'TRESOR_ERR_WITNESS_FORK'
  | 'TRESOR_ERR_WITNESS_MALFORMED';

export class WitnessError extends TresorError<WitnessErrorCode> {}

export interface Witness {
  readonly dir: string;
  /** Records a signed checkpoint note; refuses one older than, or forking from, the latest. */
  record(note: string): Promise<void>;
  /** The latest recorded note, or null when nothing was recorded yet. */
  latest(): Promise<string | null>;
  /** Every recorded note, oldest first. */
  all(): AsyncIterable<string>;
}

/** The checkpoint inside a signed note, signature unchecked; throws WitnessError if malformed. */
export function checkpointOfNote(note: string): Checkpoint {
  try {
    return parseCheckpoint(parseNote(note).text);
  } catch (err) {
    throw new WitnessError(
      'TRESOR_ERR_WITNESS_MALFORMED',
      `not a checkpoint note: ${(err as Error).message}`,
    );
  }
}

export function createWitness(dir: string): Witness {
  const latestPath = join(dir, WITNESS_LATEST_FILE);
  const logPath = join(dir, WITNESS_LOG_FILE);
  // record() calls run one after another, so the "never backwards" check sees the previous write.
  let queue: Promise<void> = Promise.resolve();

  async function latest(): Promise<string | null> {
    try {
      return await readFile(latestPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async function recordNow(note: string): Promise<void> {
    const next = checkpointOfNote(note);
    const previousNote = await latest();
    if (previousNote !== null) {
      const previous = checkpointOfNote(previousNote);
      if (next.size < previous.size) {
        throw new WitnessError(
          'TRESOR_ERR_WITNESS_ROLLBACK',
          `checkpoint of size ${next.size} is older than the witnessed size ${previous.size}`,
        );
      }
      if (next.size === previous.size) {
        if (!next.rootHash.equals(previous.rootHash) || next.origin !== previous.origin) {
          throw new WitnessError(
            'TRESOR_ERR_WITNESS_FORK',
            `a different checkpoint of size ${next.size} was already witnessed`,
          );
        }
        return; // the same tree head again: nothing new to keep
      }
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await appendDurably(logPath, `${JSON.stringify({ note })}\n`);
    await replaceDurably(dir, latestPath, note);
  }

  return {
    dir,
    record(note) {
      const run = queue.then(() => recordNow(note));
      queue = run.catch(() => undefined);
      return run;
    },
    latest,
    async *all() {
      let handle: Awaited<ReturnType<typeof open>>;
      try {
        handle = await open(logPath, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
      const text = await handle.readFile('utf8').finally(() => handle.close());
      const lines = text.split('\n');
      // A final line without its newline is a record torn by a crash before it was acknowledged.
      lines.pop();
      for (const [i, line] of lines.entries()) {
        let note: unknown;
        try {
          note = (JSON.parse(line) as { note?: unknown }).note;
        } catch {
          note = undefined;
        }
        if (typeof note !== 'string') {
          throw new WitnessError(
            'TRESOR_ERR_WITNESS_MALFORMED',
            `${logPath}:${i + 1} is not a witness record`,
          );
        }
        yield note;
      }
    },
  };
}

async function appendDurably(path: string, text: string): Promise<void> {
  const handle = await open(path, 'a', 0o600);
  try {
    await handle.appendFile(text, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function replaceDurably(dir: string, path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}
