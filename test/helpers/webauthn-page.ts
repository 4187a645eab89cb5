/**
 * Test-only: a page on http://localhost:<port> (a secure context, so WebAuthn works without TLS)
 * that loads @simplewebauthn/browser's UMD bundle from node_modules and drives a WebAuthnService
 * through four JSON endpoints, plus Chromium (Debian's, via playwright-core) with a CDP virtual
 * authenticator. Nothing here is used by Tresor itself.
 *
 * The page's buttons run the ceremonies the way the console will: fetch options, call
 * startRegistration/startAuthentication, post the response back, and write the server's answer
 * as JSON into #result (with data-seq counting answers, so a test can await the next one).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { type Browser, type CDPSession, chromium, type Page } from 'playwright-core';
import { TresorError } from '../../src/errors.ts';
import type { WebAuthnPerson, WebAuthnService } from '../../src/identity/webauthn.ts';

export const CHROMIUM_PATH = '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

const require = createRequire(import.meta.url);
/** The exports map hides dist/ (and package.json); the CommonJS entry sits in script/, next to it. */
const BROWSER_BUNDLE = join(
  dirname(require.resolve('@simplewebauthn/browser')),
  '..',
  'dist/bundle/index.umd.min.js',
);

const PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Tresor WebAuthn test page</title>
<script src="/simplewebauthn-browser.js"></script></head>
<body>
<button id="register">Register a passkey</button>
<button id="sign-in">Sign in with a passkey</button>
<output id="result" data-seq="0"></output>
<script>
const { startRegistration, startAuthentication } = SimpleWebAuthnBrowser;
const result = document.getElementById('result');
async function post(path, body) {
  const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) });
  return res.json();
}
async function ceremony(kind, start) {
  let answer;
  try {
    const options = await post('/' + kind + '/options');
    if (!options.ok) answer = options;
    else answer = await post('/' + kind + '/verify', await start({ optionsJSON: options.options }));
  } catch (error) {
    answer = { ok: false, browserError: String(error && error.name), message: String(error && error.message) };
  }
  result.textContent = JSON.stringify(answer);
  result.dataset.seq = String(Number(result.dataset.seq) + 1);
}
document.getElementById('register').onclick = () => ceremony('registration', startRegistration);
document.getElementById('sign-in').onclick = () => ceremony('authentication', startAuthentication);
</script>
</body>
</html>`;

export interface WebAuthnPageServer {
  /** `http://localhost:<port>` */
  readonly origin: string;
  close(): Promise<void>;
}

/**
 * Serves the page for `person`, answering its ceremonies with the service `service()` returns (a
 * function, because the service's origins are known only once the ports are).
 */
export async function startWebAuthnPage(
  service: () => WebAuthnService,
  person: WebAuthnPerson,
): Promise<WebAuthnPageServer> {
  const bundle = readFileSync(BROWSER_BUNDLE);
  const routes: Record<string, (body: unknown) => Promise<Record<string, unknown>>> = {
    '/registration/options': async () => ({ options: await service().beginRegistration(person) }),
    '/registration/verify': async (body) => ({
      credential: await service().finishRegistration(person.id, body),
    }),
    '/authentication/options': async () => ({ options: await service().beginAuthentication(person.id) }),
    '/authentication/verify': async (body) => ({
      signIn: await service().finishAuthentication(person.id, body),
    }),
  };
  const server = createServer((req, res) => {
    void handle(req, res).catch(() => send(res, 500, 'text/plain', 'internal error'));
  });
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method === 'GET' && path === '/') return send(res, 200, 'text/html; charset=utf-8', PAGE);
    if (req.method === 'GET' && path === '/simplewebauthn-browser.js') {
      return send(res, 200, 'text/javascript; charset=utf-8', bundle);
    }
    const route = routes[path];
    if (req.method !== 'POST' || !route) return send(res, 404, 'text/plain', 'not found');
    const body: unknown = JSON.parse(await readBody(req));
    try {
      const answer = await route(body);
      return send(res, 200, 'application/json', JSON.stringify({ ok: true, ...answer }));
    } catch (error) {
      if (!(error instanceof TresorError)) throw error;
      // What a client would see: code and message, never the refusal's reason.
      const answer = { ok: false, code: error.code, message: error.message };
      return send(res, error.status, 'application/json', JSON.stringify(answer));
    }
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://localhost:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8') || '{}';
}

/**
 * Debian's Chromium, headless; fails (does not skip) with the package to install when it is missing.
 * `extraArgs` are added to the command line (e.g. the SPKI pin of a test server's certificate).
 */
export async function launchChromium(extraArgs: readonly string[] = []): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`Chromium is not installed (${CHROMIUM_PATH} missing): apt-get install chromium`);
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
  });
}

export interface AuthenticatorPage {
  page: Page;
  cdp: CDPSession;
  authenticatorId: string;
  close(): Promise<void>;
}

/**
 * A fresh browser context on `url` with a CTAP2 platform authenticator that holds resident keys and
 * verifies its user automatically (CDP WebAuthn domain).
 */
export async function openAuthenticatorPage(browser: Browser, url: string): Promise<AuthenticatorPage> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
    },
  });
  await page.goto(url);
  return { page, cdp, authenticatorId, close: () => context.close() };
}

export type PageAnswer = { ok: boolean; [k: string]: unknown };

/** Clicks a ceremony button and returns the server's answer once the page has written it. */
export async function clickAndRead(page: Page, button: '#register' | '#sign-in'): Promise<PageAnswer> {
  const before = Number(await page.locator('#result').getAttribute('data-seq'));
  await page.click(button);
  await page.waitForSelector(`#result:not([data-seq="${before}"])`, { state: 'attached' });
  return JSON.parse((await page.locator('#result').textContent()) ?? '{}') as PageAnswer;
}

/** The browser half of the library as the page has it (tsconfig has no DOM lib, hence the shape). */
interface PageGlobals {
  SimpleWebAuthnBrowser: {
    startRegistration(input: { optionsJSON: unknown }): Promise<unknown>;
    startAuthentication(input: { optionsJSON: unknown }): Promise<unknown>;
  };
}

/** Runs navigator.credentials.create() in the page with these options and returns the raw response. */
export function createCredentialInPage(page: Page, options: unknown): Promise<unknown> {
  return page.evaluate(
    (optionsJSON) =>
      (globalThis as unknown as PageGlobals).SimpleWebAuthnBrowser.startRegistration({ optionsJSON }),
    options,
  );
}

/** Runs navigator.credentials.get() in the page with these options and returns the raw response. */
export function getAssertionInPage(page: Page, options: unknown): Promise<unknown> {
  return page.evaluate(
    (optionsJSON) =>
      (globalThis as unknown as PageGlobals).SimpleWebAuthnBrowser.startAuthentication({ optionsJSON }),
    options,
  );
}
