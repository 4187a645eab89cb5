// backends: sqlite (the log is read through its reader; segments live on destinations, not in a database)
/**
 * Sealed segments (src/audit/segment.ts, archiver.ts) with a real keyd process and two real folder
 * destinations: the archiver seals the tiles older than the keep window into segments in the
 * tlog-tiles layout, each object encrypted and the segment signed by keyd; reading one back checks
 * everything, and a proof for an archived entry, computed by a spec-only client from the segment's
 * tiles and the live log's higher tiles, verifies against the log's current signed checkpoint.
 * A tampered, swapped or re-signed object, and a segment of another log, are each refused.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createAuditArchiver } from '../../src/audit/archiver.ts';
import { createAuditLogReader } from '../../src/audit/log.ts';
import type { WithAuditLog } from '../../src/audit/log-schema.ts';
import { listSegments, openSegment, SegmentError, segmentObjectKey } from '../../src/audit/segment.ts';
import { createAuditTileReader } from '../../src/audit/tile-reader.ts';
import { parseTilePath } from '../../src/audit/tiles.ts';
import type { Destination } from '../../src/objects/destination.ts';
import { createFolderDestination } from '../../src/objects/folder-destination.ts';
import { controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import { type BackupWorld, startWorld } from '../backup/fixture.ts';
import { independentTilePath, tiledTree } from './independent-tiles.ts';
import {
  independentLeafHash,
  independentOpenCheckpoint,
  independentVerifyInclusion,
} from './independent-verifier.ts';
import {
  type AuditLogFixture,
  buildAuditLogFixture,
  FIXTURE_ORIGIN,
  removeAuditLogFixtures,
} from './log-fixture.ts';

const SIZE = 3_000;

describe('sealed segments on the backup destinations', () => {
  let world: BackupWorld;
  let fixture: AuditLogFixture;
  let store: Store<WithAuditLog>;
  let folders: string[];
  let destinations: Destination[];
  let root: Buffer;

  const reader = () => createAuditLogReader(store.db, () => SIZE);
  const archiver = () =>
    createAuditArchiver({
      reader: reader(),
      tiles: createAuditTileReader(reader()),
      treeSize: () => SIZE,
      origin: FIXTURE_ORIGIN,
      keys: world.client,
      destinations: () => destinations,
      keepRecentEntries: 500,
      segmentTiles: 4,
    });
  const open = (destination: Destination, id: string, origin = FIXTURE_ORIGIN) =>
    openSegment({ destination, id, key: world.manifestKey, keys: world.client, origin });

  before(async () => {
    world = await startWorld([]);
    fixture = await buildAuditLogFixture({ entries: SIZE, checkpointEvery: 1000, witness: false });
    store = (await openSqliteStore(fixture.dbPath, controlStoreMigrations)) as unknown as Store<WithAuditLog>;
    folders = [world.folder('dest-a'), world.folder('dest-b')];
    destinations = folders.map((root) => createFolderDestination({ root }));
    const note = await store.db
      .selectFrom('audit_checkpoints')
      .select('note')
      .where('size', '=', SIZE)
      .executeTakeFirstOrThrow();
    root = independentOpenCheckpoint(note.note, fixture.verifierKey).root;
  });
  after(async () => {
    await store?.close();
    await world?.close();
    removeAuditLogFixtures();
  });

  test('seals the full tiles older than the keep window into segments on every destination', async () => {
    const pass = await archiver().run();
    // 3,000 entries, 500 kept: segments of 1,024 entries up to 2,048 (the next would end at 3,072).
    assert.deepEqual(pass, {
      from: 0,
      sealed: ['audit.0000000000000000-0000000000001024', 'audit.0000000000001024-0000000000002048'],
    });
    for (const [i, destination] of destinations.entries()) {
      assert.deepEqual(await listSegments(destination), pass.sealed);
      const files = readdirSync(join(folders[i] as string, 'audit-log', 'tile', '0')).sort();
      assert.deepEqual(files, ['000', '001', '002', '003', '004', '005', '006', '007']);
      assert.ok(readdirSync(join(folders[i] as string, 'audit-log', 'tile', 'entries')).includes('007'));
    }
    const again = await archiver().run();
    assert.deepEqual(again, { from: 2048, sealed: [] }, 'a second pass has nothing due');
  });

  test('stores no entry in the clear', () => {
    const bundle = readFileSync(join(folders[0] as string, 'audit-log', 'tile', 'entries', '000'));
    assert.ok(!bundle.includes(Buffer.from('"action"')), 'the bundle is encrypted');
    assert.ok(!bundle.includes(Buffer.from('rec_')), 'no record id readable');
  });

  test('reads a segment back, and a proof for an archived entry verifies against the current checkpoint', async () => {
    const segment = await open(destinations[1] as Destination, 'audit.0000000000001024-0000000000002048');
    assert.equal(segment.leaves.length, 1024);
    const live = createAuditTileReader(reader());
    // The client takes level-0 tiles and bundles of the archived range from the segment, everything
    // else (higher tiles, the partial tiles at the end) from the live log.
    const fetch = async (path: string) =>
      segment.tiles.get(path) ?? (await live.read(parseTilePath(path), SIZE));
    const tree = tiledTree(BigInt(SIZE), fetch);
    assert.deepEqual(await tree.root(), root);
    for (const index of [1024, 1500, 2047]) {
      const leaf = segment.leaves[index - 1024] as Buffer;
      assert.equal(JSON.parse(leaf.toString('utf8')).index, index);
      const hash = independentLeafHash(leaf);
      const proof = await tree.inclusionProof(BigInt(index));
      assert.ok(
        independentVerifyInclusion(hash, BigInt(index), BigInt(SIZE), proof, root),
        `inclusion of ${index}`,
      );
    }
    assert.ok(
      tree.fetched().includes(independentTilePath(0, 5n, BigInt(SIZE))),
      'the archived level-0 tile was used',
    );
  });

  test('detects a tampered tile, a swapped one, a forged manifest and another log’s segment', async () => {
    const id = 'audit.0000000000000000-0000000000001024';
    const refused = async (why: RegExp, origin?: string) =>
      assert.rejects(open(destinations[0] as Destination, id, origin), (err: unknown) => {
        assert.ok(err instanceof SegmentError, String(err));
        assert.equal(err.code, 'TRESOR_ERR_AUDIT_SEGMENT_INVALID');
        assert.match(err.message, why);
        return true;
      });
    const dir = folders[0] as string;
    const tile = join(dir, segmentObjectKey('tile/0/002'));
    const original = readFileSync(tile);
    const flipped = Buffer.from(original);
    flipped[100] = (flipped[100] as number) ^ 1;
    writeFileSync(tile, flipped);
    await refused(/tile\/0\/002 is not the object written/);
    writeFileSync(tile, original);

    // Swapped objects: each is intact, but at the other's place.
    const other = join(dir, segmentObjectKey('tile/0/003'));
    const otherBytes = readFileSync(other);
    writeFileSync(tile, otherBytes);
    writeFileSync(other, original);
    await refused(/tile\/0\/002 is not the object written/);
    writeFileSync(tile, original);
    writeFileSync(other, otherBytes);

    // A manifest changed after signing (say, a tile's digest replaced by the tampered one's).
    const manifestPath = join(dir, 'audit-log', 'segments', `${id}.json`);
    const manifest = readFileSync(manifestPath);
    writeFileSync(manifestPath, Buffer.from(manifest.toString('utf8').replace('"first":0', '"first":256')));
    await refused(/not the one keyd signed/);
    writeFileSync(manifestPath, manifest);

    await refused(/another log/, 'another.test/audit');
    const intact = await open(destinations[0] as Destination, id);
    assert.equal(intact.leafHashes.length, 1024);
  });

  test('a destination added later gets the segments it lacks; those already held keep their bytes', async () => {
    const held = await listSegments(destinations[0] as Destination);
    assert.ok(held.length >= 2);
    const manifestOf = (dir: string, id: string) =>
      readFileSync(join(dir, 'audit-log', 'segments', `${id}.json`));
    const before = held.map((id) => folders.map((dir) => manifestOf(dir, id)));
    const added = world.folder('dest-c');
    const third = createFolderDestination({ root: added });
    destinations = [...destinations, third];
    try {
      const pass = await archiver().run();
      assert.equal(pass.from, 0, 'the new destination holds none');
      assert.deepEqual(await listSegments(third), held);
      for (const [i, id] of held.entries())
        for (const [j, dir] of folders.entries())
          assert.deepEqual(manifestOf(dir, id), before[i]?.[j], `${id} at ${dir} was not sealed again`);
      for (const id of held) assert.equal((await open(third, id)).manifest.segmentId, id);
    } finally {
      destinations = destinations.slice(0, 2);
    }
  });
});
