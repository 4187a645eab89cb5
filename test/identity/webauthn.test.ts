/**
 * WebAuthn attacks, each with responses a real authenticator made: once, before the tests, Chromium's
 * CDP virtual authenticator registers a credential and signs three assertions on a page at
 * http://localhost:<port>. Each test then replays those captured responses against a fresh control
 * store, with the captured challenges seeded where the test needs them and the clock pinned.
 * Every refusal must be the one uniform error, with its reason only in the audit event.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TresorError } from '../../src/errors.ts';
import { toProblem } from '../../src/http/problem.ts';
import {
  counterRegressed,
  createWebAuthnService,
  WEBAUTHN_CHALLENGE_BYTES,
  WEBAUTHN_REFUSED_MESSAGE,
  type WebAuthnRefusalReason,
  WebAuthnRefusedError,
  type WebAuthnService,
  type WebAuthnServiceOptions,
} from '../../src/identity/webauthn.ts';
import {
  type CeremonyKind,
  createSqliteWebAuthnStore,
  type WebAuthnStore,
  type WithWebAuthn,
} from '../../src/identity/webauthn-store.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/store.ts';
import {
  createCredentialInPage,
  getAssertionInPage,
  launchChromium,
  openAuthenticatorPage,
  startWebAuthnPage,
} from '../helpers/webauthn-page.ts';

type DB = ControlDB & WithWebAuthn;

const PERSON = { id: 'opr_0123456789abcdef01234567', email: 'ada@tresor.example' };
const OTHER = { id: 'opr_fedcba9876543210fedcba98', email: 'bob@tresor.example' };
const NOW = new Date('2030-06-01T12:00:00.000Z');
const TTL_MS = 120_000;

interface Captured {
  origin: string;
  registration: { challenge: string; response: unknown };
  /** Three assertions of the same credential, counters increasing. */
  assertions: Array<{ challenge: string; response: unknown }>;
}

let dir: string;
let captured: Captured;

async function openStore(name: string): Promise<SqliteStore<DB>> {
  return openSqliteStore<DB>(join(dir, `${name}.db`), controlStoreMigrations);
}

/** Drives Chromium once: one registration and three assertions, none of them verified yet. */
async function capture(): Promise<Captured> {
  const store = await openStore('capture');
  let service: WebAuthnService | undefined;
  const server = await startWebAuthnPage(() => service as WebAuthnService, PERSON);
  const browser = await launchChromium();
  try {
    service = createWebAuthnService({
      rpId: 'localhost',
      rpName: 'Tresor',
      origins: [server.origin],
      store: createSqliteWebAuthnStore(store),
    });
    const auth = await openAuthenticatorPage(browser, server.origin);
    const registrationOptions = await service.beginRegistration(PERSON);
    const registration = {
      challenge: registrationOptions.challenge,
      response: await createCredentialInPage(auth.page, registrationOptions),
    };
    await service.finishRegistration(PERSON.id, registration.response);
    const assertions: Captured['assertions'] = [];
    for (let i = 0; i < 3; i++) {
      const options = await service.beginAuthentication(PERSON.id);
      assertions.push({
        challenge: options.challenge,
        response: await getAssertionInPage(auth.page, options),
      });
    }
    return { origin: server.origin, registration, assertions };
  } finally {
    await browser.close();
    await server.close();
    await store.close();
  }
}

interface Rig {
  store: SqliteStore<DB>;
  webauthnStore: WebAuthnStore;
  service: WebAuthnService;
  clock: { now: Date };
  /** A service over the same store with other options (another origin list, RP ID, clock). */
  serviceWith(overrides: Partial<WebAuthnServiceOptions>): WebAuthnService;
  seedChallenge(person: string, kind: CeremonyKind, challenge: string): Promise<void>;
  register(): Promise<string>;
  assertion(i: number): unknown;
  seedAssertion(i: number, person?: string): Promise<void>;
  denials(): Promise<Array<{ action: string; reason: unknown; credentialId: unknown }>>;
}

let rigs = 0;
const opened: SqliteStore<DB>[] = [];

async function rig(): Promise<Rig> {
  const store = await openStore(`rig-${++rigs}`);
  opened.push(store);
  const webauthnStore = createSqliteWebAuthnStore(store);
  const clock = { now: NOW };
  const base: WebAuthnServiceOptions = {
    rpId: 'localhost',
    rpName: 'Tresor',
    origins: [captured.origin],
    store: webauthnStore,
    now: () => clock.now,
    challengeTtlMs: TTL_MS,
  };
  const service = createWebAuthnService(base);
  const seedChallenge = (person: string, kind: CeremonyKind, challenge: string) =>
    webauthnStore.putChallenge({
      person,
      kind,
      challenge,
      expiresAt: new Date(clock.now.getTime() + TTL_MS).toISOString(),
    });
  const assertion = (i: number) => captured.assertions[i]?.response;
  return {
    store,
    webauthnStore,
    service,
    clock,
    serviceWith: (overrides) => createWebAuthnService({ ...base, ...overrides }),
    seedChallenge,
    async register() {
      await seedChallenge(PERSON.id, 'registration', captured.registration.challenge);
      return (await service.finishRegistration(PERSON.id, captured.registration.response)).id;
    },
    assertion,
    seedAssertion: (i, person = PERSON.id) =>
      seedChallenge(person, 'authentication', captured.assertions[i]?.challenge ?? ''),
    async denials() {
      const rows = await store.db.selectFrom('audit_events').select('event').orderBy('seq').execute();
      return rows
        .map((r) => JSON.parse(r.event))
        .filter((e) => e.outcome === 'denied')
        .map((e) => ({ action: e.action, reason: e.target?.reason, credentialId: e.target?.credentialId }));
    },
  };
}

/** The uniform refusal: one code, one message, no details; the reason only on the error and in the audit. */
async function assertRefused(
  r: Rig,
  attempt: Promise<unknown>,
  reason: WebAuthnRefusalReason,
): Promise<void> {
  const before = (await r.denials()).length;
  const error = await attempt.then(
    () => assert.fail(`expected a refusal (${reason})`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof WebAuthnRefusedError, String(error));
  assert.ok(error instanceof TresorError);
  assert.equal(error.code, 'TRESOR_ERR_WEBAUTHN_REFUSED');
  assert.equal(error.status, 401);
  assert.equal(error.message, WEBAUTHN_REFUSED_MESSAGE);
  assert.equal(error.details, undefined);
  assert.equal(error.reason, reason);
  assert.ok(!JSON.stringify(toProblem(error)).includes(reason), 'the problem names no reason');
  const denials = await r.denials();
  assert.equal(denials.length, before + 1, 'one audit event per refusal');
  assert.equal(denials.at(-1)?.reason, reason);
}

async function counterOf(r: Rig, id: string): Promise<number | undefined> {
  return (await r.service.listCredentials(PERSON.id)).find((c) => c.id === id)?.counter;
}

// One suite, so a capture that fails (Chromium missing) fails every test by name, not just the file.
describe('WebAuthn', () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-webauthn-'));
    captured = await capture();
  });

  after(async () => {
    for (const store of opened) await store.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe('WebAuthn ceremonies with captured Chromium responses', () => {
    it('accepts the registration and the sign-ins, each counter above the last, and audits them', async () => {
      const r = await rig();
      const id = await r.register();
      // The registration's own counter (Chromium's virtual authenticator starts at 1).
      let last = (await counterOf(r, id)) ?? Number.NaN;
      assert.ok(Number.isSafeInteger(last));
      for (const i of [0, 1, 2]) {
        await r.seedAssertion(i);
        const signIn = await r.service.finishAuthentication(PERSON.id, r.assertion(i));
        assert.equal(signIn.credentialId, id);
        assert.ok(signIn.counter > last);
        last = signIn.counter;
        assert.equal(await counterOf(r, id), signIn.counter);
      }
      const events = await r.store.db.selectFrom('audit_events').select(['action', 'event']).execute();
      assert.deepEqual(
        events.map((e) => [e.action, JSON.parse(e.event).outcome]),
        [
          ['webauthn.register', 'success'],
          ['webauthn.authenticate', 'success'],
          ['webauthn.authenticate', 'success'],
          ['webauthn.authenticate', 'success'],
        ],
      );
    });

    it('names a customer as a customer of their tenant in its audit events (personOf), staff by default', async () => {
      const r = await rig();
      const customer = r.serviceWith({
        personOf: async (id) => (id === PERSON.id ? { kind: 'customer', tenant: 'ten_alpha' } : undefined),
      });
      await r.seedChallenge(PERSON.id, 'registration', captured.registration.challenge);
      await customer.finishRegistration(PERSON.id, captured.registration.response);
      await r.seedAssertion(0);
      await customer
        .finishAuthentication(PERSON.id, { ...(r.assertion(0) as object), id: 'AAAA', rawId: 'AAAA' })
        .catch(() => undefined);
      const events = (
        await r.store.db.selectFrom('audit_events').select('event').orderBy('seq').execute()
      ).map(
        (e) => JSON.parse(e.event) as { actor: { kind: string }; tenant: string | null; outcome: string },
      );
      assert.ok(events.length >= 2);
      for (const e of events) {
        assert.equal(e.actor.kind, 'customer');
        assert.equal(e.tenant, 'ten_alpha');
      }
      assert.ok(
        events.some((e) => e.outcome === 'denied'),
        'the refusal too',
      );
    });

    it('refuses a registration and a sign-in from an origin it does not serve', async () => {
      const r = await rig();
      const elsewhere = r.serviceWith({ origins: ['https://console.tresor.example'] });
      await r.seedChallenge(PERSON.id, 'registration', captured.registration.challenge);
      await assertRefused(
        r,
        elsewhere.finishRegistration(PERSON.id, captured.registration.response),
        'origin',
      );
      const id = await r.register();
      const registered = await counterOf(r, id);
      await r.seedAssertion(0);
      await assertRefused(r, elsewhere.finishAuthentication(PERSON.id, r.assertion(0)), 'origin');
      assert.equal(await counterOf(r, id), registered);
    });

    it('refuses a registration and a sign-in made for another RP ID', async () => {
      const r = await rig();
      const otherRp = r.serviceWith({ rpId: 'tresor.example' });
      await r.seedChallenge(PERSON.id, 'registration', captured.registration.challenge);
      await assertRefused(r, otherRp.finishRegistration(PERSON.id, captured.registration.response), 'rp-id');
      const id = await r.register();
      const registered = await counterOf(r, id);
      await r.seedAssertion(0);
      await assertRefused(r, otherRp.finishAuthentication(PERSON.id, r.assertion(0)), 'rp-id');
      assert.equal(await counterOf(r, id), registered);
    });

    it('refuses the same sign-in response submitted twice', async () => {
      const r = await rig();
      const id = await r.register();
      await r.seedAssertion(0);
      const first = await r.service.finishAuthentication(PERSON.id, r.assertion(0));
      await assertRefused(r, r.service.finishAuthentication(PERSON.id, r.assertion(0)), 'challenge-unknown');
      assert.equal(await counterOf(r, id), first.counter);
    });

    it('refuses the same registration response submitted twice, and a known credential ID', async () => {
      const r = await rig();
      await r.register();
      await assertRefused(
        r,
        r.service.finishRegistration(PERSON.id, captured.registration.response),
        'challenge-unknown',
      );
      await r.seedChallenge(PERSON.id, 'registration', captured.registration.challenge);
      await assertRefused(
        r,
        r.service.finishRegistration(PERSON.id, captured.registration.response),
        'credential-exists',
      );
      assert.equal((await r.service.listCredentials(PERSON.id)).length, 1);
    });

    it('refuses an old response against a newer challenge, and that challenge is then spent', async () => {
      const r = await rig();
      await r.register();
      await r.seedAssertion(1);
      await assertRefused(r, r.service.finishAuthentication(PERSON.id, r.assertion(0)), 'challenge-mismatch');
      await assertRefused(r, r.service.finishAuthentication(PERSON.id, r.assertion(1)), 'challenge-unknown');
    });

    it('refuses a counter that does not exceed the stored one (a cloned authenticator, §6.1.1)', async () => {
      const r = await rig();
      const id = await r.register();
      await r.store.write((trx) =>
        trx.updateTable('webauthn_credentials').set({ counter: 1000 }).where('id', '=', id).execute(),
      );
      await r.seedAssertion(0);
      await assertRefused(r, r.service.finishAuthentication(PERSON.id, r.assertion(0)), 'counter-regression');
      assert.equal(await counterOf(r, id), 1000);
    });

    it('refuses an older assertion after a newer one was accepted (counter went back)', async () => {
      const r = await rig();
      const id = await r.register();
      await r.seedAssertion(2);
      const newer = await r.service.finishAuthentication(PERSON.id, r.assertion(2));
      await r.seedAssertion(1);
      await assertRefused(r, r.service.finishAuthentication(PERSON.id, r.assertion(1)), 'counter-regression');
      assert.equal(await counterOf(r, id), newer.counter);
    });

    it('refuses a response once its challenge has expired (service TTL, pinned clock)', async () => {
      const r = await rig();
      await r.register();
      for (const [i, late, outcome] of [
        [0, TTL_MS - 1, 'accepted'],
        [1, TTL_MS, 'refused'],
      ] as const) {
        r.clock.now = NOW;
        await r.service.beginAuthentication(PERSON.id);
        // Keep the expiry the service set; swap in the challenge the captured response signed.
        await r.store.write((trx) =>
          trx
            .updateTable('webauthn_challenges')
            .set({ challenge: captured.assertions[i]?.challenge ?? '' })
            .where('person', '=', PERSON.id)
            .execute(),
        );
        r.clock.now = new Date(NOW.getTime() + late);
        if (outcome === 'accepted') await r.service.finishAuthentication(PERSON.id, r.assertion(i));
        else
          await assertRefused(
            r,
            r.service.finishAuthentication(PERSON.id, r.assertion(i)),
            'challenge-expired',
          );
      }
    });

    it('refuses a revoked credential', async () => {
      const r = await rig();
      const id = await r.register();
      await r.service.revokeCredential(PERSON.id, id);
      await r.seedAssertion(0);
      await assertRefused(r, r.service.finishAuthentication(PERSON.id, r.assertion(0)), 'credential-revoked');
      await assertRefused(r, r.service.beginAuthentication(PERSON.id), 'no-credentials');
      const [listed] = await r.service.listCredentials(PERSON.id);
      assert.equal(listed?.revokedAt, NOW.toISOString());
      const revoke = await r.store.db
        .selectFrom('audit_events')
        .select('event')
        .where('action', '=', 'webauthn.revoke')
        .execute();
      assert.equal(revoke.length, 1);
    });

    it('revokes only a live credential of the same person', async () => {
      const r = await rig();
      const id = await r.register();
      await assert.rejects(r.service.revokeCredential(OTHER.id, id), { code: 'TRESOR_ERR_NOT_FOUND' });
      await assert.rejects(r.service.revokeCredential(PERSON.id, 'nope'), { code: 'TRESOR_ERR_NOT_FOUND' });
      await r.service.revokeCredential(PERSON.id, id);
      await assert.rejects(r.service.revokeCredential(PERSON.id, id), { code: 'TRESOR_ERR_NOT_FOUND' });
    });

    it("refuses another person's credential", async () => {
      const r = await rig();
      await r.register();
      await r.seedAssertion(0, OTHER.id);
      await assertRefused(r, r.service.finishAuthentication(OTHER.id, r.assertion(0)), 'credential-unknown');
    });

    it('signs in against a challenge bound to a ceremony (a pending login), only for the expected person', async () => {
      const r = await rig();
      const id = await r.register();
      const ceremony = 'login:pending-handle-hash';
      const options = await r.service.beginCeremonyAuthentication(ceremony);
      assert.deepEqual(options.allowCredentials, [], 'names no credential');
      await r.seedChallenge(ceremony, 'authentication', captured.assertions[0]?.challenge ?? '');
      const signIn = await r.service.finishCeremonyAuthentication(ceremony, PERSON.id, r.assertion(0));
      assert.equal(signIn.credentialId, id);
      // The challenge was the ceremony's, not the person's: a person-bound sign-in finds none.
      await assertRefused(r, r.service.finishAuthentication(PERSON.id, r.assertion(1)), 'challenge-unknown');
      // A ceremony that stands for nobody (wrong password), or for another person, is refused.
      for (const person of [null, OTHER.id]) {
        await r.seedChallenge(ceremony, 'authentication', captured.assertions[1]?.challenge ?? '');
        await assertRefused(
          r,
          r.service.finishCeremonyAuthentication(ceremony, person, r.assertion(1)),
          'credential-unknown',
        );
      }
    });

    it('binds a challenge to its ceremony: a registration challenge does not serve a sign-in', async () => {
      const r = await rig();
      await r.register();
      await r.seedChallenge(PERSON.id, 'registration', captured.assertions[0]?.challenge ?? '');
      await assertRefused(r, r.service.finishAuthentication(PERSON.id, r.assertion(0)), 'challenge-unknown');
    });

    it('refuses a tampered signature, and spends the challenge on malformed input', async () => {
      const r = await rig();
      await r.register();
      const original = r.assertion(0) as { response: { signature: string } };
      const signature = Buffer.from(original.response.signature, 'base64url');
      signature[signature.length - 1] = (signature.at(-1) ?? 0) ^ 1;
      const tampered = {
        ...original,
        response: { ...original.response, signature: signature.toString('base64url') },
      };
      await r.seedAssertion(0);
      await assertRefused(r, r.service.finishAuthentication(PERSON.id, tampered), 'verification-failed');

      await r.seedAssertion(0);
      await assertRefused(r, r.service.finishAuthentication(PERSON.id, { id: 'x' }), 'malformed');
      await assertRefused(r, r.service.finishAuthentication(PERSON.id, r.assertion(0)), 'challenge-unknown');
    });
  });

  describe('WebAuthn options', () => {
    it('issues 32-byte challenges, a fresh one each time, replacing the previous', async () => {
      const r = await rig();
      const a = await r.service.beginRegistration(PERSON);
      const b = await r.service.beginRegistration(PERSON);
      assert.equal(Buffer.from(a.challenge, 'base64url').length, WEBAUTHN_CHALLENGE_BYTES);
      assert.notEqual(a.challenge, b.challenge);
      const rows = await r.store.db.selectFrom('webauthn_challenges').selectAll().execute();
      assert.deepEqual(
        rows.map((row) => [row.person, row.kind, row.challenge, row.expires_at]),
        [[PERSON.id, 'registration', b.challenge, new Date(NOW.getTime() + TTL_MS).toISOString()]],
      );
    });

    it('offers EdDSA, ES256 and RS256, whatever algorithms the runtime has', async () => {
      const r = await rig();
      const registration = await r.service.beginRegistration(PERSON);
      assert.deepEqual(
        registration.pubKeyCredParams.map((p) => [p.type, p.alg]),
        [
          ['public-key', -8],
          ['public-key', -7],
          ['public-key', -257],
        ],
      );
    });

    it('asks for user presence with verification preferred, and excludes known credentials', async () => {
      const r = await rig();
      const id = await r.register();
      const registration = await r.service.beginRegistration({
        ...PERSON,
        existingCredentialIds: ['other-id'],
      });
      assert.equal(registration.authenticatorSelection?.userVerification, 'preferred');
      assert.equal(registration.attestation, 'none');
      assert.deepEqual(registration.excludeCredentials?.map((c) => c.id).sort(), [id, 'other-id'].sort());
      assert.equal(registration.rp.id, 'localhost');
      const authentication = await r.service.beginAuthentication(PERSON.id);
      assert.equal(authentication.userVerification, 'preferred');
      assert.deepEqual(
        authentication.allowCredentials?.map((c) => c.id),
        [id],
      );
    });

    it('counts a counter as regressed exactly as §6.1.1 says', () => {
      assert.equal(counterRegressed(0, 0), false, 'no counter on this authenticator');
      assert.equal(counterRegressed(1, 0), false);
      assert.equal(counterRegressed(6, 5), false);
      assert.equal(counterRegressed(5, 5), true);
      assert.equal(counterRegressed(4, 5), true);
      assert.equal(counterRegressed(0, 5), true);
    });
  });
});
