// backends: sqlite postgres
/**
 * Reading the archived part of the audit log from sealed segments (src/audit/archived-log.ts and
 * the readers that take it: log.ts, tile-reader.ts), with a real keyd process and two real folder
 * destinations. A log of 3,000 entries is copied into this run's control store (SQLite or
 * PostgreSQL), its older full tiles sealed into four segments, and a reader with the archived end
 * at 2,048 must give byte for byte what the live reader gives — entries, inclusion and consistency
 * proofs, roots, level hashes, tiles — first with the live rows still there, then with the live
 * leaves, tenant entries and nodes of levels 0–7 below the end deleted (the trigger lifted in this
 * test's own store), so the segments are what answers. A proof of an archived entry verifies with
 * Go-compatible tile paths against the signed checkpoint; a tampered tile on one destination is read
 * from the other, on both it is a clear 503 error; two readers of one segment open it once.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { type ArchivedLog, type ArchivedRange, createArchivedLog } from '../../src/audit/archived-log.ts';
import { createAuditArchiver } from '../../src/audit/archiver.ts';
import { type AuditLogReader, createAuditLogReader } from '../../src/audit/log.ts';
import { verifyAuditLogSnapshot } from '../../src/audit/log-reader.ts';
import type { WithAuditLog } from '../../src/audit/log-schema.ts';
import { segmentManifestKey, segmentObjectKey } from '../../src/audit/segment.ts';
import { type AuditTileReader, createAuditTileReader } from '../../src/audit/tile-reader.ts';
import { parseTilePath, type TileCoordinate } from '../../src/audit/tiles.ts';
import { verifyAuditLogWithArchive } from '../../src/audit/verify-archived.ts';
import { ERRORS, TresorError } from '../../src/errors.ts';
import type { Destination } from '../../src/objects/destination.ts';
import { createFolderDestination } from '../../src/objects/folder-destination.ts';
import { openAuditLogOf } from '../../src/server/backend.ts';
import type { Store } from '../../src/store/types.ts';
import { type BackupWorld, startWorld } from '../backup/fixture.ts';
import { onPostgres } from '../helpers/backend.ts';
import { openTestControlStore, type TestControlStore } from '../helpers/control-store.ts';
import { independentTilePath, tiledTree } from './independent-tiles.ts';
import {
  independentLeafHash,
  independentOpenCheckpoint,
  independentVerifyInclusion,
} from './independent-verifier.ts';
import {
  buildAuditLogFixture,
  copyFixtureLog,
  FIXTURE_ORIGIN,
  removeAuditLogFixtures,
} from './log-fixture.ts';

const SIZE = 3_000;
/** 3,000 entries, 500 kept live, segments of two tiles: four segments up to 2,048. */
const END = 2_048;

describe('the archived part of the audit log, read from sealed segments', { timeout: 300_000 }, () => {
  let world: BackupWorld;
  let control: TestControlStore;
  let store: Store<WithAuditLog>;
  let folders: string[];
  let destinations: Destination[];
  let verifierKey: string;
  let checkpointNote: string;
  /** What the live reader served before anything was deleted. */
  let liveOutputs: unknown[];
  /** The live reader's entries 1,280–1,299, before anything was deleted. */
  let liveRange1280: unknown[];

  const liveReader = () => createAuditLogReader(store.db, () => SIZE);
  const archivedLog = (over: readonly Destination[] = destinations, cachedSegments = 2): ArchivedLog =>
    createArchivedLog({
      destinations: () => over,
      keys: world.client,
      origin: FIXTURE_ORIGIN,
      key: async () => world.manifestKey,
      cachedSegments,
    });
  const archivedReader = (log: ArchivedLog = archivedLog()) => {
    const archive: ArchivedRange = { log, end: () => END };
    const reader = createAuditLogReader(store.db, () => SIZE, archive);
    return { reader, tiles: createAuditTileReader(reader, archive) };
  };

  /** `tresor audit verify`'s check of this run's store, the range below the end read from the segments or not. */
  async function verify(archived: boolean) {
    const snapshot = await openAuditLogOf({ dataDir: control.dir, database: control.database });
    try {
      if (!archived) return await verifyAuditLogSnapshot(snapshot, { verifierKey });
      return await verifyAuditLogWithArchive(
        snapshot,
        {
          end: END,
          archive: async (origin) => ({ destinations, keys: world.client, key: world.manifestKey, origin }),
        },
        { verifierKey },
      );
    } finally {
      await snapshot.close();
    }
  }

  /** Every output the readers give, over ranges below, across and above the archived end. */
  async function outputs(reader: AuditLogReader, tiles: AuditTileReader): Promise<unknown[]> {
    const out: unknown[] = [];
    for (const [from, limit] of [
      [0, 1],
      [0, 300],
      [255, 2],
      [1_000, 50],
      [2_000, 100],
      [2_047, 1],
      [2_048, 10],
    ] as const) {
      out.push(await reader.entries({ from, limit }));
      out.push(await reader.entries({ from, limit, tenant: 'tn_000003' }));
      out.push(await reader.entries({ from, limit, tenant: null }));
      out.push(await reader.entries({ from, limit, below: from + 7 }));
    }
    out.push(await reader.entries({ from: 1_900, limit: 40, tenant: 'tn_00000c', below: 2_100 }));
    for (const index of [0, 1, 255, 256, 777, 1_023, 1_024, 2_047, 2_048, 2_999])
      out.push((await reader.inclusion(index, SIZE)).map((h) => h.toString('base64')));
    for (const [index, size] of [
      [3, 4],
      [1_000, 1_500],
      [2_047, 2_048],
      [100, 2_049],
    ] as const)
      out.push((await reader.inclusion(index, size)).map((h) => h.toString('base64')));
    for (const from of [1, 7, 256, 1_000, 2_047, 2_048])
      for (const to of [2_048, 2_500, SIZE])
        out.push((await reader.consistency(from, to)).map((h) => h.toString('base64')));
    for (const size of [1, 255, 256, 1_000, 2_048, 2_049, SIZE])
      out.push((await reader.rootAt(size)).toString('base64'));
    for (const [level, from, count] of [
      [0, 0, 256],
      [0, 1_792, 512],
      [2, 500, 24],
      [4, 0, 128],
      [4, 120, 20],
      [7, 0, 16],
      [7, 15, 3],
      [8, 0, 11],
    ] as const)
      out.push((await reader.levelHashes(level, from, count)).map((h) => h.toString('base64')));
    const wanted: TileCoordinate[] = [];
    for (let index = 0; index < 11; index++)
      wanted.push({ level: 0, index, width: 256 }, { level: 'entries', index, width: 256 });
    wanted.push({ level: 1, index: 0, width: 11 }, { level: 0, index: 11, width: 184 });
    for (const tile of wanted) out.push((await tiles.read(tile, SIZE)).toString('base64'));
    return out;
  }

  before(async () => {
    world = await startWorld([]);
    control = await openTestControlStore('archread');
    store = control.control as unknown as Store<WithAuditLog>;
    const fixture = await buildAuditLogFixture({ entries: SIZE, checkpointEvery: 1000, witness: false });
    verifierKey = fixture.verifierKey;
    // The fixture's log, as the sequencer wrote it, copied into this run's control store.
    await copyFixtureLog(fixture, store);
    checkpointNote = (
      await store.db
        .selectFrom('audit_checkpoints')
        .select('note')
        .where('size', '=', SIZE)
        .executeTakeFirstOrThrow()
    ).note;
    folders = [world.folder('dest-a'), world.folder('dest-b')];
    destinations = folders.map((root) => createFolderDestination({ root }));
  });
  after(async () => {
    await control?.close();
    await world?.close();
    removeAuditLogFixtures();
  });

  test('seals the older full tiles into four segments on both destinations', async () => {
    const live = liveReader();
    const pass = await createAuditArchiver({
      reader: live,
      tiles: createAuditTileReader(live),
      treeSize: () => SIZE,
      origin: FIXTURE_ORIGIN,
      keys: world.client,
      destinations: () => destinations,
      keepRecentEntries: 500,
      segmentTiles: 2,
    }).run();
    assert.equal(pass.sealed.length, 4);
    assert.equal(pass.sealed.at(-1), 'audit.0000000000001536-0000000000002048');
  });

  test('serves every output byte for byte as the live reader does, the live rows still there', async () => {
    const live = liveReader();
    liveOutputs = await outputs(live, createAuditTileReader(live));
    liveRange1280 = await live.entries({ from: 1_280, limit: 20 });
    assert.equal(liveOutputs.length, 100);
    assert.equal(
      liveOutputs.filter((o) => Array.isArray(o) && o.length === 0).length,
      8,
      'empty: only the entries naming no tenant (the fixture has none) and the proof from 2,048 to 2,048',
    );
    const { reader, tiles } = archivedReader();
    assert.deepEqual(await outputs(reader, tiles), liveOutputs);
    const report = await verify(true);
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    assert.deepEqual([report.size, report.verifiedSize], [SIZE, SIZE]);
  });

  test('serves them the same once the live rows below the archived end are deleted', async () => {
    await store.write(async (trx) => {
      if (onPostgres)
        for (const table of ['audit_leaves', 'audit_tenant_entries', 'audit_nodes'])
          await sql.raw(`ALTER TABLE ${table} DISABLE TRIGGER USER`).execute(trx);
      else {
        const triggers = await sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'trigger'
          AND tbl_name IN ('audit_leaves', 'audit_tenant_entries', 'audit_nodes')`.execute(trx);
        for (const { name } of triggers.rows) await sql.raw(`DROP TRIGGER ${name}`).execute(trx);
      }
      await sql`DELETE FROM audit_leaves WHERE idx < ${END}`.execute(trx);
      await sql`DELETE FROM audit_tenant_entries WHERE idx < ${END}`.execute(trx);
      for (let level = 0; level < 8; level++)
        await sql`DELETE FROM audit_nodes WHERE level = ${level} AND idx < ${END / 2 ** level}`.execute(trx);
    });
    const live = liveReader();
    assert.deepEqual(await live.entries({ from: 0, limit: 10 }), [], 'the live store holds no archived leaf');
    await assert.rejects(live.inclusion(5, SIZE), /missing/);
    const { reader, tiles } = archivedReader();
    assert.deepEqual(await outputs(reader, tiles), liveOutputs);
  });

  test('the verifier checks the whole log against the signed checkpoints with the archived range from the segments', async () => {
    const alone = await verify(false);
    assert.equal(alone.ok, false, 'the live store alone lacks the archived range');
    const report = await verify(true);
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    assert.deepEqual([report.size, report.verifiedSize, report.firstBadIndex], [SIZE, SIZE, null]);
  });

  test('an archived entry’s proof verifies with Go-compatible tile paths against the signed checkpoint', async () => {
    const { root } = independentOpenCheckpoint(checkpointNote, verifierKey);
    const { reader, tiles } = archivedReader();
    const tree = tiledTree(BigInt(SIZE), (path) => tiles.read(parseTilePath(path), SIZE));
    assert.deepEqual(await tree.root(), root);
    for (const index of [0, 1_000, 2_047]) {
      const [row] = await reader.entries({ from: index, limit: 1 });
      assert.equal(row?.index, index);
      const hash = independentLeafHash(Buffer.from(row.leaf, 'utf8'));
      assert.equal(hash.toString('base64'), row.leafHash);
      const served = await reader.inclusion(index, SIZE);
      assert.ok(
        independentVerifyInclusion(hash, BigInt(index), BigInt(SIZE), served, root),
        `served ${index}`,
      );
      const fromTiles = await tree.inclusionProof(BigInt(index));
      assert.ok(
        independentVerifyInclusion(hash, BigInt(index), BigInt(SIZE), fromTiles, root),
        `tiles ${index}`,
      );
    }
    assert.ok(tree.fetched().includes(independentTilePath(0, 3n, BigInt(SIZE))), 'an archived tile was read');
  });

  test('reads a tile tampered on one destination from the other; on both, refuses with a clear 503', async () => {
    const tile = (folder: string) => join(folder, segmentObjectKey('tile/0/005'));
    const originals = folders.map((folder) => readFileSync(tile(folder)));
    const tamper = (i: number) => {
      const flipped = Buffer.from(originals[i] as Buffer);
      flipped[64] = (flipped[64] as number) ^ 1;
      writeFileSync(tile(folders[i] as string), flipped);
    };
    try {
      tamper(0);
      const { reader } = archivedReader();
      // Tile 5 (entries 1,280–1,535) lies in the segment 1,024–1,536.
      const fromOther = await reader.entries({ from: 1_280, limit: 20 });
      assert.deepEqual(fromOther, liveRange1280);
      tamper(1);
      const { reader: refused } = archivedReader();
      await assert.rejects(refused.entries({ from: 1_280, limit: 20 }), (err: unknown) => {
        assert.ok(err instanceof TresorError, String(err));
        assert.equal(err.code, 'TRESOR_ERR_AUDIT_ARCHIVE_UNAVAILABLE');
        assert.equal(ERRORS[err.code].status, 503);
        assert.match(err.message, /audit segment audit\.0000000000001024-0000000000001536/);
        return true;
      });
      // The segments that check out are still served.
      assert.equal((await refused.entries({ from: 600, limit: 3 })).length, 3);
    } finally {
      for (const [i, folder] of folders.entries()) writeFileSync(tile(folder), originals[i] as Buffer);
    }
  });

  test('two readers of one segment open it once', async () => {
    let manifestReads = 0;
    const manifest = segmentManifestKey('audit.0000000000000512-0000000000001024');
    const counted = destinations.map(
      (d): Destination => ({
        name: d.name,
        put: (key, data) => d.put(key, data),
        list: (prefix) => d.list(prefix),
        delete: (key) => d.delete(key),
        get: (key) => {
          if (key === manifest) manifestReads += 1;
          return d.get(key);
        },
      }),
    );
    const log = archivedLog(counted);
    const one = archivedReader(log).reader;
    const two = archivedReader(log).reader;
    const [entries, proof, hashes] = await Promise.all([
      one.entries({ from: 600, limit: 30 }),
      two.inclusion(700, SIZE),
      two.levelHashes(0, 512, 256),
    ]);
    assert.equal(entries.length, 30);
    assert.ok(proof.length > 0);
    assert.equal(hashes.length, 256);
    assert.equal(manifestReads, 1);
  });
});
