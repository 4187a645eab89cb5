// backends: sqlite postgres
// drill: kill -9 of the server under write load
/**
 * Invariant 5 end to end: a `tresor server` process killed with SIGKILL while 32 clients write over
 * HTTPS loses no write it acknowledged. Every record answered 201 before the kill is read back with
 * the same data after a restart, and its record.create audit event is in the tenant's store
 * (its SQLite file, integrity-checked, or its PostgreSQL schema).
 */

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { leafTexts } from '../../src/audit/leaf-codec.ts';
import { onPostgres } from '../helpers/backend.ts';
import { operatorToken } from '../helpers/console.ts';
import { controlRows, tenantRows } from '../helpers/stack-sql.ts';
import { startTresorStack } from '../helpers/tresor-stack.ts';

const WRITERS = 32;
/**
 * Acknowledged writes before the kill: at least a couple of seconds of load on two cores. On
 * PostgreSQL (each write a round trip to the database server sharing those cores) a third of
 * that is the same seconds of load.
 */
const KILL_AFTER_ACKS = onPostgres ? 500 : 1500;
const LOAD_TIMEOUT_MS = 30_000;

interface Sent {
  email: string;
  n: number;
}

/** Runs `fn` over `items`, at most `concurrency` at a time. */
async function pool<T>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

describe('tresor server killed with SIGKILL under write load', () => {
  it('keeps every record acknowledged with 201 before the kill: readable with the same data after a restart, each with its record.create audit event', async () => {
    const s = await startTresorStack({ logLevel: 'warn' });
    try {
      const created = await s.request('POST', '/v1/tenants', {
        token: await operatorToken(s, 'tenants:create'),
        body: { name: 'Load' },
      });
      assert.equal(created.status, 201, created.text);
      const { id: tenant, apiKey } = created.json<{ id: string; apiKey: string }>();
      const put = await s.request('PUT', '/v1/collections/events', {
        token: apiKey,
        body: {
          fields: {
            email: { type: 'string', classification: 'personal', required: true, searchable: true },
            n: { type: 'number', classification: 'internal', required: true },
          },
        },
      });
      assert.equal(put.status, 201, put.text);

      const acked = new Map<string, Sent>();
      let inFlight = 0;
      let inFlightAtKill = 0;
      let killing = false;
      let enoughAcks: () => void = () => {};
      const reachedAcks = new Promise<void>((resolve) => {
        enoughAcks = resolve;
      });

      /** Writes until its connection dies; any answer but 201 before the kill is a failure. */
      const writer = async (w: number): Promise<number> => {
        for (let i = 0; ; i++) {
          const data: Sent = { email: `writer-${w}-${i}@load.example`, n: i };
          inFlight++;
          let res: Awaited<ReturnType<typeof s.request>>;
          try {
            res = await s.request('POST', '/v1/collections/events/records', { token: apiKey, body: data });
          } catch (err) {
            if (!killing) throw err;
            return i; // the server died under this request: not acknowledged
          } finally {
            inFlight--;
          }
          assert.equal(res.status, 201, `writer ${w}, write ${i}: ${res.status} ${res.text}`);
          acked.set(res.json<{ id: string }>().id, data);
          if (acked.size >= KILL_AFTER_ACKS) enoughAcks();
        }
      };
      const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));
      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        reachedAcks,
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`only ${acked.size} acks in ${LOAD_TIMEOUT_MS} ms`)),
            LOAD_TIMEOUT_MS,
          );
        }),
        // A writer failing early (a non-201) ends the test at once.
        Promise.all(writers),
      ]).finally(() => clearTimeout(timer));
      killing = true;
      inFlightAtKill = inFlight;
      await s.kill9Server();
      const loadMs = Date.now() - started;
      await Promise.all(writers);
      assert.ok(inFlightAtKill > 0, 'writes were in flight when the server was killed');
      assert.ok(acked.size >= KILL_AFTER_ACKS, `${acked.size} writes acknowledged in ${loadMs} ms`);

      await s.startServer();
      const lost: string[] = [];
      await pool([...acked], WRITERS, async ([id, sent]) => {
        const res = await s.request('GET', `/v1/collections/events/records/${id}`, { token: apiKey });
        if (res.status !== 200) lost.push(`${id}: ${res.status}`);
        else assert.deepEqual(res.json<{ data: Sent }>().data, sent, `record ${id} has the data written`);
      });
      assert.deepEqual(lost, [], 'every acknowledged record is read back');
      await s.stopServer();

      if (s.database.kind === 'sqlite') {
        const db = new Database(join(s.dataDir, 'tenants', `${tenant}.sqlite`), {
          readonly: true,
          fileMustExist: true,
        });
        try {
          assert.deepEqual(db.pragma('integrity_check'), [{ integrity_check: 'ok' }]);
        } finally {
          db.close();
        }
      }
      // Each event is in the tenant's outbox or, once moved, in the log (moved rows leave the outbox).
      const audited = new Set<string>();
      const events = [
        ...(await tenantRows<{ event: string }>(
          s,
          tenant,
          "SELECT event FROM audit_events WHERE action = 'record.create'",
        )),
        // A tenant id is letters, digits and underscores (TENANT_ID_PATTERN): quoted as it is.
        ...(await controlRows<{ block: Buffer }>(s, 'SELECT block FROM audit_leaves ORDER BY idx'))
          .flatMap((r) => leafTexts(r.block))
          .filter((leaf) => (JSON.parse(leaf) as { tenant?: string }).tenant === tenant)
          .map((leaf) => ({ event: leaf })),
      ];
      for (const row of events) {
        const event = JSON.parse(row.event) as {
          action: string;
          outcome: string;
          target?: { recordIds?: string[] };
        };
        if (event.action === 'record.create' && event.outcome === 'success')
          for (const id of event.target?.recordIds ?? []) audited.add(id);
      }
      const unaudited = [...acked.keys()].filter((id) => !audited.has(id));
      assert.deepEqual(unaudited, [], 'every acknowledged record has its record.create event');
    } finally {
      await s.stop();
    }
  });
});
