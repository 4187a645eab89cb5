/**
 * `tresor person …`: console accounts over the HTTPS API, as an operator admin (or a tenant admin
 * for their tenant's people), from a `tresor login` session.
 *
 *   tresor person invite --email E --role R [--tenant T] [--name N] [--code C] [--out-file F]
 *       POST /v1/people (step-up); prints the one-time enrolment link <server>/signin#enrol=<token>
 *       once (or writes it 0600 to --out-file): the person finishes it in a browser or with
 *       `tresor enrol`
 *   tresor person list [--tenant T]            GET /v1/people
 *   tresor person disable ID [--code C]        POST /v1/people/:id/disable (step-up)
 *
 * Roles: operator-admin, security-officer, support-agent, contractor (staff); tenant-admin,
 * tenant-member (a tenant's people: --tenant is required).
 */
import type { Command } from 'commander';
import { withConnectionFlags } from './connection-flags.ts';
import type { PersonFlags, PersonInviteFlags, PersonListFlags } from './person-impl.ts';

const impl = () => import('./person-impl.ts');

export function registerPersonCommands(program: Command): void {
  const person = program
    .command('person')
    .description('console accounts: invite, list, disable (over HTTPS)');

  withConnectionFlags(
    person.command('invite').description('create an account; its one-time enrolment link is shown once'),
  )
    .requiredOption('--email <address>', "the person's sign-in e-mail")
    .requiredOption(
      '--role <role>',
      'operator-admin, security-officer, support-agent, contractor, tenant-admin or tenant-member',
    )
    .option('--tenant <id>', "the tenant of a tenant's person (tenant-admin, tenant-member)")
    .option('--name <name>', 'display name')
    .option('--out-file <file>', 'write the enrolment link to this new 0600 file instead of printing it')
    .action(async (flags: PersonInviteFlags) => (await impl()).inviteCommand(flags));

  withConnectionFlags(person.command('list').description('the accounts you manage'))
    .option('--tenant <id>', "one tenant's people only")
    .action(async (flags: PersonListFlags) => (await impl()).listCommand(flags));

  withConnectionFlags(
    person.command('disable <id>').description('disable an account: its sessions and grants end at once'),
  ).action(async (id: string, flags: PersonFlags) => (await impl()).disableCommand(id, flags));
}
