/**
 * `tresor token …`: operator tokens, the scoped, expiring, revocable credentials of machines (one
 * scope each), managed by a signed-in operator admin (`tresor login`; tokens never manage tokens).
 *
 *   tresor token create --scope S --name N [--expires-in-days D] [--code C] [--out-file F]
 *       POST /v1/operator-tokens (step-up); the token is printed once (or written 0600 to --out-file)
 *   tresor token list                          GET /v1/operator-tokens (never secrets)
 *   tresor token rotate ID [--code C] [--out-file F]
 *       POST /v1/operator-tokens/:id/rotate (step-up): a new token, same scope and name; the old
 *       one stops working at once
 *   tresor token revoke ID                     DELETE /v1/operator-tokens/:id
 *
 * Scopes: tenants:create, tenants:read, people:read, access:read, audit:read, jobs:read,
 * backups:run, backups:read, alerts:read, metrics:read. Expiry: 30 days by default, at most 90.
 */
import type { Command } from 'commander';
import { withConnectionFlags } from './connection-flags.ts';
import type { TokenCreateFlags, TokenFlags } from './token-impl.ts';

const impl = () => import('./token-impl.ts');
const OUT_FILE = 'write the token to this new 0600 file instead of printing it';

export function registerTokenCommands(program: Command): void {
  const token = program
    .command('token')
    .description('operator tokens for machines: one scope each, expiring, revocable (over HTTPS)');

  withConnectionFlags(token.command('create').description('create an operator token; shown once'))
    .requiredOption(
      '--scope <scope>',
      'tenants:create, tenants:read, people:read, access:read, audit:read, jobs:read, backups:run, backups:read, alerts:read or metrics:read',
    )
    .requiredOption('--name <name>', 'what the token is for (1-64 printable characters)')
    .option('--expires-in-days <days>', 'lifetime in days (default 30, at most 90)')
    .option('--out-file <file>', OUT_FILE)
    .action(async (flags: TokenCreateFlags) => (await impl()).createCommand(flags));

  withConnectionFlags(token.command('list').description('the operator tokens (never their secrets)')).action(
    async (flags: TokenFlags) => (await impl()).listCommand(flags),
  );

  withConnectionFlags(
    token.command('rotate <id>').description('replace a token: same scope and name, the old one revoked'),
  )
    .option('--out-file <file>', OUT_FILE)
    .action(async (id: string, flags: TokenFlags) => (await impl()).rotateCommand(id, flags));

  withConnectionFlags(token.command('revoke <id>').description('revoke a token at once')).action(
    async (id: string, flags: TokenFlags) => (await impl()).revokeCommand(id, flags),
  );
}
