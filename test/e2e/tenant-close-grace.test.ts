// backends: sqlite postgres
/**
 * Closing a tenant over HTTPS against the real keyd process: the close starts keyd's grace period
 * (the tenant serves nothing from the first moment, keyd keeps only the key), an operator admin
 * cancels it (audited), and a second close runs out its short configured grace: the server's grace
 * job has keyd destroy the key, wipes the store and issues the deletion certificate.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { readTenantLeaves } from '../../src/audit/leaf-store.ts';
import { resolveServerConfig } from '../../src/config/server-config.ts';
import { startTresorServer, type TresorServer } from '../../src/server/tresor-server.ts';
import { operatorAdmin } from '../helpers/console.ts';
import { databaseEnv, tenantStoreExists } from '../helpers/stack-sql.ts';
import {
  httpsRequester,
  type Requester,
  startTresorStack,
  type TresorStack,
} from '../helpers/tresor-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const GRACE_SECONDS = 2;

describe('tenant close with a grace period (HTTPS, real keyd)', () => {
  let stack: TresorStack;
  let server: TresorServer;
  let request: Requester;

  before(async () => {
    stack = await startTresorStack({ server: 'in-process' });
    // The stack's server runs no jobs and the default grace; this node runs both, finely.
    await stack.stopServer();
    const config = resolveServerConfig(
      { dataDir: stack.dataDir },
      {
        TRESOR_KEYD_SOCKET: stack.keydSocket,
        TRESOR_PORT: '0',
        TRESOR_HOST: '127.0.0.1',
        TRESOR_LOG_LEVEL: 'warn',
        TRESOR_AUDIT_DISK_RESERVE_BYTES: String(1024 * 1024),
        ...databaseEnv(stack),
      },
    );
    server = await startTresorServer(config, { jobIntervalMs: 200, keyDestroyGraceSeconds: GRACE_SECONDS });
    request = httpsRequester(() => server.url, readFileSync(stack.caFile));
  });

  after(async () => {
    await server?.close();
    await stack?.stop();
  });

  /**
   * The operator admin's console session on this test's own server (closing and cancelling need a
   * fresh second factor): the stack's admin, its requests sent here.
   */
  let viaServer: TresorStack | undefined;
  const asAdmin = async (method: string, path: string, body?: unknown) => {
    viaServer ??= { ...stack, request } as TresorStack;
    return (await operatorAdmin(viaServer)).request(method, path, body);
  };

  it('closes, cancels, closes again and shreds when the grace ends', async () => {
    const created = await asAdmin('POST', '/v1/tenants', { name: 'Grace Ltd' });
    assert.equal(created.status, 201, created.text);
    const tenant = created.json<{ id: string; apiKey: string }>();
    const collections = (token: string) => request('GET', '/v1/collections', { token });
    assert.equal((await collections(tenant.apiKey)).status, 200);
    const keyd = stack.keydClient();

    // Close: 202, the tenant refused at once, its key held for destruction, its store kept.
    const closing = await asAdmin('POST', `/v1/tenants/${tenant.id}/close`, { reason: 'customer request' });
    assert.equal(closing.status, 202, closing.text);
    const first = closing.json<{ state: string; tenant: string; keyDestroyAfter: string }>();
    assert.equal(first.state, 'closing');
    assert.equal(first.tenant, tenant.id);
    assert.equal((await collections(tenant.apiKey)).status, 401);
    assert.equal((await asAdmin('GET', `/v1/tenants/${tenant.id}`)).json().state, 'closing');
    const pending = await keyd.call('tenantKeyStatus', { tenant: tenant.id });
    assert.equal(pending.state, 'pending-destroy');
    assert.equal(pending.destroyAfter, first.keyDestroyAfter);
    assert.ok(await tenantStoreExists(stack, tenant.id), 'the store is kept');
    assert.equal((await asAdmin('GET', `/v1/tenants/${tenant.id}/deletion-certificate`)).status, 404);

    // Cancel: only an operator; the tenant is active again with a new key, the old one stays revoked.
    const byTenantKey = await request('POST', `/v1/tenants/${tenant.id}/close/cancel`, {
      token: tenant.apiKey,
    });
    assert.ok([401, 403].includes(byTenantKey.status), byTenantKey.text);
    const cancelled = await asAdmin('POST', `/v1/tenants/${tenant.id}/close/cancel`);
    assert.equal(cancelled.status, 200, cancelled.text);
    const reopened = cancelled.json<{ tenant: { state: string }; apiKey: string }>();
    assert.equal(reopened.tenant.state, 'active');
    assert.equal((await keyd.call('tenantKeyStatus', { tenant: tenant.id })).state, 'active');
    assert.equal((await collections(reopened.apiKey)).status, 200);
    assert.equal((await collections(tenant.apiKey)).status, 401);
    const again = await asAdmin('POST', `/v1/tenants/${tenant.id}/close/cancel`);
    assert.equal(again.status, 409, 'nothing to cancel on an active tenant');
    assert.equal(again.headers['content-type']?.split(';')[0], 'application/problem+json');
    // In the log once the sequencer moved it (its outbox row is then removed within about a second,
    // sooner now that the tenant's reads' events follow it in the control outbox).
    await server.audit.sequencer.drain();
    const audited = (await readTenantLeaves(server.control.db, tenant.id, { from: 0, limit: 10_000 }))
      .map((row) => JSON.parse(row.leaf) as { action: string; actor: { kind: string } })
      .filter((entry) => entry.action === 'tenant.close.cancel');
    assert.equal(audited.length, 1, 'the cancel is audited once');
    assert.equal(audited[0]?.actor.kind, 'operator-admin');

    // Close again and let the grace run out: the job destroys the key, the tenant ends closed.
    const second = await asAdmin('POST', `/v1/tenants/${tenant.id}/close`, { reason: 'for real' });
    assert.equal(second.status, 202, second.text);
    assert.equal((await collections(reopened.apiKey)).status, 401);
    await waitFor(
      'the tenant closed after its grace',
      async () =>
        (await asAdmin('GET', `/v1/tenants/${tenant.id}`)).json().state === 'closed' ? true : undefined,
      { timeoutMs: 60_000, intervalMs: 200, diagnostics: () => JSON.stringify(server.jobs.status()) },
    );
    const destroyed = await keyd.call('tenantKeyStatus', { tenant: tenant.id });
    assert.equal(destroyed.state, 'destroyed');
    assert.ok(!(await tenantStoreExists(stack, tenant.id)), 'the store is wiped');
    const cert = await asAdmin('GET', `/v1/tenants/${tenant.id}/deletion-certificate`);
    assert.equal(cert.status, 200, cert.text);
    const { certificate } = cert.json<{
      certificate: { keydDestroyedAt: string; reason: string; keyIdsDestroyed: string[] };
    }>();
    assert.equal(
      certificate.keydDestroyedAt,
      destroyed.destroyedAt,
      'the certificate states the destruction',
    );
    assert.equal(certificate.reason, 'for real', 'the cancelled close’s reason went with it');
    assert.deepEqual(
      certificate.keyIdsDestroyed,
      destroyed.versions.map((v) => v.keyId),
    );
    assert.equal((await asAdmin('POST', `/v1/tenants/${tenant.id}/close/cancel`)).status, 409);
  });
});
