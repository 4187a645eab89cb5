// backends: sqlite postgres
/**
 * Audited reads over many tenants commit nothing to the tenants' stores: each read's event goes to
 * the control store's outbox (src/audit/read-outbox.ts), so reads spread over 50 tenant files share
 * the control store's group commit instead of paying an fsync of their own tenant's file. And every
 * read is still in the log under its tenant: the tenant's own admin key lists it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { TresorServer } from '../../src/server/tresor-server.ts';
import { type HttpResponse, startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';

const TENANTS = 50;
const READS_PER_TENANT = 2;
const ACTOR = { actor: { kind: 'system', id: 'read-outbox-test' } } as const;
const PEOPLE = { fields: { email: { type: 'string', classification: 'personal' } } };

interface Tenant {
  id: string;
  apiKey: string;
  record: string;
}

describe('audited reads over many tenants', () => {
  let stack: TresorStack;
  let server: TresorServer;
  const tenants: Tenant[] = [];

  before(async () => {
    stack = await startTresorStack({ server: 'in-process', logLevel: 'warn' });
    server = stack.server as TresorServer;
    for (let i = 0; i < TENANTS; i++) {
      const made = await server.tenants.createTenant({ name: `Reader ${i}` }, ACTOR);
      await server.vault.putCollection(made.id, 'people', PEOPLE, ACTOR);
      const record = await server.vault.createRecord(
        made.id,
        'people',
        { email: `reader-${i}@example.test` },
        ACTOR,
      );
      tenants.push({ id: made.id, apiKey: made.apiKey, record: record.id });
    }
  });
  after(async () => {
    await stack?.stop();
  });

  it('commits nothing to any tenant store, and every read is in the log under its tenant', async () => {
    // The writes above are in the log and their outbox rows removed: nothing of them is left to commit.
    await server.audit.sequencer.drain();
    await server.audit.sequencer.removeMoved();
    const before = server.tenantStores.stats();

    const reads: Promise<HttpResponse>[] = [];
    for (let round = 0; round < READS_PER_TENANT; round++)
      for (const t of tenants)
        reads.push(stack.request('GET', `/v1/collections/people/records/${t.record}`, { token: t.apiKey }));
    const answers = await Promise.all(reads);
    for (const res of answers) assert.equal(res.status, 200, res.text);

    const afterReads = server.tenantStores.stats();
    assert.equal(
      afterReads.commitBatches,
      before.commitBatches,
      `${answers.length} reads over ${TENANTS} tenants began no tenant-store transaction`,
    );
    assert.equal(afterReads.commitJobs, before.commitJobs, 'and ran no tenant-store write');

    await server.audit.sequencer.drain();
    for (const t of tenants) {
      const res = await stack.request('GET', '/v1/audit/entries?limit=1000', { token: t.apiKey });
      assert.equal(res.status, 200, res.text);
      const entries = res.json<{
        entries: { entry: { action: string; tenant: string; target?: unknown } }[];
      }>().entries;
      const reads = entries.filter(
        (e) =>
          e.entry.action === 'record.read' &&
          (e.entry.target as { recordIds?: string[] } | undefined)?.recordIds?.[0] === t.record,
      );
      assert.equal(reads.length, READS_PER_TENANT, `${t.id}'s own key lists its reads`);
      for (const e of entries) assert.equal(e.entry.tenant, t.id, 'a tenant lists only its own entries');
    }
  });
});
