/** What `tresor token …` does (token.ts declares the commands). */
import { type ConnectionFlags, call, connect } from './api-client.ts';
import { usageError } from './io.ts';
import { emit, emitWithSecret, type OutputFlags, segment } from './noun-output.ts';
import { table } from './table.ts';

export interface TokenFlags extends ConnectionFlags, OutputFlags {}
export interface TokenCreateFlags extends TokenFlags {
  scope: string;
  name: string;
  expiresInDays?: string;
}

interface OperatorToken {
  id: string;
  scope: string;
  name: string;
  owner: string;
  createdAt: string;
  expiresAt: string;
  revokedAt?: string | null;
  lastUsedAt?: string | null;
}

function issued(flags: TokenFlags, body: OperatorToken & { token: string }, verb: string): void {
  emitWithSecret(
    flags,
    body as unknown as Record<string, unknown>,
    [`${verb} operator token ${body.id} "${body.name}" (${body.scope}), expires ${body.expiresAt}`],
    { key: 'token', label: 'token', value: body.token },
  );
}

export async function createCommand(flags: TokenCreateFlags): Promise<void> {
  const command = 'tresor token create';
  let days: number | undefined;
  if (flags.expiresInDays !== undefined) {
    days = Number(flags.expiresInDays);
    if (!/^[0-9]{1,3}$/.test(flags.expiresInDays) || days < 1)
      throw usageError(command, '--expires-in-days must be a whole number of days (1-90)');
  }
  const conn = connect(command, flags);
  const { body } = await call<OperatorToken & { token: string }>(conn, 'POST', '/v1/operator-tokens', {
    scope: flags.scope,
    name: flags.name,
    ...(days !== undefined ? { expiresInDays: days } : {}),
  });
  issued(flags, body, 'created');
}

export async function listCommand(flags: TokenFlags): Promise<void> {
  const conn = connect('tresor token list', flags);
  const { body } = await call<{ tokens: OperatorToken[] }>(conn, 'GET', '/v1/operator-tokens');
  emit(
    flags,
    body,
    body.tokens.length === 0
      ? 'no operator tokens'
      : table(
          ['ID', 'NAME', 'SCOPE', 'OWNER', 'CREATED', 'EXPIRES', 'REVOKED', 'LAST USED'],
          body.tokens.map((t) => [
            t.id,
            t.name,
            t.scope,
            t.owner,
            t.createdAt,
            t.expiresAt,
            t.revokedAt,
            t.lastUsedAt,
          ]),
        ),
  );
}

export async function rotateCommand(id: string, flags: TokenFlags): Promise<void> {
  const conn = connect('tresor token rotate', flags);
  const { body } = await call<OperatorToken & { token: string }>(
    conn,
    'POST',
    `/v1/operator-tokens/${segment(id)}/rotate`,
  );
  issued(flags, body, `rotated ${id}: the old one is revoked; new`);
}

export async function revokeCommand(id: string, flags: TokenFlags): Promise<void> {
  const conn = connect('tresor token revoke', flags);
  await call(conn, 'DELETE', `/v1/operator-tokens/${segment(id)}`);
  emit(flags, { id, revoked: true }, `revoked operator token ${id}`);
}
