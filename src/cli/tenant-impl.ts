/** What `tresor tenant …` does (tenant.ts declares the commands). */
import { type ConnectionFlags, call, connect } from './api-client.ts';
import { emit, emitWithSecret, type OutputFlags, segment } from './noun-output.ts';
import { table } from './table.ts';

export interface TenantFlags extends ConnectionFlags, OutputFlags {}
export interface TenantCreateFlags extends TenantFlags {
  name: string;
  contractStart?: string;
  contractEnd?: string;
}
export interface TenantListFlags extends TenantFlags {
  state?: string;
}
export interface TenantCloseFlags extends TenantFlags {
  reason: string;
}

interface Tenant {
  id: string;
  name: string;
  state: string;
  contractStart: string;
  contractEnd: string | null;
  createdAt: string;
  closedAt: string | null;
}

export async function createCommand(flags: TenantCreateFlags): Promise<void> {
  const conn = connect('tresor tenant create', flags);
  const { body } = await call<Tenant & { apiKey: string; apiKeyId: string }>(conn, 'POST', '/v1/tenants', {
    name: flags.name,
    ...(flags.contractStart !== undefined ? { contractStart: flags.contractStart } : {}),
    ...(flags.contractEnd !== undefined ? { contractEnd: flags.contractEnd } : {}),
  });
  emitWithSecret(
    flags,
    body as unknown as Record<string, unknown>,
    [`created tenant ${body.id} (${body.name}), ${body.state}; first API key ${body.apiKeyId} (admin)`],
    { key: 'apiKey', label: 'API key', value: body.apiKey },
  );
}

export async function listCommand(flags: TenantListFlags): Promise<void> {
  const conn = connect('tresor tenant list', flags);
  const query = flags.state !== undefined ? `?state=${encodeURIComponent(flags.state)}` : '';
  const { body } = await call<{ tenants: Tenant[] }>(conn, 'GET', `/v1/tenants${query}`);
  emit(
    flags,
    body,
    body.tenants.length === 0
      ? 'no tenants'
      : table(
          ['ID', 'NAME', 'STATE', 'CONTRACT START', 'CONTRACT END', 'CREATED'],
          body.tenants.map((t) => [t.id, t.name, t.state, t.contractStart, t.contractEnd, t.createdAt]),
        ),
  );
}

export async function closeCommand(id: string, flags: TenantCloseFlags): Promise<void> {
  const conn = connect('tresor tenant close', flags);
  const { status, body } = await call<{ state: string; keyDestroyAfter?: string }>(
    conn,
    'POST',
    `/v1/tenants/${segment(id)}/close`,
    { reason: flags.reason },
  );
  emit(
    flags,
    body,
    status === 202
      ? `tenant ${id} is closing: its key is destroyed after ${body.keyDestroyAfter ?? 'the grace period'} (tresor tenant cancel-close until then)`
      : `tenant ${id} is closed: its key is destroyed`,
  );
}

export async function cancelCloseCommand(id: string, flags: TenantFlags): Promise<void> {
  const conn = connect('tresor tenant cancel-close', flags);
  const { body } = await call<{ tenant: Tenant; apiKey: string; apiKeyId: string }>(
    conn,
    'POST',
    `/v1/tenants/${segment(id)}/close/cancel`,
  );
  emitWithSecret(
    flags,
    body as unknown as Record<string, unknown>,
    [`tenant ${body.tenant.id} is ${body.tenant.state} again; new first API key ${body.apiKeyId} (admin)`],
    { key: 'apiKey', label: 'API key', value: body.apiKey },
  );
}
