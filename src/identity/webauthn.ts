/**
 * WebAuthn (passkeys, security keys) as a second factor for console accounts (W3C Web Authentication
 * Level 3). @simplewebauthn/server builds the options and verifies every response — attestation,
 * client data, authenticator data and the signature; Tresor verifies no signature of its own.
 * What Tresor owns is the state around the ceremonies, and that is where the attacks are:
 *
 * - Challenges: 32 bytes from the CSPRNG (§13.4.3 asks for at least 16), stored server-side bound to
 *   the person and the ceremony kind, deleted at first use whether the response then passes or not,
 *   and expiring after `challengeTtlMs`. A replayed response finds no challenge (or a newer one it
 *   does not carry) and is refused.
 * - Origin and RP ID: the response's client data must name one of `origins` exactly, and its
 *   authenticator data must carry SHA-256 of `rpId` (§7.1 and §7.2, the client-data and rpIdHash steps).
 * - Signature counter: when either counter is non-zero, a presented counter that does not exceed the
 *   stored one means the credential may have been cloned (§6.1.1); the response is refused. Counters advance by compare-and-set, so
 *   two racing sign-ins cannot both move one counter.
 * - User verification is 'preferred', not 'required': this factor comes after a password, so the
 *   authenticator only has to prove possession (password + single-factor cryptographic device is AAL2,
 *   NIST SP 800-63B rev. 3 §4.2.1, §5.1.7). Requiring UV would turn away security keys without a PIN and add
 *   nothing the password does not already give. User presence is always required (§7.1, §7.2).
 *   Whether UV happened is reported back and audited.
 * - Attestation 'none': any authenticator model is accepted, so no attestation roots to maintain.
 *
 * Every refusal throws the same WebAuthnRefusedError ("WebAuthn response refused"), so a client learns
 * nothing about which check failed; the specific `reason` goes only to the audit event, written
 * before the error is thrown.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  type AuthenticationResponseJSON,
  generateAuthenticationOptions,
  generateRegistrationOptions,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import {
  COSEALG,
  decodeAttestationObject,
  decodeClientDataJSON,
  parseAuthenticatorData,
} from '@simplewebauthn/server/helpers';
import type { ActorKind, AuditEvent } from '../audit/event.ts';
import { markAudited } from '../audit/refusal.ts';
import { TresorError } from '../errors.ts';
import type { CeremonyKind, StoredChallenge, StoredCredential, WebAuthnStore } from './webauthn-store.ts';

/** §13.4.3: "challenges SHOULD therefore be at least 16 bytes long"; we take 32. */
export const WEBAUTHN_CHALLENGE_BYTES = 32;
export const DEFAULT_CHALLENGE_TTL_MS = 120_000;
/**
 * The COSE algorithms offered at registration and accepted back (§5.4 pubKeyCredParams): EdDSA,
 * ES256, RS256, stated here rather than left to the library's default, which puts ML-DSA-44 first
 * wherever the runtime's Web Crypto has it (Node 24, experimental there). The kind of passkey a
 * person gets would otherwise depend on the server's Node version, and an ML-DSA-44 assertion's
 * signature (2,420 bytes) does not fit the HTTP schema's WebAuthnResponse.
 */
const WEBAUTHN_ALGORITHMS: readonly COSEALG[] = [COSEALG.EdDSA, COSEALG.ES256, COSEALG.RS256];
/** The audit actor id of a ceremony that stands for no known person. */
const ANONYMOUS_SUBJECT = 'login';

/** Why a response was refused: for the audit log only, never for the client. */
export type WebAuthnRefusalReason =
  | 'malformed'
  | 'challenge-unknown'
  | 'challenge-expired'
  | 'challenge-mismatch'
  | 'ceremony-type'
  | 'origin'
  | 'rp-id'
  | 'user-presence'
  | 'no-credentials'
  | 'credential-unknown'
  | 'credential-revoked'
  | 'credential-exists'
  | 'counter-regression'
  | 'credential-changed'
  | 'verification-failed';

export const WEBAUTHN_REFUSED_MESSAGE = 'WebAuthn response refused';

/** The one error every refused ceremony throws; `reason` is not part of the message or details. */
export class WebAuthnRefusedError extends TresorError {
  readonly reason: WebAuthnRefusalReason;

  constructor(reason: WebAuthnRefusalReason) {
    super('TRESOR_ERR_WEBAUTHN_REFUSED', WEBAUTHN_REFUSED_MESSAGE);
    this.reason = reason;
  }
}

export interface WebAuthnServiceOptions {
  /** The RP ID: the site's registrable domain or a suffix of it (§4, "RP ID"), e.g. `tresor.example`. */
  rpId: string;
  /** Shown by the authenticator. */
  rpName: string;
  /** Every origin the console is served from, exactly as browsers write them (`https://host[:port]`). */
  origins: string[];
  store: WebAuthnStore;
  now?: () => Date;
  challengeTtlMs?: number;
  /** The actor kind of the people this service serves, for audit events (when personOf is not given). */
  actorKind?: ActorKind;
  /** Who a person is for audit events: their actor kind and tenant (customer accounts). */
  personOf?: (personId: string) => Promise<{ kind: ActorKind; tenant: string | null } | undefined>;
}

export interface WebAuthnPerson {
  id: string;
  email: string;
  /** Credentials the person already has (any factor store), so the authenticator does not register twice. */
  existingCredentialIds?: readonly string[];
}

export interface WebAuthnCredentialInfo {
  id: string;
  counter: number;
  transports: string[];
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface WebAuthnSignIn {
  credentialId: string;
  counter: number;
  userVerified: boolean;
}

export interface WebAuthnService {
  beginRegistration(person: WebAuthnPerson): Promise<PublicKeyCredentialCreationOptionsJSON>;
  /** The new credential, with its COSE public key (base64url) for the factor list (people.ts). */
  finishRegistration(
    personId: string,
    response: unknown,
  ): Promise<WebAuthnCredentialInfo & { publicKey: string }>;
  beginAuthentication(personId: string): Promise<PublicKeyCredentialRequestOptionsJSON>;
  finishAuthentication(personId: string, response: unknown): Promise<WebAuthnSignIn>;
  /**
   * A sign-in whose challenge is bound to a ceremony (`ceremony`, e.g. a pending login) rather than
   * to a person, with no allowCredentials: the options are the same whoever the ceremony stands for,
   * so they tell nothing of an account or its credentials (a login's password step stays secret;
   * discoverable credentials, §6.2.2). `finishCeremonyAuthentication` then needs the credential to
   * be `personId`'s — null (the ceremony stands for nobody) is refused like a stranger's credential.
   */
  beginCeremonyAuthentication(ceremony: string): Promise<PublicKeyCredentialRequestOptionsJSON>;
  finishCeremonyAuthentication(
    ceremony: string,
    personId: string | null,
    response: unknown,
  ): Promise<WebAuthnSignIn>;
  /** Revokes one of the person's live credentials; NOT_FOUND if there is none with that ID. */
  revokeCredential(personId: string, credentialId: string): Promise<void>;
  listCredentials(personId: string): Promise<WebAuthnCredentialInfo[]>;
}

const ACTIONS: Record<CeremonyKind, string> = {
  registration: 'webauthn.register',
  authentication: 'webauthn.authenticate',
};

export function createWebAuthnService(options: WebAuthnServiceOptions): WebAuthnService {
  const { rpId, rpName, store } = options;
  const origins = [...options.origins];
  const now = options.now ?? (() => new Date());
  const ttl = options.challengeTtlMs ?? DEFAULT_CHALLENGE_TTL_MS;
  const actorKind = options.actorKind ?? 'staff';
  if (origins.length === 0) throw new RangeError('webauthn: at least one origin');
  if (!Number.isSafeInteger(ttl) || ttl <= 0) throw new RangeError('webauthn: challengeTtlMs > 0');
  const rpIdHash = createHash('sha256').update(rpId, 'utf8').digest();

  async function audit(
    personId: string,
    action: string,
    outcome: AuditEvent['outcome'],
    target: Record<string, unknown>,
    at: Date,
  ): Promise<AuditEvent> {
    const who = await options.personOf?.(personId).catch(() => undefined);
    return {
      at: at.toISOString(),
      actor: { kind: who?.kind ?? actorKind, id: personId },
      tenant: who?.tenant ?? null,
      action,
      target,
      outcome,
    };
  }

  /** Audits the refusal, then throws the uniform error. */
  async function refuse(
    personId: string,
    kind: CeremonyKind,
    reason: WebAuthnRefusalReason,
    credentialId?: string,
  ): Promise<never> {
    const target: Record<string, unknown> = { reason };
    if (credentialId !== undefined) target.credentialId = credentialId;
    await store.recordRefusal(await audit(personId, ACTIONS[kind], 'denied', target, now()));
    throw markAudited(new WebAuthnRefusedError(reason));
  }

  async function issueChallenge(personId: string, kind: CeremonyKind): Promise<Uint8Array<ArrayBuffer>> {
    const bytes = new Uint8Array(randomBytes(WEBAUTHN_CHALLENGE_BYTES));
    await store.putChallenge({
      person: personId,
      kind,
      challenge: Buffer.from(bytes).toString('base64url'),
      expiresAt: new Date(now().getTime() + ttl).toISOString(),
    });
    return bytes;
  }

  /**
   * The checks before the library's: the challenge is consumed first, whatever follows. The library
   * repeats the client-data checks; ours only name the reason.
   */
  async function checkCeremony(
    personId: string,
    kind: CeremonyKind,
    clientDataJSON: string,
    authData: Uint8Array<ArrayBuffer>,
    challengeKey: string = personId,
  ): Promise<StoredChallenge> {
    const challenge = await store.takeChallenge(challengeKey, kind);
    if (!challenge) return refuse(personId, kind, 'challenge-unknown');
    if (Date.parse(challenge.expiresAt) <= now().getTime())
      return refuse(personId, kind, 'challenge-expired');
    let clientData: ReturnType<typeof decodeClientDataJSON>;
    let parsed: ReturnType<typeof parseAuthenticatorData>;
    try {
      clientData = decodeClientDataJSON(clientDataJSON);
      parsed = parseAuthenticatorData(authData);
    } catch {
      return refuse(personId, kind, 'malformed');
    }
    const expectedType = kind === 'registration' ? 'webauthn.create' : 'webauthn.get';
    if (clientData.type !== expectedType) return refuse(personId, kind, 'ceremony-type');
    if (clientData.challenge !== challenge.challenge) return refuse(personId, kind, 'challenge-mismatch');
    if (!origins.includes(clientData.origin)) return refuse(personId, kind, 'origin');
    if (parsed.rpIdHash.length !== rpIdHash.length || !timingSafeEqual(parsed.rpIdHash, rpIdHash)) {
      return refuse(personId, kind, 'rp-id');
    }
    if (!parsed.flags.up) return refuse(personId, kind, 'user-presence');
    return challenge;
  }

  /**
   * Verifies a sign-in against the challenge stored under `challengeKey`; the credential must be
   * `personId`'s (null: nobody's, refused as credential-unknown once the challenge is spent).
   */
  async function finishSignIn(
    challengeKey: string,
    expectedPerson: string | null,
    input: unknown,
  ): Promise<WebAuthnSignIn> {
    // Audit events name the person, or the ceremony's anonymous subject.
    const personId = expectedPerson ?? ANONYMOUS_SUBJECT;
    const response = asAuthenticationResponse(input);
    if (!response) {
      await store.takeChallenge(challengeKey, 'authentication');
      return refuse(personId, 'authentication', 'malformed');
    }
    const authData = new Uint8Array(Buffer.from(response.response.authenticatorData, 'base64url'));
    const challenge = await checkCeremony(
      personId,
      'authentication',
      response.response.clientDataJSON,
      authData,
      challengeKey,
    );
    const credential = await store.findCredential(response.id);
    // §7.2: the credential must be one of this person's, and a user handle, if any, must be theirs.
    const handle = response.response.userHandle;
    if (
      !credential ||
      expectedPerson === null ||
      credential.person !== personId ||
      (handle !== undefined && handle !== Buffer.from(userHandleOf(personId)).toString('base64url'))
    ) {
      return refuse(personId, 'authentication', 'credential-unknown', response.id);
    }
    if (credential.revokedAt !== null)
      return refuse(personId, 'authentication', 'credential-revoked', credential.id);
    let verified: Awaited<ReturnType<typeof verifyAuthenticationResponse>> | undefined;
    try {
      verified = await verifyAuthenticationResponse({
        response,
        expectedChallenge: challenge.challenge,
        expectedOrigin: origins,
        expectedRPID: rpId,
        credential: {
          id: credential.id,
          publicKey: new Uint8Array(credential.publicKey),
          counter: credential.counter,
          transports: credential.transports,
        },
        requireUserVerification: false,
      });
    } catch {
      verified = undefined;
    }
    const presented = parseAuthenticatorData(authData).counter;
    // The library refuses a regressed counter too, with an error we do not parse: name it here.
    if (counterRegressed(presented, credential.counter)) {
      return refuse(personId, 'authentication', 'counter-regression', credential.id);
    }
    if (!verified?.verified) return refuse(personId, 'authentication', 'verification-failed', credential.id);
    const { newCounter, userVerified } = verified.authenticationInfo;
    const at = now();
    const moved = await store.recordUse(
      {
        id: credential.id,
        person: personId,
        previousCounter: credential.counter,
        counter: newCounter,
        at: at.toISOString(),
      },
      await audit(
        personId,
        ACTIONS.authentication,
        'success',
        { credentialId: credential.id, counter: newCounter, userVerified },
        at,
      ),
    );
    // Revoked, or used by a concurrent sign-in, since it was read.
    if (!moved) return refuse(personId, 'authentication', 'credential-changed', credential.id);
    return { credentialId: credential.id, counter: newCounter, userVerified };
  }

  return {
    async beginRegistration(person) {
      const active = (await store.listCredentials(person.id)).filter((c) => c.revokedAt === null);
      const exclude = new Map<string, string[]>();
      for (const c of active) exclude.set(c.id, c.transports);
      for (const id of person.existingCredentialIds ?? []) if (!exclude.has(id)) exclude.set(id, []);
      const challenge = await issueChallenge(person.id, 'registration');
      return generateRegistrationOptions({
        rpName,
        rpID: rpId,
        userName: person.email,
        userDisplayName: person.email,
        // §14.6.1: the user handle must not identify the person outside Tresor; the id is opaque.
        userID: userHandleOf(person.id),
        challenge,
        timeout: ttl,
        attestationType: 'none',
        excludeCredentials: [...exclude].map(([id, transports]) => ({ id, transports })),
        authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
        supportedAlgorithmIDs: [...WEBAUTHN_ALGORITHMS],
      });
    },

    async finishRegistration(personId, input) {
      const response = asRegistrationResponse(input);
      if (!response) {
        await store.takeChallenge(personId, 'registration');
        return refuse(personId, 'registration', 'malformed');
      }
      let authData: Uint8Array<ArrayBuffer>;
      try {
        authData = decodeAttestationObject(Buffer.from(response.response.attestationObject, 'base64url')).get(
          'authData',
        );
      } catch {
        authData = new Uint8Array();
      }
      const challenge = await checkCeremony(
        personId,
        'registration',
        response.response.clientDataJSON,
        authData,
      );
      let info: Awaited<ReturnType<typeof verifyRegistrationResponse>>['registrationInfo'];
      try {
        const result = await verifyRegistrationResponse({
          response,
          expectedChallenge: challenge.challenge,
          expectedOrigin: origins,
          expectedRPID: rpId,
          requireUserPresence: true,
          requireUserVerification: false,
          supportedAlgorithmIDs: [...WEBAUTHN_ALGORITHMS],
        });
        info = result.verified ? result.registrationInfo : undefined;
      } catch {
        info = undefined;
      }
      if (!info) return refuse(personId, 'registration', 'verification-failed', response.id);
      const at = now().toISOString();
      const credential: StoredCredential = {
        id: info.credential.id,
        person: personId,
        publicKey: info.credential.publicKey,
        counter: info.credential.counter,
        transports: [...(info.credential.transports ?? [])],
        createdAt: at,
        lastUsedAt: null,
        revokedAt: null,
      };
      const added = await store.addCredential(
        credential,
        await audit(
          personId,
          ACTIONS.registration,
          'success',
          { credentialId: credential.id, userVerified: info.userVerified },
          now(),
        ),
      );
      if (!added) return refuse(personId, 'registration', 'credential-exists', credential.id);
      return {
        ...publicInfo(credential),
        publicKey: Buffer.from(credential.publicKey).toString('base64url'),
      };
    },

    async beginAuthentication(personId) {
      const active = (await store.listCredentials(personId)).filter((c) => c.revokedAt === null);
      if (active.length === 0) return refuse(personId, 'authentication', 'no-credentials');
      const challenge = await issueChallenge(personId, 'authentication');
      return generateAuthenticationOptions({
        rpID: rpId,
        allowCredentials: active.map((c) => ({ id: c.id, transports: c.transports })),
        challenge,
        timeout: ttl,
        userVerification: 'preferred',
      });
    },

    finishAuthentication: (personId, input) => finishSignIn(personId, personId, input),

    async beginCeremonyAuthentication(ceremony) {
      const challenge = await issueChallenge(ceremony, 'authentication');
      return generateAuthenticationOptions({
        rpID: rpId,
        allowCredentials: [],
        challenge,
        timeout: ttl,
        userVerification: 'preferred',
      });
    },

    finishCeremonyAuthentication: (ceremony, personId, input) => finishSignIn(ceremony, personId, input),

    async revokeCredential(personId, credentialId) {
      const at = now();
      const revoked = await store.revokeCredential(
        personId,
        credentialId,
        at.toISOString(),
        await audit(personId, 'webauthn.revoke', 'success', { credentialId }, at),
      );
      if (!revoked) throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no such WebAuthn credential');
    },

    async listCredentials(personId) {
      return (await store.listCredentials(personId)).map(publicInfo);
    },
  };
}

/**
 * §6.1.1: if either counter is non-zero, the new one must be greater than the stored one; otherwise
 * the authenticator may have been cloned. Two zeros mean an authenticator without a counter.
 */
export function counterRegressed(presented: number, stored: number): boolean {
  return (presented !== 0 || stored !== 0) && presented <= stored;
}

function userHandleOf(personId: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(personId, 'utf8'));
}

function publicInfo(c: StoredCredential): WebAuthnCredentialInfo {
  return {
    id: c.id,
    counter: c.counter,
    transports: [...c.transports],
    createdAt: c.createdAt,
    lastUsedAt: c.lastUsedAt,
    revokedAt: c.revokedAt,
  };
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

function isBase64url(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && BASE64URL.test(value);
}

function isCredentialShell(
  input: unknown,
): input is { id: string; rawId: string; type: string; response: object } {
  if (typeof input !== 'object' || input === null) return false;
  const r = input as Record<string, unknown>;
  return (
    isBase64url(r.id) &&
    r.rawId === r.id &&
    r.type === 'public-key' &&
    typeof r.response === 'object' &&
    r.response !== null
  );
}

function asRegistrationResponse(input: unknown): RegistrationResponseJSON | undefined {
  if (!isCredentialShell(input)) return undefined;
  const r = input.response as Record<string, unknown>;
  if (!isBase64url(r.clientDataJSON) || !isBase64url(r.attestationObject)) return undefined;
  return input as unknown as RegistrationResponseJSON;
}

function asAuthenticationResponse(input: unknown): AuthenticationResponseJSON | undefined {
  if (!isCredentialShell(input)) return undefined;
  const r = input.response as Record<string, unknown>;
  if (!isBase64url(r.clientDataJSON) || !isBase64url(r.authenticatorData) || !isBase64url(r.signature)) {
    return undefined;
  }
  if (r.userHandle !== undefined && typeof r.userHandle !== 'string') return undefined;
  return input as unknown as AuthenticationResponseJSON;
}
