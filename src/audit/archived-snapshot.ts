/**
 * A verification snapshot (log-reader.ts, log-reader-pg.ts: AuditLogSnapshot) whose range below the
 * archived end is read from the sealed segments (archived-log.ts), so `verifyAuditLogSnapshot`
 * checks the whole log — the archived entries against their segments' leaf hashes, and every entry
 * in the one recomputed tree against the signed checkpoints — once the live store holds only the
 * rows at or above the end.
 *
 * The entries below the end come from the segments only: live rows still there (before pruning) are
 * passed over, so each index is handed to the verifier once. A live batch that straddles the end
 * (possible only before pruning) is handed on entry by entry from the end.
 */
import type { ArchivedLog } from './archived-log.ts';
import type { AuditLogSnapshot } from './log-reader.ts';
import { TILE_WIDTH } from './tiles.ts';
import type { LeafBatch, VerifyEntry } from './verify.ts';

export function withArchivedRange(
  snapshot: AuditLogSnapshot,
  archive: ArchivedLog,
  end: number,
): AuditLogSnapshot {
  async function* archived(): AsyncIterableIterator<VerifyEntry> {
    for (let at = 0; at < end; at += TILE_WIDTH) {
      const count = Math.min(TILE_WIDTH, end - at);
      const [leaves, hashes] = await Promise.all([archive.leaves(at, count), archive.leafHashes(at, count)]);
      for (let i = 0; i < count; i++)
        yield {
          index: at + i,
          leaf: (leaves[i] as Buffer).toString('utf8'),
          storedLeafHash: hashes[i] ?? null,
        };
    }
  }

  /** The live snapshot's items at or above the end. */
  async function* live(rows?: number): AsyncIterableIterator<LeafBatch | VerifyEntry> {
    for await (const e of snapshot.leafBatches(rows)) {
      if (!('starts' in e)) {
        if (e.index >= end) yield e;
        continue;
      }
      if (e.first >= end) {
        yield e;
        continue;
      }
      const bytes = Buffer.from(e.bytes.buffer, e.bytes.byteOffset, e.bytes.length);
      for (let i = Math.max(0, end - e.first); i < e.count; i++)
        yield {
          index: e.first + i,
          leaf: bytes.toString('utf8', (e.starts[i] as number) + 1, e.starts[i + 1] as number),
          storedLeafHash: e.storedLeafHashes.slice(i * 32, i * 32 + 32),
        };
    }
  }

  return {
    location: snapshot.location,
    checkpoints: () => snapshot.checkpoints(),
    /** The archived entries and the live rows at or above the end (this reads the live rows once). */
    async size() {
      let n = end;
      for await (const e of live()) n += 'starts' in e ? e.count : 1;
      return n;
    },
    async *leafBatches(rows) {
      yield* archived();
      yield* live(rows);
    },
    close: () => snapshot.close(),
  };
}
