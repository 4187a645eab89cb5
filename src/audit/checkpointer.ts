/**
 * Signed checkpoints of the audit log, at least once a second while entries arrive: the C2SP
 * tlog-checkpoint body (origin, size, root), signed as a C2SP signed note with keyd's Ed25519
 * `audit-checkpoint` key. Each checkpoint is kept three times — in the control store, in the
 * witness folder (outside the store) and by every sink — so a rollback of the whole store to an
 * older state shows at the next start (checkRollback) and to `tresor audit verify`.
 *
 * The signing key's note name is the log's origin (signed-note: the key name should match it), so
 * the verifier key published is `<origin>+<key ID>+<key>`; keyd's own label for the key
 * (`tresor-keyd/audit-checkpoint`) named the checkpoints of earlier versions, and those still
 * verify against the witness.
 *
 * keyd signs a checkpoint only as a consistent extension of the last one it signed: the checkpointer
 * sends the checkpoint's parts and the RFC 9162 consistency proof from keyd's remembered tree, which
 * it asks keyd for (CheckpointKeyd). A log behind keyd's tree (a restored deployment keyd was not
 * rolled back for) or forked from it gets no signature: health() turns red as below.
 *
 * If keyd cannot sign (sealed, stopped, unreachable) entries keep arriving but stay unsigned; once
 * the oldest unsigned entry has waited longer than `signBoundMs`, health() turns red and data routes
 * fail closed (503) until a checkpoint is signed again.
 *
 * Several server processes on one database (PostgreSQL): only the process that `leads()` (holds the
 * sequencer's lease) signs. The others adopt the newest checkpoint in the store once its signature
 * verifies — into their own witness, to their listeners (stream, sinks), as their signed size — so
 * their health reflects the holder's signing with the same bound, and keyd is never asked by two
 * processes at once (one asking from a tree head behind keyd's would be refused and turn red).
 */
import type { Store } from '../store/types.ts';
import { CheckpointError, parseCheckpoint, signCheckpoint, verifyCheckpoint } from './checkpoint.ts';
import type { AuditLogReader } from './log.ts';
import type { WithAuditLog } from './log-schema.ts';
import {
  ed25519NoteSigner,
  ed25519VerifierKey,
  type NoteSigner,
  type NoteVerifier,
  parseNote,
  parseVerifierKey,
} from './note.ts';

export interface CheckpointWitness {
  /** Keeps `note` durably outside the store; refuses to go back to a smaller tree. */
  record(note: string): Promise<void>;
  latest(): Promise<string | null>;
}

/** keyd's key: its own label, the raw Ed25519 public key and keyd's verifier key for that label. */
export interface CheckpointSigningKey {
  name: string;
  publicKey: Buffer;
  verifierKey: string;
}

/**
 * keyd's side of a checkpoint: keyd formats the checkpoint text itself and signs it only as a
 * consistent extension of the last tree it signed (src/keyd/signing-checkpoints.ts), so the
 * checkpointer asks for keyd's remembered tree and sends the consistency proof from it.
 */
export interface CheckpointKeyd {
  /** The last tree keyd signed (size 0, root null before the first). */
  tree(): Promise<{ origin: string | null; size: number; rootHash: Buffer | null }>;
  /** keyd's Ed25519 signature of the checkpoint's text, made only if the proof holds. */
  sign(request: {
    origin: string;
    size: number;
    rootHash: Buffer;
    fromSize: number;
    proof: Buffer[];
  }): Promise<Buffer>;
}

export interface CheckpointerDeps {
  control: Store<WithAuditLog>;
  reader: AuditLogReader;
  treeHead(): { size: number; root: Buffer };
  /** keyd's public key for checkpoints (fetched once and kept). */
  signingKey(): Promise<CheckpointSigningKey>;
  /** keyd's checkpoint signing (signCheckpoint, checkpointTree). */
  keyd: CheckpointKeyd;
  origin: string;
  witness: CheckpointWitness;
  /** Called after a checkpoint is durable everywhere it is kept (sinks, stream). */
  onCheckpoint?(checkpoint: { size: number; note: string }): void;
  intervalMs?: number;
  /** Whether this process signs (default: always); the others adopt the store's newest checkpoint. */
  leads?: () => boolean;
  /** Longest time an entry may stay unsigned before health() turns red (default 10 s). */
  signBoundMs?: number;
  now?: () => Date;
}

export interface CheckpointerHealth {
  ok: boolean;
  reason?: string;
  /** Size of the latest signed checkpoint. */
  signedSize: number;
}

export interface Checkpointer {
  /** Checks the witness against the store, then signs every `intervalMs` while the log grows. */
  start(): Promise<void>;
  /** Signs a checkpoint of the current tree now, if it grew since the last one. */
  checkpoint(): Promise<{ size: number; note: string } | null>;
  health(): CheckpointerHealth;
  verifierKey(): Promise<string>;
  close(): Promise<void>;
}

export function createCheckpointer(deps: CheckpointerDeps): Checkpointer {
  const now = deps.now ?? (() => new Date());
  const intervalMs = deps.intervalMs ?? 1000;
  const signBoundMs = deps.signBoundMs ?? 10_000;
  let key: CheckpointSigningKey | undefined;
  /** The size of the last tree keyd signed, as keyd said or as we had it sign; unknown at first and after a refusal. */
  let keydSize: number | undefined;
  let signedSize = 0;
  /** When the tree first grew past the signed size (the oldest unsigned entry's wait starts). */
  let unsignedSince: Date | undefined;
  let rollback: string | undefined;
  /** Whether the witness was compared with the store since start (it needs keyd's public key). */
  let witnessChecked = false;
  let lastFailure: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<{ size: number; note: string } | null> | undefined;

  async function signingKey(): Promise<CheckpointSigningKey> {
    key ??= await deps.signingKey();
    return key;
  }

  /**
   * A note signer for one checkpoint: it hands keyd the checkpoint's parts and the consistency proof
   * from keyd's last signed tree, never the text (keyd formats that itself, from the same encoder).
   */
  async function noteSigner(head: { size: number; root: Buffer }): Promise<NoteSigner> {
    const k = await signingKey();
    keydSize ??= (await deps.keyd.tree()).size;
    const fromSize = keydSize;
    if (fromSize > head.size) {
      throw new CheckpointError(
        'TRESOR_ERR_CHECKPOINT_INCONSISTENT',
        `keyd last signed a tree of ${fromSize} entries, more than this log's ${head.size}: it will sign no checkpoint of this log until it is rolled back to one this log holds (docs/keyd.md, restoring a deployment)`,
      );
    }
    const proof =
      fromSize > 0 && fromSize < head.size ? await deps.reader.consistency(fromSize, head.size) : [];
    const request = { origin: deps.origin, size: head.size, rootHash: head.root, fromSize, proof };
    return ed25519NoteSigner({ name: deps.origin, publicKey: k.publicKey }, () => deps.keyd.sign(request));
  }

  /** The log's verifier (named by the origin) and the one of keyd's label, for older checkpoints. */
  async function verifiers(): Promise<NoteVerifier[]> {
    const k = await signingKey();
    const own = parseVerifierKey(ed25519VerifierKey(deps.origin, k.publicKey));
    return k.name === deps.origin ? [own] : [own, parseVerifierKey(ed25519VerifierKey(k.name, k.publicKey))];
  }

  /**
   * The witness holds the newest checkpoint ever signed. The store must contain that tree: same
   * size or larger, and the same root at that size. Anything else is a rollback (or a swap).
   */
  async function checkRollback(): Promise<void> {
    const note = await deps.witness.latest();
    if (note === null) {
      witnessChecked = true;
      return;
    }
    const known = await verifiers();
    witnessChecked = true;
    const { checkpoint } = verifyCheckpoint(note, known, { origin: deps.origin });
    const { size } = deps.treeHead();
    if (size < checkpoint.size) {
      rollback = `the audit log holds ${size} entries but the witness saw a signed checkpoint of ${checkpoint.size}: the store was rolled back or truncated`;
      return;
    }
    const root = await deps.reader.rootAt(checkpoint.size);
    if (!root.equals(checkpoint.rootHash)) {
      rollback = `the audit log does not match the witness's checkpoint at size ${checkpoint.size}: the store was replaced or altered`;
    }
  }

  async function signNow(): Promise<{ size: number; note: string } | null> {
    const head = deps.treeHead();
    if (head.size <= signedSize) return null;
    try {
      const note = await signCheckpoint(
        { origin: deps.origin, size: head.size, rootHash: head.root, extensions: [] },
        [await noteSigner(head)],
      );
      keydSize = head.size;
      const at = now().toISOString();
      await deps.control.write(async (trx) => {
        await trx
          .insertInto('audit_checkpoints')
          .values({ size: head.size, note, at })
          .onConflict((oc) => oc.column('size').doNothing())
          .execute();
      });
      await deps.witness.record(note);
      signedSize = head.size;
      lastFailure = undefined;
      unsignedSince = deps.treeHead().size > signedSize ? now() : undefined;
      deps.onCheckpoint?.({ size: head.size, note });
      return { size: head.size, note };
    } catch (error) {
      // Ask keyd for its tree again next time: another node may have signed meanwhile.
      keydSize = undefined;
      lastFailure = error instanceof Error ? ((error as { code?: string }).code ?? error.name) : 'error';
      throw error;
    }
  }

  /** A process that does not sign: the newest stored checkpoint, verified, becomes its own. */
  async function adopt(): Promise<{ size: number; note: string } | null> {
    const latest = await deps.reader.latestCheckpoint();
    let adopted: { size: number; note: string } | null = null;
    // Its signature is checked before it counts (the size column alone proves nothing).
    if (latest && latest.size > signedSize) {
      const { checkpoint } = verifyCheckpoint(latest.note, await verifiers(), { origin: deps.origin });
      if (checkpoint.size > signedSize) {
        await deps.witness.record(latest.note);
        signedSize = checkpoint.size;
        keydSize = undefined;
        lastFailure = undefined;
        adopted = { size: checkpoint.size, note: latest.note };
        deps.onCheckpoint?.(adopted);
      }
    }
    // As after a signature of its own: a newer checkpoint restarts the wait of what is beyond it
    // (under steady writes the head is always past the last checkpoint; the wait must not run on
    // from the first unsigned entry ever seen, or a busy follower would turn red after signBoundMs).
    const { size } = deps.treeHead();
    if (size <= signedSize) unsignedSince = undefined;
    else if (adopted !== null) unsignedSince = now();
    else unsignedSince ??= now();
    return adopted;
  }

  function checkpoint(): Promise<{ size: number; note: string } | null> {
    // One signing at a time; a caller arriving meanwhile waits for it, then signs what is left.
    const step = deps.leads === undefined || deps.leads() ? signNow : adopt;
    const run = (running ?? Promise.resolve(null)).catch(() => null).then(step);
    running = run;
    return run;
  }

  function tick(): void {
    if (!witnessChecked) {
      void checkRollback().catch(() => undefined);
      return;
    }
    if (deps.leads !== undefined && !deps.leads()) {
      void checkpoint().catch((error: unknown) => {
        lastFailure = error instanceof Error ? ((error as { code?: string }).code ?? error.name) : 'error';
      });
      return;
    }
    const { size } = deps.treeHead();
    if (size > signedSize) unsignedSince ??= now();
    if (size > signedSize) void checkpoint().catch(() => undefined);
  }

  return {
    async start() {
      const latest = await deps.reader.latestCheckpoint();
      if (latest) signedSize = parseCheckpoint(parseNote(latest.note).text).size;
      try {
        await checkRollback();
      } catch (error) {
        // Without keyd the witness cannot be checked yet: tick() retries; health() is red meanwhile.
        lastFailure = error instanceof Error ? ((error as { code?: string }).code ?? error.name) : 'error';
      }
      if (deps.treeHead().size > signedSize) unsignedSince = now();
      timer = setInterval(tick, intervalMs);
      timer.unref();
    },
    checkpoint,
    health() {
      if (rollback) return { ok: false, reason: rollback, signedSize };
      if (!witnessChecked) {
        return {
          ok: false,
          reason: `the witness checkpoint cannot be checked yet (${lastFailure ?? 'pending'})`,
          signedSize,
        };
      }
      if (
        unsignedSince &&
        deps.treeHead().size > signedSize &&
        now().getTime() - unsignedSince.getTime() >= signBoundMs
      ) {
        return {
          ok: false,
          reason: `no audit checkpoint could be signed for ${Math.round((now().getTime() - unsignedSince.getTime()) / 1000)} s (${lastFailure ?? 'pending'})`,
          signedSize,
        };
      }
      return { ok: true, signedSize };
    },
    async verifierKey() {
      return ed25519VerifierKey(deps.origin, (await signingKey()).publicKey);
    },
    async close() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await running?.catch(() => undefined);
    },
  };
}
