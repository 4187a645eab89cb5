// backends: sqlite (tiles are read through the log reader, whose queries both backends share; the HTTP test runs on both)
/**
 * The audit log as C2SP tlog-tiles resources (src/audit/tiles.ts, tile-reader.ts): paths exactly as
 * the spec and golang.org/x/mod/sumdb/tlog write them, entry bundles as big-endian uint16
 * length-prefixed entries, and the tiles of a real 70,000-entry log — the spec's own example size —
 * from which a client written only from the spec (independent-tiles.ts) derives inclusion proofs
 * that verify against the log's signed checkpoint.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createAuditLogReader } from '../../src/audit/log.ts';
import type { WithAuditLog } from '../../src/audit/log-schema.ts';
import { type AuditTileReader, createAuditTileReader } from '../../src/audit/tile-reader.ts';
import {
  decodeEntryBundle,
  decodeHashTile,
  encodeEntryBundle,
  formatTileIndex,
  formatTilePath,
  parseTilePath,
  partialTile,
  type TileCoordinate,
} from '../../src/audit/tiles.ts';
import { TresorError } from '../../src/errors.ts';
import { controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import { independentBundleEntries, independentTilePath, tiledTree } from './independent-tiles.ts';
import {
  independentLeafHash,
  independentOpenCheckpoint,
  independentVerifyInclusion,
} from './independent-verifier.ts';
import { type AuditLogFixture, buildAuditLogFixture, removeAuditLogFixtures } from './log-fixture.ts';

describe('tlog-tiles paths', () => {
  // golang.org/x/mod/sumdb/tlog tile_test.go (tilePaths) writes `tile/<H>/<L>/<N>[.p/<W>]`; tlog-tiles
  // drops the height (always 8). The N and .p/W parts below are those strings' own.
  const GO_PATHS: [string, TileCoordinate][] = [
    ['tile/0/001', { level: 0, index: 1, width: 256 }],
    ['tile/0/001.p/5', { level: 0, index: 1, width: 5 }],
    ['tile/5/x123/x456/078', { level: 5, index: 123456078, width: 256 }],
    ['tile/5/x123/x456/078.p/2', { level: 5, index: 123456078, width: 2 }],
    ['tile/0/x003/x057/500', { level: 0, index: 3057500, width: 256 }],
    // tlog-tiles' own examples
    ['tile/0/x001/x234/067', { level: 0, index: 1234067, width: 256 }],
    ['tile/entries/x001/x234/067.p/89', { level: 'entries', index: 1234067, width: 89 }],
    ['tile/63/x999/x999/x999/x999/999.p/255', { level: 63, index: 999999999999999, width: 255 }],
    ['tile/1/273.p/17', { level: 1, index: 273, width: 17 }],
    ['tile/entries/000', { level: 'entries', index: 0, width: 256 }],
    ['tile/2/x001/000', { level: 2, index: 1000, width: 256 }],
  ];

  test('formats and parses the paths the Go implementation and the spec write', () => {
    for (const [path, tile] of GO_PATHS) {
      assert.equal(formatTilePath(tile), path);
      assert.deepEqual(parseTilePath(path), tile);
    }
    assert.equal(formatTileIndex(0), '000');
    assert.equal(formatTileIndex(999), '999');
    assert.equal(formatTileIndex(1000), 'x001/000');
    assert.equal(formatTileIndex(1234067), 'x001/x234/067');
  });

  test('refuses every other spelling of a resource, with a validation error', () => {
    // Go's ParseTilePath refuses `tile/3/5/123/456/078` (no x) and `tile/3/-1/…`; the spec forbids
    // leading zeroes in L and W, and W of 0 or 256.
    for (const bad of [
      'tile/0/123/456/078',
      'tile/-1/001',
      'tile/00/001',
      'tile/64/001',
      'tile/0/1',
      'tile/0/0001',
      'tile/0/x001',
      'tile/0/001.p/0',
      'tile/0/001.p/256',
      'tile/0/001.p/05',
      'tile/0/001.p/',
      'tile/0/001.p',
      'tile/0/x000/001',
      'tile/data/001',
      'tile/0/001/x002',
      'tile/0/x001/x002/x003/x004/x005/x006/007',
      'tile/0/',
    ]) {
      assert.throws(
        () => parseTilePath(bad),
        (err: unknown) => err instanceof TresorError && err.code === 'TRESOR_ERR_VALIDATION',
        bad,
      );
    }
  });

  test('the spec’s tree of 70,000 has partial tiles of widths 112, 17 and 1', () => {
    assert.deepEqual(partialTile(0, 70_000), { index: 273, width: 112 });
    assert.deepEqual(partialTile(1, 70_000), { index: 1, width: 17 });
    assert.deepEqual(partialTile(2, 70_000), { index: 0, width: 1 });
    assert.deepEqual(partialTile(1, 256), { index: 0, width: 1 });
    assert.deepEqual(partialTile(0, 256), { index: 1, width: 0 });
  });
});

describe('entry bundles', () => {
  test('are big-endian uint16 length-prefixed entries, and a cut one is refused', () => {
    const entries = [Buffer.alloc(0), Buffer.from('{"a":1}'), Buffer.alloc(300, 0x61)];
    const bytes = encodeEntryBundle(entries);
    assert.deepEqual(bytes.subarray(0, 4), Buffer.from([0, 0, 0, 7]));
    assert.equal(bytes.readUInt16BE(11), 300);
    assert.deepEqual(decodeEntryBundle(bytes), entries);
    assert.deepEqual(independentBundleEntries(bytes), entries);
    assert.equal(decodeEntryBundle(bytes.subarray(0, bytes.length - 1)), null);
    assert.equal(decodeEntryBundle(Buffer.from([0])), null);
    assert.throws(() => encodeEntryBundle([Buffer.alloc(65_536)]));
  });
});

describe('the tiles of a 70,000-entry log', () => {
  const SIZE = 70_000;
  let fixture: AuditLogFixture;
  let store: Store<WithAuditLog>;
  let tiles: AuditTileReader;
  let root: Buffer;

  before(async () => {
    fixture = await buildAuditLogFixture({ entries: SIZE, checkpointEvery: SIZE, raw: true, witness: false });
    store = (await openSqliteStore(fixture.dbPath, controlStoreMigrations)) as unknown as Store<WithAuditLog>;
    tiles = createAuditTileReader(createAuditLogReader(store.db, () => SIZE));
    const note = await store.db
      .selectFrom('audit_checkpoints')
      .select('note')
      .where('size', '=', SIZE)
      .executeTakeFirstOrThrow();
    const opened = independentOpenCheckpoint(note.note, fixture.verifierKey);
    assert.equal(opened.size, BigInt(SIZE));
    root = opened.root;
  });
  after(async () => {
    await store?.close();
    removeAuditLogFixtures();
  });

  const fetchTile = (size: number) => async (path: string) => tiles.read(parseTilePath(path), size);

  test('rebuilds the signed root and verifies inclusion proofs computed only from tiles', async () => {
    const tree = tiledTree(BigInt(SIZE), fetchTile(SIZE));
    assert.deepEqual(await tree.root(), root, 'the root from tiles is the checkpoint’s');
    for (const index of [0, 1, 255, 256, 65_535, 65_536, 69_887, 69_888, 69_999]) {
      const bundle = await tiles.read(
        parseTilePath(independentTilePath('entries', BigInt(index >> 8), 70_000n)),
        SIZE,
      );
      const leaf = independentBundleEntries(bundle)[index % 256] as Buffer;
      assert.equal(JSON.parse(leaf.toString('utf8')).index, index);
      const hash = independentLeafHash(leaf);
      assert.deepEqual(await tree.leafHash(BigInt(index)), hash, `the level-0 tile holds entry ${index}`);
      const proof = await tree.inclusionProof(BigInt(index));
      assert.ok(
        independentVerifyInclusion(hash, BigInt(index), BigInt(SIZE), proof, root),
        `inclusion of ${index}`,
      );
    }
    const fetched = tree.fetched();
    for (const path of ['tile/0/273.p/112', 'tile/1/000', 'tile/1/001.p/17', 'tile/2/000.p/1'])
      assert.ok(fetched.includes(path), `${path} was needed`);
  });

  test('serves full tiles of 8,192 bytes and partial tiles only at widths the tree reached', async () => {
    assert.equal((await tiles.read(parseTilePath('tile/0/272'), SIZE)).length, 8192);
    assert.equal((await tiles.read(parseTilePath('tile/1/000'), SIZE)).length, 8192);
    assert.equal(decodeHashTile(await tiles.read(parseTilePath('tile/0/273.p/112'), SIZE), 112)?.length, 112);
    // A smaller partial tile is the tile of an earlier tree size: still the same hashes.
    const earlier = await tiles.read(parseTilePath('tile/0/273.p/100'), SIZE);
    assert.deepEqual(earlier, (await tiles.read(parseTilePath('tile/0/273.p/112'), SIZE)).subarray(0, 3200));
    for (const missing of [
      'tile/0/273',
      'tile/0/273.p/113',
      'tile/0/274.p/1',
      'tile/1/001',
      'tile/3/000.p/1',
      'tile/entries/274.p/1',
    ]) {
      await assert.rejects(
        tiles.read(parseTilePath(missing), SIZE),
        (err: unknown) => err instanceof TresorError && err.code === 'TRESOR_ERR_NOT_FOUND',
        missing,
      );
    }
    const bundle = decodeEntryBundle(await tiles.read(parseTilePath('tile/entries/273.p/112'), SIZE));
    assert.equal(bundle?.length, 112);
  });
});
