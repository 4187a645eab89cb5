/**
 * Changing one stored audit leaf behind the server's back, as an attacker with the database would:
 * the leaves are stored in compressed blocks (src/audit/leaf-store.ts), so the block holding the
 * entry is read, the leaf replaced and the block written back in place (SQLite: with the block
 * table's update trigger dropped; PostgreSQL: with the session's triggers off).
 */
import { encodeLeafBlock, leafTexts } from '../../src/audit/leaf-codec.ts';

/** Reads the block holding an index (one parameter: the index). */
export const BLOCK_OF_INDEX =
  'SELECT idx, n, block FROM audit_leaves WHERE idx <= ? ORDER BY idx DESC LIMIT 1';
/** Writes a block back (parameters: the block, its idx). */
export const REWRITE_BLOCK = 'UPDATE audit_leaves SET block = ? WHERE idx = ? RETURNING idx';
/** Drops the trigger that lets a SQLite block only grow (REWRITE_BLOCK keeps its size). */
export const DROP_BLOCK_TRIGGER = 'DROP TRIGGER audit_leaves_grow_only';

export interface BlockRow {
  idx: number | string;
  block: Buffer;
}

/** The leaf of `index` in the block BLOCK_OF_INDEX read. */
export function leafOf(row: BlockRow, index: number): string {
  const leaf = leafTexts(row.block)[index - Number(row.idx)];
  if (leaf === undefined) throw new Error(`entry ${index} is not stored`);
  return leaf;
}

/** The block with the leaf of `index` replaced by `leaf`. */
export function blockWith(row: BlockRow, index: number, leaf: string): Buffer {
  const leaves = leafTexts(row.block);
  leaves[index - Number(row.idx)] = leaf;
  return encodeLeafBlock(leaves);
}
