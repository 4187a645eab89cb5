/** What `tresor person …` does (person.ts declares the commands). */
import { type ConnectionFlags, call, connect } from './api-client.ts';
import { usageError } from './io.ts';
import { emit, emitWithSecret, type OutputFlags, segment } from './noun-output.ts';
import { table } from './table.ts';

export interface PersonFlags extends ConnectionFlags, OutputFlags {}
export interface PersonInviteFlags extends PersonFlags {
  email: string;
  role: string;
  tenant?: string;
  name?: string;
}
export interface PersonListFlags extends PersonFlags {
  tenant?: string;
}

interface Person {
  id: string;
  side: string;
  role: string;
  tenant: string | null;
  email: string;
  name: string | null;
  enrolledAt: string | null;
  disabledAt: string | null;
}

const STAFF_ROLES = ['operator-admin', 'security-officer', 'support-agent', 'contractor'];
const TENANT_ROLES = ['tenant-admin', 'tenant-member'];

export async function inviteCommand(flags: PersonInviteFlags): Promise<void> {
  const command = 'tresor person invite';
  const side = STAFF_ROLES.includes(flags.role)
    ? 'operator'
    : TENANT_ROLES.includes(flags.role)
      ? 'customer'
      : undefined;
  if (side === undefined)
    throw usageError(command, `--role must be one of ${[...STAFF_ROLES, ...TENANT_ROLES].join(', ')}`);
  if (side === 'customer' && flags.tenant === undefined)
    throw usageError(command, `--role ${flags.role} needs --tenant`);
  if (side === 'operator' && flags.tenant !== undefined) throw usageError(command, 'staff have no --tenant');
  const conn = connect(command, flags);
  const { body } = await call<{ person: Person; enrolmentToken: string; enrolmentExpiresAt: string }>(
    conn,
    'POST',
    '/v1/people',
    {
      side,
      role: flags.role,
      email: flags.email,
      ...(flags.tenant !== undefined ? { tenant: flags.tenant } : {}),
      ...(flags.name !== undefined ? { name: flags.name } : {}),
    },
  );
  // The console is served by the API's own origin; the token stays in the fragment, never sent.
  const link = `${conn.base.origin}/signin#enrol=${body.enrolmentToken}`;
  emitWithSecret(
    flags,
    { person: body.person, enrolmentExpiresAt: body.enrolmentExpiresAt },
    [
      `invited ${body.person.email} (${body.person.id}) as ${body.person.role}${body.person.tenant ? ` of ${body.person.tenant}` : ''}`,
      `the link works once, until ${body.enrolmentExpiresAt}; hand it over privately`,
    ],
    { key: 'enrolmentLink', label: 'enrolment link', value: link },
  );
}

export async function listCommand(flags: PersonListFlags): Promise<void> {
  const conn = connect('tresor person list', flags);
  const query = flags.tenant !== undefined ? `?tenant=${encodeURIComponent(flags.tenant)}` : '';
  const { body } = await call<{ people: Person[] }>(conn, 'GET', `/v1/people${query}`);
  emit(
    flags,
    body,
    body.people.length === 0
      ? 'no people'
      : table(
          ['ID', 'EMAIL', 'ROLE', 'TENANT', 'ENROLLED', 'DISABLED'],
          body.people.map((p) => [p.id, p.email, p.role, p.tenant, p.enrolledAt, p.disabledAt]),
        ),
  );
}

export async function disableCommand(id: string, flags: PersonFlags): Promise<void> {
  const conn = connect('tresor person disable', flags);
  await call(conn, 'POST', `/v1/people/${segment(id)}/disable`);
  emit(flags, { id, disabled: true }, `disabled ${id}: its sessions and grants have ended`);
}
