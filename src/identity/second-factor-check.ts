/**
 * Checking a second factor (login, re-authentication, recovery-code reset): a TOTP code against
 * every confirmed TOTP factor, a recovery code against the live set, or a WebAuthn assertion that
 * webauthn.ts has verified already. A success is recorded in the caller's write.
 */
import type { Transaction } from 'kysely';
import type { IdentityDB, SecondFactorKind } from './identity-store-schema.ts';
import { consumeRecoveryCode } from './recovery-codes.ts';
import { openTotpSecret } from './sealed-totp-secret.ts';
import { verifyTotp } from './totp.ts';

export type SecondFactorProof =
  | { totp: string }
  | { recoveryCode: string }
  /**
   * A WebAuthn assertion that webauthn.ts has already verified for this login or session, with the
   * authenticator's new signature counter when it reports one.
   */
  | { webauthnVerified: { credentialId: string; signCount?: number } }
  /** A WebAuthn assertion webauthn.ts refused: always a failed proof, counted like a wrong code. */
  | { webauthnRefused: true };

export type FactorCheck =
  | { ok: true; kind: SecondFactorKind; factorId: string }
  | { ok: false; reason: 'invalid' | 'replayed' | 'no-factor' };

/**
 * Checks a second factor of `personId` inside the caller's write, and on success records its use
 * in it (TOTP: the accepted step, so the code is refused from then on; recovery: the slot is spent).
 * Only confirmed, unrevoked factors count.
 */
export async function verifySecondFactorIn(
  trx: Transaction<IdentityDB>,
  input: { personId: string; proof: SecondFactorProof; factorKey: Buffer; now: Date },
): Promise<FactorCheck> {
  const { personId, proof, factorKey, now } = input;
  const at = now.toISOString();
  if (typeof proof !== 'object' || proof === null) return { ok: false, reason: 'invalid' };
  const factors = await trx
    .selectFrom('second_factors')
    .selectAll()
    .where('person', '=', personId)
    .where('revoked_at', 'is', null)
    .where('confirmed_at', 'is not', null)
    .execute();
  if ('totp' in proof) {
    let replayed = false;
    for (const f of factors.filter((x) => x.kind === 'totp' && x.secret_sealed !== null)) {
      const secret = openTotpSecret(factorKey, personId, f.id, f.secret_sealed ?? '');
      const result = verifyTotp({ secret, code: proof.totp, now, lastAcceptedStep: f.last_step });
      if (result.ok) {
        // The step is taken only if no racing login (another node, another connection) took it or a
        // later one first: the affected-row count decides, not the value read above.
        const taken = await trx
          .updateTable('second_factors')
          .set({ last_step: result.step, last_used_at: at })
          .where('id', '=', f.id)
          .where((eb) => eb.or([eb('last_step', 'is', null), eb('last_step', '<', result.step)]))
          .executeTakeFirst();
        if (taken.numUpdatedRows === 1n) return { ok: true, kind: 'totp', factorId: f.id };
        replayed = true;
        continue;
      }
      if (result.reason === 'replayed') replayed = true;
    }
    return { ok: false, reason: replayed ? 'replayed' : 'invalid' };
  }
  if ('recoveryCode' in proof) {
    const set = factors.find((x) => x.kind === 'recovery');
    if (!set) return { ok: false, reason: 'invalid' };
    return spendRecoveryCode(trx, set.id, set.recovery_hashes, proof.recoveryCode, at);
  }
  if ('webauthnVerified' in proof && typeof proof.webauthnVerified?.credentialId === 'string') {
    const f = factors.find(
      (x) => x.kind === 'webauthn' && x.credential_id === proof.webauthnVerified.credentialId,
    );
    if (!f) return { ok: false, reason: 'invalid' };
    const signCount = proof.webauthnVerified.signCount;
    await trx
      .updateTable('second_factors')
      .set(
        Number.isSafeInteger(signCount)
          ? { last_used_at: at, sign_count: signCount ?? null }
          : { last_used_at: at },
      )
      .where('id', '=', f.id)
      .execute();
    return { ok: true, kind: 'webauthn', factorId: f.id };
  }
  return { ok: false, reason: 'invalid' };
}

/** Compare-and-set attempts before a recovery code is refused because its set keeps changing. */
const RECOVERY_SPEND_ATTEMPTS = 5;

/**
 * Spends a recovery code: the set is rewritten only if it is still the one the code was found in
 * (compare-and-set on the stored set), so two racing uses of one code cannot both succeed. A miss
 * means another code of the set was spent meanwhile: read the set again and look again.
 */
async function spendRecoveryCode(
  trx: Transaction<IdentityDB>,
  setId: string,
  stored: string | null,
  code: string,
  at: string,
): Promise<FactorCheck> {
  let current = stored;
  for (let attempt = 0; attempt < RECOVERY_SPEND_ATTEMPTS && current !== null; attempt++) {
    const hashes = JSON.parse(current) as Array<string | null>;
    const slot = consumeRecoveryCode(code, hashes);
    if (slot === undefined) return { ok: false, reason: 'invalid' };
    hashes[slot] = null;
    const spent = await trx
      .updateTable('second_factors')
      .set({ recovery_hashes: JSON.stringify(hashes), last_used_at: at })
      .where('id', '=', setId)
      .where('revoked_at', 'is', null)
      .where('recovery_hashes', '=', current)
      .executeTakeFirst();
    if (spent.numUpdatedRows === 1n) return { ok: true, kind: 'recovery', factorId: setId };
    const again = await trx
      .selectFrom('second_factors')
      .select('recovery_hashes')
      .where('id', '=', setId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    current = again?.recovery_hashes ?? null;
  }
  return { ok: false, reason: 'invalid' };
}
