/**
 * `tresor tenant …`: tenants' lifecycle over the HTTPS API, as an operator admin (a session of
 * `tresor login`, or an operator token with the scope of the route).
 *
 *   tresor tenant create --name N [--contract-start D] [--contract-end D] [--out-file F]
 *       POST /v1/tenants; its first API key is printed once (or written 0600 to --out-file)
 *   tresor tenant list [--state S]             GET /v1/tenants
 *   tresor tenant close ID --reason R [--code C]
 *       POST /v1/tenants/:id/close (step-up: a session passes its second factor again with --code)
 *   tresor tenant cancel-close ID [--code C] [--out-file F]
 *       POST /v1/tenants/:id/close/cancel while the key awaits destruction; a new first API key
 */
import type { Command } from 'commander';
import { withConnectionFlags } from './connection-flags.ts';
import type { TenantCloseFlags, TenantCreateFlags, TenantFlags, TenantListFlags } from './tenant-impl.ts';

const impl = () => import('./tenant-impl.ts');
const OUT_FILE = 'write the API key to this new 0600 file instead of printing it';

export function registerTenantCommands(program: Command): void {
  const tenant = program.command('tenant').description("tenants' lifecycle (operator admins; over HTTPS)");

  withConnectionFlags(
    tenant.command('create').description('create a tenant; its first API key is shown once'),
  )
    .requiredOption('--name <name>', "the tenant's name")
    .option('--contract-start <YYYY-MM-DD>', 'first day of the contract (default today)')
    .option('--contract-end <YYYY-MM-DD>', 'last day of the contract: the tenant closes after it')
    .option('--out-file <file>', OUT_FILE)
    .action(async (flags: TenantCreateFlags) => (await impl()).createCommand(flags));

  withConnectionFlags(tenant.command('list').description('the tenants, their states and contracts'))
    .option('--state <state>', 'only tenants in this state: provisioning, active, closing, closed')
    .action(async (flags: TenantListFlags) => (await impl()).listCommand(flags));

  withConnectionFlags(
    tenant
      .command('close <id>')
      .description('close a tenant: its key is destroyed after the grace period (crypto-shredding)'),
  )
    .requiredOption('--reason <text>', 'why (recorded in the audit log and the deletion certificate)')
    .action(async (id: string, flags: TenantCloseFlags) => (await impl()).closeCommand(id, flags));

  withConnectionFlags(
    tenant
      .command('cancel-close <id>')
      .description('cancel a close in its grace period; a new first API key'),
  )
    .option('--out-file <file>', OUT_FILE)
    .action(async (id: string, flags: TenantFlags) => (await impl()).cancelCloseCommand(id, flags));
}
