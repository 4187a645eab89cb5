// backends: sqlite postgres
// drill: a deployment restored with its audit segments
/**
 * Issue 19, "restoring from backup brings the segments back": a real stack (a keyd process and the server
 * in process) with archiving on (`audit.archiveKeepEntries` 0, one tile per segment) and two folder
 * destinations; enough records written for a full tile of audit entries; the archive job's pass (its
 * timer, every 300 ms here) seals a segment on both; `tresor backup now --wait` takes a backup whose
 * signed manifest names it (its trial restore checking the segment's signature). Then `tresor
 * restore` brings the backup into a NEW data folder (on PostgreSQL: a fresh empty database) for a
 * deployment whose only destination is a THIRD, empty folder: the restore opens the segment whole and copies it there, where it opens
 * again. A restore from a copy of the destination with a tile of the segment flipped is refused,
 * naming the segment, and leaves no folder (an empty database) and nothing at the third destination.
 *
 * The live log's rows are not looked at: whether pruning removed them or not, this holds.
 */
import assert from 'node:assert/strict';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { listSegments, openSegment, segmentObjectKey } from '../../src/audit/segment.ts';
import { type BackupManifest, createFolderDestination } from '../../src/backup/index.ts';
import { pgDatabaseEmptyAt } from '../../src/server/pg-restore-database.ts';
import { exited, type Run, tresor } from '../cli/cli-run.ts';
import { onPostgres } from '../helpers/backend.ts';
import { backupNow } from '../helpers/backup-now.ts';
import { operatorToken } from '../helpers/console.ts';
import { type FreshPgDatabase, freshPgDatabase, testPgPrefix } from '../helpers/pg.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const SEGMENT = 'audit.0000000000000000-0000000000000256';
/** Records written: with the tenant's set-up, well past one full tile of 256 entries. */
const RECORDS = 280;

describe('restoring from backup brings the audit segments back', () => {
  let base: string;
  let s: TresorStack;
  let folders: { a: string; b: string };
  let backupId: string;
  let origin: string;
  const databases: FreshPgDatabase[] = [];

  /** Where a restore goes: a new data folder, or on PostgreSQL a fresh empty database. */
  const restoreTarget = async (folder: string): Promise<{ args: string[]; empty(): Promise<boolean> }> => {
    if (!onPostgres) {
      return {
        args: ['--to', folder],
        empty: async () => !existsSync(folder),
      };
    }
    const db = await freshPgDatabase({ prefix: testPgPrefix('tresor_test') });
    databases.push(db);
    return { args: ['--database-url', db.url], empty: () => pgDatabaseEmptyAt(db.url) };
  };

  const cli = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> => tresor(args, { env });
  const segmentKey = async () => {
    const pub = await s.keydClient().call('publicKey', { purpose: 'backup-manifest' });
    return { name: pub.name, publicKey: pub.publicKey };
  };

  before(async () => {
    base = mkdtempSync(join(tmpdir(), 'tresor-segments-'));
    folders = { a: join(base, 'dest-a'), b: join(base, 'dest-b') };
    s = await startTresorStack({
      server: 'in-process',
      dataDir: join(base, 'data'),
      logLevel: 'warn',
      env: {
        TRESOR_BACKUP_INTERVAL_MINUTES: '0',
        TRESOR_BACKUP_DESTINATIONS: JSON.stringify([
          { name: 'a', kind: 'folder', path: folders.a },
          { name: 'b', kind: 'folder', path: folders.b },
        ]),
        TRESOR_AUDIT_ARCHIVE_KEEP_ENTRIES: '0',
        TRESOR_AUDIT_ARCHIVE_SEGMENT_TILES: '1',
      },
      // The archive job every 300 ms, not every minute (the config's least).
      serverOptions: { archiveIntervalMs: 300 },
    });
  });

  after(async () => {
    await s?.stop();
    for (const db of databases) await db.drop().catch(() => undefined);
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it('seals a segment on both destinations and names it in a backup', { timeout: 300_000 }, async () => {
    const createToken = await operatorToken(s, 'tenants:create');
    const auditToken = await operatorToken(s, 'audit:read');
    const created = await s.request('POST', '/v1/tenants', {
      token: createToken,
      body: { name: 'Segments' },
    });
    assert.equal(created.status, 201, created.text);
    const { apiKey } = created.json<{ apiKey: string }>();
    const put = await s.request('PUT', '/v1/collections/notes', {
      token: apiKey,
      body: { fields: { n: { type: 'number', classification: 'internal', required: true } } },
    });
    assert.equal(put.status, 201, put.text);
    let next = 0;
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        while (next < RECORDS) {
          const n = next++;
          const res = await s.request('POST', '/v1/collections/notes/records', {
            token: apiKey,
            body: { n },
          });
          assert.equal(res.status, 201, res.text);
        }
      }),
    );
    const checkpoint = await s.request('GET', '/v1/audit/checkpoint', { token: auditToken });
    assert.equal(checkpoint.status, 200, checkpoint.text);
    origin = checkpoint.text.split('\n')[0] as string;

    // The archive job's timer runs its pass every 300 ms.
    const a = createFolderDestination({ root: folders.a });
    const b = createFolderDestination({ root: folders.b });
    await waitFor(
      'the archive job to seal the first segment on both destinations',
      async () =>
        (await listSegments(b)).includes(SEGMENT) && (await listSegments(a)).includes(SEGMENT)
          ? true
          : undefined,
      { timeoutMs: 200_000, intervalMs: 1_000, diagnostics: () => s.serverOutput().slice(-2_000) },
    );

    const { backup } = await backupNow({ stack: s, dir: base });
    assert.equal(backup.outcome, 'done');
    assert.equal(backup.verification?.result, 'passed', 'the trial restore, segment signatures included');
    backupId = backup.id;
    for (const folder of [folders.a, folders.b]) {
      const manifest = JSON.parse(
        readFileSync(join(folder, backupId, 'manifest.json'), 'utf8'),
      ) as BackupManifest;
      assert.equal(manifest.auditSegments?.[0]?.id, SEGMENT);
    }
  });

  it('`tresor restore` into a new data folder checks the segment and copies it to the third, empty destination', async () => {
    assert.ok(backupId, 'the backup of the first test');
    const third = join(base, 'dest-c');
    mkdirSync(third, { mode: 0o700 });
    const target = await restoreTarget(join(base, 'restored'));
    const run = exited(
      await cli(
        [
          'restore',
          '--keyd-socket',
          s.keydSocket,
          '--json',
          '--from',
          folders.a,
          '--backup',
          backupId,
          ...target.args,
        ],
        { TRESOR_BACKUP_DESTINATIONS: JSON.stringify([{ name: 'c', kind: 'folder', path: third }]) },
      ),
      0,
    );
    const done = JSON.parse(run.stdout) as {
      auditSegments: { checked: number; copied: { destination: string; segments: string[] }[] };
    };
    assert.ok(done.auditSegments.checked >= 1);
    assert.equal(done.auditSegments.copied[0]?.destination, 'c');
    assert.ok(done.auditSegments.copied[0]?.segments.includes(SEGMENT));
    assert.equal(await target.empty(), false, 'the data folder (database) is there');

    const destination = createFolderDestination({ root: third });
    assert.ok((await listSegments(destination)).includes(SEGMENT));
    const opened = await openSegment({
      destination,
      id: SEGMENT,
      key: await segmentKey(),
      keys: s.keydClient(),
      origin,
    });
    assert.equal(opened.leaves.length, 256);
    assert.equal(JSON.parse((opened.leaves[0] as Buffer).toString('utf8')).index, 0);
  });

  it('refuses a restore whose segment was tampered with, naming it, and changes nothing', async () => {
    assert.ok(backupId, 'the backup of the first test');
    const tampered = join(base, 'tampered');
    cpSync(folders.b, tampered, { recursive: true });
    const tile = join(tampered, segmentObjectKey('tile/entries/000'));
    const bytes = readFileSync(tile);
    bytes[60] = (bytes[60] ?? 0) ^ 0x01;
    writeFileSync(tile, bytes);
    const third = join(base, 'dest-c2');
    mkdirSync(third, { mode: 0o700 });
    const parent = join(base, 'refused');
    mkdirSync(parent, { mode: 0o700 });
    const target = await restoreTarget(join(parent, 'data'));
    const run = exited(
      await cli(
        ['restore', '--keyd-socket', s.keydSocket, '--from', tampered, '--backup', backupId, ...target.args],
        { TRESOR_BACKUP_DESTINATIONS: JSON.stringify([{ name: 'c', kind: 'folder', path: third }]) },
      ),
      1,
    );
    assert.match(
      run.stderr,
      /TRESOR_ERR_BACKUP_INVALID: backup \S+ refused: audit segment audit\.0000000000000000-0000000000000256: tile\/entries\/000 is not the object written/,
    );
    assert.ok(await target.empty(), 'no data folder (an empty database)');
    assert.deepEqual(readdirSync(parent), [], 'no staging folder');
    assert.deepEqual(readdirSync(third), [], 'nothing copied');
  });
});
