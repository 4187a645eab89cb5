/**
 * The composition root runs its background jobs through the job runner: the start-up resume and
 * every pass of runJobs() are visible to operators in server.jobs.status().
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { operatorToken } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';

describe('the server’s background jobs', () => {
  let s: TresorStack;
  before(async () => {
    s = await startTresorStack({ server: 'in-process' });
  });
  after(async () => {
    await s?.stop();
  });

  it('records the start-up resume and each job of a pass, by name', async () => {
    const server = s.server;
    assert.ok(server);
    const atStart = server.jobs.status();
    assert.equal(atStart['tenants.resume']?.runs, 1);
    assert.equal(atStart['tenants.resume']?.failures, 0);

    const created = await s.request('POST', '/v1/tenants', {
      token: await operatorToken(s, 'tenants:create'),
      body: { name: 'Jobs' },
    });
    assert.equal(created.status, 201, created.text);
    await server.runJobs();
    const status = server.jobs.status();
    for (const job of ['tenants.auto-close', 'grants.expire', 'vault.retention']) {
      assert.equal(status[job]?.runs, 1, job);
      assert.equal(status[job]?.failures, 0, job);
      assert.ok(status[job]?.lastSuccess, job);
    }
    assert.equal(status['tenants.resume']?.runs, 2);
  });
});
