/**
 * The background job runner: a failing job is logged at error level (name and code, never a
 * customer value), counted and visible in status(), and the other jobs still run.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { TresorError } from '../../src/errors.ts';
import { createJobRunner, failOnItems, JobItemsFailed, loggableError } from '../../src/server/jobs.ts';

const CUSTOMER_VALUE = 'jane.doe@example.test';

/** A pino logger writing JSON lines into `lines`. */
function capturedLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line !== '') lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, logger: pino({ level: 'info' }, stream) };
}

/** A clock that moves one second per reading, from 2030-01-01T00:00:00Z. */
function steppingClock() {
  let t = Date.parse('2030-01-01T00:00:00.000Z');
  return () => {
    const now = new Date(t);
    t += 1000;
    return now;
  };
}

describe('background job runner', () => {
  it('logs, counts and shows a failing job; the other jobs still run', async () => {
    const { lines, logger } = capturedLogger();
    const jobs = createJobRunner({ logger, clock: steppingClock() });
    const ran: string[] = [];

    assert.equal(
      await jobs.run('grants.expire', async () => {
        ran.push('grants.expire');
        throw new TresorError('TRESOR_ERR_UNAVAILABLE', 'control store unavailable');
      }),
      false,
    );
    assert.equal(
      await jobs.run('vault.retention', async () => {
        ran.push('vault.retention');
      }),
      true,
    );
    assert.deepEqual(ran, ['grants.expire', 'vault.retention']);

    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.level, 50, 'error level');
    assert.equal(lines[0]?.msg, 'background job failed');
    assert.equal(lines[0]?.job, 'grants.expire');
    assert.equal(lines[0]?.code, 'TRESOR_ERR_UNAVAILABLE');
    assert.equal(lines[0]?.error, 'control store unavailable');

    assert.deepEqual(jobs.status(), {
      'grants.expire': {
        runs: 1,
        failures: 1,
        lastRun: '2030-01-01T00:00:00.000Z',
        lastError: { at: '2030-01-01T00:00:01.000Z', code: 'TRESOR_ERR_UNAVAILABLE' },
        lastOutcome: 'failure',
      },
      'vault.retention': {
        runs: 1,
        failures: 0,
        lastRun: '2030-01-01T00:00:02.000Z',
        lastSuccess: '2030-01-01T00:00:03.000Z',
        lastOutcome: 'success',
      },
    });

    await jobs.run('grants.expire', async () => {});
    const again = jobs.status()['grants.expire'];
    assert.equal(again?.runs, 2);
    assert.equal(again?.failures, 1);
    assert.equal(again?.lastSuccess, '2030-01-01T00:00:05.000Z');
    assert.equal(again?.lastError?.code, 'TRESOR_ERR_UNAVAILABLE', 'the last error stays visible');
    assert.equal(again?.lastOutcome, 'success', 'but the last run succeeded');
  });

  it("logs only the class name of an error that is not Tresor's: its message may quote a value", async () => {
    const { lines, logger } = capturedLogger();
    const jobs = createJobRunner({ logger, clock: steppingClock() });
    await jobs.run('audit.keyd-ops', async () => {
      throw new TypeError(`cannot read ${CUSTOMER_VALUE}`);
    });
    await jobs.run('audit.keyd-ops', async () => {
      throw Object.assign(new Error(`ENOENT ${CUSTOMER_VALUE}`), { code: 'ENOENT' });
    });
    await jobs.run('audit.keyd-ops', async () => {
      throw CUSTOMER_VALUE;
    });
    assert.deepEqual(
      lines.map((l) => [l.job, l.code, l.error]),
      [
        ['audit.keyd-ops', 'TypeError', undefined],
        ['audit.keyd-ops', 'Error', undefined],
        ['audit.keyd-ops', 'Error', undefined],
      ],
    );
    assert.ok(!JSON.stringify(lines).includes(CUSTOMER_VALUE));
    assert.ok(!JSON.stringify(jobs.status()).includes(CUSTOMER_VALUE));
    assert.equal(jobs.status()['audit.keyd-ops']?.failures, 3);
  });

  it("fails a job whose report lists failed items, under the first item's code", async () => {
    const { lines, logger } = capturedLogger();
    const jobs = createJobRunner({ logger, clock: steppingClock() });
    const report = {
      failed: [
        { tenant: 'ten_a', code: 'TRESOR_ERR_KEYD_UNAVAILABLE' },
        { tenant: 'ten_b', code: 'TRESOR_ERR_INTERNAL' },
      ],
    };
    await jobs.run('tenants.resume', async () => failOnItems(report));
    await jobs.run('tenants.auto-close', async () => failOnItems({ failed: [] }));
    assert.equal(jobs.status()['tenants.resume']?.lastError?.code, 'TRESOR_ERR_KEYD_UNAVAILABLE');
    assert.equal(jobs.status()['tenants.auto-close']?.failures, 0);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.error, '2 item(s) of the job failed');
    assert.deepEqual(loggableError(new JobItemsFailed([{ code: 'SQLITE_BUSY' }])), {
      code: 'JobItemsFailed',
    });
  });

  it('hands out a copy: status() cannot be changed from outside', async () => {
    const { logger } = capturedLogger();
    const jobs = createJobRunner({ logger, clock: steppingClock() });
    await jobs.run('x', async () => {
      throw new TresorError('TRESOR_ERR_INTERNAL', 'no');
    });
    const status = jobs.status();
    (status.x as { runs: number }).runs = 99;
    (status.x?.lastError as { code: string }).code = 'changed';
    assert.equal(jobs.status().x?.runs, 1);
    assert.equal(jobs.status().x?.lastError?.code, 'TRESOR_ERR_INTERNAL');
  });

  it('runs a scheduled job only while this process leads the cluster’s jobs; a skipped tick is no run', async () => {
    const { logger } = capturedLogger();
    let leading = false;
    const jobs = createJobRunner({ logger, clock: steppingClock(), leads: () => leading });
    let ran = 0;
    const work = async () => {
      ran += 1;
    };
    assert.equal(await jobs.periodic('vault.retention', work), undefined);
    assert.equal(ran, 0);
    assert.deepEqual(jobs.status(), {});
    leading = true;
    assert.equal(await jobs.periodic('vault.retention', work), true);
    assert.equal(ran, 1);
    assert.equal(jobs.status()['vault.retention']?.runs, 1);
    // A run asked for directly (a request's backup) runs wherever it is asked.
    leading = false;
    assert.equal(await jobs.run('backup.run', work), true);
    assert.equal(ran, 2);
  });
});
