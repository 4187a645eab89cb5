// backends: sqlite (these read the SQLite files of a backup; PostgreSQL's backups, trial and restore: e2e/pg-backup-drill)
/**
 * Backups in the running product, against real stacks (keyd and `tresor server` processes) with
 * folder destinations: scheduled backups and `tresor backup now` land in every destination, read
 * back and verified; one backup at a time (409); a destination that fails is retried, reported
 * failed, and the others still hold the backup; retention deletes what its policy says and audits
 * it; the deletion certificate's date follows the configured retention; the list survives a
 * restart, and a run cut by kill -9 is reported interrupted with its partial objects removed; no
 * destination file holds a marker value written as a tenant name and as a record.
 */
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exited, leaksNone, type Run, tresor, untilLogged } from '../cli/cli-run.ts';
import { operatorAdmin, operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const MARKER = `backup-marker-${Date.now().toString(36)}-never-in-a-destination`;
const DAY_MS = 86_400_000;
const RETENTION_PERIOD_MS = 3_600_000;

interface Copy {
  name: string;
  state: string;
  attempts: number;
  error: { code: string; message: string } | null;
  verification: { result: string; at: string; code: string | null } | null;
}
interface Backup {
  id: string;
  trigger: string;
  startedAt: string;
  endedAt: string | null;
  outcome: string;
  storedBytes: number | null;
  verification: { result: string; at: string } | null;
  destinations: Copy[];
}

/** Every file under `dir` (recursively), with its bytes. */
function filesUnder(dir: string): { path: string; bytes: Buffer }[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return [];
  return (readdirSync(dir, { recursive: true }) as string[])
    .map((entry) => join(dir, entry))
    .filter((path) => statSync(path).isFile())
    .map((path) => ({ path, bytes: readFileSync(path) }));
}

/** Whether the folder destination holds the complete backup (its manifest, written last). */
const holds = (folder: string, id: string) => existsSync(join(folder, id, 'manifest.json'));

function assertNoMarker(folders: readonly string[]): number {
  let files = 0;
  for (const folder of folders) {
    for (const f of filesUnder(folder)) {
      files += 1;
      assert.equal(f.bytes.includes(Buffer.from(MARKER)), false, `${f.path} holds the marker`);
    }
  }
  return files;
}

const byName = (b: Backup, name: string) => b.destinations.find((d) => d.name === name) as Copy;

describe('backups on a schedule (real stack, folder destinations)', () => {
  let s: TresorStack;
  let folders: string[];

  before(async () => {
    const base = `/tmp/tresor-sched-${process.pid}-${Date.now().toString(36)}`;
    folders = [`${base}-a`, `${base}-b`];
    s = await startTresorStack({
      env: {
        // Every 1.2 s: each run must end before the next starts, and the scheduler must skip a due
        // run while one is still being taken.
        TRESOR_BACKUP_INTERVAL_MINUTES: '0.02',
        TRESOR_BACKUP_DESTINATIONS: JSON.stringify(
          folders.map((path, i) => ({ name: `sched-${i}`, kind: 'folder', path })),
        ),
      },
    });
  });
  after(async () => {
    await s?.stop();
    for (const f of folders ?? []) rmSync(f, { recursive: true, force: true });
  });

  it('takes backups by itself into both folders, read back, verified, never two at once, still listed after a restart', async () => {
    const admin = await operatorAdmin(s);
    const created = await admin.request('POST', '/v1/tenants', { name: MARKER });
    assert.equal(created.status, 201, created.text);
    const token = await operatorToken(s, 'backups:read');
    const list = async () => {
      const res = await s.request('GET', '/v1/backups', { token });
      assert.equal(res.status, 200, res.text);
      return res.json<{ backups: Backup[] }>().backups;
    };
    // Two scheduled backups, both done and verified.
    const done = await waitFor(
      'two scheduled backups done and verified',
      async () => {
        const ok = (await list()).filter((b) => b.outcome === 'done' && b.verification?.result === 'passed');
        return ok.length >= 2 ? ok : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    for (const b of done) {
      assert.equal(b.trigger, 'schedule');
      assert.ok((b.storedBytes ?? 0) > 0);
      for (const c of b.destinations) {
        assert.equal(c.state, 'checked', `${b.id} at ${c.name}`);
        assert.equal(c.verification?.result, 'passed');
      }
      for (const f of folders) assert.ok(holds(f, b.id), `${b.id} in ${f}`);
    }
    // One at a time: each run started after the one before it ended.
    const ended = (await list()).filter((b) => b.endedAt !== null).reverse();
    for (let i = 1; i < ended.length; i++) {
      const previous = ended[i - 1] as Backup;
      const current = ended[i] as Backup;
      assert.ok(
        current.startedAt >= (previous.endedAt ?? ''),
        `${current.id} started before ${previous.id} ended`,
      );
    }
    assert.ok(assertNoMarker(folders) > 4);

    // A restarted server still knows them.
    await s.stopServer();
    await s.startServer();
    const again = await list();
    for (const b of done) {
      const seen = again.find((x) => x.id === b.id);
      assert.equal(seen?.outcome, 'done');
      assert.equal(seen?.verification?.result, 'passed');
    }
    // ...and the schedule goes on from the newest backup.
    const restartedAt = new Date().toISOString();
    await waitFor(
      'a scheduled backup after the restart',
      async () =>
        (await list()).some((x) => x.startedAt > restartedAt && x.outcome === 'done') ? true : undefined,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
  });
});

describe('tresor backup now, list, verify; failures, retention, certificates, restarts', () => {
  let s: TresorStack;
  let dir: string;
  let a: string;
  let b: string;
  let c: string;
  let tokenFile: string;
  let readFile: string;
  const runs: Run[] = [];
  const secrets: string[] = [];

  const cli = async (args: string[], file = tokenFile): Promise<Run> => {
    const run = await tresor([
      'backup',
      ...args,
      '--url',
      s.url,
      '--ca-file',
      s.caFile,
      '--token-file',
      file,
    ]);
    runs.push(run);
    return run;
  };

  before(async () => {
    const base = `/tmp/tresor-backup-${process.pid}-${Date.now().toString(36)}`;
    mkdirSync(base, { mode: 0o700 });
    dir = base;
    [a, b, c] = ['a', 'b', 'c'].map((n) => join(base, `dest-${n}`)) as [string, string, string];
    s = await startTresorStack({
      env: {
        TRESOR_BACKUP_INTERVAL_MINUTES: '0',
        TRESOR_BACKUP_RETRY_ATTEMPTS: '2',
        TRESOR_BACKUP_RETRY_BASE_MS: '50',
        TRESOR_CLOSE_GRACE_DAYS: '0',
        TRESOR_BACKUP_DESTINATIONS: JSON.stringify([
          // a keeps only its newest backup; b and c every backup of the last day, one a day for 3.
          { name: 'a', kind: 'folder', path: a, retention: { keepAllDays: 0, keepDailyDays: 0 } },
          { name: 'b', kind: 'folder', path: b, retention: { keepAllDays: 1, keepDailyDays: 3 } },
          { name: 'c', kind: 'folder', path: c, retention: { keepAllDays: 1, keepDailyDays: 3 } },
        ]),
      },
    });
    const admin = await operatorAdmin(s);
    const created = await admin.request('POST', '/v1/tenants', { name: MARKER });
    assert.equal(created.status, 201, created.text);
    const apiKey = created.json<{ apiKey: string }>().apiKey;
    const put = await s.request('PUT', '/v1/collections/notes', {
      token: apiKey,
      body: { fields: { text: { type: 'string', classification: 'confidential' } } },
    });
    assert.equal(put.status, 201, put.text);
    const record = await s.request('POST', '/v1/collections/notes/records', {
      token: apiKey,
      body: { text: MARKER },
    });
    assert.equal(record.status, 201, record.text);
    const runToken = await operatorToken(s, 'backups:run');
    const readToken = await operatorToken(s, 'backups:read');
    secrets.push(apiKey, runToken, readToken, ...admin.secrets);
    tokenFile = join(dir, 'run-token');
    readFile = join(dir, 'read-token');
    writeFileSync(tokenFile, `${runToken}\n`, { mode: 0o600 });
    writeFileSync(readFile, `${readToken}\n`, { mode: 0o600 });
  });
  after(async () => {
    await s?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  let first: Backup;

  it('tresor backup now --wait: in every destination, read back and verified; listed by tresor backup list', async () => {
    const now = exited(await cli(['now', '--wait', '--read-token-file', readFile, '--json']), 0);
    first = JSON.parse(now.stdout) as Backup;
    assert.equal(first.outcome, 'done');
    assert.equal(first.trigger, 'request');
    assert.equal(first.verification?.result, 'passed');
    for (const name of ['a', 'b', 'c']) assert.equal(byName(first, name).state, 'checked');
    for (const f of [a, b, c]) assert.ok(holds(f, first.id), f);

    const listed = exited(await cli(['list', '--json'], readFile), 0);
    const backups = (JSON.parse(listed.stdout) as { backups: Backup[] }).backups;
    assert.deepEqual(
      backups.map((x) => x.id),
      [first.id],
    );
    const text = exited(await cli(['list'], readFile), 0).stdout;
    assert.match(text, new RegExp(`${first.id}.*done.*a:read back b:read back c:read back.*passed`));
    // A read token cannot start one; a run token cannot list.
    assert.equal(exited(await cli(['now'], readFile), 1).stderr.includes('TRESOR_ERR_'), true);
    exited(await cli(['list'], tokenFile), 1);
    await untilLogged(
      s.dataDir,
      'backup.create',
      (e) => e.action === 'backup.create' && e.target?.backupId === first.id,
    );
    const start = await untilLogged(s.dataDir, 'backup.start', (e) => e.action === 'backup.start');
    assert.equal(start.actor.kind, 'operator-admin');
  });

  it('takes one backup at a time: a second request while one runs is refused with 409', async () => {
    const token = readFileSync(tokenFile, 'utf8').trim();
    const started = await s.request('POST', '/v1/backups', { token });
    assert.equal(started.status, 202, started.text);
    const again = await s.request('POST', '/v1/backups', { token });
    assert.equal(again.status, 409, again.text);
    assert.equal(again.json().code, 'TRESOR_ERR_BACKUP_RUNNING');
    const id = started.json<{ id: string }>().id;
    const ended = await waitFor(
      'the second backup verified',
      async () => {
        const res = await s.request('GET', `/v1/backups/${id}`, {
          token: readFileSync(readFile, 'utf8').trim(),
        });
        const backup = res.json<Backup>();
        return backup.verification ? backup : undefined;
      },
      { timeoutMs: 30_000 },
    );
    assert.equal(ended.outcome, 'done');
  });

  it('applies retention per destination after each backup, and audits each deletion', async () => {
    // a keeps only its newest backup: the first is deleted there, and only there.
    const deletion = await untilLogged(
      s.dataDir,
      'backup.delete of the first backup at a',
      (e) => e.action === 'backup.delete' && e.target?.backupId === first.id,
    );
    assert.deepEqual(deletion.actor, { kind: 'system', id: 'backup-retention' });
    assert.equal(deletion.target?.destination, 'a');
    assert.equal(holds(a, first.id), false);
    assert.equal(existsSync(join(a, first.id)), false, 'nothing of it is left at a');
    assert.ok(holds(b, first.id) && holds(c, first.id));
    const listed = JSON.parse(exited(await cli(['list', '--json'], readFile), 0).stdout) as {
      backups: Backup[];
    };
    const old = listed.backups.find((x) => x.id === first.id) as Backup;
    assert.equal(byName(old, 'a').state, 'deleted');
    assert.equal(byName(old, 'b').state, 'checked');
  });

  it('retries a failing destination, reports it failed, and the others still hold the backup', async () => {
    // c's folder is moved aside and a file put in its place: every write there fails.
    renameSync(c, `${c}.aside`);
    writeFileSync(c, 'not a folder');
    const run = exited(await cli(['now', '--wait', '--read-token-file', readFile, '--json']), 1);
    const backup = JSON.parse(run.stdout) as Backup;
    assert.match(run.stderr, /^tresor: TRESOR_ERR_BACKUP_DESTINATION: /m);
    assert.equal(backup.outcome, 'partial');
    const failed = byName(backup, 'c');
    assert.equal(failed.state, 'failed');
    assert.equal(failed.attempts, 3, 'the first try and two retries');
    assert.equal(failed.error?.code, 'TRESOR_ERR_BACKUP_DESTINATION');
    assert.match(failed.error?.message ?? '', /^c: /);
    for (const [name, folder] of [
      ['a', a],
      ['b', b],
    ] as const) {
      assert.equal(byName(backup, name).state, 'checked');
      assert.equal(byName(backup, name).verification?.result, 'passed');
      assert.ok(holds(folder, backup.id), folder);
    }
    assert.equal(backup.verification?.result, 'passed', 'verified where it is held');
    const created = await untilLogged(
      s.dataDir,
      'the partial backup.create',
      (e) => e.action === 'backup.create' && e.target?.backupId === backup.id,
    );
    assert.equal(created.outcome, 'failure');
    rmSync(c, { force: true });
    renameSync(`${c}.aside`, c);
  });

  it('tresor backup verify checks a backup again, and fails on one altered at rest', async () => {
    const { backups } = JSON.parse(exited(await cli(['list', '--json'], readFile), 0).stdout) as {
      backups: Backup[];
    };
    const target = backups.find((x) => x.id === first.id) as Backup;
    // The verification runs in the server; the CLI follows it with a backups:read token.
    const ok = JSON.parse(
      exited(await cli(['verify', first.id, '--read-token-file', readFile, '--json']), 0).stdout,
    ) as Backup;
    assert.equal(ok.verification?.result, 'passed');
    assert.ok((ok.verification?.at ?? '') > (target.verification?.at ?? ''));
    // One chunk at b altered: verification fails there (and names it), c still passes.
    const chunk = join(b, first.id, 'chunk-000000');
    const bytes = readFileSync(chunk);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
    writeFileSync(chunk, bytes);
    const bad = exited(await cli(['verify', first.id, '--read-token-file', readFile, '--json']), 1);
    assert.match(bad.stderr, /^tresor: TRESOR_ERR_BACKUP_INVALID: .*at b/m);
    const after = JSON.parse(bad.stdout) as Backup;
    assert.equal(after.verification?.result, 'failed');
    assert.equal(byName(after, 'b').verification?.code, 'TRESOR_ERR_BACKUP_INVALID');
    assert.equal(byName(after, 'c').verification?.result, 'passed');
    exited(await cli(['verify', '20200101T000000Z-00000000']), 1);
    exited(await cli(['verify', 'not-an-id']), 1);
  });

  it('states in the deletion certificate when the last backup of the tenant ages out, and when its key leaves the last keyd backup, from the retentions', async () => {
    const admin = await operatorAdmin(s);
    const created = await admin.request('POST', '/v1/tenants', { name: 'Short Lived' });
    assert.equal(created.status, 201, created.text);
    const id = created.json<{ id: string }>().id;
    const closed = await admin.request('POST', `/v1/tenants/${id}/close`, { reason: 'contract ended' });
    assert.equal(closed.status, 200, closed.text);
    const cert = closed.json<{
      certificate: {
        closedAt: string;
        backupsAgedOutBy: string;
        keydDestroyedAt: string;
        keydBackupsAgedOutBy?: string;
      };
    }>().certificate;
    // The longest policy (b, c: 1 day all, 3 days daily): start of the close's day + 3 days, plus
    // the retention job's period.
    const closedAt = Date.parse(cert.closedAt);
    const dayStart = Math.floor(closedAt / DAY_MS) * DAY_MS;
    const expected = new Date(Math.max(closedAt + DAY_MS, dayStart + 3 * DAY_MS) + RETENTION_PERIOD_MS);
    assert.equal(cert.backupsAgedOutBy, expected.toISOString().slice(0, 10));
    assert.notEqual(
      cert.backupsAgedOutBy,
      new Date(closedAt + 35 * DAY_MS).toISOString().slice(0, 10),
      'not the old fixed 35 days',
    );
    // keyd's own date, from keyd's backup retention (its defaults: every backup 1 day, the day's
    // newest 7 days) and its schedule (every 360 minutes), at the key's destruction.
    const destroyedAt = Date.parse(cert.keydDestroyedAt);
    const destroyedDay = Math.floor(destroyedAt / DAY_MS) * DAY_MS;
    const keydExpected = new Date(Math.max(destroyedAt + DAY_MS, destroyedDay + 7 * DAY_MS) + 360 * 60_000);
    assert.equal(cert.keydBackupsAgedOutBy, keydExpected.toISOString().slice(0, 10));
  });

  it('keeps the list across a restart, and reports a backup cut by kill -9 as interrupted, its objects removed (a copy whole before the kill: read back, kept, the run done)', async () => {
    const before = JSON.parse(exited(await cli(['list', '--json'], readFile), 0).stdout) as {
      backups: Backup[];
    };
    await s.stopServer();
    await s.startServer();
    const kept = JSON.parse(exited(await cli(['list', '--json'], readFile), 0).stdout) as {
      backups: Backup[];
    };
    assert.deepEqual(kept.backups, before.backups);

    const started = exited(await cli(['now', '--json']), 0);
    const { id } = JSON.parse(started.stdout) as { id: string };
    await s.kill9Server();
    await s.startServer();
    const folders = [a, b, c];
    // The restarted server records the run interrupted and removes every partial copy; a copy that
    // was whole before the kill (manifest written last) is kept and read back, and then the run is
    // done (whole everywhere) or partial. Wait for that reading back to be over.
    const cut = await waitFor(
      'the cut backup settled',
      async () => {
        const listed = JSON.parse(exited(await cli(['list', '--json'], readFile), 0).stdout) as {
          backups: Backup[];
        };
        const found = listed.backups.find((x) => x.id === id);
        if (found === undefined) return undefined;
        if (found.outcome === 'interrupted' && folders.some((f) => holds(f, id))) return undefined;
        return found;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    if (cut.outcome === 'interrupted') {
      // Almost always: kill -9 came while it ran. Nothing of it is left anywhere.
      for (const d of cut.destinations) assert.equal(d.state, 'failed');
      for (const f of folders) assert.ok(!existsSync(join(f, id)), `nothing partial at ${f}`);
    } else {
      assert.ok(['done', 'partial'].includes(cut.outcome), cut.outcome);
      const folderOf: Record<string, string> = { a, b, c };
      for (const d of cut.destinations) {
        const f = folderOf[d.name] as string;
        if (d.state === 'checked') assert.ok(holds(f, id), `a checked copy is whole at ${f}`);
        else assert.ok(!existsSync(join(f, id)), `nothing partial at ${f}`);
      }
    }
  });

  it('never writes the marker to a destination, and no command prints a secret', () => {
    assert.ok(assertNoMarker([a, b, c]) > 6);
    for (const r of runs) leaksNone(r, secrets);
  });
});

describe('backups without configured destinations', () => {
  it('go to two folders under the data folder, and tresor server warns that they share its disk', async () => {
    const s = await startTresorStack();
    try {
      assert.match(s.serverOutput(), /backups go to the default destinations .*on the same disk as the data/);
      const token = await operatorToken(s, 'backups:run');
      const started = await s.request('POST', '/v1/backups', { token });
      assert.equal(started.status, 202, started.text);
      const { id } = started.json<{ id: string }>();
      await waitFor('the backup in both default folders', async () =>
        holds(join(s.dataDir, 'backups', 'a'), id) && holds(join(s.dataDir, 'backups', 'b'), id)
          ? true
          : undefined,
      );
    } finally {
      await s.stop();
    }
  });
});
