/**
 * Signing audit checkpoints with a real keyd in tests. keyd formats the checkpoint text itself and
 * signs a checkpoint only as a consistent extension of the last one it signed
 * (src/keyd/signing-checkpoints.ts), so test fixtures ask through signCheckpoint, never with bytes.
 */
import { parseCheckpoint } from '../../src/audit/checkpoint.ts';
import { ed25519NoteSigner, type NoteSigner, signNote } from '../../src/audit/note.ts';
import type { KeyService } from '../../src/keyd/operations.ts';
import { type Checkpoint, formatCheckpoint } from '../../src/tlog/checkpoint-text.ts';

/**
 * A note signer over keyd for fixtures whose checkpoint keyd can sign without a proof: the first
 * one it signs, or the same tree again.
 */
export function keydCheckpointSigner(
  keyd: KeyService,
  key: { name: string; publicKey: Uint8Array },
): NoteSigner {
  return ed25519NoteSigner(key, async (message) => {
    const { origin, size, rootHash } = parseCheckpoint(message.toString('utf8'));
    const { size: fromSize } = await keyd.call('checkpointTree', {});
    return (await keyd.call('signCheckpoint', { origin, size, rootHash, fromSize, proof: [] })).signature;
  });
}

/**
 * keyd's signature on a checkpoint of a history the live log does not have — what a stolen key,
 * or a keyd reset for an earlier restore, leaves behind. keyd signs no fork, so the test does what
 * only keyd's admin can: forgets keyd's tree (resetCheckpointTree), has the forgery signed as a
 * first checkpoint, and sets keyd's tree back to where it was (keyd signs its last checkpoint again
 * to hand over the signature the reset is checked with). `keyd` must be an admin caller.
 */
export async function forgeKeydCheckpoint(
  keyd: KeyService,
  key: { name: string; publicKey: Uint8Array },
  checkpoint: Checkpoint,
): Promise<string> {
  const tree = await keyd.call('checkpointTree', {});
  let back: { origin: string; size: number; rootHash: Buffer; signature: Buffer } | undefined;
  if (tree.origin !== null && tree.rootHash !== null) {
    const parts = { origin: tree.origin, size: tree.size, rootHash: tree.rootHash };
    const { signature } = await keyd.call('signCheckpoint', { ...parts, fromSize: tree.size, proof: [] });
    back = { ...parts, signature };
  }
  await keyd.call('resetCheckpointTree', {});
  try {
    return await signNote(formatCheckpoint(checkpoint), [keydCheckpointSigner(keyd, key)]);
  } finally {
    await keyd.call('resetCheckpointTree', back ?? {});
  }
}
