/**
 * A security officer's attestation that a period's grants and staff accesses were reviewed: from
 * the console as themselves, or through the CLI (system actor `cli`, naming the officer with
 * `attestedBy`). Attestations only grow; each is audited, and so is every refusal.
 */
import { appendAuditEvent } from '../audit/event.ts';
import { TresorError } from '../errors.ts';
import {
  type AuditMeta,
  auditActorOf,
  type IdentityActor,
  identityEvent,
  resolveActorIn,
} from '../identity/identity-actor.ts';
import { newId } from '../identity/tokens.ts';
import type { Store } from '../store/types.ts';
import { hasControlCharacter } from '../text.ts';
import { forbidden, invalid, notFound } from './access-errors.ts';
import type { AccessDB, AccessReviewsTable } from './access-store-schema.ts';
import { actorTenantOf, refusalsOf, writeAudited } from './audited-write.ts';
import { type Attestation, toAttestation } from './review-evidence.ts';
import { checkPeriod, iso } from './review-period.ts';

export const MAX_NOTE_CHARS = 1000;

export interface AttestInput {
  from: string;
  to: string;
  tenant?: string | null;
  note: string;
  /** The attesting security officer: required from a system actor (the CLI), else the actor itself. */
  attestedBy?: string;
}

export function attestations(options: { control: Store<AccessDB>; now: () => Date }) {
  const { control, now } = options;
  return {
    async attest(actor: IdentityActor, input: AttestInput, meta?: AuditMeta): Promise<Attestation> {
      return writeAudited(control, async (trx) => {
        const by = await resolveActorIn(trx, actor);
        const wanted = (input ?? {}) as unknown as Record<string, unknown>;
        const tenantId = wanted.tenant ?? null;
        const tenant =
          typeof tenantId === 'string'
            ? await trx.selectFrom('tenants').select('id').where('id', '=', tenantId).executeTakeFirst()
            : undefined;
        const refuse = refusalsOf(
          trx,
          now,
          {
            actor: by?.audit ?? auditActorOf(actor),
            actorTenant: actorTenantOf(by, actor),
            tenant: tenant?.id ?? null,
            action: 'access.attest',
          },
          meta,
        );
        // The attesting officer: the session's person, or the one a system job (the CLI) names.
        let officer: string | undefined;
        if (by && actor.kind === 'session' && by.role === 'security-officer') {
          if (wanted.attestedBy !== undefined && wanted.attestedBy !== by.personId)
            return refuse('attested-by-other', forbidden());
          officer = by.personId ?? undefined;
        } else if (by && actor.kind === 'system' && typeof wanted.attestedBy === 'string') {
          const p = await trx
            .selectFrom('people')
            .select(['id', 'role', 'disabled_at', 'removed_at'])
            .where('id', '=', wanted.attestedBy)
            .executeTakeFirst();
          if (p && p.role === 'security-officer' && p.disabled_at === null && p.removed_at === null)
            officer = p.id;
        }
        if (!by || officer === undefined) return refuse('not-a-security-officer', forbidden());
        const period = checkPeriod(wanted);
        if (period instanceof TresorError) return refuse('invalid', period);
        const t = now().getTime();
        if (period.to > t) return refuse('invalid', invalid('to', 'a period that has ended'));
        const note = typeof wanted.note === 'string' ? wanted.note.trim() : '';
        // Tab and newline are allowed in a note; other control characters are refused.
        if (note.length < 1 || note.length > MAX_NOTE_CHARS || hasControlCharacter(note, ['\t', '\n']))
          return refuse('invalid', invalid('note', `1–${MAX_NOTE_CHARS} characters`));
        if (tenantId !== null && !tenant) return refuse('unknown-tenant', notFound('tenant'));
        const row: AccessReviewsTable = {
          id: newId('rev'),
          period_from: iso(period.from),
          period_to: iso(period.to),
          tenant: tenant?.id ?? null,
          note,
          attested_by: officer,
          recorded_by: `${by.audit.kind}:${by.audit.id}`,
          attested_at: iso(t),
        };
        await trx.insertInto('access_reviews').values(row).execute();
        await appendAuditEvent(
          trx,
          identityEvent(
            by.audit,
            { at: row.attested_at, tenant: row.tenant, action: 'access.attest', outcome: 'success' },
            { reviewId: row.id, from: row.period_from, to: row.period_to, attestedBy: officer, note },
            meta,
          ),
        );
        return toAttestation(row);
      });
    },
  };
}
