/** What `tresor apikey …` does (apikey.ts declares the commands). */
import { type ConnectionFlags, call, connect } from './api-client.ts';
import { emit, emitWithSecret, type OutputFlags, segment } from './noun-output.ts';
import { table } from './table.ts';

export interface ApiKeyFlags extends ConnectionFlags, OutputFlags {}
export interface ApiKeyCreateFlags extends ApiKeyFlags {
  access: string;
  collections?: string;
  expiresAt?: string;
  label?: string;
}

interface ApiKey {
  id: string;
  tenant: string;
  collections: '*' | string[];
  access: string[];
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
  label: string | null;
}

const list = (text: string) =>
  text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

export async function createCommand(flags: ApiKeyCreateFlags): Promise<void> {
  const conn = connect('tresor apikey create', flags);
  const collections =
    flags.collections === undefined || flags.collections === '*' ? '*' : list(flags.collections);
  const { body } = await call<ApiKey & { token: string }>(conn, 'POST', '/v1/api-keys', {
    access: list(flags.access),
    collections,
    ...(flags.expiresAt !== undefined ? { expiresAt: flags.expiresAt } : {}),
    ...(flags.label !== undefined ? { label: flags.label } : {}),
  });
  emitWithSecret(
    flags,
    body as unknown as Record<string, unknown>,
    [`issued API key ${body.id} of ${body.tenant}: ${body.access.join(',')} on ${String(body.collections)}`],
    { key: 'token', label: 'API key', value: body.token },
  );
}

export async function listCommand(flags: ApiKeyFlags): Promise<void> {
  const conn = connect('tresor apikey list', flags);
  const { body } = await call<{ apiKeys: ApiKey[] }>(conn, 'GET', '/v1/api-keys');
  emit(
    flags,
    body,
    table(
      ['ID', 'ACCESS', 'COLLECTIONS', 'LABEL', 'CREATED', 'EXPIRES', 'REVOKED', 'LAST USED'],
      body.apiKeys.map((k) => [
        k.id,
        k.access.join(','),
        k.collections === '*' ? '*' : k.collections.join(','),
        k.label,
        k.createdAt,
        k.expiresAt,
        k.revokedAt,
        k.lastUsedAt,
      ]),
    ),
  );
}

export async function revokeCommand(id: string, flags: ApiKeyFlags): Promise<void> {
  const conn = connect('tresor apikey revoke', flags);
  const { body } = await call<ApiKey>(conn, 'DELETE', `/v1/api-keys/${segment(id)}`);
  emit(flags, body, `revoked API key ${body.id} at ${body.revokedAt ?? 'now'}`);
}
