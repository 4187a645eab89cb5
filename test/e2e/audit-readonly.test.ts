// backends: sqlite (the store turning read-only is the SQLite files in the data folder; on PostgreSQL the data folder holds no store)
// drill: the store's file system turning read-only
/**
 * Fail closed when the store turns read-only under a running server — for real: the data folder
 * of a real `tresor server` is a loop-mounted ext4 image mounted `errors=remount-ro`, and the test
 * makes the kernel remount it read-only the way production meets it, through an ext4 error
 * (`/sys/fs/ext4/<dev>/trigger_fs_error`, the kernel's own fault-injection knob; the tests run as
 * root, as CI does). A plain `mount -o remount,ro` is refused by the kernel (EBUSY) while SQLite
 * holds its files open for writing, so it cannot stand in for this.
 *
 * From then on every audited route answers 503 problem+json and serves nothing — no record is read
 * or written without its entry — `/readyz` is red with the audit check failing, and the server
 * reports the condition in its log.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor as waitForHelper } from '../helpers/wait.ts';

let diagnostics = (): string => '';

const waitFor = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs?: number) =>
  waitForHelper(what, probe, {
    ...{ timeoutMs: 30_000, diagnostics: () => diagnostics() },
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  });

function mountOptions(mountPoint: string): string {
  return execFileSync('findmnt', ['-n', '-o', 'OPTIONS', mountPoint], { encoding: 'utf8' }).trim();
}

describe('the audit log on a store that the kernel remounts read-only', () => {
  const work = mkdtempSync(join(tmpdir(), 'tresor-ro-fs-'));
  const image = join(work, 'data.ext4');
  const mountPoint = join(work, 'data');
  let s: TresorStack;
  let key: string;
  let recordId: string;

  before(async () => {
    execFileSync('truncate', ['-s', '128M', image]);
    execFileSync('mkfs.ext4', ['-q', '-F', image]);
    execFileSync('mkdir', ['-m', '0700', mountPoint]);
    execFileSync('mount', ['-o', 'loop,errors=remount-ro', image, mountPoint]);
    execFileSync('chmod', ['0700', mountPoint]);
    s = await startTresorStack({ dataDir: mountPoint });
    diagnostics = () =>
      `\nserver warnings:\n${s
        .serverOutput()
        .split('\n')
        .filter((l) => /"level":(40|50|60)/.test(l))
        .slice(-15)
        .join('\n')}`;
    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'RO Disk' },
    });
    assert.equal(created.status, 201, created.text);
    key = created.json<{ apiKey: string }>().apiKey;
    const put = await s.request('PUT', '/v1/collections/notes', {
      token: key,
      body: { fields: { text: { type: 'string', classification: 'confidential' } } },
    });
    assert.equal(put.status, 201, put.text);
    const rec = await s.request('POST', '/v1/collections/notes/records', {
      token: key,
      body: { text: 'written before' },
    });
    assert.equal(rec.status, 201, rec.text);
    recordId = rec.json<{ id: string }>().id;
  });

  after(async () => {
    await s?.stop().catch(() => undefined);
    try {
      execFileSync('umount', [mountPoint]);
    } catch {
      execFileSync('umount', ['-l', mountPoint]);
    }
    rmSync(work, { recursive: true, force: true });
  });

  it('answers 503 on every data route, turns /readyz red and reports it, serving nothing without its entry', async () => {
    assert.equal((await s.request('GET', '/readyz')).status, 200);
    const source = execFileSync('findmnt', ['-n', '-o', 'SOURCE', mountPoint], { encoding: 'utf8' }).trim();
    const knob = `/sys/fs/ext4/${basename(source)}/trigger_fs_error`;
    const errorsBefore = Number(readFileSync(`/sys/fs/ext4/${basename(source)}/errors_count`, 'utf8'));
    writeFileSync(knob, 'tresor test: store goes read-only');
    assert.match(mountOptions(mountPoint), /emergency_ro|(^|,)ro(,|$)/, 'the kernel remounted it read-only');
    assert.ok(Number(readFileSync(`/sys/fs/ext4/${basename(source)}/errors_count`, 'utf8')) > errorsBefore);

    // Every answer from now on is a 503 problem: no write lands, no read is served without its entry.
    const creator = await operatorToken(s, 'tenants:create'); // minted at setup, before the disk failed
    const tries = [
      () => s.request('POST', '/v1/collections/notes/records', { token: key, body: { text: 'after' } }),
      () => s.request('GET', `/v1/collections/notes/records/${recordId}`, { token: key }),
      () => s.request('GET', '/v1/collections/notes/records', { token: key }),
      () => s.request('POST', '/v1/tenants', { token: creator, body: { name: 'Not Now' } }),
    ];
    for (let round = 0; round < 3; round++) {
      for (const attempt of tries) {
        const res = await attempt();
        assert.equal(res.status, 503, `${res.status} ${res.text}`);
        assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
        assert.doesNotMatch(
          res.text,
          /written before|SQLITE|\/tmp\//,
          'no data and no internals in the answer',
        );
      }
    }

    const ready = await waitFor('/readyz to turn red', async () => {
      const res = await s.request('GET', '/readyz');
      return res.status === 503 ? res : undefined;
    });
    assert.match(ready.text, /"audit":"failing"/);
    await waitFor('the condition in the server log', async () =>
      /audit log cannot record/.test(s.serverOutput()) ? true : undefined,
    );
  });
});
