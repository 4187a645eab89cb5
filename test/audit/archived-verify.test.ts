// backends: sqlite postgres
/**
 * `tresor audit verify`, `tresor audit export`, the access review and `tresor access review` over a
 * pruned log: a real log (the fixture's, copied into this run's control store, SQLite or PostgreSQL),
 * its older full tiles sealed into segments by the archiver with a real keyd on two real folder
 * destinations, then pruned as the pruning job leaves it (audit_archived.end_idx = E; the leaves, the
 * tenant index and the level 0–7 nodes below E deleted). Verify reads [0, E) back from the segments
 * and passes; a tampered segment object or a missing segment fails naming it; unreachable segments
 * fail with a message; the export holds every entry from 0 and verifies offline, on both backends;
 * the access review, in process and from the CLI, lists a tenant's archived
 * staff accesses, and the CLI without keyd or with a segment missing everywhere prints no report and
 * exits 1.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Kysely, sql } from 'kysely';
import type { AccessDB } from '../../src/access/access-store-schema.ts';
import { reviewEvidence } from '../../src/access/review-evidence.ts';
import { createAuditArchiver } from '../../src/audit/archiver.ts';
import { createAuditLogReader } from '../../src/audit/log.ts';
import type { WithAuditLog } from '../../src/audit/log-schema.ts';
import { segmentObjectKey, segmentSignatureKey } from '../../src/audit/segment.ts';
import { createAuditTileReader } from '../../src/audit/tile-reader.ts';
import type { Destination } from '../../src/objects/destination.ts';
import { createFolderDestination } from '../../src/objects/folder-destination.ts';
import type { Store } from '../../src/store/types.ts';
import { type BackupWorld, startWorld } from '../backup/fixture.ts';
import { openTestControlStore, type TestControlStore } from '../helpers/control-store.ts';
import { TRESOR_BIN } from '../helpers/keyd-process.ts';
import {
  type AuditLogFixture,
  buildAuditLogFixture,
  copyFixtureLog,
  FIXTURE_ORIGIN,
  fixtureEntry,
  removeAuditLogFixtures,
} from './log-fixture.ts';

const SIZE = 3_000;
/** Two segments of 4 tiles are sealed (500 entries kept): the log is pruned below their end. */
const ARCHIVED = 2_048;
const T0 = Date.parse('2026-11-02T09:00:00.000Z');

/** The fixture's entries, every 7th of them a staff read through a grant. */
function entry(index: number) {
  const e = fixtureEntry(index);
  if (index % 7 !== 0) return e;
  return {
    ...e,
    actor: { kind: 'staff', id: `psn_${(index % 3).toString().padStart(24, '0')}`, grantId: `grt_${index}` },
  };
}

describe('verify, export and review over a log pruned below its sealed segments', {
  timeout: 300_000,
}, () => {
  let world: BackupWorld;
  let fixture: AuditLogFixture;
  let control: TestControlStore;
  let store: Store<WithAuditLog>;
  let folders: string[];
  let destinations: Destination[];

  function tresor(args: string[], env: NodeJS.ProcessEnv = {}) {
    const r = spawnSync(process.execPath, [TRESOR_BIN, ...args], {
      encoding: 'utf8',
      timeout: 120_000,
      env: {
        ...process.env,
        NO_COLOR: '1',
        TRESOR_DATA_DIR: '',
        TRESOR_AUDIT_PUBLIC_KEY: '',
        TRESOR_CONFIG: '',
        TRESOR_DATABASE_URL: control.database.kind === 'postgres' ? control.database.url : '',
        TRESOR_BACKUP_DESTINATIONS: JSON.stringify(
          folders.map((path, i) => ({ name: `dest-${i}`, kind: 'folder', path })),
        ),
        ...env,
      },
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }
  const verify = (...more: string[]) =>
    tresor([
      'audit',
      'verify',
      '--data-dir',
      control.dir,
      '--witness',
      fixture.witnessDir,
      '--public-key',
      fixture.verifierKey,
      '--keyd-socket',
      join(world.root, 'keyd', 'keyd.sock'),
      ...more,
    ]);

  const exportTo = (out: string, keydSocket: string) =>
    tresor([
      'audit',
      'export',
      '--data-dir',
      control.dir,
      '--out',
      out,
      '--plaintext',
      '--keyd-socket',
      keydSocket,
    ]);

  before(async () => {
    world = await startWorld([]);
    fixture = await buildAuditLogFixture({ entries: SIZE, checkpointEvery: 1000, entry });
    control = await openTestControlStore('archverify');
    store = control.control as unknown as Store<WithAuditLog>;
    // The fixture's log, as the sequencer wrote it, copied into this run's control store.
    await copyFixtureLog(fixture, store);
    folders = [world.folder('dest-a'), world.folder('dest-b')];
    destinations = folders.map((root, i) => createFolderDestination({ root, name: `dest-${i}` }));
    const reader = () => createAuditLogReader(store.db, () => SIZE);
    const pass = await createAuditArchiver({
      reader: reader(),
      tiles: createAuditTileReader(reader()),
      treeSize: () => SIZE,
      origin: FIXTURE_ORIGIN,
      keys: world.client,
      destinations: () => destinations,
      keepRecentEntries: 500,
      segmentTiles: 4,
    }).run();
    assert.equal(pass.sealed.length, 2);
    await prune(store, ARCHIVED);
  });
  after(async () => {
    await control?.close();
    await world?.close();
    removeAuditLogFixtures();
  });

  test('the pruned store holds no entry below the archived end', async () => {
    const first = await sql<{ first: unknown }>`SELECT min(idx) AS first FROM audit_leaves`.execute(store.db);
    assert.equal(Number(first.rows[0]?.first), ARCHIVED);
    const below = await sql<{ n: unknown }>`SELECT count(*) AS n FROM audit_nodes
      WHERE level = 0 AND idx < ${ARCHIVED}`.execute(store.db);
    assert.equal(Number(below.rows[0]?.n), 0);
  });

  test('verify reads the archived entries back from the segments and passes', () => {
    const r = verify('--json');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout) as {
      ok: boolean;
      size: number;
      verifiedSize: number;
      checkpoints: number;
    };
    assert.equal(report.ok, true);
    assert.equal(report.size, SIZE, 'every entry from 0 was recomputed');
    assert.equal(report.verifiedSize, SIZE);
    assert.equal(
      report.checkpoints,
      3,
      'the checkpoints of sizes 1000 and 2000 are checked from the segments',
    );
  });

  test('a tampered segment object fails naming the segment, its destination and its first index', () => {
    const tile = join(folders[1] as string, segmentObjectKey('tile/entries/005'));
    const original = readFileSync(tile);
    const flipped = Buffer.from(original);
    flipped[40] = (flipped[40] as number) ^ 1;
    writeFileSync(tile, flipped);
    try {
      const r = verify();
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /^FAILED: /);
      assert.match(r.stdout, /first bad index: 1024\n/);
      assert.match(
        r.stdout,
        /segment at index 1024: segment audit\.0000000000001024-0000000000002048 on destination dest-1: tile\/entries\/005 is not the object written/,
      );
    } finally {
      writeFileSync(tile, original);
    }
  });

  test('a missing segment fails naming where the segments stop', () => {
    const sig = join(folders[0] as string, segmentSignatureKey('audit.0000000000000000-0000000000001024'));
    renameSync(sig, `${sig}.away`);
    try {
      const r = verify();
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /first bad index: 0\n/);
      assert.match(r.stdout, /archive on destination dest-0: no segment starts at index 0/);
    } finally {
      renameSync(`${sig}.away`, sig);
    }
    assert.equal(verify().status, 0, 'whole again');
  });

  test('segments that cannot be read (no keyd) fail with a message, never pass', () => {
    const r = verify('--keyd-socket', join(world.root, 'no-keyd.sock'));
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /first bad index: 0\n/);
    assert.match(r.stdout, /segments cannot be read: keyd is not reachable/);
  });

  test('export holds every entry from 0, and the export verifies offline', () => {
    const out = join(control.dir, 'audit.jsonl');
    const r = exportTo(out, join(world.root, 'keyd', 'keyd.sock'));
    assert.equal(r.status, 0, r.stderr);
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    const header = JSON.parse(lines[0] as string) as { size: number };
    assert.equal(header.size, SIZE);
    const entries = lines.slice(1).filter((l) => l.startsWith('{"index":'));
    assert.equal(entries.length, SIZE);
    for (const index of [0, 1023, 1024, 2047, 2048, SIZE - 1]) {
      const line = JSON.parse(entries[index] as string) as { index: number; leaf: string };
      assert.equal(line.index, index);
      assert.equal((JSON.parse(line.leaf) as { index: number }).index, index);
    }
    const offline = tresor(['audit', 'verify', '--export', out, '--public-key', fixture.verifierKey]);
    assert.equal(offline.status, 0, offline.stdout + offline.stderr);
  });

  test('export without keyd writes no file and exits 1', () => {
    const out = join(control.dir, 'refused.jsonl');
    const r = exportTo(out, join(world.root, 'no-keyd.sock'));
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /sealed segments: keyd is not reachable/);
    assert.equal(existsSync(out), false);
  });

  /** The staff accesses the fixture holds, of one tenant or of all. */
  const staffIndexes = (tenant?: string) =>
    Array.from({ length: SIZE }, (_, i) => entry(i))
      .filter((e) => (tenant === undefined || e.tenant === tenant) && 'grantId' in e.actor)
      .map((e) => e.index);

  test('the access review lists a tenant’s staff accesses below the archived end, from the segments', async () => {
    {
      const db = store.db as unknown as Kysely<AccessDB>;
      const period = { from: T0, to: T0 + SIZE * 250 };
      const tenant = fixtureEntry(0).tenant;
      // Each segment's manifest read counted: a segment is opened once, then its findings are kept.
      let manifestReads = 0;
      const counted = destinations.map(
        (d): Destination => ({
          name: d.name,
          put: (key, data) => d.put(key, data),
          list: (prefix) => d.list(prefix),
          delete: (key) => d.delete(key),
          get: (key) => {
            if (key.startsWith('audit-log/segments/') && key.endsWith('.json')) manifestReads += 1;
            return d.get(key);
          },
        }),
      );
      const evidence = reviewEvidence({
        db,
        now: () => new Date(T0 + SIZE * 250),
        requestTtlMs: 60_000,
        archive: async () => ({
          destinations: counted,
          keys: world.client,
          key: world.manifestKey,
          origin: FIXTURE_ORIGIN,
        }),
      });
      const accesses = await evidence.accessesIn(period, { tenant });
      const expected = Array.from({ length: SIZE }, (_, i) => entry(i))
        .filter((e) => e.tenant === tenant && 'grantId' in e.actor)
        .map((e) => e.index);
      assert.ok(expected.some((i) => i < ARCHIVED) && expected.some((i) => i >= ARCHIVED));
      assert.deepEqual(
        accesses.map((a) => a.index),
        expected,
      );
      assert.equal(manifestReads, 2, 'the two segments, each opened once');
      const all = await evidence.accessesIn(period, {});
      assert.equal(all.length, Math.ceil(SIZE / 7));
      assert.deepEqual(
        (
          await evidence.accessesIn({ from: T0, to: T0 + 1_000 * 250 }, {}, 'psn_000000000000000000000001')
        ).map((a) => a.index),
        staffIndexes().filter((i) => i < 1_000 && i % 3 === 1),
        'a shorter period and one person, from the kept findings',
      );
      assert.equal(
        manifestReads,
        2,
        'the later reviews of other tenants, periods and people open no segment',
      );
      // The destinations are still listed: a segment gone from every one fails the review, kept findings or not.
      const sigs = folders.map((folder) =>
        join(folder, segmentSignatureKey('audit.0000000000000000-0000000000001024')),
      );
      for (const sig of sigs) renameSync(sig, `${sig}.away`);
      try {
        await assert.rejects(evidence.accessesIn(period, { tenant }), /from index 0 cannot be read/);
      } finally {
        for (const sig of sigs) renameSync(`${sig}.away`, sig);
      }

      const blind = reviewEvidence({ db, now: () => new Date(), requestTtlMs: 60_000 });
      await assert.rejects(blind.accessesIn(period, { tenant }), /archived in sealed segments/);
    }
  });

  /** `tresor access review` of the fixture's day, through keyd's socket or another. */
  const review = (more: string[], socket = join(world.root, 'keyd', 'keyd.sock')) =>
    tresor([
      'access',
      'review',
      '--from',
      '2026-11-02',
      '--to',
      '2026-11-03',
      '--data-dir',
      control.dir,
      '--keyd-socket',
      socket,
      '--json',
      ...more,
    ]);

  test('tresor access review lists the staff accesses below the archived end, from the segments', () => {
    const tenant = fixtureEntry(0).tenant;
    const r = review(['--tenant', tenant]);
    // Exit 1: nothing of the period is attested; the report is whole all the same.
    assert.equal(r.status, 1, r.stderr);
    const report = JSON.parse(r.stdout) as {
      accesses: { index: number; tenant: string }[];
      unreviewed: boolean;
    };
    assert.equal(report.unreviewed, true);
    const expected = staffIndexes(tenant);
    assert.ok(expected.some((i) => i < ARCHIVED) && expected.some((i) => i >= ARCHIVED));
    assert.deepEqual(
      report.accesses.map((a) => a.index),
      expected,
    );
    const all = review([]);
    assert.equal(all.status, 1, all.stderr);
    const whole = JSON.parse(all.stdout) as { accesses: { index: number }[] };
    assert.deepEqual(
      whole.accesses.map((a) => a.index),
      staffIndexes(),
    );
  });

  test('tresor access review without keyd prints no report and exits 1, saying why', () => {
    const r = review([], join(world.root, 'no-keyd.sock'));
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.equal(r.stdout, '', 'no partial report');
    assert.match(r.stderr, /sealed segments: keyd is not reachable.*no review/);
  });

  test('tresor access review with a segment missing on every destination prints no report and exits 1', () => {
    const sigs = folders.map((folder) =>
      join(folder, segmentSignatureKey('audit.0000000000001024-0000000000002048')),
    );
    for (const sig of sigs) renameSync(sig, `${sig}.away`);
    try {
      const r = review([]);
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.equal(r.stdout, '', 'no partial report');
      assert.match(
        r.stderr,
        /TRESOR_ERR_AUDIT_SEGMENT_INVALID: the archived entries from index 1024 cannot be read/,
      );
    } finally {
      for (const sig of sigs) renameSync(`${sig}.away`, sig);
    }
    const again = review([]);
    assert.equal(again.status, 1, again.stderr);
    assert.equal(
      (JSON.parse(again.stdout) as { accesses: unknown[] }).accesses.length,
      staffIndexes().length,
    );
  });
});

/**
 * What the pruning job leaves (src/audit/log-prune.ts, without its segment checks and audit event):
 * audit_archived.end_idx raised to `end`, and below it the leaf blocks, the tenant index and the
 * level 0–7 nodes deleted — the deletes the log's triggers allow once the cursor is there.
 */
async function prune(store: Store<WithAuditLog>, end: number): Promise<void> {
  await store.write(async (trx) => {
    await sql`UPDATE audit_archived SET end_idx = ${end} WHERE id = 1`.execute(trx);
    await sql`DELETE FROM audit_leaves WHERE idx < ${end}`.execute(trx);
    await sql`DELETE FROM audit_tenant_entries WHERE idx < ${end}`.execute(trx);
    // Node (level, idx) covers leaves [idx · 2^level, (idx + 1) · 2^level).
    for (let level = 0; level < 8; level++)
      await sql`DELETE FROM audit_nodes WHERE level = ${level} AND idx < ${end / 2 ** level}`.execute(trx);
  });
}
