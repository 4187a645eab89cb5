/**
 * Console accounts: an admin creates one (operator admin: operator-side accounts and tenant admins;
 * tenant admin: accounts of their own tenant only) and receives a one-time enrolment token for the
 * person (enrolment.ts); admins list accounts, change roles, reset lost second factors, and disable
 * or remove accounts. Role changes, disabling and removal end the account's sessions in the same
 * commit and call `onAccessRemoved(personId, trx)` in it too, so the grants module ends grants at
 * once. Every change is audited in its own commit; tokens are stored as SHA-256.
 */
import type { Transaction } from 'kysely';
import { type ActorKind, appendAuditEvent } from '../audit/event.ts';
import { markAudited } from '../audit/refusal.ts';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import { DENIED, denyIn, forbidden, managedIn } from './account-access.ts';
import { invalid, MAX_NAME_CHARS, normaliseEmail } from './account-input.ts';
import { type AuditMeta, type IdentityActor, identityEvent, resolveActorIn } from './identity-actor.ts';
import type { IdentityDB } from './identity-store-schema.ts';
import { auditActorKind, isRole, mayManageAccount, type Role, type Side, sideOf } from './roles.ts';
import { revokePersonSessionsIn } from './sessions.ts';
import { newId, newToken, sha256 } from './tokens.ts';

export const DEFAULT_ENROLMENT_TTL_MS = 72 * 3_600_000;

export interface PersonInfo {
  id: string;
  side: Side;
  role: Role;
  tenant: string | null;
  email: string;
  name: string | null;
  enrolledAt: string | null;
  createdAt: string;
  disabledAt: string | null;
  removedAt: string | null;
}

export interface CreatePersonInput {
  side: Side;
  role: Role;
  tenant?: string | null;
  email: string;
  name?: string | null;
  /**
   * Only as the deployment's first operator admin (`tresor init`): refused with CONFLICT, in the
   * same transaction as the insert, when an operator admin that is not removed exists, so two
   * bootstraps at the same moment make one admin.
   */
  firstOperatorAdmin?: boolean;
}

export interface AccountService {
  createPerson(
    actor: IdentityActor,
    input: CreatePersonInput,
    meta?: AuditMeta,
  ): Promise<{ person: PersonInfo; enrolmentToken: string; enrolmentExpiresAt: string }>;
  get(personId: string): Promise<PersonInfo | undefined>;
  /** The accounts `actor` manages (and their own), optionally of one tenant; audited. */
  list(actor: IdentityActor, filter?: { tenant?: string }, meta?: AuditMeta): Promise<PersonInfo[]>;
  /**
   * Admin reset of a person's second factors (a lost phone or key): every factor and passkey is
   * revoked, sessions and grants end, and the account is back to enrolling — it cannot log in until
   * the person enrols a new factor with the one-time enrolment token returned here. The password
   * stays (the person still knows it; a password reset is its own action).
   */
  resetFactors(
    actor: IdentityActor,
    personId: string,
    meta?: AuditMeta,
  ): Promise<{ enrolmentToken: string; enrolmentExpiresAt: string }>;
  changeRole(actor: IdentityActor, personId: string, role: Role, meta?: AuditMeta): Promise<PersonInfo>;
  disable(actor: IdentityActor, personId: string, meta?: AuditMeta): Promise<void>;
  remove(actor: IdentityActor, personId: string, meta?: AuditMeta): Promise<void>;
}

export interface AccountServiceOptions {
  control: Store<IdentityDB>;
  now: () => Date;
  /** Called inside the commit that removes a role or an account: end its grants with `trx`. */
  onAccessRemoved?: (personId: string, trx: Transaction<IdentityDB>) => Promise<void>;
  enrolmentTtlMs?: number;
}

export function toPerson(row: IdentityDB['people']): PersonInfo {
  return {
    id: row.id,
    side: row.side,
    role: row.role,
    tenant: row.tenant,
    email: row.email,
    name: row.name,
    enrolledAt: row.enrolled_at,
    createdAt: row.created_at,
    disabledAt: row.disabled_at,
    removedAt: row.removed_at,
  };
}

/**
 * Who a person is for audit events of their WebAuthn ceremonies: customers' are theirs in the log
 * (kind customer, their tenant), staff's are staff's. undefined for an unknown person.
 */
export async function personAuditActor(
  control: Store<IdentityDB>,
  personId: string,
): Promise<{ kind: ActorKind; tenant: string | null } | undefined> {
  const row = await control.db
    .selectFrom('people')
    .select(['role', 'tenant'])
    .where('id', '=', personId)
    .executeTakeFirst();
  return row ? { kind: auditActorKind(row.role), tenant: row.tenant } : undefined;
}

export function createAccountService(options: AccountServiceOptions): AccountService {
  const { control, now } = options;
  const enrolmentTtlMs = options.enrolmentTtlMs ?? DEFAULT_ENROLMENT_TTL_MS;
  const onAccessRemoved = options.onAccessRemoved ?? (async () => {});

  /** Role removed or account ended: sessions and grants end in this commit. */
  async function endAccessIn(
    trx: Transaction<IdentityDB>,
    personId: string,
    reason: string,
  ): Promise<string[]> {
    const ids = await revokePersonSessionsIn(trx, personId, now().toISOString(), reason);
    await onAccessRemoved(personId, trx);
    return ids;
  }

  async function endAccount(
    actor: IdentityActor,
    personId: string,
    how: 'disable' | 'remove',
    meta: AuditMeta | undefined,
  ): Promise<void> {
    const result = await control.write(async (trx) => {
      const m = await managedIn(trx, actor, personId);
      if (!m) return denyIn(trx, now, actor, `person.${how}`, { personId }, meta);
      const at = now().toISOString();
      await trx
        .updateTable('people')
        .set(
          how === 'remove'
            ? { removed_at: at, disabled_at: m.person.disabled_at ?? at, updated_at: at }
            : { disabled_at: at, updated_at: at },
        )
        .where('id', '=', personId)
        .execute();
      const sessionIds = await endAccessIn(trx, personId, `person-${how}d`);
      await appendAuditEvent(
        trx,
        identityEvent(
          m.by.audit,
          { at, tenant: m.person.tenant, action: `person.${how}`, outcome: 'success' },
          { personId, sessionIds },
          meta,
        ),
      );
      return undefined;
    });
    if (result === DENIED) throw markAudited(forbidden());
  }

  return {
    async createPerson(actor, input, meta) {
      if (!isRole(input.role) || sideOf(input.role) !== input.side)
        throw invalid('role', 'a role of that side');
      const email = normaliseEmail(input.email);
      const tenant = input.side === 'customer' ? (input.tenant ?? null) : null;
      if (input.side === 'customer' && (typeof tenant !== 'string' || tenant === ''))
        throw invalid('tenant', 'required for customer accounts');
      if (input.side === 'operator' && input.tenant)
        throw invalid('tenant', 'operator accounts have no tenant');
      const name = input.name ?? null;
      if (name !== null && (typeof name !== 'string' || name.length > MAX_NAME_CHARS))
        throw invalid('name', `at most ${MAX_NAME_CHARS} characters`);
      const enrolmentToken = newToken();
      const result = await control.write(async (trx) => {
        const by = await resolveActorIn(trx, actor);
        const target = { side: input.side, role: input.role, tenant };
        if (!by || !mayManageAccount(by, target)) {
          return denyIn(
            trx,
            now,
            actor,
            'person.create',
            { side: input.side, role: input.role, tenant },
            meta,
          );
        }
        if (tenant !== null) {
          const t = await trx
            .selectFrom('tenants')
            .select('state')
            .where('id', '=', tenant)
            .executeTakeFirst();
          if (!t) throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no such tenant');
          if (t.state !== 'active')
            throw new TresorError('TRESOR_ERR_TENANT_STATE', `tenant is ${t.state}`, { state: t.state });
        }
        let dup = trx
          .selectFrom('people')
          .select('id')
          .where('side', '=', input.side)
          .where('email', '=', email)
          .where('removed_at', 'is', null);
        dup = tenant === null ? dup.where('tenant', 'is', null) : dup.where('tenant', '=', tenant);
        if (await dup.executeTakeFirst())
          throw new TresorError('TRESOR_ERR_CONFLICT', 'an account with this e-mail exists');
        if (input.firstOperatorAdmin === true) {
          const admin = await trx
            .selectFrom('people')
            .select('id')
            .where('role', '=', 'operator-admin')
            .where('removed_at', 'is', null)
            .executeTakeFirst();
          if (admin)
            throw new TresorError(
              'TRESOR_ERR_CONFLICT',
              `this deployment has an operator admin already (${admin.id}): init makes the first one only; invite others with tresor person invite`,
            );
        }
        const at = now();
        const row: IdentityDB['people'] = {
          id: newId('psn'),
          side: input.side,
          role: input.role,
          tenant,
          email,
          name,
          password_hash: null,
          password_set_at: null,
          enrolment_token_hash: sha256(enrolmentToken),
          enrolment_expires_at: new Date(at.getTime() + enrolmentTtlMs).toISOString(),
          enrolled_at: null,
          created_at: at.toISOString(),
          updated_at: at.toISOString(),
          disabled_at: null,
          removed_at: null,
        };
        await trx.insertInto('people').values(row).execute();
        await appendAuditEvent(
          trx,
          identityEvent(
            by.audit,
            { at: row.created_at, tenant, action: 'person.create', outcome: 'success' },
            { personId: row.id, side: row.side, role: row.role },
            meta,
          ),
        );
        return row;
      });
      if (result === DENIED) throw markAudited(forbidden());
      return {
        person: toPerson(result),
        enrolmentToken,
        enrolmentExpiresAt: result.enrolment_expires_at ?? '',
      };
    },

    async get(personId) {
      const row = await control.db
        .selectFrom('people')
        .selectAll()
        .where('id', '=', personId)
        .executeTakeFirst();
      return row ? toPerson(row) : undefined;
    },

    async list(actor, filter = {}, meta) {
      const result = await control.write(async (trx) => {
        const by = await resolveActorIn(trx, actor);
        if (!by)
          return denyIn(trx, now, actor, 'person.list', filter.tenant ? { tenant: filter.tenant } : {}, meta);
        let q = trx.selectFrom('people').selectAll().where('removed_at', 'is', null);
        if (filter.tenant !== undefined) q = q.where('tenant', '=', filter.tenant);
        const rows = (await q.orderBy('created_at').execute()).filter(
          (row) => row.id === by.personId || mayManageAccount(by, row),
        );
        await appendAuditEvent(
          trx,
          identityEvent(
            by.audit,
            { at: now().toISOString(), tenant: by.tenant, action: 'person.list', outcome: 'success' },
            { count: rows.length, ...(filter.tenant ? { tenant: filter.tenant } : {}) },
            meta,
          ),
        );
        return rows.map(toPerson);
      });
      if (result === DENIED) throw markAudited(forbidden());
      return result;
    },

    async resetFactors(actor, personId, meta) {
      const enrolmentToken = newToken();
      const result = await control.write(async (trx) => {
        const m = await managedIn(trx, actor, personId);
        if (!m) return denyIn(trx, now, actor, 'person.factors-reset', { personId }, meta);
        const at = now();
        const expiresAt = new Date(at.getTime() + enrolmentTtlMs).toISOString();
        const factors = await trx
          .updateTable('second_factors')
          .set({ revoked_at: at.toISOString() })
          .where('person', '=', personId)
          .where('revoked_at', 'is', null)
          .executeTakeFirst();
        await trx
          .updateTable('webauthn_credentials')
          .set({ revoked_at: at.toISOString() })
          .where('person', '=', personId)
          .where('revoked_at', 'is', null)
          .execute();
        await trx
          .updateTable('people')
          .set({
            enrolled_at: null,
            enrolment_token_hash: sha256(enrolmentToken),
            enrolment_expires_at: expiresAt,
            updated_at: at.toISOString(),
          })
          .where('id', '=', personId)
          .execute();
        const sessionIds = await endAccessIn(trx, personId, 'factors-reset');
        await appendAuditEvent(
          trx,
          identityEvent(
            m.by.audit,
            {
              at: at.toISOString(),
              tenant: m.person.tenant,
              action: 'person.factors-reset',
              outcome: 'success',
            },
            { personId, factorsRevoked: Number(factors.numUpdatedRows), sessionIds },
            meta,
          ),
        );
        return { enrolmentToken, enrolmentExpiresAt: expiresAt };
      });
      if (result === DENIED) throw markAudited(forbidden());
      return result;
    },

    async changeRole(actor, personId, role, meta) {
      if (!isRole(role)) throw invalid('role', 'not a role');
      const result = await control.write(async (trx) => {
        const m = await managedIn(trx, actor, personId);
        if (!m || !mayManageAccount(m.by, { side: m.person.side, role, tenant: m.person.tenant })) {
          return denyIn(trx, now, actor, 'person.role-change', { personId, role }, meta);
        }
        if (m.person.role === role) return m.person;
        const at = now().toISOString();
        await trx.updateTable('people').set({ role, updated_at: at }).where('id', '=', personId).execute();
        const sessionIds = await endAccessIn(trx, personId, 'role-changed');
        await appendAuditEvent(
          trx,
          identityEvent(
            m.by.audit,
            { at, tenant: m.person.tenant, action: 'person.role-change', outcome: 'success' },
            { personId, from: m.person.role, to: role, sessionIds },
            meta,
          ),
        );
        return { ...m.person, role, updated_at: at };
      });
      if (result === DENIED) throw markAudited(forbidden());
      return toPerson(result);
    },

    disable: (actor, personId, meta) => endAccount(actor, personId, 'disable', meta),
    remove: (actor, personId, meta) => endAccount(actor, personId, 'remove', meta),
  };
}
