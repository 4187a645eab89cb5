/**
 * `tresor apikey …`: a tenant's API keys over the HTTPS API, with an admin-scope API key of that
 * tenant as the credential (TRESOR_TOKEN or --token-file; `tresor tenant create` prints the first).
 *
 *   tresor apikey create --access read,write [--collections a,b] [--expires-at T] [--label L] [--out-file F]
 *       POST /v1/api-keys; the new key is printed once (or written 0600 to --out-file)
 *   tresor apikey list                         GET /v1/api-keys
 *   tresor apikey revoke ID                    DELETE /v1/api-keys/:id
 */
import type { Command } from 'commander';
import type { ApiKeyCreateFlags, ApiKeyFlags } from './apikey-impl.ts';
import { withConnectionFlags } from './connection-flags.ts';

const impl = () => import('./apikey-impl.ts');

export function registerApiKeyCommands(program: Command): void {
  const apikey = program
    .command('apikey')
    .description("a tenant's API keys (with that tenant's admin API key; over HTTPS)");

  withConnectionFlags(apikey.command('create').description('issue an API key; shown once'))
    .requiredOption('--access <list>', 'comma-separated: read, write, admin')
    .option('--collections <list>', 'comma-separated collection names (default: all, *)')
    .option('--expires-at <iso-time>', 'when the key stops working (default: never)')
    .option('--label <text>', 'what the key is for')
    .option('--out-file <file>', 'write the key to this new 0600 file instead of printing it')
    .action(async (flags: ApiKeyCreateFlags) => (await impl()).createCommand(flags));

  withConnectionFlags(
    apikey.command('list').description("the tenant's API keys (never their secrets)"),
  ).action(async (flags: ApiKeyFlags) => (await impl()).listCommand(flags));

  withConnectionFlags(apikey.command('revoke <id>').description('revoke an API key at once')).action(
    async (id: string, flags: ApiKeyFlags) => (await impl()).revokeCommand(id, flags),
  );
}
