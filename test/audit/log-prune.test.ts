// backends: sqlite postgres
/**
 * Pruning the live audit log behind its sealed segments (src/audit/log-prune.ts), with a real keyd
 * process, two real folder destinations and the real audit log (sequencer, checkpointer) on this
 * run's backend: nothing is pruned while a segment is missing or tampered with on one destination,
 * nor within keepRecentEntries; a prune drops exactly the range's leaf blocks, tenant entries and
 * level 0–7 nodes, moves the cursor and is recorded as `audit.pruned`; and the sequencer goes on
 * appending and signing afterwards (also after a restart), its root equal to one recomputed
 * independently from the leaves read before the prune.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Kysely } from 'kysely';
import { readArchivedEnd } from '../../src/audit/archived-end.ts';
import { type AuditArchiver, createAuditArchiver } from '../../src/audit/archiver.ts';
import { type AuditLog, createAuditLog } from '../../src/audit/audit-log.ts';
import { type AuditEvent, appendAuditEvent, type WithAuditEvents } from '../../src/audit/event.ts';
import { readLeaves, storedLogSize } from '../../src/audit/leaf-store.ts';
import { type PruneDB, pruneArchived } from '../../src/audit/log-prune.ts';
import {
  SegmentError,
  segmentManifestKey,
  segmentObjectKey,
  segmentSignatureKey,
} from '../../src/audit/segment.ts';
import { CONTROL_SOURCE } from '../../src/audit/sequencer.ts';
import { createWitness } from '../../src/audit/witness.ts';
import type { Destination } from '../../src/objects/destination.ts';
import { createFolderDestination } from '../../src/objects/folder-destination.ts';
import { type DataBackend, openDataBackend } from '../../src/server/backend.ts';
import type { Store } from '../../src/store/types.ts';
import { type BackupWorld, startWorld } from '../backup/fixture.ts';
import { type TestDatabase, testDatabase } from '../helpers/backend.ts';
import { independentOpenCheckpoint } from './independent-verifier.ts';

const ORIGIN = 'tresor.test/prune';
const TENANT = 'ten_0123456789abcdef01234567';
const FIRST = 1_300;
const KEEP = 300;

/** RFC 9162 §2.1.1, written out here apart from src/audit/merkle.ts. */
const sha256 = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
const leafHashOf = (leaf: string) => sha256(Buffer.from([0]), Buffer.from(leaf, 'utf8'));
function mth(hashes: readonly Buffer[]): Buffer {
  if (hashes.length === 0) return sha256();
  if (hashes.length === 1) return hashes[0] as Buffer;
  let k = 1;
  while (k * 2 < hashes.length) k *= 2;
  return sha256(Buffer.from([1]), mth(hashes.slice(0, k)), mth(hashes.slice(k)));
}

function event(i: number): AuditEvent {
  return {
    at: new Date(Date.UTC(2026, 11, 7, 9, 0, 0, i)).toISOString(),
    actor: { kind: 'api-key', id: 'ak_0123456789abcdef01234567' },
    tenant: i % 4 === 0 ? null : TENANT,
    action: 'record.read',
    target: { collection: 'people', recordIds: [`rec_${i.toString(16).padStart(24, '0')}`] },
    outcome: 'success',
    requestId: `req-prune-${i}`,
  };
}

describe('pruning the live audit log behind sealed segments', () => {
  let world: BackupWorld;
  let data: TestDatabase;
  let dir: string;
  let backend: DataBackend;
  let audit: AuditLog;
  let folders: string[];
  let destinations: Destination[];
  let written = 0;
  /** The leaf hashes of [0, FIRST), read before any prune. */
  let before1300: Buffer[] = [];

  const control = () => backend.control as unknown as Store<PruneDB>;
  const db = () => control().db as Kysely<PruneDB>;

  function openAudit(): AuditLog {
    return createAuditLog({
      control: backend.control as unknown as Store<PruneDB>,
      shared: backend.sequencer(),
      openSource: async () => backend.control as unknown as Store<WithAuditEvents>,
      listSources: async () => [CONTROL_SOURCE],
      signingKey: async () => {
        const info = await world.client.call('publicKey', { purpose: 'audit-checkpoint' });
        return { name: info.name, publicKey: info.publicKey, verifierKey: info.verifierKey };
      },
      keyd: {
        tree: () => world.client.call('checkpointTree', {}),
        sign: async (request) => (await world.client.call('signCheckpoint', request)).signature,
      },
      origin: ORIGIN,
      witness: createWitness(join(dir, 'witness')),
      checkpointIntervalMs: 3_600_000,
    });
  }

  /** Writes `n` more events to the control outbox, moves them into the log and signs a checkpoint. */
  async function grow(n: number): Promise<void> {
    for (let done = 0; done < n; ) {
      const batch = Math.min(100, n - done);
      await control().write(async (trx) => {
        for (let i = 0; i < batch; i++) await appendAuditEvent(trx, event(written + i));
      });
      written += batch;
      done += batch;
    }
    await settle();
  }

  async function settle(): Promise<void> {
    await audit.sequencer.drain(CONTROL_SOURCE);
    await audit.checkpointer.checkpoint();
  }

  const archiver = (): AuditArchiver =>
    createAuditArchiver({
      reader: audit.reader,
      tiles: audit.tiles,
      treeSize: () => audit.sequencer.treeHead().size,
      origin: ORIGIN,
      keys: world.client,
      destinations: () => destinations,
      keepRecentEntries: KEEP,
      segmentTiles: 1,
    });

  const prune = (keepRecentEntries = KEEP, segmentsPerTransaction?: number) =>
    pruneArchived({
      ...(segmentsPerTransaction === undefined ? {} : { segmentsPerTransaction }),
      control: control(),
      archivedEnd: () => archiver().archivedEnd(),
      destinations: () => destinations,
      keys: world.client,
      origin: ORIGIN,
      reader: audit.reader,
      treeSize: () => audit.sequencer.treeHead().size,
      keepRecentEntries,
      now: () => new Date('2026-12-07T10:00:00.000Z'),
    });

  async function rows() {
    const leaves = await db().selectFrom('audit_leaves').select(['idx', 'n']).orderBy('idx').execute();
    const tenantEntries = await db()
      .selectFrom('audit_tenant_entries')
      .select('idx')
      .orderBy('idx')
      .execute();
    const nodes = await db().selectFrom('audit_nodes').select(['level', 'idx']).execute();
    return {
      firstBlock: Number(leaves[0]?.idx),
      blocks: leaves.length,
      firstTenantEntry: Number(tenantEntries[0]?.idx),
      tenantEntries: tenantEntries.length,
      nodes: nodes.length,
      /** The lowest leaf a node of level < 8 covers. */
      lowestLowNode: Math.min(
        ...nodes.filter((r) => Number(r.level) < 8).map((r) => Number(r.idx) * 2 ** Number(r.level)),
      ),
      high: nodes
        .filter((r) => Number(r.level) >= 8)
        .map((r) => `${r.level}/${r.idx}`)
        .sort(),
    };
  }

  const siteOf = (i: number, key: string) => join(folders[i] as string, key);

  before(async () => {
    world = await startWorld([]);
    data = await testDatabase();
    dir = mkdtempSync(join(tmpdir(), 'tresor-prune-'));
    backend = await openDataBackend({ dataDir: dir, database: data.database });
    audit = openAudit();
    await audit.start();
    folders = [world.folder('dest-a'), world.folder('dest-b')];
    destinations = folders.map((root) => createFolderDestination({ root }));
    await grow(FIRST);
    assert.equal(audit.sequencer.treeHead().size, FIRST);
    before1300 = (await readLeaves(db(), 0, FIRST)).map((r) => leafHashOf(r.leaf));
    assert.equal(before1300.length, FIRST);
    assert.ok(mth(before1300).equals(audit.sequencer.treeHead().root), 'the independent root agrees');
  });
  after(async () => {
    await audit?.close();
    await backend?.tenantStores.close();
    await backend?.control.close();
    await data?.drop();
    await world?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('seals the segments due: [0, 768) in tiles of 256 on both destinations', async () => {
    const pass = await archiver().run();
    assert.deepEqual(pass.sealed, [
      'audit.0000000000000000-0000000000000256',
      'audit.0000000000000256-0000000000000512',
      'audit.0000000000000512-0000000000000768',
    ]);
    assert.equal(await archiver().archivedEnd(), 768);
  });

  test('prunes nothing while a segment is missing on one destination', async () => {
    const unchanged = await rows();
    const id = 'audit.0000000000000000-0000000000000256';
    // Its signature gone on B: the segments on every destination end at 0.
    const sig = siteOf(1, segmentSignatureKey(id));
    renameSync(sig, `${sig}.away`);
    assert.deepEqual(await prune(), { from: 0, to: 0, segments: [] });
    renameSync(`${sig}.away`, sig);
    // The signature there, the manifest of the second segment gone on B: reading it back fails.
    const manifest = siteOf(1, segmentManifestKey('audit.0000000000000256-0000000000000512'));
    renameSync(manifest, `${manifest}.away`);
    await assert.rejects(prune());
    renameSync(`${manifest}.away`, manifest);
    assert.deepEqual(await rows(), unchanged);
    assert.equal(await readArchivedEnd(db()), 0);
  });

  test('prunes nothing when a segment is tampered with on one destination', async () => {
    const unchanged = await rows();
    const tile = siteOf(1, segmentObjectKey('tile/entries/001'));
    const original = readFileSync(tile);
    const flipped = Buffer.from(original);
    flipped[40] = (flipped[40] as number) ^ 1;
    writeFileSync(tile, flipped);
    await assert.rejects(prune(), (err: unknown) => {
      assert.ok(err instanceof SegmentError, String(err));
      assert.match(err.message, /tile\/entries\/001 is not the object written/);
      return true;
    });
    writeFileSync(tile, original);
    assert.deepEqual(await rows(), unchanged);
    assert.equal(await readArchivedEnd(db()), 0);
  });

  test('never prunes within keepRecentEntries: 800 kept of 1,300 prunes [0, 256) only', async () => {
    const pass = await prune(800);
    assert.deepEqual(pass, { from: 0, to: 256, segments: ['audit.0000000000000000-0000000000000256'] });
    assert.equal(await readArchivedEnd(db()), 256);
    const after = await rows();
    assert.equal(after.firstBlock, 256);
    assert.ok(after.firstTenantEntry >= 256);
    assert.equal(after.lowestLowNode, 256);
    assert.equal((await prune(1_100)).to, 256, 'nothing more within 1,100 kept');
  });

  test('prunes up to the archived end: rows gone, cursor moved, audit.pruned in the log', async () => {
    const before = await rows();
    const pass = await prune();
    assert.deepEqual(pass, {
      from: 256,
      to: 768,
      segments: ['audit.0000000000000256-0000000000000512', 'audit.0000000000000512-0000000000000768'],
    });
    assert.equal(await readArchivedEnd(db()), 768);
    const after = await rows();
    assert.equal(after.firstBlock, 768);
    assert.equal(after.blocks, before.blocks - 512 / 64);
    assert.ok(after.firstTenantEntry >= 768);
    assert.equal(
      after.tenantEntries,
      before.tenantEntries - (512 * 3) / 4,
      'the tenant’s entries of [256, 768)',
    );
    assert.equal(after.lowestLowNode, 768);
    assert.deepEqual(after.high, before.high, 'nodes of level 8 and up stay');
    assert.deepEqual(after.high, ['10/0', '8/0', '8/1', '8/2', '8/3', '8/4', '9/0', '9/1']);
    assert.deepEqual(await prune(), { from: 768, to: 768, segments: [] }, 'a second pass has nothing to do');

    await settle();
    const recorded = (await audit.reader.entries({ from: FIRST, limit: 10 })).map(
      (e) => JSON.parse(e.leaf) as AuditEvent & { index: number },
    );
    const pruned = recorded.filter((e) => e.action === 'audit.pruned');
    assert.deepEqual(
      pruned.map((e) => ({ actor: e.actor, tenant: e.tenant, target: e.target, outcome: e.outcome })),
      [
        {
          actor: { kind: 'system', id: 'audit-archive' },
          tenant: null,
          target: { from: 0, to: 256, segments: ['audit.0000000000000000-0000000000000256'] },
          outcome: 'success',
        },
        {
          actor: { kind: 'system', id: 'audit-archive' },
          tenant: null,
          target: { from: 256, to: 768, segments: pass.segments },
          outcome: 'success',
        },
      ],
    );
  });

  test('the sequencer goes on appending and signing after the prune, and after a restart', async () => {
    const verifierKey = await audit.verifierKey();
    const check = async () => {
      const size = audit.sequencer.treeHead().size;
      assert.equal(await storedLogSize(db()), size);
      const later = (await readLeaves(db(), FIRST, size)).map((r) => leafHashOf(r.leaf));
      assert.equal(later.length, size - FIRST);
      const root = mth([...before1300, ...later]);
      assert.ok(audit.sequencer.treeHead().root.equals(root), `the root at ${size} is the independent one`);
      const latest = await audit.reader.latestCheckpoint();
      assert.equal(latest?.size, size);
      const opened = independentOpenCheckpoint(latest?.note ?? '', verifierKey);
      assert.equal(opened.size, BigInt(size));
      assert.ok(opened.root.equals(root), 'the signed checkpoint names the independent root');
    };
    await grow(130);
    await check();
    await audit.close();
    audit = openAudit();
    await audit.start();
    await grow(77);
    await check();
    assert.equal(audit.sequencer.health().ok, true);
    assert.equal(audit.checkpointer.health().ok, true);
  });

  test('archiving and pruning go on from the cursor', async () => {
    // 1,300 + 2 pruned events + 207 = 1,509: [768, 1024) is now due (1,024 + 300 ≤ 1,509), and sealed
    // from the live log above the cursor.
    const pass = await archiver().run();
    assert.deepEqual(pass, { from: 768, sealed: ['audit.0000000000000768-0000000000001024'] });
    assert.deepEqual(await prune(), {
      from: 768,
      to: 1024,
      segments: ['audit.0000000000000768-0000000000001024'],
    });
    assert.equal((await rows()).firstBlock, 1024);
    await grow(3);
    assert.equal(await storedLogSize(db()), audit.sequencer.treeHead().size);
  });

  test('refuses a segment of another tree under the same name', async () => {
    // B's next segment is replaced by A's copy of an earlier one renamed: its signature does not hold.
    await grow(300);
    const due = await archiver().run();
    assert.deepEqual(due.sealed, ['audit.0000000000001024-0000000000001280']);
    const id = 'audit.0000000000001024-0000000000001280';
    copyFileSync(
      siteOf(0, segmentManifestKey('audit.0000000000000768-0000000000001024')),
      siteOf(1, segmentManifestKey(id)),
    );
    await assert.rejects(prune(), SegmentError);
    assert.equal(await readArchivedEnd(db()), 1024);
  });

  test('a long range is pruned in several transactions, each with its own audit.pruned', async () => {
    // B's copy of [1024, 1280) made whole again (the test before broke it), and two more segments.
    const id = 'audit.0000000000001024-0000000000001280';
    copyFileSync(siteOf(0, segmentManifestKey(id)), siteOf(1, segmentManifestKey(id)));
    await grow(512);
    const due = await archiver().run();
    assert.deepEqual(due.sealed, [
      'audit.0000000000001280-0000000000001536',
      'audit.0000000000001536-0000000000001792',
    ]);
    const size = audit.sequencer.treeHead().size;
    const pass = await prune(KEEP, 1);
    assert.deepEqual(pass, {
      from: 1024,
      to: 1792,
      segments: [id, ...due.sealed],
    });
    assert.equal(await readArchivedEnd(db()), 1792);
    assert.equal((await rows()).firstBlock, 1792);
    await settle();
    const recorded = (await audit.reader.entries({ from: size, limit: 10 })).map(
      (e) => JSON.parse(e.leaf) as AuditEvent,
    );
    assert.deepEqual(
      recorded.filter((e) => e.action === 'audit.pruned').map((e) => e.target),
      [
        { from: 1024, to: 1280, segments: [id] },
        { from: 1280, to: 1536, segments: [due.sealed[0]] },
        { from: 1536, to: 1792, segments: [due.sealed[1]] },
      ],
    );
  });
});
