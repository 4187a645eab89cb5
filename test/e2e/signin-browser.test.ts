/**
 * The sign-in page in a real browser against a real stack: `tresor server` and `tresor keyd` as
 * separate processes (tresor-stack.ts), Debian's Chromium (playwright-core) with a CDP virtual
 * authenticator. The test only fills fields and clicks buttons of the page the server serves at
 * /signin — every WebAuthn response is made by Chromium and @simplewebauthn/browser, every TOTP code
 * by oathtool — and reads what the page and the browser show.
 *
 * TLS is real and trusted, not ignored: Chromium refuses WebAuthn on a page with a certificate
 * error, so instead of --ignore-certificate-errors it is told the SHA-256 of the stack's server
 * certificate's public key (--ignore-certificate-errors-spki-list), which makes exactly that
 * certificate valid for it. The page is opened as https://localhost:<port>, the WebAuthn RP ID is
 * `localhost` and the console origin that URL's; the dev certificate names localhost.
 */
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { RECOVERY_CODE_COUNT } from '../../src/identity/recovery-codes.ts';
import { consoleClient, operatorAdmin, operatorToken, SESSION_COOKIE } from '../helpers/console.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { type AuthenticatorPage, launchChromium, openAuthenticatorPage } from '../helpers/webauthn-page.ts';

const SIGN_IN_REFUSED = 'Sign-in failed. Check what you entered and try again.';
const PASSWORD = 'amber trellis 9 quietly heron';

/** A port free now on 127.0.0.1: the console origin must name it before the server starts. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate: Chromium's SPKI pin format. */
function spkiHash(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

async function visible(page: Page, selector: string): Promise<void> {
  await page.locator(selector).waitFor({ state: 'visible' });
}

async function sessionCookies(context: BrowserContext) {
  return (await context.cookies()).filter((c) => c.name === SESSION_COOKIE);
}

describe('the sign-in page in Chromium', () => {
  let stack: TresorStack;
  let browser: Browser;
  let origin: string;
  let people: ReturnType<typeof consoleClient>;
  const secrets: string[] = [PASSWORD];
  const opened: AuthenticatorPage[] = [];

  /** Creates an account by the operator admin's session; its enrolment token goes only into the page. */
  async function createPerson(body: Record<string, unknown>): Promise<{ email: string; token: string }> {
    const res = await (await operatorAdmin(stack)).request('POST', '/v1/people', body);
    assert.equal(res.status, 201, res.text);
    const token = res.json<{ enrolmentToken: string }>().enrolmentToken;
    secrets.push(token);
    return { email: body.email as string, token };
  }

  /** A fresh browser context with its own virtual authenticator, on the page's enrolment link. */
  async function openEnrolment(token: string): Promise<AuthenticatorPage> {
    const auth = await openAuthenticatorPage(browser, `${origin}/signin#enrol=${token}`);
    opened.push(auth);
    await auth.page.locator('body[data-ready="true"]').waitFor({ state: 'attached' });
    return auth;
  }

  async function setPassword(page: Page, token: string): Promise<void> {
    await visible(page, '#enrol');
    assert.ok(
      (await page.inputValue('#enrol-token')) === token,
      'the token field holds the fragment’s token',
    );
    assert.equal(new URL(page.url()).hash, '', 'the fragment is wiped from the address bar');
    await page.fill('#enrol-password', PASSWORD);
    await page.fill('#enrol-password-repeat', PASSWORD);
    await page.click('#enrol-password-submit');
    await visible(page, '#enrol-factor');
  }

  async function readRecoveryCodes(page: Page): Promise<string[]> {
    await visible(page, '#recovery');
    const codes = await page.locator('#recovery-codes li').allTextContents();
    secrets.push(...codes);
    await page.click('#recovery-done');
    await visible(page, '#signin');
    assert.equal(await page.locator('#recovery-codes li').count(), 0, 'the codes are shown once');
    return codes;
  }

  async function enterPassword(
    page: Page,
    who: { email: string; side?: 'operator' | 'customer'; tenant?: string },
    password = PASSWORD,
  ): Promise<void> {
    await visible(page, '#signin');
    await page.selectOption('#signin-side', who.side ?? 'operator');
    if (who.tenant) await page.fill('#signin-tenant', who.tenant);
    await page.fill('#signin-email', who.email);
    await page.fill('#signin-password', password);
    await page.click('#signin-submit');
    await visible(page, '#second-factor');
  }

  before(async () => {
    const port = await freePort();
    origin = `https://localhost:${port}`;
    stack = await startTresorStack({
      env: {
        TRESOR_PORT: String(port),
        TRESOR_CONSOLE_RP_ID: 'localhost',
        TRESOR_CONSOLE_ORIGINS: origin,
      },
    });
    people = consoleClient(stack);
    const certPem = readFileSync(join(stack.dataDir, 'tls', 'server.pem'), 'utf8');
    assert.ok(new X509Certificate(certPem).checkHost('localhost'), 'the server certificate names localhost');
    browser = await launchChromium([`--ignore-certificate-errors-spki-list=${spkiHash(certPem)}`]);
  });

  after(async () => {
    for (const auth of opened) await auth.close().catch(() => undefined);
    await browser?.close();
    await stack?.stop();
  });

  it('serves the page with a CSP that allows only same-origin scripts, and its assets with their types', async () => {
    const page = await stack.request('GET', '/signin');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /^text\/html; charset=utf-8$/);
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /(^|; )script-src 'self'(;|$)/);
    assert.match(csp, /(^|; )default-src 'none'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
    assert.doesNotMatch(page.text, /<script(?![^>]*\ssrc="\/signin\/)/, 'no inline script');
    assert.doesNotMatch(page.text, /\sstyle=|<style/, 'no inline style');
    for (const [path, type] of [
      ['/signin/app.js', 'text/javascript'],
      ['/signin/webauthn.js', 'text/javascript'],
      ['/signin/app.css', 'text/css'],
    ] as const) {
      const res = await stack.request('GET', path);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers['content-type'], `${type}; charset=utf-8`, path);
      assert.equal(res.headers['x-content-type-options'], 'nosniff', path);
    }
  });

  describe('an account enrolled with a passkey', () => {
    let auth: AuthenticatorPage;
    let email: string;

    it('enrols through the page: password, a passkey, the recovery codes shown once', async () => {
      const created = await createPerson({
        side: 'operator',
        role: 'security-officer',
        email: 'ines@tresor.test',
      });
      email = created.email;
      auth = await openEnrolment(created.token);
      await setPassword(auth.page, created.token);
      await auth.page.click('#enrol-passkey');
      const codes = await readRecoveryCodes(auth.page);
      assert.equal(codes.length, RECOVERY_CODE_COUNT);
      const { credentials } = await auth.cdp.send('WebAuthn.getCredentials', {
        authenticatorId: auth.authenticatorId,
      });
      assert.equal(credentials.length, 1, 'the virtual authenticator holds the new passkey');
      assert.equal(credentials[0]?.rpId, 'localhost');
      assert.equal(credentials[0]?.isResidentCredential, true);
    });

    it('signs in with the password and the passkey; the page shows the session; the cookie is HttpOnly', async () => {
      const { page } = auth;
      await enterPassword(page, { email });
      await page.click('#second-passkey');
      await visible(page, '#session');
      assert.equal(await page.textContent('#session-email'), email);
      assert.equal(await page.textContent('#session-role'), 'security-officer');
      assert.equal(await page.textContent('#session-side'), 'staff');
      assert.match((await page.textContent('#session-factors')) ?? '', /\bwebauthn\b/);
      const [cookie] = await sessionCookies(page.context());
      assert.ok(cookie, 'a session cookie is set');
      assert.equal(cookie.httpOnly, true);
      assert.equal(cookie.secure, true);
      assert.equal(cookie.sameSite, 'Strict');
      // Strings, not functions: tsconfig has no DOM lib (the page evaluates them).
      assert.equal(await page.evaluate('document.cookie'), '', 'the script cannot read the cookie');
      const stored = await page.evaluate('[localStorage.length, sessionStorage.length]');
      assert.deepEqual(stored, [0, 0], 'nothing kept in web storage (the CSRF token is in memory only)');
    });

    it('signs out, and a reload shows signed out', async () => {
      const { page } = auth;
      await page.click('#signout');
      await visible(page, '#signin');
      assert.deepEqual(await sessionCookies(page.context()), []);
      await page.reload();
      await page.locator('body[data-ready="true"]').waitFor({ state: 'attached' });
      await visible(page, '#signin');
      assert.equal(await page.locator('#session').isHidden(), true);
    });

    it('refuses a wrong password with the uniform error, the same as for an unknown account, and sets no cookie', async () => {
      const { page } = auth;
      const messages: string[] = [];
      for (const who of [
        { email, password: 'not the password at all' },
        { email: 'nobody@tresor.test', password: PASSWORD },
      ]) {
        await enterPassword(page, { email: who.email }, who.password);
        await page.click('#second-passkey');
        await visible(page, '#message');
        await visible(page, '#signin');
        messages.push((await page.textContent('#message')) ?? '');
        assert.deepEqual(await sessionCookies(page.context()), []);
      }
      assert.deepEqual(messages, [SIGN_IN_REFUSED, SIGN_IN_REFUSED]);
    });
  });

  describe('a customer account enrolled with TOTP', () => {
    let auth: AuthenticatorPage;
    let account: { email: string; tenant: string; secret: string; recoveryCodes: string[] };

    it('enrols through the page: password, the TOTP secret shown, confirmed with a code', async () => {
      const tenant = await stack.request('POST', '/v1/tenants', {
        token: await operatorToken(stack, 'tenants:create'),
        body: { name: 'Sign-in page customer' },
      });
      assert.equal(tenant.status, 201, tenant.text);
      const { id: tenantId, apiKey } = tenant.json<{ id: string; apiKey: string }>();
      secrets.push(apiKey);
      const created = await createPerson({
        side: 'customer',
        role: 'tenant-admin',
        tenant: tenantId,
        email: 'olu@customer.test',
      });
      auth = await openEnrolment(created.token);
      const { page } = auth;
      await setPassword(page, created.token);
      await page.click('#enrol-totp');
      await visible(page, '#enrol-totp-setup');
      const secret = (await page.textContent('#totp-secret')) ?? '';
      assert.match(secret, /^[A-Z2-7]+=*$/);
      secrets.push(secret);
      const uri = new URL((await page.textContent('#totp-uri')) ?? '');
      assert.equal(uri.protocol, 'otpauth:');
      assert.ok(uri.searchParams.get('secret') === secret, 'the URI carries the secret shown');
      await page.fill('#totp-confirm-code', await people.nextCode(secret));
      await page.click('#totp-confirm');
      const recoveryCodes = await readRecoveryCodes(page);
      assert.equal(recoveryCodes.length, RECOVERY_CODE_COUNT);
      assert.equal(await page.textContent('#totp-secret'), '', 'the secret is gone from the page');
      account = { email: created.email, tenant: tenantId, secret, recoveryCodes };
    });

    it('signs in with the password and a TOTP code from oathtool', async () => {
      const { page } = auth;
      await enterPassword(page, { email: account.email, side: 'customer', tenant: account.tenant });
      await page.fill('#second-totp', await people.nextCode(account.secret));
      await page.click('#second-totp-submit');
      await visible(page, '#session');
      assert.equal(await page.textContent('#session-email'), account.email);
      assert.equal(await page.textContent('#session-tenant'), account.tenant);
      assert.equal(await page.textContent('#session-side'), 'customer');
      assert.match((await page.textContent('#session-factors')) ?? '', /\btotp\b/);
      await page.click('#signout');
      await visible(page, '#signin');
      assert.deepEqual(await sessionCookies(page.context()), []);
    });

    it('signs in with the password and a recovery code', async () => {
      const { page } = auth;
      await enterPassword(page, { email: account.email, side: 'customer', tenant: account.tenant });
      await page.fill('#second-recovery', account.recoveryCodes[0] ?? '');
      await page.click('#second-recovery-submit');
      await visible(page, '#session');
      assert.match((await page.textContent('#session-factors')) ?? '', /\brecovery\b/);
      assert.equal((await sessionCookies(page.context())).length, 1);
    });
  });

  it('never let a password, token, secret or code reach the server’s log', () => {
    const log = stack.serverOutput();
    assert.ok(log.includes('"request"'), 'the server logged its requests');
    const leaked = secrets.filter((s) => s.length >= 6 && log.includes(s)).length;
    assert.equal(leaked, 0, `${leaked} secrets found in the server log`);
  });
});
