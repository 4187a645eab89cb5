/**
 * keyd signs the audit log's checkpoints only as consistent extensions of the last one it signed.
 * c2sp.org/tlog-checkpoint: a log must never sign two checkpoints that are not consistent with each
 * other — that is a fork, the split view a transparency log exists to rule out. keyd holds the key,
 * so keyd is where the rule is kept: an API node, even a compromised one, cannot get a forked,
 * shrunk or foreign log signed.
 *
 * A request carries the checkpoint's parts (origin, size, root hash), never its text: keyd formats
 * the text itself (src/tlog/checkpoint-text.ts, the one encoder the audit log uses too), then checks
 *   - the origin equals the one pinned in keyd's store — pinned by the first checkpoint keyd signs
 *     (keyd has no origin setting of its own: the server's `audit.origin` names the log);
 *   - the proof starts from keyd's remembered tree (`fromSize`; else TRESOR_ERR_CHECKPOINT_STALE);
 *   - size ≥ the remembered size; at equal size the root is the remembered one (signing the same
 *     checkpoint again is harmless: it says nothing new, so it is signed whatever `fromSize` says,
 *     and a request repeated after a lost answer gets the signature the first one got);
 *   - the RFC 9162 §2.1.4.2 consistency proof from (remembered size, root) to (size, root);
 * and records the new tree in its store — compare-and-set on the remembered one, with the ops-log
 * entry — before it signs: of two racing requests from the same old tree, one is recorded and
 * signed, the other refused. A recorded tree whose signature never reached the caller costs
 * nothing: the caller asks again for the same checkpoint, which keyd signs again.
 *
 * resetCheckpointTree (admin only) sets the remembered tree to a checkpoint keyd signed before —
 * the restore of a whole deployment goes back to its backup's checkpoint — or forgets it (a new
 * log). It is the one way a fork can be signed, so it is an operator's act, logged (docs/keyd.md).
 */

import { constantTimeEqual } from '../crypto/index.ts';
import { formatCheckpoint, isValidOrigin } from '../tlog/checkpoint-text.ts';
import { HASH_SIZE, verifyConsistency } from '../tlog/merkle.ts';
import { KeydError } from './errors.ts';
import { KeyedMutex } from './locks.ts';
import type { OpHandlers } from './op-record.ts';
import type { CheckpointTree } from './operations.ts';
import { verifyEd25519 } from './signing.ts';
import type { SigningKeys } from './signing-keys.ts';
import type { CheckpointTreeRecord, KeyStore } from './store.ts';

export interface CheckpointSigningDeps {
  store: Pick<KeyStore, 'getCheckpointTree' | 'replaceCheckpointTree'>;
  signingKeys: SigningKeys;
  clock: () => Date;
}

export function checkpointOperations(
  deps: CheckpointSigningDeps,
): Pick<OpHandlers, 'signCheckpoint' | 'checkpointTree' | 'resetCheckpointTree'> {
  const { store, signingKeys, clock } = deps;
  // One checkpoint decision at a time in this keyd; the store's compare-and-set guards the rest.
  const mutex = new KeyedMutex();

  return {
    checkpointTree: async () => view(await store.getCheckpointTree()),

    signCheckpoint: ({ origin, size, rootHash, fromSize, proof }, rec) =>
      signingKeys.withSigner('audit-checkpoint', rec, (signer) =>
        mutex.run('checkpoint', async () => {
          const text = Buffer.from(formatCheckpoint({ origin, size, rootHash, extensions: [] }), 'utf8');
          const last = await store.getCheckpointTree();
          rec.detail = `${origin} ${last?.size ?? 0} → ${size}`;
          checkExtension(last, { origin, size, rootHash, fromSize, proof });
          if (last === undefined || last.size !== size) {
            const next = { origin, size, rootHash, signedAt: clock().toISOString() };
            await store.replaceCheckpointTree(last, next, rec.draft('ok'));
            rec.committed();
          } else {
            rec.detail = `${origin} ${size}: the last checkpoint, signed again`;
          }
          return signer.sign(text);
        }),
      ),

    resetCheckpointTree: (target, rec) =>
      signingKeys.withSigner('audit-checkpoint', rec, (signer) =>
        mutex.run('checkpoint', async () => {
          const last = await store.getCheckpointTree();
          const from = last === undefined ? 'no tree' : `${last.origin} ${last.size}`;
          if (target.origin === undefined) {
            rec.detail = `forgot ${from}: the next checkpoint pins a log again`;
            await store.replaceCheckpointTree(last, undefined, rec.draft('ok'));
            rec.committed();
            return view(undefined);
          }
          const { origin, size, rootHash, signature } = target as Required<typeof target>;
          const text = Buffer.from(formatCheckpoint({ origin, size, rootHash, extensions: [] }), 'utf8');
          if (!verifyEd25519(signer.publicKey, text, signature)) {
            throw refused('the checkpoint to reset to is not one keyd signed');
          }
          const next = { origin, size, rootHash, signedAt: clock().toISOString() };
          rec.detail = `reset from ${from} to ${origin} ${size}: a log restored to it forks from there`;
          await store.replaceCheckpointTree(last, next, rec.draft('ok'));
          rec.committed();
          return view(next);
        }),
      ),
  };
}

/** Throws unless (size, rootHash) under `origin` is a consistent extension of `last`. */
function checkExtension(
  last: CheckpointTreeRecord | undefined,
  next: { origin: string; size: number; rootHash: Buffer; fromSize: number; proof: Buffer[] },
): void {
  if (!isValidOrigin(next.origin)) throw refused('the origin is not a valid log name');
  if (next.rootHash.length !== HASH_SIZE) throw refused('a root hash is 32 bytes');
  if (last === undefined) {
    // The first checkpoint pins the origin; there is nothing to be consistent with yet.
    if (next.fromSize !== 0 || next.proof.length > 0) throw stale(0, next.fromSize);
    return;
  }
  if (next.origin !== last.origin) throw originMismatch(last.origin);
  // The remembered tree itself, whatever the proof starts from: a request repeated after its answer
  // was lost (the keyd that recorded it died) is signed again, the same signature (RFC 8032 is
  // deterministic), and says nothing new.
  if (next.size === last.size && constantTimeEqual(next.rootHash, last.rootHash)) return;
  if (next.fromSize !== last.size) throw stale(last.size, next.fromSize);
  if (next.size < last.size) {
    throw inconsistent(
      `size ${next.size} is smaller than ${last.size}, the last signed: the log would shrink`,
    );
  }
  if (next.size === last.size) {
    if (next.proof.length > 0 || !constantTimeEqual(next.rootHash, last.rootHash)) {
      throw inconsistent(`size ${next.size} with another root than the one keyd signed: a fork`);
    }
    return;
  }
  // From the empty tree every tree is an extension (RFC 9162 proves nothing from size 0).
  if (last.size === 0) {
    if (next.proof.length > 0) throw inconsistent('a proof from the empty tree is empty');
    return;
  }
  if (!verifyConsistency(last.size, next.size, next.proof, last.rootHash, next.rootHash)) {
    throw inconsistent(
      `the consistency proof from size ${last.size} to ${next.size} does not verify: not an extension of the last signed tree`,
    );
  }
}

function view(tree: CheckpointTreeRecord | undefined): CheckpointTree {
  return tree === undefined
    ? { origin: null, size: 0, rootHash: null }
    : { origin: tree.origin, size: tree.size, rootHash: Buffer.from(tree.rootHash) };
}

function stale(size: number, fromSize: number): KeydError {
  return new KeydError(
    'TRESOR_ERR_CHECKPOINT_STALE',
    `the proof starts from size ${fromSize}, but the last tree keyd signed has size ${size}`,
  );
}

function inconsistent(message: string): KeydError {
  return new KeydError('TRESOR_ERR_CHECKPOINT_INCONSISTENT', message);
}

function originMismatch(pinned: string): KeydError {
  return new KeydError(
    'TRESOR_ERR_CHECKPOINT_ORIGIN_MISMATCH',
    `keyd signs checkpoints only for the log ${pinned}, pinned at its first checkpoint`,
  );
}

function refused(message: string): KeydError {
  return new KeydError('TRESOR_ERR_SIGN_REFUSED', message);
}
