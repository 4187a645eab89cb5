// backends: sqlite (these read the SQLite files of a backup; PostgreSQL's backups, trial and restore: e2e/pg-backup-drill)
// drill: backup destinations that fill up, turn read-only, stall or stop answering
/**
 * Destination faults in the running product (issue 16), on real destinations of one real stack
 * (keyd and `tresor server` processes): a folder on a small tmpfs that fills up, a folder on a tmpfs
 * remounted read-only, an S3 destination (s3rver) behind a proxy that makes it slow, and another
 * behind one that stops answering (bounded by the destination's `timeoutSeconds`). Each fault gives
 * that destination a clear error on the backup's record (GET /v1/backups, `tresor backup list`),
 * keeps the earlier good backup there (and it still verifies), leaves nothing half-done (no object
 * of the failed backup, no temporary file), and the other destinations still get the backup.
 *
 * Mounting needs root, as CI runs the tests: not root is a failure with its reason, never a skip.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type FaultProxy, startFaultProxy } from '../backup/fault-proxy.ts';
import {
  type LocalS3,
  S3RVER_ACCESS_KEY_ID,
  S3RVER_SECRET_ACCESS_KEY,
  startLocalS3,
} from '../backup/s3-server.ts';
import { exited, leaksNone, tresor } from '../cli/cli-run.ts';
import { operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor, withDeadline } from '../helpers/wait.ts';

interface Copy {
  name: string;
  state: string;
  attempts: number;
  error: { code: string; message: string } | null;
  verification: { result: string; at: string; code: string | null } | null;
}
interface Backup {
  id: string;
  outcome: string;
  endedAt: string | null;
  verifying: boolean;
  verification: { result: string; at: string } | null;
  destinations: Copy[];
}

const byName = (b: Backup, name: string) => b.destinations.find((d) => d.name === name) as Copy;

/** Every entry under `dir` (files and folders), relative. */
const entriesUnder = (dir: string) =>
  existsSync(dir) ? (readdirSync(dir, { recursive: true }) as string[]) : [];

function mount(args: string[]): void {
  execFileSync('mount', args, { stdio: 'pipe', timeout: 30_000 });
}

async function unmount(path: string): Promise<void> {
  // A deadline on every wait: umount is retried (busy right after a process let go) for 30 s at most.
  await waitFor(
    `umount ${path}`,
    async () => {
      try {
        execFileSync('umount', [path], { stdio: 'pipe', timeout: 10_000 });
        return true;
      } catch {
        return execFileSync('findmnt', ['-n', path], { encoding: 'utf8' }).trim() === '' ? true : undefined;
      }
    },
    { timeoutMs: 30_000, intervalMs: 500 },
  ).catch(() => undefined);
}

describe('backup destinations that are full, read-only, slow, or stop answering', () => {
  let s: TresorStack;
  let base: string;
  let ok: string;
  let full: string;
  let readonly: string;
  let s3: LocalS3;
  let slow: FaultProxy;
  let stalled: FaultProxy;
  const mounted: string[] = [];
  let runToken: string;
  let readToken: string;
  let readTokenFile: string;

  const get = async (id: string) => {
    const res = await s.request('GET', `/v1/backups/${id}`, { token: readToken });
    assert.equal(res.status, 200, res.text);
    return res.json<Backup>();
  };
  /** A backup started now, once it has ended and its verification (if any destination holds it) ran. */
  const backupNow = async (): Promise<Backup> => {
    const started = await s.request('POST', '/v1/backups', { token: runToken });
    assert.equal(started.status, 202, started.text);
    const { id } = started.json<{ id: string }>();
    return waitFor(
      `backup ${id} ended and verified`,
      async () => {
        const b = await get(id);
        if (b.outcome === 'running' || b.verifying) return undefined;
        const held = b.destinations.some((d) => d.state === 'checked');
        return !held || b.verification !== null ? b : undefined;
      },
      // The stalled destination costs its timeouts (3 attempts × 1 s, twice) and the machine is loaded.
      { timeoutMs: 180_000, intervalMs: 250 },
    );
  };

  before(async () => {
    assert.equal(
      process.getuid?.(),
      0,
      'these tests mount tmpfs file systems (a full one, a read-only one) and need root, as CI runs them',
    );
    base = `/tmp/tresor-faults-${process.pid}-${Date.now().toString(36)}`;
    mkdirSync(base, { mode: 0o700 });
    ok = join(base, 'ok');
    full = join(base, 'full');
    readonly = join(base, 'readonly');
    for (const [dir, size] of [
      [full, '8m'],
      [readonly, '8m'],
    ] as const) {
      mkdirSync(dir, { mode: 0o700 });
      mount(['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
      mounted.push(dir);
    }
    s3 = await startLocalS3('faults');
    const port = Number(new URL(s3.endpoint).port);
    slow = await startFaultProxy(port, 100);
    stalled = await startFaultProxy(port);
    const keyFile = join(base, 's3-key-id');
    const secretFile = join(base, 's3-secret');
    writeFileSync(keyFile, `${S3RVER_ACCESS_KEY_ID}\n`, { mode: 0o600 });
    writeFileSync(secretFile, `${S3RVER_SECRET_ACCESS_KEY}\n`, { mode: 0o600 });
    const s3Destination = (name: string, endpoint: string, timeoutSeconds?: number) => ({
      name,
      kind: 's3',
      endpoint,
      region: 'us-east-1',
      bucket: s3.bucket,
      prefix: `${name}/`,
      forcePathStyle: true,
      accessKeyIdFile: keyFile,
      secretAccessKeyFile: secretFile,
      ...(timeoutSeconds === undefined ? {} : { timeoutSeconds }),
    });
    s = await startTresorStack({
      env: {
        TRESOR_BACKUP_INTERVAL_MINUTES: '0',
        TRESOR_BACKUP_VERIFY_INTERVAL_MINUTES: '0',
        TRESOR_BACKUP_RETRY_ATTEMPTS: '1',
        TRESOR_BACKUP_RETRY_BASE_MS: '50',
        TRESOR_BACKUP_DESTINATIONS: JSON.stringify([
          { name: 'ok', kind: 'folder', path: ok },
          { name: 'full', kind: 'folder', path: full },
          { name: 'readonly', kind: 'folder', path: readonly },
          s3Destination('slow', slow.endpoint),
          s3Destination('stalled', stalled.endpoint, 1),
        ]),
      },
    });
    runToken = await operatorToken(s, 'backups:run');
    readToken = await operatorToken(s, 'backups:read');
    readTokenFile = join(base, 'read-token');
    writeFileSync(readTokenFile, `${readToken}\n`, { mode: 0o600 });
  });

  after(async () => {
    await s?.stop();
    await slow?.close();
    await stalled?.close();
    await s3?.remove();
    for (const dir of mounted) await unmount(dir);
    if (base) rmSync(base, { recursive: true, force: true });
  });

  let good: Backup;

  it('takes a good backup to all five destinations first', async () => {
    slow.setMode('slow');
    good = await backupNow();
    assert.equal(good.outcome, 'done', JSON.stringify(good.destinations));
    assert.equal(good.verification?.result, 'passed');
    for (const c of good.destinations) assert.equal(c.state, 'checked', c.name);
  });

  let bad: Backup;

  it('reports each faulty destination with its error, and the others still get the backup', async () => {
    // full: all but a few KiB taken by another file, so the backup's chunk meets ENOSPC part-way.
    const { bavail, bsize } = statfsSync(full);
    writeFileSync(join(full, 'filler'), Buffer.alloc(Math.max(0, bavail * bsize - 16 * 1024)));
    mount(['-o', 'remount,ro', readonly]);
    stalled.setMode('stall');

    bad = await backupNow();
    assert.equal(bad.outcome, 'partial');
    const expected: [string, RegExp][] = [
      ['full', /^full: writing \S+ failed \(ENOSPC\)$/],
      ['readonly', /^readonly: writing \S+ failed \(EROFS\)$/],
      ['stalled', /^stalled: writing \S+ failed \(no answer in time: (TimeoutError|ETIMEDOUT)\)$/],
    ];
    for (const [name, message] of expected) {
      const copy = byName(bad, name);
      assert.equal(copy.state, 'failed', name);
      assert.equal(copy.attempts, 2, `${name}: the first try and one retry`);
      assert.equal(copy.error?.code, 'TRESOR_ERR_BACKUP_DESTINATION', name);
      assert.match(copy.error?.message ?? '', message);
      assert.equal(copy.error?.message.includes(base), false, 'no path in the message');
    }
    for (const name of ['ok', 'slow']) {
      assert.equal(byName(bad, name).state, 'checked', name);
      assert.equal(byName(bad, name).verification?.result, 'passed', name);
    }
    assert.equal(bad.verification?.result, 'passed', 'verified where it is held');

    // tresor backup list shows it the same way.
    const run = exited(
      await tresor(['backup', 'list', '--url', s.url, '--ca-file', s.caFile, '--token-file', readTokenFile]),
      0,
    );
    leaksNone(run, [runToken, readToken, S3RVER_SECRET_ACCESS_KEY.repeat(2)]);
    const line = run.stdout.split('\n').find((l) => l.startsWith(bad.id)) ?? '';
    assert.match(line, /partial/);
    for (const name of ['full', 'readonly', 'stalled'])
      assert.match(line, new RegExp(`${name}:failed \\(TRESOR_ERR_BACKUP_DESTINATION, 2 attempts\\)`));
    assert.match(line, /ok:read back .*slow:read back/);
  });

  it('leaves nothing of the failed backup at the faulty destinations: no object, no temporary file', () => {
    for (const dir of [full, readonly]) {
      const left = entriesUnder(dir).filter((e) => e.includes(bad.id) || e.includes('.tmp-'));
      assert.deepEqual(left, [], dir);
      assert.ok(existsSync(join(dir, good.id, 'manifest.json')), `the good backup is still in ${dir}`);
    }
    const stored = s3.storedFiles().map((f) => f.path);
    assert.equal(
      stored.some((p) => p.includes(`/stalled/${bad.id}`)),
      false,
      'no object of the failed backup behind the stalled proxy',
    );
    assert.ok(
      stored.some((p) => p.includes(`/slow/${bad.id}/manifest.json`)),
      'the slow destination holds it whole',
    );
    // The stalled proxy never passed a byte of the failed backup to the server.
    assert.ok(stalled.seen().includes(bad.id), 'the stalled destination was asked');
  });

  it('keeps the earlier good backup at every faulty destination, and it still verifies there', async () => {
    stalled.setMode('pass');
    const asked = await s.request('POST', `/v1/backups/${good.id}/verify`, { token: runToken });
    assert.equal(asked.status, 202, asked.text);
    const { requestedAt } = asked.json<{ requestedAt: string }>();
    const verified = await waitFor(
      'the good backup verified again',
      async () => {
        const b = await get(good.id);
        return !b.verifying && (b.verification?.at ?? '') >= requestedAt ? b : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    assert.equal(verified.verification?.result, 'passed', JSON.stringify(verified.destinations));
    for (const name of ['full', 'readonly', 'stalled', 'ok', 'slow']) {
      const copy = byName(verified, name);
      assert.equal(copy.state, 'checked', name);
      assert.equal(copy.verification?.result, 'passed', name);
      assert.ok((copy.verification?.at ?? '') >= requestedAt, name);
    }
  });

  it('takes backups everywhere again once the faults are gone', async () => {
    rmSync(join(full, 'filler'));
    mount(['-o', 'remount,rw', readonly]);
    slow.setMode('pass');
    const again = await withDeadline('a backup after the faults', backupNow(), 180_000);
    assert.equal(again.outcome, 'done', JSON.stringify(again.destinations));
    assert.equal(again.verification?.result, 'passed');
  });
});
