// backends: sqlite (these read the SQLite files of a backup; PostgreSQL's backups, trial and restore: e2e/pg-backup-drill)
/**
 * Verifying backups in the running product, on real stacks (keyd and `tresor server` processes):
 * POST /v1/backups/:id/verify answers 202 at once and the verification runs in the server (one at a
 * time: 409 while one runs), its progress and result read with GET /v1/backups/:id; `tresor backup
 * verify` follows it to the result (exit code 1 when it failed); and the scheduled re-verification
 * (server.backup.verifyIntervalMinutes) finds a copy altered at rest without anyone asking, records
 * it, audits it, and `tresor backup list` shows it.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type FaultProxy, startFaultProxy } from '../backup/fault-proxy.ts';
import {
  type LocalS3,
  S3RVER_ACCESS_KEY_ID,
  S3RVER_SECRET_ACCESS_KEY,
  startLocalS3,
} from '../backup/s3-server.ts';
import { exited, leaksNone, type Run, tresor, untilLogged } from '../cli/cli-run.ts';
import { operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

interface Copy {
  name: string;
  state: string;
  verification: { result: string; at: string; code: string | null } | null;
}
interface Backup {
  id: string;
  outcome: string;
  verifying: boolean;
  verification: { result: string; at: string } | null;
  destinations: Copy[];
}

const byName = (b: Backup, name: string) => b.destinations.find((d) => d.name === name) as Copy;

/** A stack's backup helpers with a backups:run and a backups:read token. */
async function backupClient(s: TresorStack, dir: string) {
  const runToken = await operatorToken(s, 'backups:run');
  const readToken = await operatorToken(s, 'backups:read');
  const runFile = join(dir, 'run-token');
  const readFile = join(dir, 'read-token');
  writeFileSync(runFile, `${runToken}\n`, { mode: 0o600 });
  writeFileSync(readFile, `${readToken}\n`, { mode: 0o600 });
  const get = async (id: string) => {
    const res = await s.request('GET', `/v1/backups/${id}`, { token: readToken });
    assert.equal(res.status, 200, res.text);
    return res.json<Backup>();
  };
  return {
    runToken,
    readToken,
    runFile,
    readFile,
    get,
    /** A backup taken now, once it has ended and been verified. */
    async backupNow(): Promise<Backup> {
      const started = await s.request('POST', '/v1/backups', { token: runToken });
      assert.equal(started.status, 202, started.text);
      const { id } = started.json<{ id: string }>();
      return waitFor(
        `backup ${id} verified`,
        async () => {
          const b = await get(id);
          return b.outcome !== 'running' && !b.verifying && b.verification ? b : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 250 },
      );
    },
    cli(args: string[], tokenFile = runFile): Promise<Run> {
      return tresor(['backup', ...args, '--url', s.url, '--ca-file', s.caFile, '--token-file', tokenFile]);
    },
  };
}

describe('POST /v1/backups/:id/verify runs in the background, one at a time', () => {
  let s: TresorStack;
  let dir: string;
  let a: string;
  let s3: LocalS3;
  let proxy: FaultProxy;
  let client: Awaited<ReturnType<typeof backupClient>>;
  const runs: Run[] = [];

  before(async () => {
    dir = `/tmp/tresor-verify-${process.pid}-${Date.now().toString(36)}`;
    mkdirSync(dir, { mode: 0o700 });
    a = join(dir, 'a');
    s3 = await startLocalS3('verify');
    proxy = await startFaultProxy(Number(new URL(s3.endpoint).port));
    writeFileSync(join(dir, 'key-id'), S3RVER_ACCESS_KEY_ID, { mode: 0o600 });
    writeFileSync(join(dir, 'secret'), S3RVER_SECRET_ACCESS_KEY, { mode: 0o600 });
    s = await startTresorStack({
      env: {
        TRESOR_BACKUP_INTERVAL_MINUTES: '0',
        TRESOR_BACKUP_VERIFY_INTERVAL_MINUTES: '0',
        TRESOR_BACKUP_DESTINATIONS: JSON.stringify([
          { name: 'a', kind: 'folder', path: a },
          {
            name: 'c',
            kind: 's3',
            endpoint: proxy.endpoint,
            region: 'us-east-1',
            bucket: s3.bucket,
            forcePathStyle: true,
            accessKeyIdFile: join(dir, 'key-id'),
            secretAccessKeyFile: join(dir, 'secret'),
          },
        ]),
      },
    });
    client = await backupClient(s, dir);
  });
  after(async () => {
    await s?.stop();
    await proxy?.close();
    await s3?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers 202 at once, shows the verification running, refuses a second with 409, and records the result', async () => {
    const backup = await client.backupNow();
    assert.equal(backup.outcome, 'done');
    // The S3 destination holds every request until released: the verification cannot end before.
    proxy.setMode('hold');
    const asked = await s.request('POST', `/v1/backups/${backup.id}/verify`, { token: client.runToken });
    assert.equal(asked.status, 202, asked.text);
    const { id, requestedAt } = asked.json<{ id: string; requestedAt: string }>();
    assert.equal(id, backup.id);
    assert.equal(asked.headers.location, `/v1/backups/${backup.id}`);
    assert.equal((await client.get(backup.id)).verifying, true);
    const again = await s.request('POST', `/v1/backups/${backup.id}/verify`, { token: client.runToken });
    assert.equal(again.status, 409, again.text);
    assert.equal(again.json().code, 'TRESOR_ERR_BACKUP_VERIFYING');
    const listed = await s.request('GET', '/v1/backups', { token: client.readToken });
    assert.equal(
      listed.json<{ backups: Backup[] }>().backups.find((b) => b.id === backup.id)?.verifying,
      true,
    );

    proxy.release();
    const done = await waitFor(
      'the requested verification recorded',
      async () => {
        const b = await client.get(backup.id);
        return !b.verifying && (b.verification?.at ?? '') >= requestedAt ? b : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    assert.equal(done.verification?.result, 'passed');
    for (const name of ['a', 'c']) assert.equal(byName(done, name).verification?.result, 'passed', name);
    const audited = await untilLogged(
      s.dataDir,
      "the operator's backup.verify with its result",
      (e) => e.action === 'backup.verify' && e.actor.kind !== 'system' && e.target?.backupId === backup.id,
    );
    assert.equal(audited.outcome, 'success');
    assert.equal(audited.target?.result, 'passed');

    // Unknown backups and ids that are not ids: 404 and 400, and nothing starts.
    const unknown = await s.request('POST', '/v1/backups/20200101T000000Z-00000000/verify', {
      token: client.runToken,
    });
    assert.equal(unknown.status, 404, unknown.text);
    const notAnId = await s.request('POST', '/v1/backups/not-an-id/verify', { token: client.runToken });
    assert.equal(notAnId.status, 400, notAnId.text);
  });

  it('tresor backup verify waits for the result and prints it; exit code 1 when the backup fails it', async () => {
    const backup = (
      JSON.parse(exited(await client.cli(['list', '--json'], client.readFile), 0).stdout) as {
        backups: Backup[];
      }
    ).backups[0] as Backup;
    const ok = exited(
      await client.cli(['verify', backup.id, '--read-token-file', client.readFile, '--json']),
      0,
    );
    runs.push(ok);
    const shown = JSON.parse(ok.stdout) as Backup;
    assert.equal(shown.verification?.result, 'passed');
    assert.ok((shown.verification?.at ?? '') > (backup.verification?.at ?? ''));

    const started = exited(await client.cli(['verify', backup.id, '--no-wait', '--json']), 0);
    runs.push(started);
    assert.equal((JSON.parse(started.stdout) as { id: string }).id, backup.id);
    // A trial restore and a verification, both on low-priority threads: on a busy machine, minutes.
    await waitFor(
      'the --no-wait verification over',
      async () => ((await client.get(backup.id)).verifying ? undefined : true),
      { timeoutMs: 120_000, intervalMs: 250 },
    );

    // A chunk altered at rest at a (where the trial restore runs): the verification fails there.
    const chunk = join(a, backup.id, 'chunk-000000');
    const bytes = readFileSync(chunk);
    bytes[10] = (bytes[10] ?? 0) ^ 1;
    writeFileSync(chunk, bytes);
    const bad = exited(await client.cli(['verify', backup.id, '--read-token-file', client.readFile]), 1);
    runs.push(bad);
    assert.match(bad.stderr, /^tresor: TRESOR_ERR_BACKUP_INVALID: backup \S+ failed verification at a/m);
    assert.match(bad.stdout, /a:read back \(verification failed: TRESOR_ERR_BACKUP_INVALID\)/);
    exited(await client.cli(['verify', backup.id, '--timeout', 'soon']), 2);
    for (const r of runs) leaksNone(r, [client.runToken, client.readToken]);
  });
});

describe('the scheduled re-verification', () => {
  let s: TresorStack;
  let dir: string;
  let a: string;
  let b: string;
  let client: Awaited<ReturnType<typeof backupClient>>;

  before(async () => {
    dir = `/tmp/tresor-reverify-${process.pid}-${Date.now().toString(36)}`;
    mkdirSync(dir, { mode: 0o700 });
    [a, b] = [join(dir, 'a'), join(dir, 'b')];
    s = await startTresorStack({
      env: {
        TRESOR_BACKUP_INTERVAL_MINUTES: '0',
        // Every 1.2 s: the least recently verified backups are checked again.
        TRESOR_BACKUP_VERIFY_INTERVAL_MINUTES: '0.02',
        TRESOR_BACKUP_DESTINATIONS: JSON.stringify([
          { name: 'a', kind: 'folder', path: a },
          { name: 'b', kind: 'folder', path: b },
        ]),
      },
    });
    client = await backupClient(s, dir);
  });
  after(async () => {
    await s?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('verifies held backups again by itself, and reports a copy altered at rest without anyone asking', async () => {
    const first = await client.backupNow();
    const second = await client.backupNow();
    for (const x of [first, second]) assert.equal(x.verification?.result, 'passed');
    // Both verified again by the schedule, after their own verification.
    for (const x of [first, second]) {
      await waitFor(
        `${x.id} verified again by the schedule`,
        async () => {
          const now = await client.get(x.id);
          return (now.verification?.at ?? '') > (x.verification?.at ?? '') ? now : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );
    }
    const scheduled = await untilLogged(
      s.dataDir,
      'a scheduled backup.verify',
      (e) => e.action === 'backup.verify' && e.actor.kind === 'system' && e.target?.backupId === first.id,
    );
    assert.equal(scheduled.actor.id, 'backup');

    // The first backup's chunk altered at b: the schedule finds it.
    const chunk = join(b, first.id, 'chunk-000000');
    const bytes = readFileSync(chunk);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
    writeFileSync(chunk, bytes);
    const found = await waitFor(
      'the schedule reporting the altered copy',
      async () => {
        const now = await client.get(first.id);
        return now.verification?.result === 'failed' ? now : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    assert.equal(byName(found, 'b').verification?.code, 'TRESOR_ERR_BACKUP_INVALID');
    assert.equal(byName(found, 'a').verification?.result, 'passed');
    const failure = await untilLogged(
      s.dataDir,
      'the failed scheduled backup.verify',
      (e) =>
        e.action === 'backup.verify' &&
        e.actor.kind === 'system' &&
        e.target?.backupId === first.id &&
        e.outcome === 'failure',
    );
    assert.equal(failure.target?.result, 'failed');
    // The second backup, untouched, still passes.
    assert.equal((await client.get(second.id)).verification?.result, 'passed');

    const list = exited(await client.cli(['list'], client.readFile), 0).stdout;
    const line = list.split('\n').find((l) => l.startsWith(first.id)) ?? '';
    assert.match(line, /b:read back \(verification failed: TRESOR_ERR_BACKUP_INVALID\)/);
    assert.match(line, /failed \d{4}-\d\d-\d\dT/);
  });
});
