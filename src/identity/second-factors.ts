/**
 * A person's second factors once enrolled: the list (TOTP, passkeys, the recovery-code set), the
 * passkey lookup WebAuthn verifies against, and revocation — by the person from a session with a
 * fresh second factor, or by an admin who manages them; never the last TOTP or passkey of an
 * enrolled account.
 */
import type { Transaction } from 'kysely';
import { appendAuditEvent } from '../audit/event.ts';
import { markAudited } from '../audit/refusal.ts';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import { DENIED, denyIn, FRESH_2FA_MS, forbidden, managedIn, selfActor } from './account-access.ts';
import { type AuditMeta, type IdentityActor, identityEvent, resolveActorIn } from './identity-actor.ts';
import type { IdentityDB, SecondFactorKind } from './identity-store-schema.ts';

export interface FactorInfo {
  id: string;
  kind: SecondFactorKind;
  label: string | null;
  createdAt: string;
  confirmedAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
  /** recovery: codes not used yet. */
  remaining?: number;
}

export interface SecondFactorService {
  listFactors(personId: string): Promise<FactorInfo[]>;
  /**
   * What webauthn.ts needs to verify an assertion: the live credential with this id (public key,
   * counter, owner), or undefined. Server-side only: never send a person's credential list to a
   * client during login (it would tell whether the password step passed); use discoverable
   * credentials there.
   */
  findWebauthnCredential(
    credentialId: string,
  ): Promise<{ personId: string; factorId: string; publicKey: string; signCount: number } | undefined>;
  /** Revokes a factor; never the last TOTP or passkey of an enrolled account. */
  revokeFactor(actor: IdentityActor, factorId: string, meta?: AuditMeta): Promise<void>;
}

function toFactor(row: IdentityDB['second_factors']): FactorInfo {
  const info: FactorInfo = {
    id: row.id,
    kind: row.kind,
    label: row.label,
    createdAt: row.created_at,
    confirmedAt: row.confirmed_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
  };
  if (row.kind === 'recovery' && row.recovery_hashes !== null) {
    info.remaining = (JSON.parse(row.recovery_hashes) as unknown[]).filter((h) => h !== null).length;
  }
  return info;
}

/** Whether the person has a confirmed, live TOTP or passkey (other than `except`). */
export async function hasStrongFactorIn(
  trx: Transaction<IdentityDB>,
  personId: string,
  except?: string,
): Promise<boolean> {
  let q = trx
    .selectFrom('second_factors')
    .select('id')
    .where('person', '=', personId)
    .where('kind', 'in', ['totp', 'webauthn'])
    .where('confirmed_at', 'is not', null)
    .where('revoked_at', 'is', null);
  if (except !== undefined) q = q.where('id', '<>', except);
  return (await q.executeTakeFirst()) !== undefined;
}

export function createSecondFactorService(options: {
  control: Store<IdentityDB>;
  now: () => Date;
}): SecondFactorService {
  const { control, now } = options;
  return {
    async listFactors(personId) {
      const rows = await control.db
        .selectFrom('second_factors')
        .selectAll()
        .where('person', '=', personId)
        .orderBy('created_at')
        .execute();
      return rows.map(toFactor);
    },

    async findWebauthnCredential(credentialId) {
      if (typeof credentialId !== 'string') return undefined;
      const row = await control.db
        .selectFrom('second_factors')
        .select(['id', 'person', 'public_key', 'sign_count'])
        .where('kind', '=', 'webauthn')
        .where('credential_id', '=', credentialId)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (!row || row.public_key === null) return undefined;
      return {
        personId: row.person,
        factorId: row.id,
        publicKey: row.public_key,
        signCount: row.sign_count ?? 0,
      };
    },

    async revokeFactor(actor, factorId, meta) {
      const result = await control.write(async (trx) => {
        const f = await trx
          .selectFrom('second_factors')
          .selectAll()
          .where('id', '=', factorId)
          .executeTakeFirst();
        if (!f) return denyIn(trx, now, actor, 'factor.revoke', { factorId }, meta);
        const self =
          actor.kind === 'session' &&
          actor.personId === f.person &&
          actor.fresh2faAt !== null &&
          now().getTime() - Date.parse(actor.fresh2faAt) <= FRESH_2FA_MS &&
          (await resolveActorIn(trx, actor)) !== undefined;
        const m = self ? undefined : await managedIn(trx, actor, f.person);
        if (!self && !m) return denyIn(trx, now, actor, 'factor.revoke', { factorId }, meta);
        if (f.revoked_at !== null) return undefined;
        const person = await trx
          .selectFrom('people')
          .selectAll()
          .where('id', '=', f.person)
          .executeTakeFirstOrThrow();
        if (
          f.kind !== 'recovery' &&
          f.confirmed_at !== null &&
          person.enrolled_at !== null &&
          !(await hasStrongFactorIn(trx, f.person, f.id))
        ) {
          throw new TresorError(
            'TRESOR_ERR_CONFLICT',
            'the last second factor cannot be revoked; enrol another first',
          );
        }
        const at = now().toISOString();
        await trx.updateTable('second_factors').set({ revoked_at: at }).where('id', '=', f.id).execute();
        if (f.kind === 'webauthn' && f.credential_id !== null) {
          // The ceremony's own record of the credential ends with the factor, in the same commit.
          await trx
            .updateTable('webauthn_credentials')
            .set({ revoked_at: at })
            .where('id', '=', f.credential_id)
            .where('revoked_at', 'is', null)
            .execute();
        }
        await appendAuditEvent(
          trx,
          identityEvent(
            m ? m.by.audit : selfActor(person),
            { at, tenant: person.tenant, action: 'factor.revoke', outcome: 'success' },
            { personId: f.person, factorId, kind: f.kind },
            meta,
          ),
        );
        return undefined;
      });
      if (result === DENIED) throw markAudited(forbidden());
    },
  };
}
