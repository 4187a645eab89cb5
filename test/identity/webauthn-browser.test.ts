/**
 * WebAuthn end to end in a real browser: Debian's Chromium (playwright-core) with a CDP virtual
 * authenticator registers a passkey and signs in by clicking the buttons of a page that uses
 * @simplewebauthn/browser, against the service on a real SQLite control store. No response here is
 * made by hand.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import {
  createWebAuthnService,
  WEBAUTHN_REFUSED_MESSAGE,
  type WebAuthnService,
} from '../../src/identity/webauthn.ts';
import { createSqliteWebAuthnStore, type WithWebAuthn } from '../../src/identity/webauthn-store.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/store.ts';
import {
  type AuthenticatorPage,
  clickAndRead,
  launchChromium,
  openAuthenticatorPage,
  type PageAnswer,
  startWebAuthnPage,
  type WebAuthnPageServer,
} from '../helpers/webauthn-page.ts';

type DB = ControlDB & WithWebAuthn;

const PERSON = { id: 'opr_0123456789abcdef01234567', email: 'ada@tresor.example' };

interface Denial {
  action: string;
  reason: unknown;
}

describe('WebAuthn in Chromium with a virtual authenticator', () => {
  let dir: string;
  let store: SqliteStore<DB>;
  let browser: Browser;
  let home: WebAuthnPageServer;
  let elsewhere: WebAuthnPageServer;
  let service: WebAuthnService;
  let auth: AuthenticatorPage;

  async function denials(): Promise<Denial[]> {
    const rows = await store.db.selectFrom('audit_events').select('event').orderBy('seq').execute();
    return rows
      .map((r) => JSON.parse(r.event))
      .filter((e) => e.outcome === 'denied')
      .map((e) => ({ action: e.action, reason: e.target?.reason }));
  }

  function assertRefused(answer: PageAnswer): void {
    assert.equal(answer.ok, false, JSON.stringify(answer));
    assert.equal(answer.code, 'TRESOR_ERR_WEBAUTHN_REFUSED');
    assert.equal(answer.message, WEBAUTHN_REFUSED_MESSAGE);
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-webauthn-browser-'));
    store = await openSqliteStore<DB>(join(dir, 'control.db'), controlStoreMigrations);
    browser = await launchChromium();
    // Two servers on two ports are two origins with the same RP ID; the service trusts only `home`.
    home = await startWebAuthnPage(() => service, PERSON);
    elsewhere = await startWebAuthnPage(() => service, PERSON);
    service = createWebAuthnService({
      rpId: 'localhost',
      rpName: 'Tresor',
      origins: [home.origin],
      store: createSqliteWebAuthnStore(store),
    });
    auth = await openAuthenticatorPage(browser, home.origin);
  });

  after(async () => {
    await auth?.close();
    await browser?.close();
    await home?.close();
    await elsewhere?.close();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('registers a passkey made by the browser', async () => {
    const answer = await clickAndRead(auth.page, '#register');
    assert.equal(answer.ok, true, JSON.stringify(answer));
    const credential = answer.credential as { id: string; counter: number };
    const { credentials } = await auth.cdp.send('WebAuthn.getCredentials', {
      authenticatorId: auth.authenticatorId,
    });
    assert.equal(credentials.length, 1);
    // CDP reports the ID as standard base64; the service keeps the response's base64url.
    assert.equal(
      Buffer.from(credentials[0]?.credentialId ?? '', 'base64').toString('base64url'),
      credential.id,
    );
    const listed = await service.listCredentials(PERSON.id);
    assert.deepEqual(
      listed.map((c) => c.id),
      [credential.id],
    );
  });

  it('signs in, and the signature counter advances at each sign-in', async () => {
    const [before] = await service.listCredentials(PERSON.id);
    assert.ok(before);
    const first = await clickAndRead(auth.page, '#sign-in');
    assert.equal(first.ok, true, JSON.stringify(first));
    const firstSignIn = first.signIn as { credentialId: string; counter: number; userVerified: boolean };
    assert.equal(firstSignIn.credentialId, before.id);
    assert.ok(firstSignIn.counter > before.counter, `counter ${firstSignIn.counter} > ${before.counter}`);
    assert.equal(firstSignIn.userVerified, true);

    const second = await clickAndRead(auth.page, '#sign-in');
    assert.equal(second.ok, true, JSON.stringify(second));
    const secondSignIn = second.signIn as { counter: number };
    assert.ok(secondSignIn.counter > firstSignIn.counter);
    const [after] = await service.listCredentials(PERSON.id);
    assert.equal(after?.counter, secondSignIn.counter);
    assert.notEqual(after?.lastUsedAt, null);
  });

  it('refuses a sign-in made on another origin, and audits it', async () => {
    await auth.page.goto(elsewhere.origin);
    try {
      const answer = await clickAndRead(auth.page, '#sign-in');
      assertRefused(answer);
      assert.deepEqual((await denials()).at(-1), { action: 'webauthn.authenticate', reason: 'origin' });
    } finally {
      await auth.page.goto(home.origin);
    }
    // The refusal did not touch the credential: the home origin still signs in.
    const answer = await clickAndRead(auth.page, '#sign-in');
    assert.equal(answer.ok, true, JSON.stringify(answer));
  });

  it('refuses a registration made on another origin', async () => {
    // A second authenticator: the first holds a credential the options exclude, and would say so itself.
    const other = await openAuthenticatorPage(browser, elsewhere.origin);
    try {
      assertRefused(await clickAndRead(other.page, '#register'));
      assert.deepEqual((await denials()).at(-1), { action: 'webauthn.register', reason: 'origin' });
    } finally {
      await other.close();
    }
    assert.equal((await service.listCredentials(PERSON.id)).length, 1);
  });

  it('refuses the next sign-in once the passkey is revoked', async () => {
    const [credential] = await service.listCredentials(PERSON.id);
    assert.ok(credential);
    await service.revokeCredential(PERSON.id, credential.id);
    // No live credential is left, so the server offers no options; the browser is never asked.
    assertRefused(await clickAndRead(auth.page, '#sign-in'));
    assert.deepEqual((await denials()).at(-1), {
      action: 'webauthn.authenticate',
      reason: 'no-credentials',
    });
    const [revoked] = await service.listCredentials(PERSON.id);
    assert.notEqual(revoked?.revokedAt, null);
  });
});
