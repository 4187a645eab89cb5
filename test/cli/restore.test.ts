// drill: whole deployments restored from backups
/**
 * `tresor restore` as operators run it (bin/tresor.js as a child process) on backups of a real stack:
 * from a folder and from S3 (s3rver on loopback), each restored folder then served by a real server
 * with the stack's keyd, answering the records written before the backup; a tampered backup, a backup
 * whose audit log does not hold against its checkpoint and a non-empty target refused with nothing
 * left behind; usage errors exit 2. No customer value and no credential in any output.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseCheckpoint } from '../../src/audit/checkpoint.ts';
import { parseNote } from '../../src/audit/note.ts';
import { type BackupResult, createFolderDestination, createS3Destination } from '../../src/backup/index.ts';
import {
  type LocalS3,
  S3RVER_ACCESS_KEY_ID,
  S3RVER_SECRET_ACCESS_KEY,
  startLocalS3,
} from '../backup/s3-server.ts';
import { operatorToken } from '../helpers/console.ts';
import { forgeKeydCheckpoint } from '../helpers/keyd-checkpoints.ts';
import {
  backupStack,
  MARKER,
  newestCheckpoint,
  type StackWithRecords,
  serverOn,
  stackBackupSource,
  stackWithRecords,
} from '../server/backup-trial-fixture.ts';
import { type Run, tresor } from './cli-run.ts';

const S3_ENV = { AWS_ACCESS_KEY_ID: S3RVER_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: S3RVER_SECRET_ACCESS_KEY };

function assertClean(run: Run): void {
  assert.ok(!`${run.stdout}${run.stderr}`.includes(MARKER), 'no customer value in the output');
  assert.ok(
    !`${run.stdout}${run.stderr}`.includes(`=${S3RVER_SECRET_ACCESS_KEY}`),
    'no credential in the output',
  );
}

describe('tresor restore', () => {
  let world: StackWithRecords;
  let s3: LocalS3;
  let folderRoot: string;
  let backup: BackupResult;
  let parent: string;
  let n = 0;
  const target = () => {
    n += 1;
    return join(parent, `data-${n}`);
  };
  const restore = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    tresor(['restore', '--keyd-socket', world.stack.keydSocket, '--json', ...args], { env });

  before(async () => {
    world = await stackWithRecords(3);
    s3 = await startLocalS3();
    folderRoot = join(world.stack.root, 'backups');
    parent = join(world.stack.root, 'restores');
    mkdirSync(parent, { mode: 0o700 });
    backup = await backupStack(world.stack, [
      createFolderDestination({ root: folderRoot }),
      createS3Destination({
        name: 's3',
        endpoint: s3.endpoint,
        region: 'us-east-1',
        bucket: s3.bucket,
        prefix: 'site-a/',
        forcePathStyle: true,
        accessKeyId: S3RVER_ACCESS_KEY_ID,
        secretAccessKey: S3RVER_SECRET_ACCESS_KEY,
      }),
    ]);
    assert.deepEqual(
      backup.destinations.map((d) => d.ok),
      [true, true],
    );
  });
  after(async () => {
    await s3?.remove();
    await world?.stack.stop();
  });

  /** A real server on the restored folder, with the stack's keyd, answers every record written before. */
  async function serveAndRead(dataDir: string): Promise<void> {
    const { server, request } = await serverOn(world.stack, dataDir);
    try {
      for (const record of world.records) {
        const res = await request('GET', `/v1/collections/customers/records/${record.id}`, {
          token: world.apiKey,
        });
        assert.equal(res.status, 200, res.text);
        assert.deepEqual(res.json<{ data: unknown }>().data, record.data);
      }
    } finally {
      request.agent.destroy();
      await server.close();
    }
  }

  test('from a folder (the newest complete backup by default): the restored folder serves the records written before the backup', async () => {
    const to = target();
    const run = await restore(['--from', folderRoot, '--to', to]);
    assert.equal(run.status, 0, run.stderr);
    assertClean(run);
    const done = JSON.parse(run.stdout) as Record<string, unknown>;
    assert.equal(done.backupId, backup.backupId);
    assert.equal(done.target, to);
    assert.deepEqual(done.tenants, [{ id: world.tenant, state: 'active', keyShredded: false }]);
    assert.deepEqual(readdirSync(to).sort(), ['control.sqlite', 'tenants']);
    assert.deepEqual(readdirSync(parent), [`data-${n}`], 'no hidden staging folder left');
    await serveAndRead(to);
  });

  test('from s3://bucket/prefix with --backup, credentials from the environment: the same', async () => {
    const to = target();
    const run = await restore(
      [
        '--from',
        `s3://${s3.bucket}/site-a/`,
        '--s3-endpoint',
        s3.endpoint,
        '--backup',
        backup.backupId,
        '--to',
        to,
      ],
      S3_ENV,
    );
    assert.equal(run.status, 0, run.stderr);
    assertClean(run);
    assert.equal(
      (JSON.parse(run.stdout) as { destination: string }).destination,
      `s3://${s3.bucket}/site-a/`,
    );
    await serveAndRead(to);
  });

  test('credentials from files work as well; without any an s3:// restore is a usage error (exit 2)', async () => {
    const idFile = join(world.stack.root, 's3-id');
    const secretFile = join(world.stack.root, 's3-secret');
    writeFileSync(idFile, `${S3RVER_ACCESS_KEY_ID}\n`, { mode: 0o600 });
    writeFileSync(secretFile, `${S3RVER_SECRET_ACCESS_KEY}\n`, { mode: 0o600 });
    const to = target();
    const ok = await restore(
      ['--from', `s3://${s3.bucket}/site-a`, '--s3-endpoint', s3.endpoint, '--to', to],
      {
        TRESOR_S3_ACCESS_KEY_ID_FILE: idFile,
        TRESOR_S3_SECRET_ACCESS_KEY_FILE: secretFile,
      },
    );
    assert.equal(ok.status, 0, ok.stderr);
    const none = await restore(
      ['--from', `s3://${s3.bucket}/site-a`, '--s3-endpoint', s3.endpoint, '--to', target()],
      {
        AWS_ACCESS_KEY_ID: '',
        AWS_SECRET_ACCESS_KEY: '',
      },
    );
    assert.equal(none.status, 2, none.stderr);
    assert.match(none.stderr, /needs AWS_ACCESS_KEY_ID or --s3-access-key-id-file/);
  });

  test('wrong S3 credentials are refused clearly (exit 1) and nothing is created', async () => {
    const to = target();
    const run = await restore(
      ['--from', `s3://${s3.bucket}/site-a`, '--s3-endpoint', s3.endpoint, '--to', to],
      {
        AWS_ACCESS_KEY_ID: 'AKIAWRONG000000000000',
        AWS_SECRET_ACCESS_KEY: 'wrong-secret-never-printed',
      },
    );
    assert.equal(run.status, 1, run.stderr);
    assert.match(
      run.stderr,
      /TRESOR_ERR_BACKUP_DESTINATION: .*credentials or permissions refused: InvalidAccessKeyId, HTTP 403/,
    );
    assert.ok(!run.stderr.includes('wrong-secret-never-printed'));
    assert.ok(!readdirSync(parent).some((f) => f.includes(`data-${n}`)));
  });

  test('a tampered backup is refused (exit 1): no target, no staging folder left', async () => {
    const copy = join(world.stack.root, `tampered-${Date.now()}`);
    cpSync(folderRoot, copy, { recursive: true });
    const chunk = join(copy, backup.backupId, 'chunk-000001');
    const bytes = readFileSync(chunk);
    bytes[50] = (bytes[50] ?? 0) ^ 0x01;
    writeFileSync(chunk, bytes);
    const to = target();
    const before = readdirSync(parent);
    const run = await restore(['--from', copy, '--to', to]);
    assert.equal(run.status, 1);
    assert.match(
      run.stderr,
      /TRESOR_ERR_BACKUP_INVALID: backup \S+ refused: chunk 1 does not match its digest/,
    );
    assertClean(run);
    assert.deepEqual(readdirSync(parent), before, 'nothing created beside the target');
  });

  test('a backup whose restored audit log does not hold against its signed checkpoint is refused (exit 1)', async () => {
    const keyd = world.stack.keydClient();
    const real = parseCheckpoint(parseNote(await newestCheckpoint(world.stack.dataDir)).text);
    const key = await keyd.call('publicKey', { purpose: 'audit-checkpoint' });
    // Signed by keyd for the log's origin, but of a size the log never reached: a rolled-back log.
    // keyd signs no such checkpoint now; the forgery is what a stolen key (or a keyd reset) could sign.
    const forged = await forgeKeydCheckpoint(keyd, key, { ...real, size: real.size + 100 });
    const live = stackBackupSource(world.stack.dataDir);
    const root = join(world.stack.root, 'forged-backups');
    const bad = await backupStack(world.stack, [createFolderDestination({ root })], {
      tenants: () => live.tenants(),
      auditCheckpoint: async () => forged,
    });
    const to = target();
    const before = readdirSync(parent);
    const run = await restore(['--from', root, '--backup', bad.backupId, '--to', to]);
    assert.equal(run.status, 1);
    assert.match(
      run.stderr,
      /TRESOR_ERR_BACKUP_INVALID: backup \S+ refused: its audit log does not hold against its checkpoint/,
    );
    assert.deepEqual(readdirSync(parent), before);
  });

  test('a tenant whose key keyd destroyed after the backup is restored as it was, and said to be unreadable', async () => {
    const created = await world.stack.request('POST', '/v1/tenants', {
      token: await operatorToken(world.stack, 'tenants:create'),
      body: { name: 'Closed Later' },
    });
    assert.equal(created.status, 201, created.text);
    const { id: later, apiKey } = created.json<{ id: string; apiKey: string }>();
    // A collection, so its store and its tenant key are in use before the backup.
    const put = await world.stack.request('PUT', '/v1/collections/notes', {
      token: apiKey,
      body: { fields: { text: { type: 'string', classification: 'internal', required: true } } },
    });
    assert.equal(put.status, 201, put.text);
    const root = join(world.stack.root, 'backups-before-shred');
    const taken = await backupStack(world.stack, [createFolderDestination({ root })]);
    await world.stack.keydClient().call('destroyTenantKey', { tenant: later, mode: 'now' });
    const to = target();
    const json = await restore(['--from', root, '--backup', taken.backupId, '--to', to]);
    assert.equal(json.status, 0, json.stderr);
    const tenants = (JSON.parse(json.stdout) as { tenants: { id: string; keyShredded: boolean }[] }).tenants;
    assert.deepEqual(
      tenants.map((t) => [t.id, t.keyShredded]).sort(),
      [
        [later, true],
        [world.tenant, false],
      ].sort(),
    );
    const text = await tresor([
      'restore',
      '--keyd-socket',
      world.stack.keydSocket,
      '--from',
      root,
      '--to',
      target(),
    ]);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`tenant ${later}: closed after the backup, its key is shredded`));
  });

  test('a target that is not empty is refused (exit 1) and left as it was', async () => {
    const to = target();
    mkdirSync(to);
    writeFileSync(join(to, 'keep.txt'), 'mine');
    const run = await restore(['--from', folderRoot, '--to', to]);
    assert.equal(run.status, 1);
    assert.match(run.stderr, /TRESOR_ERR_RESTORE_TARGET_NOT_EMPTY/);
    assert.deepEqual(readdirSync(to), ['keep.txt']);
    assert.equal(readFileSync(join(to, 'keep.txt'), 'utf8'), 'mine');
  });

  test('usage errors exit 2: a bad backup id; s3 flags with a folder', async () => {
    const badId = await restore(['--from', folderRoot, '--backup', '../x', '--to', target()]);
    assert.equal(badId.status, 2);
    const flags = await restore([
      '--from',
      folderRoot,
      '--s3-endpoint',
      'http://127.0.0.1:1',
      '--to',
      target(),
    ]);
    assert.equal(flags.status, 2);
    assert.match(flags.stderr, /--s3-endpoint is for an s3:\/\/ destination/);
  });

  test('keyd unreachable: exit 3', async () => {
    const run = await tresor([
      'restore',
      '--from',
      folderRoot,
      '--to',
      target(),
      '--keyd-socket',
      join(world.stack.root, 'no-keyd.sock'),
    ]);
    assert.equal(run.status, 3, run.stderr);
  });
});
