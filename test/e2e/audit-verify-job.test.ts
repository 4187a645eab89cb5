// backends: sqlite postgres
/**
 * The scheduled re-verification of the live audit log on a real stack: with a short interval it
 * records `audit.verify` successes; when an entry is altered in the store behind the server's back
 * (an attacker with the file: the append-only trigger dropped, one leaf changed), the next run fails,
 * is audited as a failure naming the kinds of problems, fails the `audit.verify` job, and raises the
 * `audit.verification-failed` alert whose evidence is that failure's own audit entry.
 */

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import {
  BLOCK_OF_INDEX,
  type BlockRow,
  blockWith,
  DROP_BLOCK_TRIGGER,
  leafOf,
  REWRITE_BLOCK,
} from '../helpers/audit-leaves.ts';
import { operatorToken } from '../helpers/console.ts';
import { onDatabase } from '../helpers/stack-sql.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

interface Entry {
  index: number;
  entry: {
    action: string;
    outcome: string;
    actor: { kind: string; id: string };
    target?: Record<string, unknown>;
  };
}

describe('the live audit log, re-verified on a schedule', () => {
  let s: TresorStack;
  const entries = async () => {
    const token = await operatorToken(s, 'audit:read');
    const all: Entry[] = [];
    for (let from: number | null = 0; from !== null; ) {
      const page = await s.request('GET', `/v1/audit/entries?from=${from}&limit=1000`, { token });
      assert.equal(page.status, 200, page.text);
      const body = page.json<{ entries: Entry[]; next: number | null }>();
      all.push(...body.entries);
      from = body.next;
    }
    return all;
  };
  const verifications = async (outcome: string) =>
    (await entries()).filter((e) => e.entry.action === 'audit.verify' && e.entry.outcome === outcome);

  before(async () => {
    s = await startTresorStack({ env: { TRESOR_AUDIT_VERIFY_INTERVAL_MINUTES: '0.02' } });
  });

  after(async () => {
    await s?.stop();
  });

  it('records passing verifications of the untouched log', async () => {
    const passed = await waitFor(
      'a passing verification',
      async () => {
        const found = await verifications('success');
        return found.length > 0 ? found : undefined;
      },
      { timeoutMs: 60_000 },
    );
    const first = passed[0] as Entry;
    assert.deepEqual(first.entry.actor, { kind: 'system', id: 'audit-verify' });
    assert.equal(first.entry.target?.problems, 0);
    assert.ok((first.entry.target?.size as number) > 0);
    assert.equal((await verifications('failure')).length, 0);
  });

  it('an entry altered at rest fails the next run, the job and raises the alert with its evidence', async () => {
    // Entry 1's leaf block must be full (64 entries) before it is changed: the sequencer rewrites the
    // log's last, partial block as it grows (src/audit/leaf-store.ts), and a change there races it.
    await waitFor('a full first leaf block', async () => ((await entries()).length > 64 ? true : undefined), {
      timeoutMs: 60_000,
    });
    const alter = (leaf: string) => {
      const altered = leaf.includes('"outcome":"success"')
        ? leaf.replace('"outcome":"success"', '"outcome":"failure"')
        : `${leaf.slice(0, -2)}A${leaf.slice(-1)}`;
      assert.notEqual(altered, leaf);
      return altered;
    };
    if (s.database.kind === 'postgres') {
      // Behind the server's back, its triggers off for this session only.
      const [rows] = await onDatabase(s.database.url, [{ text: BLOCK_OF_INDEX, params: [1] }]);
      const row = rows?.[0] as unknown as BlockRow;
      const [, changed] = await onDatabase(s.database.url, [
        { text: 'SET session_replication_role = replica' },
        { text: REWRITE_BLOCK, params: [blockWith(row, 1, alter(leafOf(row, 1))), row.idx] },
      ]);
      assert.equal(changed?.length, 1);
    } else {
      const db = new Database(join(s.dataDir, 'control.sqlite'));
      try {
        db.pragma('busy_timeout = 10000');
        db.exec(DROP_BLOCK_TRIGGER);
        const row = db.prepare(BLOCK_OF_INDEX).get(1) as BlockRow;
        db.prepare(REWRITE_BLOCK).run(blockWith(row, 1, alter(leafOf(row, 1))), row.idx);
      } finally {
        db.close();
      }
    }
    const failed = await waitFor(
      'a failing verification',
      async () => {
        const found = await verifications('failure');
        return found.length > 0 ? found[0] : undefined;
      },
      { timeoutMs: 60_000 },
    );
    assert.ok((failed.entry.target?.problems as number) > 0);
    const kinds = failed.entry.target?.kinds;
    assert.ok(Array.isArray(kinds) && kinds.length > 0, 'the kinds of problems found are named');

    const jobs = (
      await s.request('GET', '/v1/system/jobs', { token: await operatorToken(s, 'jobs:read') })
    ).json<{
      jobs: { name: string; failures: number; lastError?: { code: string } }[];
    }>().jobs;
    const job = jobs.find((j) => j.name === 'audit.verify');
    assert.ok(job && job.failures > 0, 'the audit.verify job counts the failure');
    assert.equal(job.lastError?.code, 'TRESOR_ERR_AUDIT_VERIFICATION_FAILED');

    const token = await operatorToken(s, 'alerts:read');
    const alert = await waitFor(
      'the audit.verification-failed alert',
      async () => {
        const res = await s.request('GET', '/v1/alerts', { token });
        return res
          .json<{ alerts: { kind: string; severity: string; evidence: number[] }[] }>()
          .alerts.find((a) => a.kind === 'audit.verification-failed');
      },
      { timeoutMs: 60_000 },
    );
    assert.equal(alert.severity, 'critical');
    assert.ok(alert.evidence.includes(failed.index), 'the evidence is the failed verification’s entry');
  });
});
