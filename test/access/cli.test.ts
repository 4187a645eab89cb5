/**
 * `tresor access review | unreviewed | attest` as an operator runs them on a data folder: exit 1 while
 * staff access is unattested, 0 once a named, active security officer attested it (recorded as system
 * actor cli), 1 for a refused attestation, 2 for usage errors.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { GrantRequestInput } from '../../src/access/grant-vocabulary.ts';
import { appendAuditEvent } from '../../src/audit/event.ts';
import type { PersonInfo } from '../../src/identity/people.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import { TRESOR_BIN } from '../helpers/keyd-process.ts';
import { type AccessFixture, openAccessFixture } from './fixture.ts';

const T = 'ten_000000000000000000000aaa';

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function tresor(...args: string[]): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete env.TRESOR_DATA_DIR;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TRESOR_BIN, ...args], { env, timeout: 60_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString('utf8');
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('tresor access', () => {
  let f: AccessFixture;
  let agent: PersonInfo;
  let officer: PersonInfo;
  let grantId: string;

  before(async () => {
    // A past month (the CLI runs on the real clock, and attests only periods that have ended).
    f = await openAccessFixture('2024-03-05T10:00:00.000Z');
    await f.tenant(T);
    agent = await f.person('support-agent');
    officer = await f.person('security-officer');
    const tenantAdmin = await f.person('tenant-admin', T);
    const ask: GrantRequestInput = {
      tenant: T,
      collections: ['orders'],
      access: 'read',
      reason: 'order stuck in the export queue',
      ticket: 'SUP-5',
    };
    const s = await f.login(agent);
    f.advance(1_000);
    const g = await f.grants.request(s, ask);
    await f.grants.approve(await f.login(tenantAdmin), g.id);
    f.advance(1_000);
    await f.grants.activate(await f.login(agent), g.id);
    grantId = g.id;
    await f.control.write((trx) =>
      appendAuditEvent(trx, {
        at: f.now().toISOString(),
        actor: { kind: 'staff', id: agent.id, grantId },
        tenant: T,
        action: 'record.read',
        outcome: 'success',
      }),
    );
    await f.sequence();
    await f.closeStore();
  });

  after(() => f.close());

  it('prints help and refuses bad usage with exit 2', async () => {
    const runs = await Promise.all([
      tresor('access', 'review', '--help'),
      tresor('access', 'review', '--data-dir', f.dir, '--from', '2024-3-1', '--to', '2024-04-01'),
      tresor(
        'access',
        'review',
        '--data-dir',
        join(f.dir, 'nowhere'),
        '--from',
        '2024-03-01',
        '--to',
        '2024-04-01',
      ),
      tresor(
        'access',
        'attest',
        '--data-dir',
        f.dir,
        '--from',
        '2024-03-01',
        '--to',
        '2024-04-01',
        '--note',
        'x',
      ),
    ]);
    const [help, badDate, noStore, noBy] = runs as [Run, Run, Run, Run];
    assert.equal(help.status, 0);
    assert.match(help.stdout, /--from <YYYY-MM-DD>/);
    assert.match(help.stdout, /--json/);
    for (const r of [badDate, noStore, noBy]) assert.equal(r.status, 2, r.stderr);
    assert.match(noStore.stderr, /no control store/);
  });

  it('exits 1 while a period is unreviewed, refuses an attestation by a non-officer, then exits 0', async () => {
    const period = ['--data-dir', f.dir, '--from', '2024-03-01', '--to', '2024-04-01'];
    const [review, unreviewed, refused] = await Promise.all([
      tresor('access', 'review', ...period, '--json'),
      tresor('access', 'unreviewed', '--data-dir', f.dir, '--until', '2024-05-01'),
      tresor('access', 'attest', ...period, '--note', 'checked SUP-5', '--by', agent.id),
    ]);
    assert.equal(review.status, 1, review.stderr);
    const report = JSON.parse(review.stdout) as {
      unreviewed: boolean;
      grants: { id: string }[];
      accesses: { grantId: string; person: string }[];
      byTenant: Record<string, { grants: number; accesses: number }>;
    };
    assert.equal(report.unreviewed, true);
    assert.deepEqual(
      report.grants.map((g) => g.id),
      [grantId],
    );
    assert.deepEqual(
      report.accesses.map((a) => [a.grantId, a.person]),
      [[grantId, agent.id]],
    );
    assert.deepEqual(report.byTenant, { [T]: { grants: 1, accesses: 1 } });
    assert.equal(unreviewed.status, 1, unreviewed.stderr);
    assert.match(unreviewed.stdout, /2024-03-01T00:00:00.000Z/);
    assert.equal(refused.status, 1, refused.stderr);
    assert.match(refused.stderr, /TRESOR_ERR_FORBIDDEN/);

    const attest = await tresor(
      'access',
      'attest',
      ...period,
      '--note',
      'checked SUP-5',
      '--by',
      officer.id,
      '--json',
    );
    assert.equal(attest.status, 0, attest.stderr);
    assert.equal((JSON.parse(attest.stdout) as { recordedBy: string }).recordedBy, 'system:cli');

    const again = await tresor('access', 'review', ...period);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /^REVIEWED/);

    // The CLI's work is in the audit outbox, as system actor cli, the officer named.
    const control = await openSqliteStore<ControlDB>(join(f.dir, 'control.sqlite'), controlStoreMigrations);
    try {
      const events = (await control.db.selectFrom('audit_events').selectAll().orderBy('seq').execute()).map(
        (r) =>
          JSON.parse(r.event) as {
            action: string;
            outcome: string;
            actor: { id: string };
            target?: Record<string, unknown>;
          },
      );
      const attests = events.filter((e) => e.action === 'access.attest');
      assert.deepEqual(
        attests.map((e) => [e.outcome, e.actor.id, e.target?.attestedBy ?? null]),
        [
          ['denied', 'cli', null],
          ['success', 'cli', officer.id],
        ],
      );
    } finally {
      await control.close();
    }
  });
});
