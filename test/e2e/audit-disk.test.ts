// drill: the audit log's file system filling up
/**
 * Fail closed without surprise outages, on a real small filesystem: the data folder of a real
 * `tresor server` is a 64 MiB tmpfs (mounted here; the tests run as root, as CI does). Filling it
 * up warns first, then answers 503 on audited routes — never a 5xx of another kind, never data
 * without its entry — while the reserve lets the warning and the refusals themselves be recorded;
 * freeing the space brings the service back by itself. (The read-only store is
 * test/e2e/audit-readonly.test.ts.)
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor as waitForHelper } from '../helpers/wait.ts';

const MiB = 1024 * 1024;
/** The server's warnings and errors (never secrets: invariant 7), shown when a wait times out. */
let diagnostics = (): string => '';

const waitFor = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs?: number) =>
  waitForHelper(what, probe, {
    ...{ timeoutMs: 20_000, diagnostics: () => diagnostics() },
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  });

/** Writes zeros until the filesystem refuses (ENOSPC), or `bytes` of them, as a runaway log would. */
function fill(path: string, bytes = Number.POSITIVE_INFINITY): void {
  const fd = openSync(path, 'a');
  const chunk = Buffer.alloc(MiB);
  try {
    for (let written = 0; written < bytes; written += MiB) writeSync(fd, chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    closeSync(fd);
  }
}

describe('the audit log on a filesystem that fills up', () => {
  const mountPoint = mkdtempSync(join(tmpdir(), 'tresor-small-fs-'));
  let s: TresorStack;
  let key: string;

  before(async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0700', 'tmpfs', mountPoint]);
    s = await startTresorStack({
      dataDir: mountPoint,
      env: {
        TRESOR_AUDIT_DISK_WARN_BYTES: String(40 * MiB),
        TRESOR_AUDIT_DISK_RESERVE_BYTES: String(8 * MiB),
      },
    });
    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'Small Disk' },
    });
    assert.equal(created.status, 201, created.text);
    key = created.json<{ apiKey: string }>().apiKey;
    diagnostics = () =>
      `\nserver warnings:\n${s
        .serverOutput()
        .split('\n')
        .filter((l) => /"level":(40|50|60)/.test(l))
        .slice(-15)
        .join('\n')}`;
    const put = await s.request('PUT', '/v1/collections/notes', {
      token: key,
      body: { fields: { text: { type: 'string', classification: 'confidential' } } },
    });
    assert.equal(put.status, 201, put.text);
  });

  after(async () => {
    await s?.stop().catch(() => undefined);
    try {
      execFileSync('umount', [mountPoint]);
    } catch {
      execFileSync('umount', ['-l', mountPoint]);
    }
    rmSync(mountPoint, { recursive: true, force: true });
  });

  const write = (text: string) =>
    s.request('POST', '/v1/collections/notes/records', { token: key, body: { text } });

  it('warns, then answers 503 (recorded) when the disk is full, and resumes by itself when space returns', async () => {
    assert.equal((await write('before')).status, 201);
    const filler = join(mountPoint, 'runaway.log');
    // First down to below the warning threshold (40 MiB free) but above the reserve: a warning, still served.
    const { bavail, bsize } = statfsSync(mountPoint);
    fill(filler, bavail * bsize - 30 * MiB);
    await waitFor('the low-space warning', async () =>
      /audit disk space low/.test(s.serverOutput()) ? true : undefined,
    );
    assert.equal((await write('still served')).status, 201);
    fill(filler);
    // Every answer while full is a 503 problem or, before the watch noticed, a success: never another 5xx.
    const refused = await waitFor('a 503 on a write', async () => {
      const res = await write('while full');
      assert.ok(res.status === 201 || res.status === 503, `write while full → ${res.status} ${res.text}`);
      return res.status === 503 ? res : undefined;
    });
    assert.match(String(refused.headers['content-type']), /^application\/problem\+json/);
    const ready = await s.request('GET', '/readyz');
    assert.equal(ready.status, 503);
    assert.match(ready.text, /"audit":"failing"/);
    const read = await s.request('GET', '/v1/collections/notes/records', { token: key });
    assert.equal(read.status, 503, 'nothing is served without its entry');
    await waitFor('the critical state in the log', async () =>
      /audit disk almost full/.test(s.serverOutput()) ? true : undefined,
    );

    rmSync(filler);
    await waitFor('writes to succeed again', async () =>
      (await write('after')).status === 201 ? true : undefined,
    );
    assert.equal((await s.request('GET', '/readyz')).status, 200);

    // The reserve carried the record of what happened: the system's disk events and the refusals.
    const entries = await waitFor('the disk events in the audit log', async () => {
      const res = await s.request('GET', '/v1/audit/entries?limit=1000', {
        token: await operatorToken(s, 'audit:read'),
      });
      const list = res.json<{
        entries: { entry: { action: string; outcome: string; actor: { kind: string } } }[];
      }>().entries;
      return list.some((e) => e.entry.action === 'audit.disk.ok') ? list : undefined;
    });
    const actions = entries.map((e) => e.entry.action);
    assert.ok(actions.includes('audit.disk.critical'), 'the critical state is recorded');
    assert.ok(
      entries.some((e) => e.entry.actor.kind === 'system' && e.entry.action === 'audit.disk.critical'),
    );
    const mine = await s.request('GET', '/v1/audit/entries?limit=1000', { token: key });
    const refusals = mine
      .json<{ entries: { entry: { action: string; outcome: string; target?: { problem?: string } } }[] }>()
      .entries.filter(
        (e) => e.entry.outcome === 'failure' && e.entry.target?.problem === 'TRESOR_ERR_UNAVAILABLE',
      );
    assert.ok(refusals.length > 0, 'the 503 refusals themselves are in the tenant’s audit log');
  });
});
