// backends: postgres
/**
 * The audit sequencer's lease on PostgreSQL (src/audit/sequencer-lease-pg.ts), against the machine's
 * PostgreSQL: one holder per database among several processes' leases, a fence that refuses a
 * transaction of a process that does not hold it, the lease lost AT ONCE when its connection dies
 * (the backend terminated, as a crash or a network cut would), and taken over by the other lease.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { SequencerLease } from '../../src/audit/sequencer-lease.ts';
import { createPgSequencerLease } from '../../src/audit/sequencer-lease-pg.ts';
import { withDeadline } from '../helpers/wait.ts';

const ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/** Resolves the next time `lease` reports `held`. */
function next(lease: SequencerLease, held: boolean): Promise<void> {
  return new Promise((resolve) => {
    const stop = lease.onChange((now) => {
      if (now === held) {
        stop();
        resolve();
      }
    });
  });
}

describe('the sequencer lease on PostgreSQL', () => {
  const name = `pgserver_lease_${randomBytes(6).toString('hex')}`;
  const url = `postgres://postgres@127.0.0.1:5432/${name}`;
  let admin: pg.Client;
  let db: Kysely<unknown>;
  const leases: SequencerLease[] = [];
  const lease = (retryMs = 100) => {
    const made = createPgSequencerLease({ url, retryMs });
    leases.push(made);
    return made;
  };

  before(async () => {
    admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'`);
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    // DROP DATABASE … WITH (FORCE) at the end may still meet a pool connection closing.
    pool.on('error', () => undefined);
    db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  });
  after(async () => {
    for (const l of leases) await l.close();
    await db?.destroy();
    await admin?.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin?.end();
  });

  test('one holder at a time: the first takes it, the second waits, and the fence refuses the second', async () => {
    const first = lease();
    const second = lease();
    await first.start();
    await second.start();
    assert.equal(first.held(), true);
    assert.equal(second.held(), false);
    await db.transaction().execute((trx) => first.fence(trx));
    await assert.rejects(
      db.transaction().execute((trx) => second.fence(trx)),
      (error: { code?: string }) => error.code === 'TRESOR_ERR_UNAVAILABLE',
    );
    const taken = next(second, true);
    await first.close();
    await withDeadline('the second lease taking the released lock', taken);
    assert.equal(second.held(), true);
    await second.close();
  });

  test('a holder whose connection dies loses the lease at once, and the other takes it over', async () => {
    // The first retries far more slowly than the second, so once its connection is gone the second
    // takes the lock before the first, reconnected, tries again (either taking it would be correct;
    // the test wants to see a takeover).
    const first = lease(20_000);
    const second = lease();
    await first.start();
    await second.start();
    assert.equal(first.held(), true);
    const lost = next(first, false);
    const taken = next(second, true);
    // The holder's backend dies (a crashed node, a cut network): PostgreSQL drops its session locks.
    const holders = await admin.query<{ pid: number }>(
      `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database =
         (SELECT oid FROM pg_database WHERE datname = $1)`,
      [name],
    );
    assert.equal(holders.rows.length, 1);
    await admin.query('SELECT pg_terminate_backend($1)', [holders.rows[0]?.pid]);
    await withDeadline('the first lease noticing its lost connection', lost);
    assert.equal(first.held(), false);
    await assert.rejects(db.transaction().execute((trx) => first.fence(trx)));
    await withDeadline('the second lease taking over', taken);
    await db.transaction().execute((trx) => second.fence(trx));
    // The first one, reconnected, stays a standby while the second holds the lock.
    assert.equal(first.held(), false);
  });

  test('locks are per database: a lease on another database is not held back', async () => {
    const other = `${name}_b`;
    await admin.query(`CREATE DATABASE ${other} TEMPLATE template0`);
    const here = lease();
    const there = createPgSequencerLease({
      url: `postgres://postgres@127.0.0.1:5432/${other}`,
      retryMs: 100,
    });
    try {
      await here.start();
      await there.start();
      assert.equal(there.held(), true);
    } finally {
      await there.close();
      await admin.query(`DROP DATABASE IF EXISTS ${other} WITH (FORCE)`);
    }
  });
});
