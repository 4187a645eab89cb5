// backends: sqlite postgres
// drill: one tenant restored into a running system
/**
 * Restoring one tenant into a running system (issues 16 and 18), against a real stack (keyd and
 * `tresor server` processes, two folder destinations), on either backend: on SQLite the restored
 * file is renamed over the live one, on PostgreSQL the restored schema replaces the live one
 * (`tenant_<id>`) in one transaction; either way no scratch (file, or `tresor_restore_*` schema)
 * is left behind, after a restore or a refusal. The drill: records in several collections, a second
 * API key, a staff grant (its reads audited) and audit entries; a backup; records changed, deleted
 * and added; the restore, with readers all through it; every record as it was at the backup, another
 * tenant untouched, the audit log gap-free and verifying end to end with the restore in it and
 * visible to the tenant, and writes after the restore working and sequenced exactly once (the outbox
 * against the sequencer's cursor). Then the refusals, each changing nothing: a tampered chunk, a
 * tampered manifest, an audit checkpoint (signed by keyd) that is not a prefix of the live log, an
 * unknown tenant, backup or destination, an operator token or API key (no person, no fresh second
 * factor), a tenant key keyd holds pending destruction, a tenant closed after the backup (its key is
 * shredded, and the answer says so). And `tresor restore --tenant`.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseCheckpoint } from '../../src/audit/checkpoint.ts';
import { parseNote } from '../../src/audit/note.ts';
import { type BackupManifest, manifestBytes, signManifest } from '../../src/backup/manifest.ts';
import { exited, leaksNone, tresor } from '../cli/cli-run.ts';
import { type ClusterNode, startNode, stopNode } from '../helpers/cluster-node.ts';
import { consoleClient, type OperatorAdmin, operatorAdmin, operatorToken } from '../helpers/console.ts';
import { forgeKeydCheckpoint } from '../helpers/keyd-checkpoints.ts';
import { controlLeaves, controlRows, databaseEnv, tenantStoreExists } from '../helpers/stack-sql.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

interface VaultRecord {
  id: string;
  version: number;
  data: Record<string, unknown>;
}
interface Restore {
  id: string;
  tenant: string;
  backupId: string;
  destination: string;
  state: 'running' | 'done' | 'failed';
  result: { records: number; collections: number; checkpointSize: number } | null;
  error: { code: string; message: string } | null;
}
interface Entry {
  index: number;
  entry: {
    action: string;
    outcome: string;
    tenant: string | null;
    actor: { kind: string; id: string };
    target?: Record<string, unknown>;
  };
}

const COLLECTIONS = {
  people: {
    fields: {
      email: { type: 'string', classification: 'personal', required: true, searchable: true },
      name: { type: 'string', classification: 'personal' },
    },
  },
  orders: {
    fields: {
      item: { type: 'string', classification: 'confidential', required: true },
      quantity: { type: 'number', classification: 'internal' },
    },
  },
} as const;

describe('tresor restore of one tenant into a running system (real stack)', () => {
  let s: TresorStack;
  let admin: OperatorAdmin;
  let base: string;
  let folders: { a: string; b: string };
  const secrets: string[] = [];
  const tenants: Record<'t' | 'other', { id: string; apiKey: string }> = {
    t: { id: '', apiKey: '' },
    other: { id: '', apiKey: '' },
  };
  let backupId: string;
  /** PostgreSQL: a second server process on the same database (another node). */
  let nodeB: ClusterNode | undefined;
  /** Tenant T's records at the backup, by collection. */
  let atBackup: Record<string, VaultRecord[]>;

  const api = (tenant: 't' | 'other', method: string, path: string, body?: unknown) =>
    s.request(method, path, { token: tenants[tenant].apiKey, ...(body === undefined ? {} : { body }) });

  /** Every record of every collection of a tenant, in creation order. */
  async function allRecords(
    tenant: 't' | 'other',
    node?: ClusterNode,
  ): Promise<Record<string, VaultRecord[]>> {
    const out: Record<string, VaultRecord[]> = {};
    for (const name of Object.keys(COLLECTIONS)) {
      const path = `/v1/collections/${name}/records?limit=500`;
      const res = node
        ? await node.request('GET', path, { token: tenants[tenant].apiKey })
        : await api(tenant, 'GET', path);
      assert.equal(res.status, 200, res.text);
      out[name] = res.json<{ records: VaultRecord[] }>().records;
    }
    return out;
  }

  async function backupNow(): Promise<string> {
    const run = await s.request('POST', '/v1/backups', { token: await operatorToken(s, 'backups:run') });
    assert.equal(run.status, 202, run.text);
    const id = run.json<{ id: string }>().id;
    const read = await operatorToken(s, 'backups:read');
    await waitFor(
      `backup ${id} done`,
      async () => {
        const b = (await s.request('GET', `/v1/backups/${id}`, { token: read })).json<{
          outcome: string;
          verifying: boolean;
        }>();
        // Its trial restore too: the next backup is refused (409) while this one's verification runs.
        if (b.outcome === 'running' || b.verifying) return undefined;
        assert.equal(b.outcome, 'done');
        return true;
      },
      { timeoutMs: 120_000, intervalMs: 200 },
    );
    return id;
  }

  async function restore(tenant: string, body: Record<string, unknown>): Promise<Restore> {
    const res = await admin.request('POST', `/v1/tenants/${tenant}/restore`, body);
    assert.equal(res.status, 202, res.text);
    const started = res.json<Restore>();
    assert.equal(res.headers.location, `/v1/tenants/${tenant}/restores/${started.id}`);
    return waitFor(
      `restore ${started.id} ended`,
      async () => {
        const r = await admin.request('GET', `/v1/tenants/${tenant}/restores/${started.id}`);
        assert.equal(r.status, 200, r.text);
        const view = r.json<Restore>();
        return view.state === 'running' ? undefined : view;
      },
      { timeoutMs: 120_000, intervalMs: 200 },
    );
  }

  /** The whole audit log, read from the control store behind the server's back. */
  async function auditLog(): Promise<Record<string, unknown>[]> {
    return (await controlLeaves(s)).map((leaf) => JSON.parse(leaf) as Record<string, unknown>);
  }

  /** Scratch stores of restores still there: files beside the live ones, or PostgreSQL schemas. */
  async function scratchLeft(): Promise<string[]> {
    if (s.database.kind === 'sqlite')
      return readdirSync(join(s.dataDir, 'tenants')).filter((n) => n.includes('.restore-'));
    const rows = await controlRows<{ nspname: string }>(
      s,
      "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tresor\\_restore\\_%' OR nspname LIKE '%restore%'",
    );
    return rows.map((r) => r.nspname);
  }

  async function tenantEntries(tenant: 't' | 'other'): Promise<Entry[]> {
    const res = await api(tenant, 'GET', '/v1/audit/entries?limit=1000');
    assert.equal(res.status, 200, res.text);
    return res.json<{ entries: Entry[] }>().entries;
  }

  before(async () => {
    base = `/tmp/tresor-tenant-restore-${process.pid}-${Date.now().toString(36)}`;
    folders = { a: `${base}-a`, b: `${base}-b` };
    s = await startTresorStack({
      env: {
        TRESOR_BACKUP_INTERVAL_MINUTES: '0',
        TRESOR_CLOSE_GRACE_DAYS: '0',
        TRESOR_BACKUP_DESTINATIONS: JSON.stringify([
          { name: 'a', kind: 'folder', path: folders.a },
          { name: 'b', kind: 'folder', path: folders.b },
        ]),
      },
    });
    admin = await operatorAdmin(s);
    for (const [key, name] of [
      ['t', 'Restored Tenant'],
      ['other', 'Other Tenant'],
    ] as const) {
      const created = await admin.request('POST', '/v1/tenants', { name });
      assert.equal(created.status, 201, created.text);
      tenants[key] = created.json<{ id: string; apiKey: string }>();
      secrets.push(tenants[key].apiKey);
      for (const [name, schema] of Object.entries(COLLECTIONS)) {
        const put = await api(key, 'PUT', `/v1/collections/${name}`, schema);
        assert.equal(put.status, 201, put.text);
      }
    }
    secrets.push(...admin.secrets);
  });
  after(async () => {
    await stopNode(nodeB).catch(() => undefined);
    await s?.stop();
    rmSync(folders.a, { recursive: true, force: true });
    rmSync(folders.b, { recursive: true, force: true });
  });

  it('restores every record of the tenant as it was at the backup, leaves the other tenant alone, and the audit log holds everything once', async () => {
    // Records in two collections, one updated; reads (audit entries); a second API key.
    const made: VaultRecord[] = [];
    for (let i = 0; i < 5; i++) {
      const person = await api('t', 'POST', '/v1/collections/people/records', {
        email: `p${i}@example.test`,
        name: `Person ${i}`,
      });
      assert.equal(person.status, 201, person.text);
      made.push(person.json<VaultRecord>());
      const order = await api('t', 'POST', '/v1/collections/orders/records', {
        item: `item ${i}`,
        quantity: i,
      });
      assert.equal(order.status, 201, order.text);
      made.push(order.json<VaultRecord>());
    }
    const first = made[0] as VaultRecord;
    const patched = await s.request('PATCH', `/v1/collections/people/records/${first.id}`, {
      token: tenants.t.apiKey,
      body: { name: 'Person 0, renamed' },
      headers: { 'if-match': `"${first.version}"` },
    });
    assert.equal(patched.status, 200, patched.text);
    assert.equal((await api('t', 'GET', `/v1/collections/orders/records/${made[1]?.id}`)).status, 200);
    const other = await api('other', 'POST', '/v1/collections/people/records', { email: 'o@example.test' });
    assert.equal(other.status, 201, other.text);
    const key = await api('t', 'POST', '/v1/api-keys', { collections: '*', access: ['read'] });
    assert.equal(key.status, 201, key.text);
    const secondKey = key.json<{ token: string }>().token;
    secrets.push(secondKey);

    // A staff grant on T (lockbox: T's admin approves; the agent activates with a fresh factor).
    const c = consoleClient(s);
    const agent = await c.createAndEnrol({
      side: 'operator',
      role: 'support-agent',
      email: 'agent@restore.test',
    });
    const tenantAdmin = await c.createAndEnrol({
      side: 'customer',
      role: 'tenant-admin',
      email: 'admin@restored.test',
      tenant: tenants.t.id,
    });
    let agentSession = await c.login(agent);
    const grantAsked = await c.as(agentSession, 'POST', '/v1/grants', {
      tenant: tenants.t.id,
      collections: ['people'],
      access: 'read',
      reason: 'customer asked to check a profile after a restore',
      ticket: 'SUP-16',
    });
    assert.equal(grantAsked.status, 201, grantAsked.text);
    const grantId = grantAsked.json<{ id: string }>().id;
    let adminSession = await c.login(tenantAdmin);
    adminSession = await c.reauthenticate(tenantAdmin, adminSession);
    const approved = await c.as(adminSession, 'POST', `/v1/grants/${grantId}/approve`);
    assert.equal(approved.status, 200, approved.text);
    agentSession = await c.reauthenticate(agent, agentSession);
    const activated = await c.as(agentSession, 'POST', `/v1/grants/${grantId}/activate`);
    assert.equal(activated.status, 200, activated.text);
    const staffRead = () =>
      c.as(agentSession, 'GET', `/v1/collections/people/records/${first.id}`, undefined, {
        'tresor-grant': grantId,
      });
    assert.equal((await staffRead()).status, 200);
    secrets.push(...c.secrets);

    atBackup = await allRecords('t');
    assert.equal(atBackup.people?.length, 5);
    assert.equal(atBackup.orders?.length, 5);
    backupId = await backupNow();

    // After the backup: a change, a deletion, an addition in T; a write in the other tenant.
    const changed = await s.request('PATCH', `/v1/collections/orders/records/${made[3]?.id}`, {
      token: tenants.t.apiKey,
      body: { quantity: 99 },
      headers: { 'if-match': `"${made[3]?.version}"` },
    });
    assert.equal(changed.status, 200, changed.text);
    assert.equal((await api('t', 'DELETE', `/v1/collections/people/records/${made[4]?.id}`)).status, 204);
    const added = await api('t', 'POST', '/v1/collections/people/records', { email: 'late@example.test' });
    assert.equal(added.status, 201, added.text);
    const lateId = added.json<VaultRecord>().id;
    const otherLate = await api('other', 'POST', '/v1/collections/orders/records', { item: 'after' });
    assert.equal(otherLate.status, 201, otherLate.text);
    const otherBefore = await allRecords('other');
    assert.notDeepEqual(await allRecords('t'), atBackup);

    // Readers of T all through the restore: each answer is whole, the state before or the backup's,
    // never a mix and never an error (requests wait for the swap).
    const beforeRestore = await allRecords('t');
    // PostgreSQL: another node on the same database, which has read (and cached) the tenant before.
    if (s.database.kind === 'postgres') {
      const env: NodeJS.ProcessEnv = {};
      for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TRESOR_')) env[k] = v;
      Object.assign(env, {
        NO_COLOR: '1',
        TRESOR_KEYD_SOCKET: s.keydSocket,
        TRESOR_PORT: '0',
        TRESOR_HOST: '127.0.0.1',
        TRESOR_LOG_LEVEL: 'warn',
        TRESOR_AUDIT_DISK_RESERVE_BYTES: String(1024 * 1024),
        TRESOR_DATABASE_URL: s.database.url,
        TRESOR_BACKUP_INTERVAL_MINUTES: '0',
      });
      nodeB = await startNode('B', join(s.root, 'node-b'), env);
      assert.deepEqual(await allRecords('t', nodeB), beforeRestore, 'node B reads the live tenant');
    }
    let restoring = true;
    const observed = { before: 0, after: 0, nodeB: 0 };
    const reader = (node: ClusterNode | undefined) => async () => {
      while (restoring) {
        for (const name of Object.keys(COLLECTIONS)) {
          const path = `/v1/collections/${name}/records?limit=500`;
          const res = node
            ? await node.request('GET', path, { token: tenants.t.apiKey })
            : await api('t', 'GET', path);
          assert.equal(res.status, 200, res.text);
          const seen = res.json<{ records: VaultRecord[] }>().records;
          if (node) observed.nodeB += 1;
          if (JSON.stringify(seen) === JSON.stringify(beforeRestore[name])) observed.before += 1;
          else {
            assert.deepEqual(seen, atBackup[name], `${name}: neither before nor after the restore`);
            observed.after += 1;
          }
        }
      }
    };
    const readers = Promise.all([reader(undefined)(), ...(nodeB ? [reader(nodeB)()] : [])]);
    const done = await restore(tenants.t.id, { backupId }).finally(() => {
      restoring = false;
    });
    await readers;
    assert.ok(observed.before > 0, 'readers ran during the restore');
    if (nodeB) {
      assert.ok(observed.nodeB > 0, 'node B was read during the restore');
      // Node B serves the restored schema, not the old one it had read before.
      assert.deepEqual(await allRecords('t', nodeB), atBackup, 'node B serves the restored tenant');
    }
    assert.equal(done.state, 'done', JSON.stringify(done.error));
    assert.equal(done.backupId, backupId);
    assert.equal(done.destination, 'a', 'the first destination holding it');
    assert.equal(done.result?.records, 10);
    assert.deepEqual(await scratchLeft(), [], 'no scratch store left after the swap');

    // Every record is the backup's: same ids, versions and values; the late one is gone.
    assert.deepEqual(await allRecords('t'), atBackup);
    assert.equal((await api('t', 'GET', `/v1/collections/people/records/${lateId}`)).status, 404);
    const search = await api('t', 'POST', '/v1/collections/people/records/search', {
      where: { email: 'p4@example.test' },
    });
    assert.equal(search.status, 200, search.text);
    assert.equal(
      search.json<{ records: VaultRecord[] }>().records.length,
      1,
      'the blind index is the backup’s',
    );
    assert.deepEqual(await allRecords('other'), otherBefore);
    const read = await s.request('GET', '/v1/collections/people/records?limit=1', { token: secondKey });
    assert.equal(read.status, 200, 'API keys live in the control store: untouched');
    // Grants too: the agent's live grant reads the restored record, as it was at the backup.
    const staff = await staffRead();
    assert.equal(staff.status, 200, staff.text);
    assert.deepEqual(
      staff.json<VaultRecord>(),
      atBackup.people?.find((r) => r.id === first.id),
    );

    // Writes after the restore work, and are sequenced exactly once.
    const after1 = await api('t', 'POST', '/v1/collections/orders/records', { item: 'after restore' });
    assert.equal(after1.status, 201, after1.text);
    const afterId = after1.json<VaultRecord>().id;
    const updated = await s.request('PATCH', `/v1/collections/orders/records/${afterId}`, {
      token: tenants.t.apiKey,
      body: { quantity: 7 },
      headers: { 'if-match': '"1"' },
    });
    assert.equal(updated.status, 200, updated.text);
    const entries = await waitFor(
      'the writes after the restore in the log',
      async () => {
        const all = await tenantEntries('t');
        return all.some((e) => e.entry.action === 'record.update' && recordIds(e).includes(afterId))
          ? all
          : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    const creates = entries.filter(
      (e) => e.entry.action === 'record.create' && recordIds(e).includes(afterId),
    );
    assert.equal(creates.length, 1, 'the write after the restore is in the log once');
    // The staff reads through the grant, before and after the restore, are in the tenant's view.
    const grantReads = entries.filter(
      (e) => e.entry.action === 'record.read' && (e.entry.actor as { grantId?: string }).grantId === grantId,
    );
    assert.equal(grantReads.length, 2);
    // Nothing of the tenant's outbox was sequenced twice: every entry of the tenant is unique.
    const log = await auditLog();
    assert.deepEqual(
      log.map((e) => (e as unknown as { index: number }).index),
      log.map((_e, i) => i),
      'the log is gap-free',
    );
    const seen = new Set<string>();
    for (const e of log.filter((x) => (x as unknown as { tenant: string | null }).tenant === tenants.t.id)) {
      const { index: _index, ...rest } = e as unknown as { index: number };
      const text = JSON.stringify(rest);
      assert.equal(
        seen.has(text),
        false,
        `an entry is in the log twice: ${(e as { action: string }).action}`,
      );
      seen.add(text);
    }
    // The writes between the backup and the restore stay in the log: the log never goes back.
    assert.ok(entries.some((e) => e.entry.action === 'record.create' && recordIds(e).includes(lateId)));

    // The restore is audited, under the tenant, with who, the backup and the result.
    const restored = entries.filter((e) => e.entry.action === 'tenant.restore');
    assert.equal(restored.length, 1);
    assert.equal(restored[0]?.entry.outcome, 'success');
    assert.equal(restored[0]?.entry.actor.kind, 'operator-admin');
    assert.equal(restored[0]?.entry.target?.backupId, backupId);
    const asked = entries.filter((e) => e.entry.action === 'tenant.restore.start');
    assert.equal(asked.length, 1);
    assert.equal(
      (await tenantEntries('other')).filter((e) => e.entry.action.startsWith('tenant.restore')).length,
      0,
    );

    // `tresor audit verify` on the live data folder: the whole log, end to end.
    const pub = await s.request('GET', '/v1/audit/public-key');
    const verified = await tresor(
      ['audit', 'verify', '--data-dir', s.dataDir, '--public-key', pub.text.trim()],
      {
        env: databaseEnv(s),
      },
    );
    exited(verified, 0);
    leaksNone(verified, secrets);
  });

  it('refuses a tampered chunk and a tampered manifest, and nothing changes', async () => {
    const before = await allRecords('t');
    const folder = join(folders.b, backupId);
    const chunk = join(folder, 'chunk-000000');
    const original = readFileSync(chunk);
    const flipped = Buffer.from(original);
    flipped[flipped.length - 20] = (flipped[flipped.length - 20] ?? 0) ^ 0x01;
    writeFileSync(chunk, flipped);
    try {
      const refused = await restore(tenants.t.id, { backupId, destination: 'b' });
      assert.equal(refused.state, 'failed');
      assert.equal(refused.error?.code, 'TRESOR_ERR_RESTORE_REFUSED', refused.error?.message);
      assert.match(refused.error?.message ?? '', /chunk 0/);
    } finally {
      writeFileSync(chunk, original);
    }
    assert.deepEqual(await allRecords('t'), before);
    assert.deepEqual(await scratchLeft(), [], 'no scratch store left');

    const manifest = join(folder, 'manifest.json');
    const text = readFileSync(manifest, 'utf8');
    writeFileSync(manifest, text.replace('"sqlite"', '"sqlitf"').replace('"postgres"', '"postgret"'));
    try {
      const res = await admin.request('POST', `/v1/tenants/${tenants.t.id}/restore`, {
        backupId,
        destination: 'b',
      });
      assert.equal(res.status, 422, res.text);
      assert.equal(res.json<{ code: string }>().code, 'TRESOR_ERR_RESTORE_REFUSED');
    } finally {
      writeFileSync(manifest, text);
    }
    assert.deepEqual(await allRecords('t'), before);
    await waitFor(
      'the failed restore in the tenant’s audit view',
      async () => {
        const failed = (await tenantEntries('t')).filter(
          (e) => e.entry.action === 'tenant.restore' && e.entry.outcome === 'failure',
        );
        return failed.length === 1 ? failed : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
  });

  it('refuses a backup whose audit checkpoint, validly signed by keyd, is not a prefix of the live log', async () => {
    // keyd signs what the server asks it to: a checkpoint of another history (same size, another root)
    // and one ahead of the live log, each put into the backup's manifest, the manifest signed again.
    const before = await allRecords('t');
    const keyd = s.keydClient();
    const folder = join(folders.b, backupId);
    const originals = ['manifest.json', 'manifest.sig'].map(
      (n) => [n, readFileSync(join(folder, n))] as const,
    );
    const manifest = JSON.parse(readFileSync(join(folder, 'manifest.json'), 'utf8')) as BackupManifest;
    const checkpoint = parseCheckpoint(parseNote(manifest.auditCheckpoint).text);
    const key = await keyd.call('publicKey', { purpose: 'audit-checkpoint' });
    // keyd signs no fork: the forgeries are what a stolen key (or a keyd reset) could sign.
    const noteKey = { name: checkpoint.origin, publicKey: key.publicKey };
    for (const [forged, why] of [
      [{ ...checkpoint, rootHash: randomBytes(32) }, /not a prefix of the live log/],
      [{ ...checkpoint, size: checkpoint.size + 1_000_000 }, /ahead of the live log/],
    ] as const) {
      const note = await forgeKeydCheckpoint(keyd, noteKey, forged);
      const bytes = manifestBytes({ ...manifest, auditCheckpoint: note });
      writeFileSync(join(folder, 'manifest.json'), bytes);
      writeFileSync(join(folder, 'manifest.sig'), await signManifest(keyd, backupId, bytes));
      try {
        const refused = await restore(tenants.t.id, { backupId, destination: 'b' });
        assert.equal(refused.state, 'failed');
        assert.equal(refused.error?.code, 'TRESOR_ERR_RESTORE_REFUSED', refused.error?.message);
        assert.match(refused.error?.message ?? '', why);
      } finally {
        for (const [n, b] of originals) writeFileSync(join(folder, n), b);
      }
    }
    assert.deepEqual(await allRecords('t'), before);
  });

  it('refuses an unknown tenant or backup, an unknown destination and an operator token, and nothing changes', async () => {
    const before = await allRecords('t');
    const unknownTenant = await admin.request('POST', '/v1/tenants/ten_nobody/restore', {});
    assert.equal(unknownTenant.status, 404, unknownTenant.text);
    const unknownBackup = await admin.request('POST', `/v1/tenants/${tenants.t.id}/restore`, {
      backupId: '20200101T000000Z-00000000',
    });
    assert.equal(unknownBackup.status, 404, unknownBackup.text);
    assert.equal(unknownBackup.json<{ code: string }>().code, 'TRESOR_ERR_BACKUP_NOT_FOUND');
    const unknownDestination = await admin.request('POST', `/v1/tenants/${tenants.t.id}/restore`, {
      destination: 'nowhere',
    });
    assert.equal(unknownDestination.status, 404, unknownDestination.text);
    const badBody = await admin.request('POST', `/v1/tenants/${tenants.t.id}/restore`, { backupId: '../x' });
    assert.equal(badBody.status, 422, badBody.text);
    for (const scope of ['backups:run', 'tenants:create'] as const) {
      const token = await operatorToken(s, scope);
      const res = await s.request('POST', `/v1/tenants/${tenants.t.id}/restore`, { token, body: {} });
      assert.ok(res.status === 401 || res.status === 403, `${scope}: ${res.status} ${res.text}`);
    }
    const apiKey = await api('t', 'POST', `/v1/tenants/${tenants.t.id}/restore`, {});
    assert.ok(apiKey.status === 401 || apiKey.status === 403, apiKey.text);
    assert.deepEqual(await allRecords('t'), before);
  });

  it('refuses, through keyd, a tenant whose key is pending destruction, and nothing changes', async () => {
    // The row says active, keyd says the key is going: the restored store's keys do not unwrap.
    const otherBefore = await allRecords('other');
    const keyd = s.keydClient();
    await keyd.call('destroyTenantKey', { tenant: tenants.other.id, mode: 'schedule', graceSeconds: 3600 });
    try {
      const refused = await restore(tenants.other.id, { backupId });
      assert.equal(refused.state, 'failed');
      assert.equal(refused.error?.code, 'TRESOR_ERR_TENANT_STATE', refused.error?.message);
      assert.match(refused.error?.message ?? '', /pending destruction/);
    } finally {
      await keyd.call('cancelTenantKeyDestroy', { tenant: tenants.other.id });
    }
    assert.deepEqual(await allRecords('other'), otherBefore);
  });

  it('refuses a tenant closed after the backup: its key is shredded', async () => {
    const created = await admin.request('POST', '/v1/tenants', { name: 'Closed Later' });
    assert.equal(created.status, 201, created.text);
    const closing = created.json<{ id: string; apiKey: string }>();
    secrets.push(closing.apiKey);
    const put = await s.request('PUT', '/v1/collections/people', {
      token: closing.apiKey,
      body: COLLECTIONS.people,
    });
    assert.equal(put.status, 201, put.text);
    const rec = await s.request('POST', '/v1/collections/people/records', {
      token: closing.apiKey,
      body: { email: 'gone@example.test' },
    });
    assert.equal(rec.status, 201, rec.text);
    const id = await backupNow();
    const closed = await admin.request('POST', `/v1/tenants/${closing.id}/close`, {
      reason: 'contract ended',
    });
    assert.equal(closed.status, 200, closed.text);
    const res = await admin.request('POST', `/v1/tenants/${closing.id}/restore`, { backupId: id });
    assert.equal(res.status, 410, res.text);
    const problem = res.json<{ code: string; detail: string }>();
    assert.equal(problem.code, 'TRESOR_ERR_TENANT_SHREDDED');
    assert.match(problem.detail, /shredded/);
    assert.equal(await tenantStoreExists(s, closing.id), false, 'no store of the closed tenant came back');
    if (s.database.kind === 'sqlite')
      assert.deepEqual(
        readdirSync(join(s.dataDir, 'tenants')).filter(
          (n) => n.startsWith(closing.id) || n.includes(closing.id),
        ),
        [],
        'no file of the closed tenant came back',
      );
    assert.deepEqual(await scratchLeft(), [], 'no scratch store left');
  });

  it('tresor restore --tenant restores through the running server and follows it to the end', async () => {
    await api('t', 'POST', '/v1/collections/orders/records', { item: 'before the cli restore' });
    await admin.stepUp();
    const profile = join(s.root, 'cli-profile.json');
    writeFileSync(
      profile,
      JSON.stringify({
        url: s.url,
        caFile: s.caFile,
        cookie: admin.session.cookie,
        csrf: admin.session.csrf,
        expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
        email: admin.account.email,
        personId: admin.account.id,
      }),
      { mode: 0o600 },
    );
    const run = await tresor([
      'restore',
      '--tenant',
      tenants.t.id,
      '--backup',
      backupId,
      '--profile',
      profile,
      '--json',
    ]);
    exited(run, 0);
    const view = JSON.parse(run.stdout) as Restore;
    assert.equal(view.state, 'done');
    assert.equal(view.backupId, backupId);
    assert.deepEqual(await allRecords('t'), atBackup);
    const text = await tresor(['restore', '--tenant', tenants.t.id, '--profile', profile]);
    exited(text, 0);
    assert.match(text.stdout, /restored tenant ten_.* from backup .* at a/);
    const refused = await tresor(['restore', '--tenant', 'ten_nobody', '--profile', profile]);
    exited(refused, 1);
    assert.match(refused.stderr, /TRESOR_ERR_NOT_FOUND/);
    const usage = await tresor(['restore', '--tenant', tenants.t.id, '--to', '/tmp/x', '--profile', profile]);
    exited(usage, 2);
    for (const r of [run, text, refused, usage]) leaksNone(r, [...secrets, admin.session.cookie]);
  });
});

function recordIds(e: Entry): string[] {
  const ids = e.entry.target?.recordIds;
  return Array.isArray(ids) ? (ids as string[]) : [];
}
