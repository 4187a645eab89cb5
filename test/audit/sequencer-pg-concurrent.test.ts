// backends: postgres
/**
 * Several server nodes writing one outbox on PostgreSQL (issue 18, src/store/pg/group-commit.ts
 * "outbox order"): two independent sets of stores on one database — each with its own pool and its
 * own group-commit writers, as two server processes have — write audit events into the same outboxes
 * (the control store's and one tenant's) at once, each write holding its transaction open a little
 * after its INSERT (as a request's work does), while the lease holder's sequencer moves them. Without
 * the outbox lock, a batch of one node commits a higher seq before the other's lower one, the
 * sequencer moves past the lower one and that event never reaches the log. At the end every committed
 * outbox row is in the log exactly once, the log's indexes are gap-free and its tree (as stored and
 * as held by the sequencer) is the RFC 9162 tree of its leaves.
 *
 * And the wake-ups (LISTEN/NOTIFY) alone, with every sweep pushed out of the test's reach: an event
 * committed on the node without the lease reaches the log through its batch's NOTIFY, and the
 * standby's sequencer learns of the append through the holder's NOTIFY (its tree head and its
 * listeners follow).
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { canonicalJson } from '../../src/audit/canonical.ts';
import { type AuditEvent, appendAuditEvent, type WithAuditEvents } from '../../src/audit/event.ts';
import { readLeaves, storedLogSize } from '../../src/audit/leaf-store.ts';
import { createAuditLogReader } from '../../src/audit/log.ts';
import type { WithAuditLog } from '../../src/audit/log-schema.ts';
import { InMemoryMerkleTree, leafHash } from '../../src/audit/merkle.ts';
import { type AuditSequencer, CONTROL_SOURCE, createAuditSequencer } from '../../src/audit/sequencer.ts';
import { createPgSequencerLease } from '../../src/audit/sequencer-lease-pg.ts';
import { CONTROL_SCHEMA, openPgControlStore } from '../../src/server/control-store.ts';
import { OUTBOX_CHANNEL } from '../../src/store/pg/group-commit.ts';
import { listenPg, type PgListener } from '../../src/store/pg/listener.ts';
import type { PgStore } from '../../src/store/pg/store.ts';
import { createPgTenantStores } from '../../src/store/pg/tenant-stores.ts';
import type { Store, TenantStores } from '../../src/store/types.ts';
import { type TenantDB, tenantStorePgMigrations } from '../../src/vault/tenant-store-schema.ts';
import { type FreshPgDatabase, freshPgDatabase } from '../helpers/pg.ts';
import { waitFor, withDeadline } from '../helpers/wait.ts';

const TENANT = 'ten_0123456789abcdef01234567';
/** Per node and outbox: LOOPS concurrent writers of WRITES events each (bounded). */
const LOOPS = 6;
const WRITES = 30;

interface Node {
  control: PgStore<unknown>;
  tenants: TenantStores<TenantDB>;
  outbox(source: string): Promise<Store<WithAuditEvents>>;
  close(): Promise<void>;
}

async function openNode(url: string): Promise<Node> {
  const control = (await openPgControlStore(url)) as PgStore<unknown>;
  const tenants = await createPgTenantStores<TenantDB>({ url, migrations: tenantStorePgMigrations });
  return {
    control,
    tenants,
    async outbox(source) {
      if (source === CONTROL_SOURCE) return control as unknown as Store<WithAuditEvents>;
      return (await tenants.open(source)) as unknown as Store<WithAuditEvents>;
    },
    async close() {
      await tenants.close();
      await control.close();
    },
  };
}

function event(id: string, tenant: string | null): AuditEvent {
  return {
    at: '2026-12-06T12:00:00.000Z',
    actor: { kind: 'system', id: 'cluster-test' },
    tenant,
    action: 'record.create',
    outcome: 'success',
    requestId: id,
  };
}

describe('two nodes writing one outbox on PostgreSQL', () => {
  let database: FreshPgDatabase;
  const nodes: Node[] = [];
  let sequencer: AuditSequencer | undefined;

  before(async () => {
    database = await freshPgDatabase({ prefix: 'h_pgclu' });
    nodes.push(await openNode(database.url));
    nodes.push(await openNode(database.url));
    await (nodes[0] as Node).tenants.create(TENANT);
  });
  const closeLast: { close(): Promise<void> }[] = [];
  after(async () => {
    for (const c of closeLast) await c.close();
    await sequencer?.close();
    for (const node of nodes) await node.close();
    await database?.drop();
  });

  test('every committed outbox row reaches the log exactly once, gap-free, in a tree that verifies', async () => {
    const [a, b] = nodes as [Node, Node];
    const seq = createAuditSequencer({
      control: a.control as never,
      openSource: (source) => a.outbox(source),
      listSources: async () => [TENANT],
      lease: createPgSequencerLease({ url: database.url, retryMs: 100 }),
      numberedParameters: true,
      gatherMs: 1,
      sweepMs: 20,
    });
    sequencer = seq;
    await seq.start();

    const written = new Map<string, string>(); // requestId → source
    async function writer(node: Node, name: string, source: string, loop: number): Promise<void> {
      const store = await node.outbox(source);
      for (let i = 0; i < WRITES; i++) {
        const id = `${name}-${source}-${loop}-${i}`;
        await store.write(async (trx) => {
          await appendAuditEvent(trx as never, event(id, source === CONTROL_SOURCE ? null : TENANT));
          // The request's work after its event: the transaction stays open with its seq taken.
          await sql`SELECT pg_sleep(0.002)`.execute(trx);
        });
        written.set(id, source);
        if (node === a) seq.notify(source);
      }
    }
    const loops: Promise<void>[] = [];
    for (const [node, name] of [
      [a, 'a'],
      [b, 'b'],
    ] as const)
      for (const source of [CONTROL_SOURCE, TENANT])
        for (let loop = 0; loop < LOOPS; loop++) loops.push(writer(node, name, source, loop));
    await withDeadline('the writers of both nodes', Promise.all(loops), 120_000);
    await withDeadline('the sequencer draining', seq.drain(), 60_000);

    // Every committed outbox row, of both outboxes (what is still there is some of them: rows
    // already in the log leave the outbox, src/audit/outbox-removal.ts).
    const outboxIds = [...written.keys()];
    assert.equal(outboxIds.length, 2 * 2 * LOOPS * WRITES);
    for (const source of [CONTROL_SOURCE, TENANT]) {
      const rows = await (await a.outbox(source)).db.selectFrom('audit_events').select('event').execute();
      for (const row of rows)
        assert.ok(written.has((JSON.parse(row.event) as AuditEvent).requestId as string));
    }

    const logDb = a.control.db as unknown as import('kysely').Kysely<WithAuditLog>;
    const log = (await readLeaves(logDb, 0, await storedLogSize(logDb))).map((r) => ({
      idx: r.index,
      leaf: r.leaf,
    }));
    const logged = log.map((r) => (JSON.parse(r.leaf) as AuditEvent).requestId as string);
    const missing = outboxIds.filter((id) => !logged.includes(id));
    assert.deepEqual(missing, [], 'every committed outbox row is in the log');
    assert.equal(new Set(logged).size, logged.length, 'no event is in the log twice');
    assert.equal(logged.length, outboxIds.length);
    assert.ok(
      log.every((r, i) => Number(r.idx) === i),
      'the log indexes are 0..n-1 without a gap',
    );

    // The tree: each leaf is its event's canonical JSON with its index; the stored tree nodes and the
    // sequencer's head give the RFC 9162 root of those leaves.
    const tree = new InMemoryMerkleTree();
    for (const [i, r] of log.entries()) {
      const parsed = JSON.parse(r.leaf) as AuditEvent & { index: number };
      assert.equal(parsed.index, i);
      assert.equal(canonicalJson(parsed), r.leaf, 'each leaf is canonical JSON');
      tree.append(leafHash(Buffer.from(r.leaf, 'utf8')));
    }
    assert.deepEqual(seq.treeHead(), { size: log.length, root: tree.root() });
    const reader = createAuditLogReader(a.control.db as never, () => log.length);
    assert.deepEqual(
      await reader.rootAt(log.length),
      tree.root(),
      'the stored tree nodes give the same root',
    );
  });

  test('the wake-ups alone: an outbox commit on the standby reaches the log, and the standby follows the log', async () => {
    const [a, b] = nodes as [Node, Node];
    const holder = sequencer as AuditSequencer;
    assert.ok(holder, 'the first test left its sequencer, the lease holder, running');
    await holder.close();
    sequencer = undefined;
    // Sweeps every ten minutes: within the test only a notification can wake either sequencer.
    const TEN_MINUTES = 600_000;
    const make = (node: Node) =>
      createAuditSequencer({
        control: node.control as never,
        openSource: (source) => node.outbox(source),
        listSources: async () => [TENANT],
        lease: createPgSequencerLease({ url: database.url, retryMs: 100 }),
        numberedParameters: true,
        logChannel: 'tresor_log',
        gatherMs: 1,
        sweepMs: TEN_MINUTES,
      });
    const onA = make(a);
    await onA.start();
    closeLast.push(onA);
    const onB = make(b);
    await onB.start();
    closeLast.push(onB);
    const followed: string[] = [];
    onB.onAppended((entries) => {
      for (const e of entries) followed.push((JSON.parse(e.leaf) as AuditEvent).requestId as string);
    });
    // Each node listens as the server does (src/server/backend.ts): outbox commits wake the holder,
    // log appends wake the standby.
    const listen = (seq: AuditSequencer): PgListener =>
      listenPg({
        url: database.url,
        channels: [OUTBOX_CHANNEL, 'tresor_log'],
        onNotification(channel, payload) {
          if (channel === 'tresor_log') return void seq.follow().catch(() => undefined);
          seq.notify(payload === CONTROL_SCHEMA ? CONTROL_SOURCE : payload.replace(/^tenant_/, ''));
        },
      });
    const listeners = [listen(onA), listen(onB)];
    for (const l of listeners) closeLast.push(l);
    await Promise.all(listeners.map((l) => l.ready));
    assert.ok(listeners.every((l) => l.listening()));

    const sizeBefore = onB.treeHead().size;
    const outbox = await b.outbox(TENANT);
    await outbox.write((trx) => appendAuditEvent(trx as never, event('woken-by-notify', TENANT)));
    // Node B never calls onA.notify: only B's batch's NOTIFY tells A.
    await waitFor(
      'the standby to follow the append of its own event',
      async () => (followed.includes('woken-by-notify') ? true : undefined),
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    assert.equal(onB.treeHead().size, sizeBefore + 1);
    assert.deepEqual(onB.treeHead(), onA.treeHead(), 'the standby holds the same tree head');
  });
});
