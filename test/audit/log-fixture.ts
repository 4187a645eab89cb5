/**
 * A real control store holding an audit log, as the sequencer leaves it: canonical entries in leaf
 * blocks (src/audit/leaf-store.ts), every perfect-subtree node of the RFC 9162 tree in `audit_nodes`, a signed checkpoint every
 * `checkpointEvery` entries and at the end of each batch in `audit_checkpoints`, and each checkpoint
 * also recorded by the witness. Tests then tamper with the file as an attacker holding it would.
 *
 * The schema comes from the control store's own migrations (openSqliteStore). Small logs are written
 * through the store (`store.write`); `raw: true` inserts with better-sqlite3 in one transaction, for
 * the million-entry benchmark.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { CompiledQuery } from 'kysely';
import { canonicalJson } from '../../src/audit/canonical.ts';
import { signCheckpoint } from '../../src/audit/checkpoint.ts';
import { type LeafBlockRow, leafStatements, tailBlockQuery, tailOf } from '../../src/audit/leaf-store.ts';
import type { WithAuditLog } from '../../src/audit/log-schema.ts';
import { InMemoryMerkleTree, leafHash } from '../../src/audit/merkle.ts';
import { ed25519NoteSigner, ed25519VerifierKey, type NoteSigner } from '../../src/audit/note.ts';
import { createWitness, type Witness } from '../../src/audit/witness.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import { type LeafRow, readLeafRows, writeLeafRows } from './leaf-rows.ts';

export const FIXTURE_ORIGIN = 'tresor.test/audit';
export const FIXTURE_KEY_NAME = 'tresor-keyd/audit-checkpoint';
const T0 = Date.parse('2026-11-02T09:00:00.000Z');

export interface AuditEntry {
  index: number;
  at: string;
  actor: { kind: 'api-key'; id: string };
  tenant: string;
  action: string;
  target: { collection: string; recordIds: string[]; fields: string[] };
  outcome: 'success' | 'failure' | 'denied';
  requestId: string;
  sourceAddress: string;
  userAgent: string;
}

/** The i-th entry of every fixture: deterministic, about 385 bytes of canonical JSON. */
export function fixtureEntry(index: number): AuditEntry {
  const h = (index * 2654435761) % 2 ** 32;
  const hex = h.toString(16).padStart(8, '0');
  return {
    index,
    at: new Date(T0 + index * 250).toISOString(),
    actor: { kind: 'api-key', id: `ak_${hex}${(index % 97).toString(16).padStart(2, '0')}` },
    tenant: `tn_${(index % 13).toString(36).padStart(6, '0')}`,
    action: index % 5 === 0 ? 'record.update' : 'record.read',
    target: {
      collection: index % 3 === 0 ? 'invoices' : 'patients',
      recordIds: [`rec_${hex}${hex}`],
      fields: ['email', 'name'],
    },
    outcome: index % 17 === 0 ? 'denied' : 'success',
    requestId: `${hex}-${(index % 65536).toString(16).padStart(4, '0')}-4c1e-9d2b-${hex}${hex.slice(0, 4)}`,
    sourceAddress: `203.0.113.${index % 254}`,
    userAgent: 'tresor-sdk/0.1.0 node/20.20.2',
  };
}

export interface AuditLogFixture {
  dataDir: string;
  dbPath: string;
  witnessDir: string;
  witness: Witness;
  origin: string;
  verifierKey: string;
  signer: NoteSigner;
  /** Entries written so far. */
  readonly size: number;
  /** Sizes of the checkpoints written so far. */
  readonly checkpointSizes: readonly number[];
  /** Appends `count` entries with their nodes and checkpoints (and records them with the witness). */
  append(count: number): Promise<void>;
  /**
   * Runs `fn` on the file opened read-write with the append-only triggers dropped: an attacker. The
   * leaves are shown as the earlier table audit_log (idx, tenant, leaf) while `fn` runs; what it
   * leaves there is stored as leaf blocks again (leaf-rows.ts).
   */
  tamper(fn: (db: Database.Database) => void): void;
  /** Signs a checkpoint of this fixture's origin (or another), for forged-checkpoint tests. */
  signTree(size: number, rootHash: Buffer, origin?: string): Promise<string>;
  /** Root of the first `size` leaves of the log as written. */
  root(size: number): Buffer;
}

export interface AuditLogFixtureOptions {
  entries: number;
  checkpointEvery: number;
  /** Parent folder; a fresh temporary one by default. */
  dir?: string;
  raw?: boolean;
  /** Record checkpoints with the witness (default true). */
  witness?: boolean;
  /** The i-th entry, instead of fixtureEntry(i): it must name `index: i` and a tenant. */
  entry?: (index: number) => { index: number; tenant: string };
}

const temporaryFolders: string[] = [];

/** Removes the temporary folders of every fixture built without `dir` (call it in `after`). */
export function removeAuditLogFixtures(): void {
  for (const dir of temporaryFolders.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export async function buildAuditLogFixture(options: AuditLogFixtureOptions): Promise<AuditLogFixture> {
  const dataDir = options.dir ?? mkdtempSync(join(tmpdir(), 'tresor-audit-'));
  if (options.dir === undefined) temporaryFolders.push(dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const dbPath = join(dataDir, 'control.sqlite');
  const witnessDir = join(dataDir, 'witness');
  const witness = createWitness(witnessDir);
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
  const signer = ed25519NoteSigner({ name: FIXTURE_KEY_NAME, publicKey: raw }, async (m) =>
    sign(null, m, privateKey),
  );
  const verifierKey = ed25519VerifierKey(FIXTURE_KEY_NAME, raw);
  const tree = new InMemoryMerkleTree();
  const checkpointSizes: number[] = [];

  const store = await openSqliteStore<ControlDB>(dbPath, controlStoreMigrations);
  await store.close();

  const signTree = (size: number, rootHash: Buffer, origin = FIXTURE_ORIGIN) =>
    signCheckpoint({ origin, size, rootHash, extensions: [] }, [signer]);

  async function append(count: number): Promise<void> {
    const from = tree.size;
    const to = from + count;
    const logRows: { idx: number; tenant: string; leaf: string }[] = [];
    const nodeRows: { level: number; idx: number; hash: Buffer }[] = [];
    const sizes: number[] = [];
    for (let i = from; i < to; i++) {
      const entry = options.entry === undefined ? fixtureEntry(i) : options.entry(i);
      const leaf =
        options.raw && options.entry === undefined ? rawCanonical(fixtureEntry(i)) : canonicalJson(entry);
      if (options.raw && i % 10_007 === 0 && leaf !== canonicalJson(entry)) {
        throw new Error('rawCanonical disagrees with canonicalJson');
      }
      tree.append(leafHash(Buffer.from(leaf, 'utf8')));
      logRows.push({ idx: i, tenant: entry.tenant, leaf });
      // Leaf i completes the perfect subtree of level ℓ ending at it whenever 2^ℓ divides i + 1.
      for (let level = 0, span = 1; (i + 1) % span === 0; level++, span *= 2) {
        nodeRows.push({
          level,
          idx: (i + 1) / span - 1,
          hash: tree.perfectSubtreeHash(level, (i + 1) / span - 1),
        });
      }
      if ((i + 1) % options.checkpointEvery === 0 || i + 1 === to) sizes.push(i + 1);
    }
    const notes: { size: number; note: string; at: string }[] = [];
    for (const size of sizes) {
      notes.push({
        size,
        note: await signTree(size, tree.root(size)),
        at: new Date(T0 + size * 250).toISOString(),
      });
    }
    const entries = logRows.map((r) => [r.idx, r.tenant, r.leaf] as const);
    if (options.raw) {
      const db = new Database(dbPath);
      const insertNode = db.prepare('INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)');
      const insertCheckpoint = db.prepare('INSERT INTO audit_checkpoints (size, note, at) VALUES (?, ?, ?)');
      db.transaction(() => {
        // The leaves as the sequencer stores them (src/audit/leaf-store.ts), after the log's tail.
        const tailQuery = tailBlockQuery(from);
        const tail = tailOf(
          tailQuery === null
            ? []
            : (db.prepare(tailQuery.sql).all(...tailQuery.parameters) as LeafBlockRow[]),
          from,
        );
        for (const st of leafStatements(entries, tail)) db.prepare(st.sql).run(...st.parameters);
        for (const r of nodeRows) insertNode.run(r.level, r.idx, r.hash);
        for (const r of notes) insertCheckpoint.run(r.size, r.note, r.at);
      })();
      db.close();
    } else {
      const s = await openSqliteStore<ControlDB>(dbPath, controlStoreMigrations);
      try {
        await s.write(async (trx) => {
          const tailQuery = tailBlockQuery(from);
          const tailRows =
            tailQuery === null
              ? []
              : (await trx.executeQuery<LeafBlockRow>(CompiledQuery.raw(tailQuery.sql, tailQuery.parameters)))
                  .rows;
          for (const st of leafStatements(entries, tailOf(tailRows, from)))
            await trx.executeQuery(CompiledQuery.raw(st.sql, st.parameters));
          for (let i = 0; i < nodeRows.length; i += 300) {
            await trx
              .insertInto('audit_nodes')
              .values(nodeRows.slice(i, i + 300))
              .execute();
          }
          if (notes.length > 0) await trx.insertInto('audit_checkpoints').values(notes).execute();
        });
      } finally {
        await s.close();
      }
    }
    checkpointSizes.push(...sizes);
    if (options.witness !== false) for (const { note } of notes) await witness.record(note);
  }

  await append(options.entries);
  return {
    dataDir,
    dbPath,
    witnessDir,
    witness,
    origin: FIXTURE_ORIGIN,
    verifierKey,
    signer,
    get size() {
      return tree.size;
    },
    checkpointSizes,
    append,
    tamper(fn) {
      const db = new Database(dbPath);
      try {
        for (const table of [
          'audit_leaves',
          'audit_tenants',
          'audit_tenant_entries',
          'audit_nodes',
          'audit_checkpoints',
        ]) {
          db.exec(`DROP TRIGGER IF EXISTS ${table}_no_update; DROP TRIGGER IF EXISTS ${table}_no_delete;`);
        }
        db.exec('DROP TRIGGER IF EXISTS audit_leaves_grow_only');
        // The leaves as the earlier row-per-leaf table, for the test to change as it likes.
        db.exec('CREATE TABLE audit_log (idx INTEGER PRIMARY KEY, tenant TEXT, leaf TEXT)');
        const insert = db.prepare('INSERT INTO audit_log (idx, tenant, leaf) VALUES (?, ?, ?)');
        for (const r of readLeafRows(db)) insert.run(r.idx, r.tenant, r.leaf);
        const snapshot = () =>
          db
            .prepare('SELECT idx, tenant, CAST(leaf AS BLOB) AS leaf FROM audit_log ORDER BY idx')
            .all() as LeafRow[];
        const before = snapshot();
        fn(db);
        const rows = snapshot();
        const same =
          rows.length === before.length &&
          rows.every((r, i) => {
            const b = before[i] as LeafRow;
            return (
              r.idx === b.idx &&
              r.tenant === b.tenant &&
              Buffer.compare(r.leaf as Buffer, b.leaf as Buffer) === 0
            );
          });
        if (!same) writeLeafRows(db, rows);
        db.exec('DROP TABLE audit_log');
      } finally {
        db.close();
      }
    },
    signTree,
    root: (size) => tree.root(size),
  };
}

// The canonical JSON of a fixture entry written by hand (keys in UTF-16 order, no escapes needed):
// canonicalize runs at ~50,000 entries/s, too slow to build a million-entry benchmark log.
function rawCanonical(e: AuditEntry): string {
  const s = JSON.stringify;
  return (
    `{"action":${s(e.action)},"actor":{"id":${s(e.actor.id)},"kind":${s(e.actor.kind)}},"at":${s(e.at)},` +
    `"index":${e.index},"outcome":${s(e.outcome)},"requestId":${s(e.requestId)},"sourceAddress":${s(e.sourceAddress)},` +
    `"target":{"collection":${s(e.target.collection)},"fields":${s(e.target.fields)},"recordIds":${s(e.target.recordIds)}},` +
    `"tenant":${s(e.tenant)},"userAgent":${s(e.userAgent)}}`
  );
}

/** The tables of a log (src/audit/log-schema.ts), as copyFixtureLog copies them. */
const LOG_TABLES = [
  'audit_leaves',
  'audit_tenants',
  'audit_tenant_entries',
  'audit_nodes',
  'audit_checkpoints',
];

/** Copies a fixture's log, as the sequencer wrote it, into a test's control store (SQLite or PostgreSQL). */
export async function copyFixtureLog(fixture: AuditLogFixture, store: Store<WithAuditLog>): Promise<void> {
  const file = new Database(fixture.dbPath, { readonly: true });
  try {
    for (const table of LOG_TABLES) {
      const rows = file.prepare(`SELECT * FROM ${table}`).all() as Record<string, unknown>[];
      await store.write(async (trx) => {
        for (let i = 0; i < rows.length; i += 200)
          await trx
            .insertInto(table as 'audit_nodes')
            .values(rows.slice(i, i + 200) as never)
            .execute();
      });
    }
  } finally {
    file.close();
  }
}
