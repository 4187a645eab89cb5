/**
 * The tlog-tiles resources of the live log (tiles.ts): hash tiles from the stored perfect-subtree
 * nodes, entry bundles from the entries, through the log's reader — never its tables directly.
 *
 * A tile is served only when the tree it is asked against holds it: a full tile once its 256 hashes
 * exist, a partial one only at exactly the width that tree size gives it or less (tlog-tiles
 * "Partial Tiles": a partial tile a checkpoint requires). What a full tile holds never changes,
 * which is why the routes may let it be cached for good.
 *
 * A full level-0 tile or entry bundle below the archived end is served as sealed in its segment
 * (archived-log.ts, checked whole when opened); every other tile through the reader, which itself
 * reads the archived range from the segments.
 */
import { TresorError } from '../errors.ts';
import type { ArchivedRange } from './archived-log.ts';
import type { AuditLogReader } from './log.ts';
import {
  encodeEntryBundle,
  encodeHashTile,
  formatTilePath,
  TILE_WIDTH,
  type TileCoordinate,
  tileExistsAt,
  tileLeafRange,
  treeLevelOfTile,
} from './tiles.ts';

export interface AuditTileReader {
  /** The tile's bytes in a tree of `treeSize` leaves; TRESOR_ERR_NOT_FOUND when that tree lacks it. */
  read(tile: TileCoordinate, treeSize: number): Promise<Buffer>;
}

export function createAuditTileReader(
  reader: Pick<AuditLogReader, 'entries' | 'levelHashes'>,
  archive?: ArchivedRange,
): AuditTileReader {
  return {
    async read(tile, treeSize) {
      if (!tileExistsAt(tile, treeSize))
        throw new TresorError('TRESOR_ERR_NOT_FOUND', 'the log holds no such tile (yet)');
      if (
        archive !== undefined &&
        (tile.level === 0 || tile.level === 'entries') &&
        tile.width === TILE_WIDTH &&
        tileLeafRange(tile).end <= archive.end()
      ) {
        const sealed = await archive.log.tile(formatTilePath(tile));
        if (sealed !== undefined) return sealed;
      }
      if (tile.level !== 'entries') {
        const hashes = await reader.levelHashes(
          treeLevelOfTile(tile.level),
          tile.index * TILE_WIDTH,
          tile.width,
        );
        return encodeHashTile(hashes);
      }
      const { start, end } = tileLeafRange(tile);
      const rows = await reader.entries({ from: start, limit: tile.width, below: end });
      if (rows.length !== tile.width || rows.some((row, i) => row.index !== start + i))
        throw new TresorError('TRESOR_ERR_INTERNAL', 'an audit entry is missing');
      return encodeEntryBundle(rows.map((row) => Buffer.from(row.leaf, 'utf8')));
    },
  };
}
