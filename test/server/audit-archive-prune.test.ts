// backends: sqlite postgres
/**
 * The audit.archive job of a real server (in process, real keyd, two folder destinations, this
 * run's backend) with pruning on (audit.archivePrune): after enough entries, each pass
 * seals the segments due on both folders and then prunes the live store behind them — the archived
 * cursor moves, the leaf blocks below it are gone, and the log records `audit.pruned`.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import canonicalize from 'canonicalize';
import type { Kysely } from 'kysely';
import { readArchivedEnd } from '../../src/audit/archived-end.ts';
import { type AuditEvent, appendAuditEvent } from '../../src/audit/event.ts';
import { listSegments } from '../../src/audit/segment.ts';
import { createFolderDestination } from '../../src/objects/folder-destination.ts';
import type { ControlDB } from '../../src/server/control-store.ts';
import { independentBundleEntries, independentTilePath, tiledTree } from '../audit/independent-tiles.ts';
import {
  independentLeafHash,
  independentOpenCheckpoint,
  independentVerifyInclusion,
} from '../audit/independent-verifier.ts';
import { operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const KEEP = 50;

function event(i: number): AuditEvent {
  return {
    at: new Date(Date.UTC(2026, 11, 7, 10, 0, 0, i)).toISOString(),
    actor: { kind: 'system', id: 'archive-prune-test' },
    tenant: null,
    action: 'system.job',
    target: { n: i },
    outcome: 'success',
  };
}

describe('the audit.archive job prunes the live log behind its segments', () => {
  let s: TresorStack;
  let base: string;
  let folders: string[];

  before(async () => {
    base = mkdtempSync(join(tmpdir(), 'tresor-archive-prune-'));
    folders = [join(base, 'dest-a'), join(base, 'dest-b')];
    s = await startTresorStack({
      server: 'in-process',
      logLevel: 'warn',
      env: {
        TRESOR_BACKUP_INTERVAL_MINUTES: '0',
        TRESOR_AUDIT_ARCHIVE_KEEP_ENTRIES: String(KEEP),
        TRESOR_AUDIT_ARCHIVE_PRUNE: 'true',
        TRESOR_AUDIT_ARCHIVE_SEGMENT_TILES: '1',
        TRESOR_BACKUP_DESTINATIONS: JSON.stringify(
          folders.map((path, i) => ({ name: `dest-${i}`, kind: 'folder', path })),
        ),
      },
      serverOptions: { archiveIntervalMs: 300 },
    });
  });
  after(async () => {
    await s?.stop();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  test('seals [0, 512) on both destinations and prunes it', async () => {
    const server = s.server;
    assert.ok(server);
    const db = server.control.db as Kysely<ControlDB>;
    for (let at = 0; at < 600; at += 100)
      await server.control.write(async (trx) => {
        for (let i = at; i < at + 100; i++) await appendAuditEvent(trx, event(i));
      });
    const end = await waitFor('the archived cursor at 512', async () => {
      const cursor = await readArchivedEnd(db);
      return cursor >= 512 ? cursor : undefined;
    });
    assert.equal(end, 512, `${server.audit.sequencer.treeHead().size} entries, ${KEEP} kept`);
    for (const root of folders)
      assert.deepEqual((await listSegments(createFolderDestination({ root }))).slice(0, 2), [
        'audit.0000000000000000-0000000000000256',
        'audit.0000000000000256-0000000000000512',
      ]);
    const first = await db
      .selectFrom('audit_leaves')
      .select('idx')
      .orderBy('idx')
      .limit(1)
      .executeTakeFirst();
    assert.equal(Number(first?.idx), 512);
    const pruned = await waitFor('audit.pruned in the log', async () => {
      const entries = await server.audit.reader.entries({ from: 512, limit: 1000 });
      return entries
        .map((e) => JSON.parse(e.leaf) as AuditEvent)
        .find((e) => e.action === 'audit.pruned' && (e.target as { to?: number }).to === 512);
    });
    assert.deepEqual(pruned.actor, { kind: 'system', id: 'audit-archive' });
  });

  test('serves the pruned range over HTTPS from the segments: entries, tiles and proofs an independent verifier accepts', async () => {
    const server = s.server;
    assert.ok(server);
    const db = server.control.db as Kysely<ControlDB>;
    assert.ok((await readArchivedEnd(db)) >= 512, 'the first test pruned [0, 512)');
    const operator = await operatorToken(s, 'audit:read');
    const pub = await s.request('GET', '/v1/audit/public-key');
    assert.equal(pub.status, 200, pub.text);
    const verifierKey = pub.text.trim();
    const signed = await waitFor('a checkpoint above the pruned range', async () => {
      const res = await s.request('GET', '/v1/audit/checkpoint', { token: operator });
      if (res.status !== 200) return undefined;
      const opened = independentOpenCheckpoint(res.text, verifierKey);
      return opened.size > 512n ? opened : undefined;
    });
    const size = signed.size;
    // Entries from 0: the pruned ones come from the segments, each with its own index and leaf hash.
    const all: { index: number; entry: unknown; leafHash: string }[] = [];
    for (let next: number | null = 0; next !== null && next < Number(size); ) {
      const res = await s.request('GET', `/v1/audit/entries?from=${next}&limit=1000`, { token: operator });
      assert.equal(res.status, 200, res.text);
      const page = res.json<{ entries: typeof all; next: number | null }>();
      all.push(...page.entries);
      next = page.next;
    }
    assert.ok(all.length >= Number(size));
    all.forEach((e, i) => {
      assert.equal(e.index, i);
      const hash = independentLeafHash(Buffer.from(canonicalize(e.entry) as string, 'utf8'));
      assert.equal(hash.toString('base64'), e.leafHash, `leaf hash of ${i}`);
    });
    // Tiles: the root rebuilt from the served tiles (Go-compatible paths) is the signed one, and
    // archived entries prove their inclusion from them and from the proof route.
    const fetchTile = async (path: string) => {
      const res = await s.request('GET', `/v1/audit/${path}`, { token: operator });
      assert.equal(res.status, 200, `${path}: ${res.text}`);
      return res.bytes as Buffer;
    };
    const tree = tiledTree(size, fetchTile);
    assert.deepEqual(await tree.root(), signed.root, 'the root from tiles is the signed one');
    const bundle = independentBundleEntries(await fetchTile(independentTilePath('entries', 1n, size)));
    assert.equal(bundle.length, 256);
    for (const index of [0, 10, 255, 256, 300, 511, 512, Number(size) - 1]) {
      const hash = Buffer.from(all[index]?.leafHash ?? '', 'base64');
      if (index >= 256 && index < 512)
        assert.deepEqual(independentLeafHash(bundle[index - 256] as Buffer), hash, `bundle holds ${index}`);
      assert.deepEqual(await tree.leafHash(BigInt(index)), hash, `tile/0 holds leaf ${index}`);
      assert.ok(
        independentVerifyInclusion(
          hash,
          BigInt(index),
          size,
          await tree.inclusionProof(BigInt(index)),
          signed.root,
        ),
        `inclusion of ${index} from the tiles`,
      );
      const proof = await s.request('GET', `/v1/audit/proofs/inclusion?index=${index}&treeSize=${size}`, {
        token: operator,
      });
      assert.equal(proof.status, 200, proof.text);
      const hashes = proof.json<{ hashes: string[] }>().hashes.map((h) => Buffer.from(h, 'base64'));
      assert.ok(
        independentVerifyInclusion(hash, BigInt(index), size, hashes, signed.root),
        `inclusion of ${index}`,
      );
    }
  });
});
