/**
 * Reading the audit log that the sequencer writes: entries (all, or one tenant's), signed
 * checkpoints, and RFC 9162 inclusion and consistency proofs against any tree size the log has
 * reached.
 *
 * Proofs come from the stored perfect-subtree roots (audit_nodes): the proof algorithms of
 * merkle.ts ask a HashSource for O(log² n) nodes, and which nodes they ask for depends only on the
 * index and sizes, never on hash values. So a proof is computed twice: once against a recording
 * source that answers placeholder hashes, to learn which nodes are needed, then, after ONE query
 * fetched them, against the real ones. No proof reads the whole log.
 *
 * Below the archived end (archived-log.ts; 0 unless segments replace the live rows) the leaves and
 * the nodes of levels 0–7 come from the sealed segments, checked whole when opened; nodes of level 8
 * and up, and everything at or above the end, from the store as before.
 */
import { type Kysely, sql } from 'kysely';
import { TresorError } from '../errors.ts';
import { type ArchivedRange, FIRST_LEVEL_KEPT_BELOW_ARCHIVE } from './archived-log.ts';
import {
  LEAF_BLOCK_SPAN,
  readLeaves,
  readTenantLeaves,
  type StoredLeaf,
  storedLogSize,
  tenantOfLeaf,
} from './leaf-store.ts';
import { storedLevel, type WithAuditLog } from './log-schema.ts';
import {
  consistencyProof,
  HASH_SIZE,
  type HashSource,
  inclusionProof,
  rootFromLeafHashes,
  subtreeRoot,
} from './merkle.ts';

export interface LogEntryRow {
  index: number;
  tenant: string | null;
  /** The canonical JSON text (leaf bytes). */
  leaf: string;
  /** SHA-256(0x00 ‖ leaf), base64. */
  leafHash: string;
}

export interface StoredCheckpoint {
  size: number;
  note: string;
  at: string;
}

export interface AuditLogReader {
  /** Entries with index ≥ from (of one tenant when given), in index order, at most `limit`. */
  entries(options: {
    from: number;
    limit: number;
    tenant?: string | null;
    below?: number;
  }): Promise<LogEntryRow[]>;
  latestCheckpoint(): Promise<StoredCheckpoint | null>;
  checkpointAt(size: number): Promise<StoredCheckpoint | null>;
  /** Checkpoints of trees larger than `size`, smallest first. */
  checkpointsAfter(size: number, limit: number): Promise<StoredCheckpoint[]>;
  inclusion(index: number, treeSize: number): Promise<Buffer[]>;
  consistency(from: number, to: number): Promise<Buffer[]>;
  /** MTH of the first `size` leaves, from stored nodes. */
  rootAt(size: number): Promise<Buffer>;
  /**
   * The perfect-subtree hashes of tree `level` at indices [from, from + count), in order (what a
   * tlog-tiles hash tile holds, tiles.ts); every one must be stored or computable from stored leaves.
   */
  levelHashes(level: number, from: number, count: number): Promise<Buffer[]>;
}

type EntriesQuery = Parameters<AuditLogReader['entries']>[0];

const PLACEHOLDER = Buffer.alloc(HASH_SIZE);
const NODES_PER_QUERY = 400;

/** Whether node (level, idx) lies below `end` at a level the store drops there (levels 0–7). */
function archivedNode(c: { level: number; idx: number }, end: number): boolean {
  return c.level < FIRST_LEVEL_KEPT_BELOW_ARCHIVE && (c.idx + 1) * 2 ** c.level <= end;
}

/** The hashes of level `level` at [from, from + count) from the archive's leaf hashes. */
async function archivedLevelHashes(
  archive: ArchivedRange,
  level: number,
  from: number,
  count: number,
): Promise<Buffer[]> {
  const span = 2 ** level;
  const leaves = await archive.log.leafHashes(from * span, count * span);
  if (level === 0) return leaves;
  return Array.from({ length: count }, (_, i) => rootFromLeafHashes(leaves.slice(i * span, (i + 1) * span)));
}

/**
 * The hashes of perfect subtrees (level, idx), keyed `level/idx`: stored ones read in queries of at
 * most NODES_PER_QUERY, the unstored levels 1–3 (storedLevel) recomputed from the leaf hashes they
 * cover, those of levels 0–7 below the archived end computed from the segments' leaf hashes. A node
 * the store lacks is left out (the caller decides what that means).
 */
export async function readTreeNodes(
  db: Kysely<WithAuditLog>,
  wanted: readonly { level: number; idx: number }[],
  archive?: ArchivedRange,
): Promise<Map<string, Buffer>> {
  const end = archive?.end() ?? 0;
  const found = new Map<string, Buffer>();
  const live: { level: number; idx: number }[] = [];
  for (const c of wanted) {
    if (archive !== undefined && archivedNode(c, end)) {
      const [hash] = await archivedLevelHashes(archive, c.level, c.idx, 1);
      if (hash !== undefined) found.set(`${c.level}/${c.idx}`, hash);
    } else live.push(c);
  }
  const fetch = new Map<string, { level: number; idx: number }>();
  for (const c of live) {
    if (storedLevel(c.level)) fetch.set(`${c.level}/${c.idx}`, c);
    else
      for (let i = c.idx * 2 ** c.level; i < (c.idx + 1) * 2 ** c.level; i++)
        fetch.set(`0/${i}`, { level: 0, idx: i });
  }
  const coordinates = [...fetch.values()];
  for (let i = 0; i < coordinates.length; i += NODES_PER_QUERY) {
    const chunk = coordinates.slice(i, i + NODES_PER_QUERY);
    const rows = await db
      .selectFrom('audit_nodes')
      .select(['level', 'idx', 'hash'])
      .where(
        // Cast: PostgreSQL types a VALUES list of bare parameters as text, and integer = text is
        // no operator there (42883); SQLite takes the cast as a no-op on an integer.
        sql<boolean>`(level, idx) IN (VALUES ${sql.join(
          chunk.map((c) => sql`(CAST(${c.level} AS BIGINT), CAST(${c.idx} AS BIGINT))`),
        )})`,
      )
      .execute();
    for (const row of rows) found.set(`${row.level}/${row.idx}`, Buffer.from(row.hash));
  }
  for (const c of live) {
    if (storedLevel(c.level)) continue;
    const leaves: Buffer[] = [];
    for (let i = c.idx * 2 ** c.level; i < (c.idx + 1) * 2 ** c.level; i++) {
      const hash = found.get(`0/${i}`);
      if (hash === undefined) break;
      leaves.push(hash);
    }
    if (leaves.length === 2 ** c.level) found.set(`${c.level}/${c.idx}`, rootFromLeafHashes(leaves));
  }
  return found;
}

/**
 * Entries below the archived end (`below` is at most it), from the segments: as the live reader
 * reads them, a tenant's picked by the tenant their leaf names (what the sequencer indexes).
 */
async function archivedEntries(
  archive: ArchivedRange,
  { from, limit, tenant, below }: EntriesQuery & { below: number },
): Promise<LogEntryRow[]> {
  const rows: LogEntryRow[] = [];
  if (limit <= 0) return rows;
  const step = tenant === undefined ? limit : Math.max(limit, LEAF_BLOCK_SPAN);
  for (let at = from; at < below && rows.length < limit; at += step) {
    const count = Math.min(step, below - at);
    const [leaves, hashes] = await Promise.all([
      archive.log.leaves(at, count),
      archive.log.leafHashes(at, count),
    ]);
    leaves.forEach((bytes, i) => {
      const leaf = bytes.toString('utf8');
      const named = tenant === undefined ? null : tenantOfLeaf(leaf);
      if (tenant !== undefined && named !== tenant) return;
      if (rows.length >= limit) return;
      rows.push({
        index: at + i,
        tenant: tenant === undefined ? tenantOfLeaf(leaf) : named,
        leaf,
        leafHash: (hashes[i] as Buffer).toString('base64'),
      });
    });
  }
  return rows;
}

/** The stored level-0 hashes of `indices` (increasing), by index. */
async function leafHashesOf(
  db: Kysely<WithAuditLog>,
  indices: readonly number[],
): Promise<Map<number, Buffer>> {
  const found = new Map<number, Buffer>();
  const first = indices[0];
  const last = indices[indices.length - 1];
  if (first === undefined || last === undefined) return found;
  const wanted = new Set(indices);
  // One range read along the primary key when the indices are dense, else by list.
  const rows =
    last - first < 4 * indices.length
      ? await db
          .selectFrom('audit_nodes')
          .select(['idx', 'hash'])
          .where('level', '=', 0)
          .where('idx', '>=', first)
          .where('idx', '<=', last)
          .execute()
      : await db
          .selectFrom('audit_nodes')
          .select(['idx', 'hash'])
          .where('level', '=', 0)
          .where('idx', 'in', indices)
          .execute();
  for (const row of rows) if (wanted.has(Number(row.idx))) found.set(Number(row.idx), Buffer.from(row.hash));
  return found;
}

/**
 * The log's reader over its store; `archive` (default: none, end 0) serves the range below the
 * archived end from the sealed segments.
 */
export function createAuditLogReader(
  db: Kysely<WithAuditLog>,
  size: () => number,
  archive?: ArchivedRange,
): AuditLogReader {
  const archivedEnd = () => (archive === undefined ? 0 : archive.end());

  async function withNodes<T>(compute: (source: HashSource) => T): Promise<T> {
    const wanted = new Map<string, { level: number; idx: number }>();
    const record = (level: number, idx: number): Buffer => {
      wanted.set(`${level}/${idx}`, { level, idx });
      return PLACEHOLDER;
    };
    compute({ leafHash: (i) => record(0, i), perfectSubtreeHash: record });
    const found = await readTreeNodes(db, [...wanted.values()], archive);
    const lookup = (level: number, idx: number): Buffer => {
      const hash = found.get(`${level}/${idx}`);
      if (!hash) throw new TresorError('TRESOR_ERR_INTERNAL', 'an audit tree node is missing');
      return hash;
    };
    return compute({ leafHash: (i) => lookup(0, i), perfectSubtreeHash: lookup });
  }

  async function liveEntries({ from, limit, tenant, below }: EntriesQuery): Promise<LogEntryRow[]> {
    let leaves: StoredLeaf[];
    if (typeof tenant === 'string') {
      leaves = await readTenantLeaves(db, tenant, {
        from,
        limit,
        ...(below === undefined ? {} : { below }),
      });
    } else if (tenant === undefined) {
      leaves = await readLeaves(db, from, Math.min(below ?? Number.MAX_SAFE_INTEGER, from + limit));
    } else {
      // The entries naming no tenant are in no index: read in ranges and picked.
      const end = Math.min(below ?? Number.MAX_SAFE_INTEGER, await storedLogSize(db));
      const step = Math.max(limit, LEAF_BLOCK_SPAN);
      leaves = [];
      for (let at = from; at < end && leaves.length < limit; at += step)
        for (const leaf of await readLeaves(db, at, Math.min(end, at + step)))
          if (tenantOfLeaf(leaf.leaf) === null) leaves.push(leaf);
      leaves = leaves.slice(0, limit);
    }
    const hashes = await leafHashesOf(
      db,
      leaves.map((l) => l.index),
    );
    const rows: LogEntryRow[] = [];
    for (const { index, leaf } of leaves) {
      const hash = hashes.get(index);
      // As the join it replaces: an entry without its leaf hash is not served.
      if (hash === undefined) continue;
      rows.push({
        index,
        tenant: typeof tenant === 'string' ? tenant : tenantOfLeaf(leaf),
        leaf,
        leafHash: hash.toString('base64'),
      });
    }
    return rows;
  }

  async function liveLevelHashes(level: number, from: number, count: number): Promise<Buffer[]> {
    if (storedLevel(level)) {
      // One range read along the primary key (level, idx): a tile is 256 consecutive nodes.
      const rows = await db
        .selectFrom('audit_nodes')
        .select(['idx', 'hash'])
        .where('level', '=', level)
        .where('idx', '>=', from)
        .where('idx', '<', from + count)
        .orderBy('idx')
        .execute();
      if (rows.length !== count || rows.some((row, i) => Number(row.idx) !== from + i))
        throw new TresorError('TRESOR_ERR_INTERNAL', 'an audit tree node is missing');
      return rows.map((row) => Buffer.from(row.hash));
    }
    const wanted = Array.from({ length: count }, (_, i) => ({ level, idx: from + i }));
    const found = await readTreeNodes(db, wanted);
    return wanted.map((c) => {
      const hash = found.get(`${c.level}/${c.idx}`);
      if (!hash) throw new TresorError('TRESOR_ERR_INTERNAL', 'an audit tree node is missing');
      return hash;
    });
  }

  function checkSize(treeSize: number): void {
    if (treeSize > size()) {
      throw new TresorError('TRESOR_ERR_VALIDATION', 'the log has not reached that tree size', {
        size: size(),
      });
    }
  }

  return {
    async entries({ from, limit, tenant, below }) {
      const end = archivedEnd();
      if (archive === undefined || from >= end) return liveEntries({ from, limit, tenant, below });
      const archived = await archivedEntries(archive, {
        from,
        limit,
        tenant,
        below: Math.min(below ?? Number.MAX_SAFE_INTEGER, end),
      });
      if (archived.length >= limit || (below !== undefined && below <= end)) return archived;
      const rest = await liveEntries({ from: end, limit: limit - archived.length, tenant, below });
      return [...archived, ...rest];
    },
    async latestCheckpoint() {
      const row = await db
        .selectFrom('audit_checkpoints')
        .select(['size', 'note', 'at'])
        .orderBy('size', 'desc')
        .limit(1)
        .executeTakeFirst();
      return row ? { size: Number(row.size), note: row.note, at: row.at } : null;
    },
    async checkpointAt(treeSize) {
      const row = await db
        .selectFrom('audit_checkpoints')
        .select(['size', 'note', 'at'])
        .where('size', '=', treeSize)
        .executeTakeFirst();
      return row ? { size: Number(row.size), note: row.note, at: row.at } : null;
    },
    async checkpointsAfter(treeSize, limit) {
      const rows = await db
        .selectFrom('audit_checkpoints')
        .select(['size', 'note', 'at'])
        .where('size', '>', treeSize)
        .orderBy('size')
        .limit(limit)
        .execute();
      return rows.map((row) => ({ size: Number(row.size), note: row.note, at: row.at }));
    },
    async inclusion(index, treeSize) {
      checkSize(treeSize);
      if (index >= treeSize) throw new TresorError('TRESOR_ERR_VALIDATION', 'index must be below treeSize');
      return withNodes((source) => inclusionProof(source, index, treeSize));
    },
    async consistency(from, to) {
      checkSize(to);
      if (from > to) throw new TresorError('TRESOR_ERR_VALIDATION', 'from must not exceed to');
      if (from === 0)
        throw new TresorError('TRESOR_ERR_VALIDATION', 'from must be at least 1 (RFC 9162 §2.1.4)');
      return withNodes((source) => consistencyProof(source, from, to));
    },
    async rootAt(treeSize) {
      checkSize(treeSize);
      return withNodes((source) => subtreeRoot(source, 0, treeSize));
    },
    async levelHashes(level, from, count) {
      checkSize((from + count) * 2 ** level);
      // The nodes of levels 0–7 wholly below the archived end come from the segments.
      const archived =
        archive === undefined || level >= FIRST_LEVEL_KEPT_BELOW_ARCHIVE
          ? 0
          : Math.max(0, Math.min(count, Math.floor(archivedEnd() / 2 ** level) - from));
      if (archive === undefined || archived === 0) return liveLevelHashes(level, from, count);
      const head = await archivedLevelHashes(archive, level, from, archived);
      if (archived === count) return head;
      return [...head, ...(await liveLevelHashes(level, from + archived, count - archived))];
    },
  };
}
