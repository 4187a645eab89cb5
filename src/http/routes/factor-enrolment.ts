/**
 * Adding a second factor, the same whether an enrolling account proves itself with its enrolment
 * token (enrolment.ts) or a person with a fresh session (factors.ts). The people service audits
 * each step; a WebAuthn registration is verified by webauthn.ts, then listed as a factor by the
 * people service.
 */
import type { EnrolmentAuth } from '../../identity/account-access.ts';
import type { PeopleService } from '../../identity/people.ts';
import type { WebAuthnService } from '../../identity/webauthn.ts';
import { audited, type IdentityRequest, metaOf } from './identity-request.ts';

export interface FactorEnrolmentDeps {
  people: PeopleService;
  webauthn: WebAuthnService;
}

export function factorEnrolment({ people, webauthn }: FactorEnrolmentDeps) {
  return {
    /** The TOTP secret and otpauth URI of a new factor, shown once. */
    beginTotp(ctx: IdentityRequest, auth: EnrolmentAuth, label: string | undefined) {
      return audited(ctx, people.beginTotpEnrolment(auth, label !== undefined ? { label } : {}, metaOf(ctx)));
    },

    confirmTotp(ctx: IdentityRequest, auth: EnrolmentAuth, factorId: string, code: string) {
      return audited(ctx, people.confirmTotpEnrolment(auth, factorId, code, metaOf(ctx)));
    },

    /**
     * Registration options for the account an enrolment token or a fresh session stands for. Not
     * audited here: the route records the issue with what it knows of the caller.
     */
    async registrationOptions(auth: EnrolmentAuth) {
      const person = await people.enrollingPerson(auth);
      // webauthn.ts excludes the person's live credentials itself (no double registration).
      const options = await webauthn.beginRegistration({ id: person.id, email: person.email });
      return { person, options };
    },

    /** Verifies a registration (webauthn.ts), then lists the credential as a factor (people.ts). */
    async registerPasskey(
      ctx: IdentityRequest,
      auth: EnrolmentAuth,
      response: unknown,
      label: string | undefined,
    ) {
      const meta = metaOf(ctx);
      const person = await people.enrollingPerson(auth);
      const credential = await webauthn.finishRegistration(person.id, response);
      return audited(
        ctx,
        people.registerWebauthnFactor(
          auth,
          {
            credentialId: credential.id,
            publicKey: credential.publicKey,
            signCount: credential.counter,
            ...(label !== undefined ? { label } : {}),
          },
          meta,
        ),
      );
    },
  };
}
