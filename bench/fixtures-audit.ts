/**
 * A long audit log made directly in a control store, for the scale bench (scale-size.ts): what
 * millions of audited requests would leave in `audit_log` and `audit_nodes`, without the hours they
 * would take. It writes through the sequencer's own functions: each synthetic event (a vault
 * `record.read` event as auditEvent builds it: api-key actor, tenant, collection, record id, field
 * names, request id, address, user agent) goes through sequenceBatch — its index added, RFC 8785
 * canonical form, leaf hash, tree grown from the stored peaks — and logStatements' INSERTs, in one
 * control-store write per batch, as a sequencer pass writes them. It signs nothing: the next start of
 * a server on the store signs a checkpoint of the grown tree with keyd (its checkpointer, with the
 * consistency proof from keyd's last tree), and that checkpoint is what `tresor audit verify` checks.
 *
 * Run it only on a store no server has open: a running sequencer would not see the new entries.
 */
import { CompiledQuery, type Kysely } from 'kysely';
import { type LeafBlockRow, storedLogSize, tailBlockQuery, tailOf } from '../src/audit/leaf-store.ts';
import { readTreeNodes } from '../src/audit/log.ts';
import { logStatements } from '../src/audit/log-append.ts';
import type { WithAuditLog } from '../src/audit/log-schema.ts';
import { MerkleAccumulator, peakPositions } from '../src/audit/merkle.ts';
import { sequenceBatch, unpackHashes } from '../src/audit/sequence-batch.ts';
import type { Store } from '../src/store/types.ts';
import { auditEvent, VaultAction } from '../src/vault/vault-audit.ts';

/** Entries per sequenceBatch and per store write. */
const BATCH = 8192;
const T0 = Date.parse('2026-11-02T09:00:00.000Z');

/** The log's size and peaks as stored (what the sequencer's restore reads). */
async function storedTree(db: Kysely<WithAuditLog>): Promise<MerkleAccumulator> {
  const size = await storedLogSize(db);
  const positions = peakPositions(size);
  const nodes = await readTreeNodes(
    db,
    positions.map((p) => ({ level: p.level, idx: p.index })),
  );
  const peaks = positions.map((p) => {
    const hash = nodes.get(`${p.level}/${p.index}`);
    if (!hash) throw new Error(`audit tree node ${p.level}/${p.index} is missing`);
    return hash;
  });
  return MerkleAccumulator.restore(size, peaks);
}

/** The i-th synthetic event's JSON, as a tenant store's outbox would hold it. */
function eventJson(tenant: string, i: number): string {
  const h = ((i * 2654435761) % 2 ** 32).toString(16).padStart(8, '0');
  return JSON.stringify(
    auditEvent(
      {
        actor: { kind: 'api-key', id: `ak_${h}${(i % 97).toString(16).padStart(2, '0')}` },
        requestId: `${h}-${(i % 65536).toString(16).padStart(4, '0')}-4c1e-9d2b-${h}${h.slice(0, 4)}`,
        sourceAddress: `203.0.113.${i % 254}`,
        userAgent: 'tresor-sdk/0.1.0 node/20.20.2',
      },
      new Date(T0 + i * 250).toISOString(),
      tenant,
      i % 5 === 0 ? VaultAction.recordUpdate : VaultAction.recordRead,
      { collection: 'people', recordIds: [`rec_${h}${h}${h}${h}`], fields: ['email', 'name'] },
    ),
  );
}

export interface AuditFixtureResult {
  /** The log's size before and after. */
  from: number;
  size: number;
  seconds: number;
}

/**
 * Appends entries to the control store's log until it holds `size` entries (nothing if it holds
 * that many already). `numberedParameters`: PostgreSQL ($1…), as the sequencer's own flag.
 */
export async function growAuditLog(options: {
  control: Store<WithAuditLog>;
  size: number;
  tenant: string;
  numberedParameters: boolean;
  progress?(size: number): void;
}): Promise<AuditFixtureResult> {
  const started = process.hrtime.bigint();
  const db = options.control.db as Kysely<WithAuditLog>;
  let tree = await storedTree(db);
  const from = tree.size;
  const numbered = (statement: string) => {
    let n = 0;
    return statement.replace(/\?/g, () => `$${++n}`);
  };
  while (tree.size < options.size) {
    const size = tree.size;
    const count = Math.min(BATCH, options.size - size);
    const events = Array.from({ length: count }, (_, k) => eventJson(options.tenant, size + k));
    const batch = sequenceBatch({ size, peaks: Buffer.concat(tree.peaks()), events });
    const hashes = unpackHashes(batch.nodeHashes);
    await options.control.write(async (trx) => {
      const tailQuery = tailBlockQuery(size);
      const tailRows =
        tailQuery === null
          ? []
          : (
              await trx.executeQuery<LeafBlockRow>(
                CompiledQuery.raw(
                  options.numberedParameters ? numbered(tailQuery.sql) : tailQuery.sql,
                  tailQuery.parameters,
                ),
              )
            ).rows;
      const statements = logStatements({
        entries: batch.leaves.map((leaf, k) => [size + k, options.tenant, leaf] as const),
        tail: tailOf(tailRows, size),
        nodes: hashes.map(
          (hash, k) => [batch.nodeLevels[k] as number, batch.nodeIndexes[k] as number, hash] as const,
        ),
        cursors: [],
      });
      for (const { sql, parameters } of statements)
        await trx.executeQuery(
          CompiledQuery.raw(options.numberedParameters ? numbered(sql) : sql, parameters),
        );
    });
    tree = MerkleAccumulator.restore(size + count, unpackHashes(batch.peaks));
    options.progress?.(tree.size);
  }
  return { from, size: tree.size, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}
