/**
 * Console accounts: who they are, their role, their password and their second factors.
 *
 * Life of an account:
 * 1. an admin creates it (operator admin: operator-side accounts and tenant admins; tenant admin:
 *    accounts of their own tenant only) and receives a one-time enrolment token for the person;
 * 2. with that token the person sets a password (SP 800-63B policy, passwords.ts), begins a TOTP
 *    enrolment (the secret and otpauth URI are shown once) and confirms it with a valid code — or
 *    registers a passkey verified by webauthn.ts. Only then is the account enrolled: it cannot log
 *    in before. Completing enrolment issues the first recovery codes, shown once;
 * 3. role changes, disabling and removal end the account's sessions in the same commit and call
 *    `onAccessRemoved(personId, trx)` in it too, so the grants module ends grants at once;
 * 4. a password reset (by an admin, or by the person with a recovery code) changes the password
 *    only: the second factors stay and login still needs one.
 *
 * TOTP secrets are sealed with AES-256-GCM under `factorKey` (later from keyd), the associated
 * data binding each ciphertext to its person and factor (a sealed secret moved to another row does
 * not open). Recovery codes are stored hashed (recovery-codes.ts). Tokens are stored as SHA-256.
 *
 * Refusals of a permission are one TRESOR_ERR_FORBIDDEN whatever the reason (unknown person,
 * another tenant, wrong role), audited as `denied`; every change is audited in its own commit.
 */
import type { Transaction } from 'kysely';
import { appendAuditEvent } from '../audit/event.ts';
import { aeadOpen, aeadSeal, encodeAad, KEY_BYTES } from '../crypto/index.ts';
import { TresorError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import type { IdentityDB, SecondFactorKind } from './identity-store-schema.ts';
import {
  accountSubject,
  createLoginThrottle,
  type LoginThrottle,
  type LoginThrottleConfig,
  rateLimited,
} from './login-throttle.ts';
import { normaliseEmail } from './operators.ts';
import { checkPasswordPolicy, hashPassword } from './passwords.ts';
import { consumeRecoveryCode, newRecoveryCodes } from './recovery-codes.ts';
import { auditActorKind, isRole, mayManageAccount, type Role, type Side, sideOf } from './roles.ts';
import {
  type AuditMeta,
  auditActorOf,
  type IdentityActor,
  identityEvent,
  newId,
  newToken,
  type ResolvedActor,
  resolveActorIn,
  revokePersonSessionsIn,
  type SessionPrincipal,
  sha256,
} from './sessions.ts';
import { newTotpSecret, totpUri, verifyTotp } from './totp.ts';
import { unauthenticated } from './unauthenticated.ts';

export const DEFAULT_ENROLMENT_TTL_MS = 72 * 3_600_000;
/** A pending TOTP enrolment must be confirmed within this time. */
const TOTP_CONFIRM_MS = 15 * 60_000;
/** Factor changes from a session need a second factor passed this recently. */
export const FRESH_2FA_MS = 10 * 60_000;
const SEALED_PATTERN = /^v1\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{22})$/;
const MAX_NAME_CHARS = 100;
const MAX_LABEL_CHARS = 100;

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

/** How a person proves it is them while enrolling factors: the enrolment token, or a fresh session. */
export type EnrolmentAuth = { enrolmentToken: string } | { session: SessionPrincipal };

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

export interface EnrolmentStep {
  enrolmentComplete: boolean;
  /** Shown once, when enrolment completes. */
  recoveryCodes?: string[];
}

export interface CreatePersonInput {
  side: Side;
  role: Role;
  tenant?: string | null;
  email: string;
  name?: string | null;
}

export interface PeopleService {
  createPerson(
    actor: IdentityActor,
    input: CreatePersonInput,
    meta?: AuditMeta,
  ): Promise<{ person: PersonInfo; enrolmentToken: string; enrolmentExpiresAt: string }>;
  get(personId: string): Promise<PersonInfo | undefined>;
  /** The accounts `actor` manages (and their own), optionally of one tenant; audited. */
  list(actor: IdentityActor, filter?: { tenant?: string }, meta?: AuditMeta): Promise<PersonInfo[]>;
  /** The account an enrolment token or a fresh session stands for; TRESOR_ERR_UNAUTHENTICATED if none. */
  enrollingPerson(auth: EnrolmentAuth): Promise<PersonInfo>;
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
  /** Sets the password of an enrolling person, or finishes a password reset. */
  setPassword(enrolmentToken: string, password: string, meta?: AuditMeta): Promise<EnrolmentStep>;
  beginTotpEnrolment(
    auth: EnrolmentAuth,
    input?: { label?: string },
    meta?: AuditMeta,
  ): Promise<{ factorId: string; secret: string; uri: string }>;
  confirmTotpEnrolment(
    auth: EnrolmentAuth,
    factorId: string,
    code: string,
    meta?: AuditMeta,
  ): Promise<EnrolmentStep>;
  /** The hook for webauthn.ts: a credential whose registration it has verified. */
  registerWebauthnFactor(
    auth: EnrolmentAuth,
    input: { credentialId: string; publicKey: string; signCount: number; label?: string },
    meta?: AuditMeta,
  ): Promise<EnrolmentStep & { factorId: string }>;
  /** A new set of recovery codes (the old set stops working), shown once. */
  issueRecoveryCodes(auth: EnrolmentAuth, meta?: AuditMeta): Promise<{ codes: string[] }>;
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
  /** Admin reset: the password stops working, sessions end, a one-time reset token is returned. */
  resetPassword(
    actor: IdentityActor,
    personId: string,
    meta?: AuditMeta,
  ): Promise<{ resetToken: string; expiresAt: string }>;
  /** Self-service reset with a recovery code: sets the password, lifts a lockout, ends sessions. */
  resetPasswordWithRecoveryCode(
    input: { side: Side; tenant?: string | null; email: string; recoveryCode: string; newPassword: string },
    meta: AuditMeta & { sourceAddress: string },
  ): Promise<void>;
  /** Lifts a login lockout (admin). */
  unlock(actor: IdentityActor, personId: string, meta?: AuditMeta): Promise<void>;
}

export interface PeopleServiceOptions {
  control: Store<IdentityDB>;
  now: () => Date;
  /** 32 bytes: seals TOTP secrets (AES-256-GCM). */
  factorKey: Buffer;
  /** Called inside the commit that removes a role or an account: end its grants with `trx`. */
  onAccessRemoved?: (personId: string, trx: Transaction<IdentityDB>) => Promise<void>;
  throttle?: LoginThrottle;
  throttleConfig?: Partial<LoginThrottleConfig>;
  /** The issuer in otpauth URIs. */
  issuer?: string;
  enrolmentTtlMs?: number;
}

// --- sealed TOTP secrets -------------------------------------------------------------------------

const TOTP_AAD_PURPOSE = 'identity/totp-secret';

export function checkFactorKey(key: Buffer): Buffer {
  if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) {
    throw new TresorError('TRESOR_ERR_INTERNAL', `identity: the factor key must be ${KEY_BYTES} bytes`);
  }
  return key;
}

export function sealTotpSecret(key: Buffer, person: string, factor: string, base32: string): string {
  const sealed = aeadSeal(key, Buffer.from(base32, 'ascii'), encodeAad(TOTP_AAD_PURPOSE, { person, factor }));
  return ['v1', sealed.nonce, sealed.ciphertext, sealed.tag]
    .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
    .join('.');
}

export function openTotpSecret(key: Buffer, person: string, factor: string, stored: string): string {
  const m = SEALED_PATTERN.exec(stored);
  if (!m?.[1] || !m[2] || !m[3])
    throw new TresorError('TRESOR_ERR_INTERNAL', 'identity: malformed sealed secret');
  const sealed = {
    nonce: Buffer.from(m[1], 'base64url'),
    ciphertext: Buffer.from(m[2], 'base64url'),
    tag: Buffer.from(m[3], 'base64url'),
  };
  return aeadOpen(key, sealed, encodeAad(TOTP_AAD_PURPOSE, { person, factor })).toString('ascii');
}

// --- second-factor verification (login.ts uses it too) -------------------------------------------

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
        // Writes are serialised, so a code read and accepted here cannot be accepted by a racing login.
        await trx
          .updateTable('second_factors')
          .set({ last_step: result.step, last_used_at: at })
          .where('id', '=', f.id)
          .execute();
        return { ok: true, kind: 'totp', factorId: f.id };
      }
      if (result.reason === 'replayed') replayed = true;
    }
    return { ok: false, reason: replayed ? 'replayed' : 'invalid' };
  }
  if ('recoveryCode' in proof) {
    const set = factors.find((x) => x.kind === 'recovery');
    const hashes = set?.recovery_hashes ? (JSON.parse(set.recovery_hashes) as Array<string | null>) : [];
    const slot = consumeRecoveryCode(proof.recoveryCode, hashes);
    if (!set || slot === undefined) return { ok: false, reason: 'invalid' };
    hashes[slot] = null;
    await trx
      .updateTable('second_factors')
      .set({ recovery_hashes: JSON.stringify(hashes), last_used_at: at })
      .where('id', '=', set.id)
      .execute();
    return { ok: true, kind: 'recovery', factorId: set.id };
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

// --- the service ---------------------------------------------------------------------------------

function toPerson(row: IdentityDB['people']): PersonInfo {
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

function forbidden(): TresorError {
  return new TresorError('TRESOR_ERR_FORBIDDEN', 'not allowed for this account');
}

function invalid(field: string, message: string): TresorError {
  return new TresorError('TRESOR_ERR_VALIDATION', `${field}: ${message}`, { field });
}

function checkLabel(label: string | undefined): string | null {
  if (label === undefined) return null;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (typeof label !== 'string' || label.length > MAX_LABEL_CHARS || /[\u0000-\u001f\u007f]/.test(label)) {
    throw invalid('label', `at most ${MAX_LABEL_CHARS} printable characters`);
  }
  return label;
}

function refusedPassword(reasons: string[]): TresorError {
  return new TresorError('TRESOR_ERR_VALIDATION', 'password: refused by the password policy', {
    field: 'password',
    reasons,
  });
}

const DENIED = Symbol('denied');

export function createPeopleService(options: PeopleServiceOptions): PeopleService {
  const { control, now } = options;
  const factorKey = checkFactorKey(options.factorKey);
  const issuer = options.issuer ?? 'Tresor';
  const enrolmentTtlMs = options.enrolmentTtlMs ?? DEFAULT_ENROLMENT_TTL_MS;
  const throttle = options.throttle ?? createLoginThrottle({ control, now, config: options.throttleConfig });
  const onAccessRemoved = options.onAccessRemoved ?? (async () => {});

  async function denyIn(
    trx: Transaction<IdentityDB>,
    actor: IdentityActor,
    action: string,
    target: Record<string, unknown>,
    meta: AuditMeta | undefined,
  ): Promise<typeof DENIED> {
    await appendAuditEvent(
      trx,
      identityEvent(
        auditActorOf(actor),
        { at: now().toISOString(), tenant: null, action, outcome: 'denied' },
        target,
        meta,
      ),
    );
    return DENIED;
  }

  /** The actor and the target person, if the actor may manage that person; undefined otherwise. */
  async function managedIn(
    trx: Transaction<IdentityDB>,
    actor: IdentityActor,
    personId: string,
  ): Promise<{ by: ResolvedActor; person: IdentityDB['people'] } | undefined> {
    const by = await resolveActorIn(trx, actor);
    const person = await trx.selectFrom('people').selectAll().where('id', '=', personId).executeTakeFirst();
    if (!by || !person || person.removed_at !== null || !mayManageAccount(by, person)) return undefined;
    if (by.personId === personId) return undefined; // nobody manages their own account
    return { by, person };
  }

  /** The person an EnrolmentAuth stands for, read inside the write. */
  async function enrollingIn(
    trx: Transaction<IdentityDB>,
    auth: EnrolmentAuth,
  ): Promise<IdentityDB['people'] | undefined> {
    const t = now().getTime();
    let row: IdentityDB['people'] | undefined;
    if ('enrolmentToken' in auth) {
      if (typeof auth.enrolmentToken !== 'string' || auth.enrolmentToken.length > 64) return undefined;
      row = await trx
        .selectFrom('people')
        .selectAll()
        .where('enrolment_token_hash', '=', sha256(auth.enrolmentToken))
        .executeTakeFirst();
      if (!row || row.enrolment_expires_at === null || Date.parse(row.enrolment_expires_at) <= t)
        return undefined;
    } else {
      const s = auth.session;
      if (s.fresh2faAt === null || t - Date.parse(s.fresh2faAt) > FRESH_2FA_MS) return undefined;
      row = await trx.selectFrom('people').selectAll().where('id', '=', s.personId).executeTakeFirst();
      if (!row || row.role !== s.role || row.enrolled_at === null) return undefined;
    }
    if (row.disabled_at !== null || row.removed_at !== null) return undefined;
    return row;
  }

  const selfActor = (row: IdentityDB['people']) => ({ kind: auditActorKind(row.role), id: row.id });

  async function hasStrongFactorIn(
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

  async function insertRecoveryCodesIn(trx: Transaction<IdentityDB>, personId: string): Promise<string[]> {
    const at = now().toISOString();
    await trx
      .updateTable('second_factors')
      .set({ revoked_at: at })
      .where('person', '=', personId)
      .where('kind', '=', 'recovery')
      .where('revoked_at', 'is', null)
      .execute();
    const set = newRecoveryCodes();
    await trx
      .insertInto('second_factors')
      .values({
        id: newId('fac'),
        person: personId,
        kind: 'recovery',
        label: null,
        secret_sealed: null,
        last_step: null,
        credential_id: null,
        public_key: null,
        sign_count: null,
        recovery_hashes: JSON.stringify(set.hashes),
        created_at: at,
        confirmed_at: at,
        last_used_at: null,
        revoked_at: null,
      })
      .execute();
    return set.codes;
  }

  /** Completes enrolment once a password and a strong factor are in place; issues recovery codes. */
  async function completeIfReadyIn(
    trx: Transaction<IdentityDB>,
    personId: string,
    meta: AuditMeta | undefined,
  ): Promise<EnrolmentStep> {
    const row = await trx
      .selectFrom('people')
      .selectAll()
      .where('id', '=', personId)
      .executeTakeFirstOrThrow();
    if (row.enrolled_at !== null) return { enrolmentComplete: true };
    if (row.password_hash === null || !(await hasStrongFactorIn(trx, personId)))
      return { enrolmentComplete: false };
    const at = now().toISOString();
    await trx
      .updateTable('people')
      .set({ enrolled_at: at, updated_at: at, enrolment_token_hash: null, enrolment_expires_at: null })
      .where('id', '=', personId)
      .execute();
    const recoveryCodes = await insertRecoveryCodesIn(trx, personId);
    await appendAuditEvent(
      trx,
      identityEvent(
        selfActor(row),
        { at, tenant: row.tenant, action: 'person.enrol', outcome: 'success' },
        { personId },
        meta,
      ),
    );
    return { enrolmentComplete: true, recoveryCodes };
  }

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
      if (!m) return denyIn(trx, actor, `person.${how}`, { personId }, meta);
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
    if (result === DENIED) throw forbidden();
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
          return denyIn(trx, actor, 'person.create', { side: input.side, role: input.role, tenant }, meta);
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
      if (result === DENIED) throw forbidden();
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
          return denyIn(trx, actor, 'person.list', filter.tenant ? { tenant: filter.tenant } : {}, meta);
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
      if (result === DENIED) throw forbidden();
      return result;
    },

    async enrollingPerson(auth) {
      const row = await control.write((trx) => enrollingIn(trx, auth));
      if (!row) throw unauthenticated();
      return toPerson(row);
    },

    async resetFactors(actor, personId, meta) {
      const enrolmentToken = newToken();
      const result = await control.write(async (trx) => {
        const m = await managedIn(trx, actor, personId);
        if (!m) return denyIn(trx, actor, 'person.factors-reset', { personId }, meta);
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
      if (result === DENIED) throw forbidden();
      return result;
    },

    async changeRole(actor, personId, role, meta) {
      if (!isRole(role)) throw invalid('role', 'not a role');
      const result = await control.write(async (trx) => {
        const m = await managedIn(trx, actor, personId);
        if (!m || !mayManageAccount(m.by, { side: m.person.side, role, tenant: m.person.tenant })) {
          return denyIn(trx, actor, 'person.role-change', { personId, role }, meta);
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
      if (result === DENIED) throw forbidden();
      return toPerson(result);
    },

    disable: (actor, personId, meta) => endAccount(actor, personId, 'disable', meta),
    remove: (actor, personId, meta) => endAccount(actor, personId, 'remove', meta),

    async setPassword(enrolmentToken, password, meta) {
      const found =
        typeof enrolmentToken === 'string' && enrolmentToken.length <= 64
          ? await control.db
              .selectFrom('people')
              .select(['email', 'name'])
              .where('enrolment_token_hash', '=', sha256(enrolmentToken))
              .executeTakeFirst()
          : undefined;
      if (!found) throw unauthenticated();
      const policy = checkPasswordPolicy(password, { email: found.email, name: found.name ?? undefined });
      if (!policy.ok) throw refusedPassword(policy.reasons);
      const hash = await hashPassword(password);
      const result = await control.write(async (trx) => {
        const row = await enrollingIn(trx, { enrolmentToken });
        if (!row) return DENIED;
        const at = now().toISOString();
        const reset = row.enrolled_at !== null;
        await trx
          .updateTable('people')
          .set({
            password_hash: hash,
            password_set_at: at,
            updated_at: at,
            ...(reset ? { enrolment_token_hash: null, enrolment_expires_at: null } : {}),
          })
          .where('id', '=', row.id)
          .execute();
        await appendAuditEvent(
          trx,
          identityEvent(
            selfActor(row),
            {
              at,
              tenant: row.tenant,
              action: reset ? 'person.password-reset' : 'person.password-set',
              outcome: 'success',
            },
            { personId: row.id },
            meta,
          ),
        );
        return reset ? { enrolmentComplete: true } : completeIfReadyIn(trx, row.id, meta);
      });
      if (result === DENIED) throw unauthenticated();
      return result;
    },

    async beginTotpEnrolment(auth, input, meta) {
      const label = checkLabel(input?.label);
      const secret = newTotpSecret();
      const result = await control.write(async (trx) => {
        const row = await enrollingIn(trx, auth);
        if (!row) return DENIED;
        const at = now().toISOString();
        const id = newId('fac');
        await trx
          .insertInto('second_factors')
          .values({
            id,
            person: row.id,
            kind: 'totp',
            label,
            secret_sealed: sealTotpSecret(factorKey, row.id, id, secret),
            last_step: null,
            credential_id: null,
            public_key: null,
            sign_count: null,
            recovery_hashes: null,
            created_at: at,
            confirmed_at: null,
            last_used_at: null,
            revoked_at: null,
          })
          .execute();
        await appendAuditEvent(
          trx,
          identityEvent(
            selfActor(row),
            { at, tenant: row.tenant, action: 'factor.totp-begin', outcome: 'success' },
            { personId: row.id, factorId: id },
            meta,
          ),
        );
        return { factorId: id, secret, uri: totpUri({ issuer, account: row.email, secret }) };
      });
      if (result === DENIED) throw unauthenticated();
      return result;
    },

    async confirmTotpEnrolment(auth, factorId, code, meta) {
      const result = await control.write(async (trx) => {
        const row = await enrollingIn(trx, auth);
        if (!row) return DENIED;
        const at = now();
        const f = await trx
          .selectFrom('second_factors')
          .selectAll()
          .where('id', '=', factorId)
          .where('person', '=', row.id)
          .where('kind', '=', 'totp')
          .where('confirmed_at', 'is', null)
          .where('revoked_at', 'is', null)
          .executeTakeFirst();
        const fresh = f !== undefined && at.getTime() - Date.parse(f.created_at) <= TOTP_CONFIRM_MS;
        const check =
          f && fresh
            ? verifyTotp({
                secret: openTotpSecret(factorKey, row.id, f.id, f.secret_sealed ?? ''),
                code,
                now: at,
                lastAcceptedStep: f.last_step,
              })
            : ({ ok: false, reason: 'invalid' } as const);
        if (!check.ok || !f) {
          await appendAuditEvent(
            trx,
            identityEvent(
              selfActor(row),
              { at: at.toISOString(), tenant: row.tenant, action: 'factor.totp-confirm', outcome: 'failure' },
              {
                personId: row.id,
                factorId,
                reason: !fresh ? 'expired' : check.ok ? 'invalid' : check.reason,
              },
              meta,
            ),
          );
          return 'refused' as const;
        }
        await trx
          .updateTable('second_factors')
          .set({ confirmed_at: at.toISOString(), last_step: check.step, last_used_at: at.toISOString() })
          .where('id', '=', f.id)
          .execute();
        await appendAuditEvent(
          trx,
          identityEvent(
            selfActor(row),
            { at: at.toISOString(), tenant: row.tenant, action: 'factor.totp-confirm', outcome: 'success' },
            { personId: row.id, factorId },
            meta,
          ),
        );
        return completeIfReadyIn(trx, row.id, meta);
      });
      if (result === DENIED || result === 'refused') throw unauthenticated();
      return result;
    },

    async registerWebauthnFactor(auth, input, meta) {
      const label = checkLabel(input.label);
      if (typeof input.credentialId !== 'string' || !/^[A-Za-z0-9_-]{16,1366}$/.test(input.credentialId)) {
        throw invalid('credentialId', 'base64url');
      }
      if (typeof input.publicKey !== 'string' || !/^[A-Za-z0-9_-]{16,4096}$/.test(input.publicKey)) {
        throw invalid('publicKey', 'base64url');
      }
      if (!Number.isSafeInteger(input.signCount) || input.signCount < 0)
        throw invalid('signCount', 'a counter');
      const result = await control.write(async (trx) => {
        const row = await enrollingIn(trx, auth);
        if (!row) return DENIED;
        const taken = await trx
          .selectFrom('second_factors')
          .select('id')
          .where('credential_id', '=', input.credentialId)
          .executeTakeFirst();
        if (taken) throw new TresorError('TRESOR_ERR_CONFLICT', 'this credential is registered already');
        const at = now().toISOString();
        const id = newId('fac');
        await trx
          .insertInto('second_factors')
          .values({
            id,
            person: row.id,
            kind: 'webauthn',
            label,
            secret_sealed: null,
            last_step: null,
            credential_id: input.credentialId,
            public_key: input.publicKey,
            sign_count: input.signCount,
            recovery_hashes: null,
            created_at: at,
            confirmed_at: at,
            last_used_at: null,
            revoked_at: null,
          })
          .execute();
        await appendAuditEvent(
          trx,
          identityEvent(
            selfActor(row),
            { at, tenant: row.tenant, action: 'factor.webauthn-register', outcome: 'success' },
            { personId: row.id, factorId: id },
            meta,
          ),
        );
        return { factorId: id, ...(await completeIfReadyIn(trx, row.id, meta)) };
      });
      if (result === DENIED) throw unauthenticated();
      return result;
    },

    async issueRecoveryCodes(auth, meta) {
      const result = await control.write(async (trx) => {
        const row = await enrollingIn(trx, auth);
        if (!row || !(await hasStrongFactorIn(trx, row.id))) return DENIED;
        const codes = await insertRecoveryCodesIn(trx, row.id);
        await appendAuditEvent(
          trx,
          identityEvent(
            selfActor(row),
            {
              at: now().toISOString(),
              tenant: row.tenant,
              action: 'factor.recovery-issue',
              outcome: 'success',
            },
            { personId: row.id },
            meta,
          ),
        );
        return { codes };
      });
      if (result === DENIED) throw unauthenticated();
      return result;
    },

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
        if (!f) return denyIn(trx, actor, 'factor.revoke', { factorId }, meta);
        const self =
          actor.kind === 'session' &&
          actor.personId === f.person &&
          actor.fresh2faAt !== null &&
          now().getTime() - Date.parse(actor.fresh2faAt) <= FRESH_2FA_MS &&
          (await resolveActorIn(trx, actor)) !== undefined;
        const m = self ? undefined : await managedIn(trx, actor, f.person);
        if (!self && !m) return denyIn(trx, actor, 'factor.revoke', { factorId }, meta);
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
      if (result === DENIED) throw forbidden();
    },

    async resetPassword(actor, personId, meta) {
      const resetToken = newToken();
      const result = await control.write(async (trx) => {
        const m = await managedIn(trx, actor, personId);
        if (!m) return denyIn(trx, actor, 'person.password-reset-begin', { personId }, meta);
        const at = now();
        const expiresAt = new Date(at.getTime() + enrolmentTtlMs).toISOString();
        // The old password stops working now; the second factors stay.
        await trx
          .updateTable('people')
          .set({
            password_hash: null,
            password_set_at: null,
            enrolment_token_hash: sha256(resetToken),
            enrolment_expires_at: expiresAt,
            updated_at: at.toISOString(),
          })
          .where('id', '=', personId)
          .execute();
        const sessionIds = await revokePersonSessionsIn(trx, personId, at.toISOString(), 'password-reset');
        await appendAuditEvent(
          trx,
          identityEvent(
            m.by.audit,
            {
              at: at.toISOString(),
              tenant: m.person.tenant,
              action: 'person.password-reset-begin',
              outcome: 'success',
            },
            { personId, sessionIds },
            meta,
          ),
        );
        return { resetToken, expiresAt };
      });
      if (result === DENIED) throw forbidden();
      return result;
    },

    async resetPasswordWithRecoveryCode(input, meta) {
      let email: string | undefined;
      try {
        email = normaliseEmail(input.email);
      } catch {
        email = undefined;
      }
      const tenant = input.side === 'customer' ? (input.tenant ?? null) : null;
      const policy = checkPasswordPolicy(input.newPassword, { email });
      if (!policy.ok) throw refusedPassword(policy.reasons);
      const hash = await hashPassword(input.newPassword);
      // The account lockout does not apply (this flow lifts it); the address throttle does.
      const addressOnly = { account: 'account:recovery-flow', address: meta.sourceAddress };
      const verdict = await throttle.check(addressOnly);
      if (!verdict.allowed) throw rateLimited(verdict.retryAfterMs);
      const result = await control.write(async (trx) => {
        const at = now();
        const again = await throttle.checkIn(trx, addressOnly);
        if (!again.allowed) return again;
        let q = trx
          .selectFrom('people')
          .selectAll()
          .where('side', '=', input.side)
          .where('email', '=', email ?? '')
          .where('removed_at', 'is', null);
        q = tenant === null ? q.where('tenant', 'is', null) : q.where('tenant', '=', tenant);
        const row = email === undefined ? undefined : await q.executeTakeFirst();
        const check =
          row && row.disabled_at === null && row.enrolled_at !== null
            ? await verifySecondFactorIn(trx, {
                personId: row.id,
                proof: { recoveryCode: input.recoveryCode },
                factorKey,
                now: at,
              })
            : ({ ok: false, reason: 'invalid' } as const);
        if (!row || !check.ok) {
          await throttle.recordAddressFailureIn(trx, meta.sourceAddress);
          await appendAuditEvent(
            trx,
            identityEvent(
              row ? selfActor(row) : { kind: 'anonymous', id: 'recovery' },
              {
                at: at.toISOString(),
                tenant: row?.tenant ?? null,
                action: 'person.password-recover',
                outcome: 'failure',
              },
              row ? { personId: row.id } : { reason: 'unknown-account' },
              meta,
            ),
          );
          return 'refused' as const;
        }
        await trx
          .updateTable('people')
          .set({
            password_hash: hash,
            password_set_at: at.toISOString(),
            enrolment_token_hash: null,
            enrolment_expires_at: null,
            updated_at: at.toISOString(),
          })
          .where('id', '=', row.id)
          .execute();
        await throttle.liftIn(trx, accountSubject(row.side, row.tenant, row.email));
        const sessionIds = await revokePersonSessionsIn(trx, row.id, at.toISOString(), 'password-recovered');
        await appendAuditEvent(
          trx,
          identityEvent(
            selfActor(row),
            {
              at: at.toISOString(),
              tenant: row.tenant,
              action: 'person.password-recover',
              outcome: 'success',
            },
            { personId: row.id, sessionIds },
            meta,
          ),
        );
        return 'done' as const;
      });
      if (result === 'refused') throw unauthenticated();
      if (result !== 'done') throw rateLimited(result.retryAfterMs);
    },

    async unlock(actor, personId, meta) {
      const result = await control.write(async (trx) => {
        const m = await managedIn(trx, actor, personId);
        if (!m) return denyIn(trx, actor, 'person.unlock', { personId }, meta);
        await throttle.liftIn(trx, accountSubject(m.person.side, m.person.tenant, m.person.email));
        await appendAuditEvent(
          trx,
          identityEvent(
            m.by.audit,
            { at: now().toISOString(), tenant: m.person.tenant, action: 'person.unlock', outcome: 'success' },
            { personId },
            meta,
          ),
        );
        return undefined;
      });
      if (result === DENIED) throw forbidden();
    },
  };
}
