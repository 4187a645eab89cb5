/**
 * The schemas of console identity over HTTP, shared by its route modules (login, current-session,
 * sessions, enrolment, factors, people): identifiers, credentials and the views of sessions,
 * people and enrolment steps. Secrets only ever travel in request and response bodies: never in a
 * URL, a header we echo, or an error.
 */
import Type from 'typebox';

export const Side = Type.Union([Type.Literal('operator'), Type.Literal('customer')]);
export const Role = Type.Union([
  Type.Literal('operator-admin'),
  Type.Literal('security-officer'),
  Type.Literal('support-agent'),
  Type.Literal('contractor'),
  Type.Literal('tenant-admin'),
  Type.Literal('tenant-member'),
]);
export const TenantId = Type.String({ pattern: '^ten_[A-Za-z0-9_-]{1,60}$', maxLength: 64 });
export const PersonId = Type.String({ pattern: '^psn_[0-9a-f]{24}$', maxLength: 28 });
export const SessionId = Type.String({ pattern: '^ses_[0-9a-f]{24}$', maxLength: 28 });
export const FactorId = Type.String({ pattern: '^fac_[0-9a-f]{24}$', maxLength: 28 });
export const Email = Type.String({
  pattern: '^\\s*[^\\s@]{1,64}@[^\\s@]{1,255}\\s*$',
  minLength: 3,
  maxLength: 330,
});
export const Password = Type.String({ minLength: 1, maxLength: 1024 });
/** Handles, enrolment and reset tokens: 32 random bytes, base64url (sessions.newToken). */
export const OneTimeToken = Type.String({ pattern: '^[A-Za-z0-9_-]{43}$', maxLength: 43 });
export const TotpCode = Type.String({ pattern: '^[0-9]{6}$', maxLength: 6 });
/** 24 base32 characters, grouped with dashes or spaces as shown (recovery-codes.ts). */
export const RecoveryCode = Type.String({ pattern: '^[A-Za-z2-7 -]{24,40}$', maxLength: 40 });
/** Free text without control characters (C0, DEL): the schema form of src/text.ts's check. */
export const NO_CONTROL_CHARACTERS = '^[^\\u0000-\\u001f\\u007f]+$';

export const Label = Type.String({ minLength: 1, maxLength: 100, pattern: NO_CONTROL_CHARACTERS });

/** A person's display name. */
export const PersonName = Type.String({ minLength: 1, maxLength: 100, pattern: NO_CONTROL_CHARACTERS });
const B64u = (max: number) => Type.String({ pattern: '^[A-Za-z0-9_-]+$', minLength: 1, maxLength: max });

/** A PublicKeyCredential as the browser's toJSON() gives it (W3C WebAuthn L3 §5.1.8, §5.1.9). */
export const WebAuthnResponse = Type.Object({
  id: B64u(1366),
  rawId: B64u(1366),
  type: Type.Literal('public-key'),
  response: Type.Object({
    clientDataJSON: B64u(8192),
    attestationObject: Type.Optional(B64u(65_536)),
    authenticatorData: Type.Optional(B64u(8192)),
    signature: Type.Optional(B64u(2048)),
    userHandle: Type.Optional(B64u(128)),
    publicKey: Type.Optional(B64u(8192)),
    publicKeyAlgorithm: Type.Optional(Type.Integer({ minimum: -65_536, maximum: 65_535 })),
    transports: Type.Optional(Type.Array(Type.String({ maxLength: 32 }), { maxItems: 8 })),
  }),
  authenticatorAttachment: Type.Optional(
    Type.Union([Type.Literal('platform'), Type.Literal('cross-platform')]),
  ),
  clientExtensionResults: Type.Object({}, { additionalProperties: true, maxProperties: 16 }),
});

/** WebAuthn options go to the browser as the library made them (every member kept). */
export const WebAuthnOptions = Type.Object(
  { challenge: Type.String(), timeout: Type.Optional(Type.Number()) },
  { additionalProperties: true, description: 'PublicKeyCredential{Creation,Request}OptionsJSON' },
);

export const SecondFactor = Type.Union([
  Type.Object({ totp: TotpCode }),
  Type.Object({ recoveryCode: RecoveryCode }),
]);

export const SessionView = Type.Object({
  id: Type.String(),
  personId: Type.String(),
  side: Side,
  role: Role,
  tenant: Type.Union([Type.String(), Type.Null()]),
  factors: Type.Array(Type.String()),
  fresh2faAt: Type.Union([Type.String(), Type.Null()]),
  idleExpiresAt: Type.String(),
  absoluteExpiresAt: Type.String(),
});

export const NewSessionBody = Type.Object({
  csrfToken: Type.String({ description: 'Send it in X-CSRF-Token on every non-GET request of this session' }),
  session: SessionView,
});

export const Person = Type.Object({
  id: Type.String(),
  side: Side,
  role: Role,
  tenant: Type.Union([Type.String(), Type.Null()]),
  email: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  enrolledAt: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  disabledAt: Type.Union([Type.String(), Type.Null()]),
  removedAt: Type.Union([Type.String(), Type.Null()]),
});

export const EnrolmentStep = Type.Object({
  enrolmentComplete: Type.Boolean(),
  recoveryCodes: Type.Optional(
    Type.Array(Type.String(), { description: 'Shown once, when enrolment completes; stored only hashed' }),
  ),
});

export const TotpBegin = Type.Object({
  factorId: Type.String(),
  secret: Type.String({ description: 'Base32 TOTP secret (RFC 6238), shown once' }),
  uri: Type.String({ description: 'otpauth:// URI for an authenticator app, shown once' }),
});

export const PersonParams = Type.Object({ id: PersonId });
